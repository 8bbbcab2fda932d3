"""Build the pruner and schedule a `GatedBertConfig` asks for."""

import logging

from gated_bert.vocabulary import SCHEDULED_METHODS
from pruners.training.gumbel_learner import GumbelMaskLearner
from pruners.training.schedules import (
    PolynomialSchedule,
    StepListSchedule,
    TemperatureSchedule,
    pruning_window,
    step_levels,
)
from pruners.training.weight_pruners import (
    MagnitudePruner,
    MovementPruner,
    SptPruner,
    movement_frequency,
    scaled_spt_epsilon,
)

log = logging.getLogger(__name__)
RAMP_POWERS = {"linear": 1, "cubic": 3}


def pruning_from_config(config, steps_per_epoch, prunable_weights):
    """`(pruner, schedule)` for `config.pruning_method`, or `(None, None)` without a scheduled method.

    Movement follows the `movement_schedule` ramp, pruning every
    `pruning_frequency_steps` (default: `movement_frequency`). Magnitude and
    SPT walk the `sparsity_steps` levels between `start_sparsity` and
    `end_sparsity` (`step_levels`), one pruning event per level.
    """
    if config.method not in SCHEDULED_METHODS:
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


def gumbel_from_config(config, steps_per_epoch):
    """`(learner, temperature schedule)` for learned Gumbel masks, annealed over every training step.

    In target mode the target ramps up over the first `target_warmup` of the steps.
    """
    total = steps_per_epoch * config.epochs
    learner = GumbelMaskLearner(config.sparsity_loss, config.quantization_loss, config.target_sparsity,
                                config.masks_lr, config.freeze, round(config.target_warmup * total))
    schedule = TemperatureSchedule(config.gumbel_temp_start, config.gumbel_temp_end, total, config.gumbel_temp_anneal)
    return learner, schedule
