"""Build the pruner and schedule a `GatedBertConfig` asks for."""

import logging

from pruners.pruners import (
    MagnitudePruner,
    MovementPruner,
    SptPruner,
    movement_frequency,
    scaled_spt_epsilon,
)
from pruners.schedules import PolynomialSchedule, StepListSchedule, pruning_window, step_levels

log = logging.getLogger(__name__)
RAMP_POWERS = {"linear": 1, "cubic": 3}


def pruning_from_config(config, steps_per_epoch, prunable_weights):
    """`(pruner, schedule)` for `config.pruning_method`, or `(None, None)` when pruning is off.

    Movement follows the `movement_schedule` ramp, pruning every
    `pruning_frequency_steps` (default: `movement_frequency`). Magnitude and
    SPT walk the `sparsity_steps` levels between `start_sparsity` and
    `end_sparsity` (`step_levels`), one pruning event per level.
    """
    if not config.enable_pruning:
        return None, None
    begin, end = pruning_window(config.pruning_start_epoch, config.pruning_end_epoch, config.epochs,
                                steps_per_epoch)
    method = config.pruning_method
    if method == "movement":
        frequency = config.pruning_frequency_steps or movement_frequency(config.num_layers)
        schedule = PolynomialSchedule(config.start_sparsity, config.end_sparsity, begin, end, frequency,
                                      RAMP_POWERS[config.movement_schedule])
        return MovementPruner(config.pruning_scope), schedule
    if config.pruning_frequency_steps is not None:
        log.warning("pruning_frequency_steps=%d is ignored by %s pruning, which prunes once per sparsity_steps "
                    "level", config.pruning_frequency_steps, method)
    schedule = StepListSchedule(step_levels(config.sparsity_steps, config.start_sparsity, config.end_sparsity),
                                begin, end)
    if method == "magnitude":
        return MagnitudePruner(config.pruning_scope), schedule
    epsilon = scaled_spt_epsilon(config.spt_epsilon, prunable_weights)
    pruner = SptPruner(epsilon, config.spt_reward_alpha, config.spt_explore_per_layer, config.seed,
                       config.pruning_scope)
    return pruner, schedule
