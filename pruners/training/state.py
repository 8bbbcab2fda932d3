"""What the learners hand a resumed run: their variables as `{"group/key": array}`, and back."""

from keras import ops


def _keyed(variables):
    return variables.items() if isinstance(variables, dict) else enumerate(variables)


def variables_state(groups):
    """`{"group/key": array}` of `{group: variables}`, a key being a dict's key or a list's position."""
    return {f"{group}/{key}": ops.convert_to_numpy(variable) for group, variables in groups.items()
            for key, variable in _keyed(variables)}


def assign_variables_state(groups, arrays):
    """Put the arrays of `variables_state(groups)` back into the same `groups`."""
    for group, variables in groups.items():
        for key, variable in _keyed(variables):
            variable.assign(arrays[f"{group}/{key}"])
