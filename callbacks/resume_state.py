"""`ResumeState`: after every epoch, everything a run needs to continue from there, in one file; restored when a
killed run is resumed (`train.py --resume`).

The file (`resume_<method>_<timestamp>.npz` beside the checkpoints) holds the model's variables (weights,
masks, gates, mask logits, the dropout and Gumbel noise seeds), the optimizer's, and each participant's state:
a participant is a callback with `resume_state() -> (arrays, values)` and `restore_state(arrays, values)`,
`arrays` a `{name: np.ndarray}` and `values` JSON-able (the pruner's scores and schedule step, the mask
learner's optimizers and multipliers, the results rows, the best metric so far, ...). It is written atomically
once the callbacks before it have finished the epoch, so it always describes a finished epoch whose CSV row,
metadata and checkpoints exist.
"""

import json

import keras
import numpy as np

from gated_bert.files import atomic_path, json_text

STATE_FORMAT = "gated-bert resume state"
STATE_VERSION = 1


class ResumeError(ValueError):
    """A resume state is missing, unreadable or does not fit the run it is put on."""


def variables_state(prefix, variables):
    """`{prefix/i: value}` of a list of variables, in order."""
    return {f"{prefix}/{index}": keras.ops.convert_to_numpy(variable) for index, variable in enumerate(variables)}


def assign_variables(prefix, variables, arrays, source="the resume state"):
    """Assign `arrays[prefix/i]` to the i-th variable; another count of entries, or another shape, is a
    `ResumeError`."""
    stored = sum(1 for key in arrays if key.startswith(f"{prefix}/") and key.removeprefix(f"{prefix}/").isdigit())
    if stored != len(variables):
        raise ResumeError(f"{source} holds {stored} {prefix} variables, the run has {len(variables)}: it was "
                          "written by another kind of run")
    for index, variable in enumerate(variables):
        key = f"{prefix}/{index}"
        if key not in arrays:
            raise ResumeError(f"{source} has no {key} ({variable.path}): it was written by another kind of run")
        value = arrays[key]
        if tuple(value.shape) != tuple(variable.shape):
            raise ResumeError(f"{source}: {key} ({variable.path}) has shape {value.shape}, the model's is "
                              f"{tuple(variable.shape)}")
        variable.assign(value)


def write_state(path, epoch, arrays, values):
    """Write a resume state after `epoch` epochs (atomically)."""
    header = {"format": STATE_FORMAT, "version": STATE_VERSION, "epochs_completed": epoch, "values": values}
    with atomic_path(path) as tmp:
        np.savez(tmp, __state__=np.array(json_text(header)), **arrays)


def read_state(path):
    """`(epochs_completed, arrays, values)` of a resume state file; `ResumeError` naming the file otherwise."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
        header = json.loads(str(arrays.pop("__state__")))
    except (OSError, ValueError, KeyError) as error:
        raise ResumeError(f"cannot read the resume state {path}: {error}") from None
    if header.get("format") != STATE_FORMAT or header.get("version") != STATE_VERSION:
        raise ResumeError(f"{path} is not a resume state of this version ({header.get('format')!r}, "
                          f"{header.get('version')!r})")
    return header["epochs_completed"], arrays, header["values"]


class ResumeState(keras.callbacks.Callback):
    """Writes the run's state to `path` after every epoch; with `restore` (`read_state`'s result), puts it back
    when training begins. Place it after every callback with state (only `GracefulStop` may follow): it runs
    after they have reset themselves in `on_train_begin`, and after they have finished each epoch.

    Args:
        path: the state file.
        participants: `{name: callback}` whose `resume_state`/`restore_state` add their state.
        restore: `(epochs_completed, arrays, values)` to put back, or None for a new run.
    """

    def __init__(self, path, participants, restore=None):
        super().__init__()
        self.path = path
        self.participants = dict(participants)
        self.restore = restore

    def on_train_begin(self, logs=None):
        if self.restore is None:
            return
        _, arrays, values = self.restore
        if not self.model.optimizer.built:  # Keras builds it at the first step: its slots must exist to be filled
            self.model.optimizer.build(self.model.trainable_variables)
        assign_variables("model", self.model.variables, arrays, self.path)
        assign_variables("optimizer", self.model.optimizer.variables, arrays, self.path)
        for name, participant in self.participants.items():
            if name not in values:  # e.g. a progress file the killed run did not keep
                continue
            prefix = f"{name}/"
            participant.restore_state({key.removeprefix(prefix): value for key, value in arrays.items()
                                       if key.startswith(prefix)}, values.get(name, {}))
        self.restore = None

    def on_epoch_end(self, epoch, logs=None):
        arrays = {**variables_state("model", self.model.variables),
                  **variables_state("optimizer", self.model.optimizer.variables)}
        values = {}
        for name, participant in self.participants.items():
            own, values[name] = participant.resume_state()
            arrays.update({f"{name}/{key}": value for key, value in own.items()})
        write_state(self.path, epoch + 1, arrays, values)
