"""Build the pruner and schedule a `GatedBertConfig` asks for."""

import logging

from efficiency.mac import mac_shape, unit_macs
from gated_bert.vocabulary import RAMPS, SCHEDULED_METHODS
from pruners.training.gumbel_learner import GumbelMaskLearner
from pruners.training.schedules import (
    PolynomialSchedule,
    StepListSchedule,
    TemperatureSchedule,
    pruning_window,
    step_levels,
)
from pruners.training.soft_movement import SoftMovementLearner
from pruners.training.weight_pruners import PRUNERS, movement_frequency

log = logging.getLogger(__name__)


def pruning_from_config(config, steps_per_epoch, prunable_weights):
    """`(pruner, schedule)` for `config.pruning_method`, or `(None, None)` without a scheduled method.

    The pruner comes from the `PRUNERS` registry; its `schedule_kind` picks the schedule. Movement
    (`ramp`) follows the `movement_schedule` ramp, pruning every `pruning_frequency_steps` (default:
    `movement_frequency`). Magnitude and SPT (`levels`) walk the `sparsity_steps` levels between
    `start_sparsity` and `end_sparsity` (`step_levels`), one pruning event per level.
    """
    if config.method not in SCHEDULED_METHODS:
        return None, None
    pruner_class = PRUNERS[config.pruning_method]
    begin, end = pruning_window(config.pruning_start_epoch, config.pruning_end_epoch, config.epochs,
                                steps_per_epoch)
    schedule = _SCHEDULES[pruner_class.schedule_kind](config, begin, end)
    return pruner_class.from_run_config(config, prunable_weights), schedule


def _ramp(config, begin, end):
    frequency = config.pruning_frequency_steps or movement_frequency(config.num_layers)
    return PolynomialSchedule(config.start_sparsity, config.end_sparsity, begin, end, frequency,
                              RAMPS[config.movement_schedule])


def _levels(config, begin, end):
    if config.pruning_frequency_steps is not None:
        log.warning("pruning_frequency_steps=%d is ignored by %s pruning, which prunes once per sparsity_steps "
                    "level", config.pruning_frequency_steps, config.pruning_method)
    return StepListSchedule(step_levels(config.sparsity_steps, config.start_sparsity, config.end_sparsity),
                            begin, end)


_SCHEDULES = {"ramp": _ramp, "levels": _levels}


def gumbel_from_config(config, steps_per_epoch):
    """`(learner, temperature schedule)` for learned Gumbel masks, annealed over every training step.

    In target mode the target ramps up over the first `target_warmup` of the steps; with `target_measure macs`
    it is a fraction of the blocks' MACs at `max_len` tokens, the length `macs_kept` is logged at.
    """
    total = steps_per_epoch * config.epochs
    costs = unit_macs(**mac_shape(config)) if config.target_measure == "macs" else None
    learner = GumbelMaskLearner(config.sparsity_loss, config.quantization_loss, config.target_sparsity,
                                config.masks_lr, config.freeze, round(config.target_warmup * total),
                                unit_costs=costs)
    schedule = TemperatureSchedule(config.gumbel_temp_start, config.gumbel_temp_end, total, config.gumbel_temp_anneal)
    return learner, schedule


def soft_movement_from_config(config, steps_per_epoch):
    """The soft-movement learner of a run: `lambda` (or, with `target_sparsity`, the target) ramps up over the
    first `soft_movement_warmup` of the steps, and the masks freeze after `soft_movement_freeze` of them (1:
    never). A target over units is a fraction of the blocks' MACs at `max_len` tokens, the length `macs_kept` is
    logged at."""
    total = steps_per_epoch * config.epochs
    costs = unit_macs(**mac_shape(config)) if config.pruning_granularity != "weight" else None
    freeze = round(config.soft_movement_freeze * total) if config.soft_movement_freeze < 1 else None
    return SoftMovementLearner(config.soft_movement_threshold, config.soft_movement_lambda,
                               round(config.soft_movement_warmup * total), config.masks_lr,
                               config.pruning_granularity, config.target_sparsity, costs, freeze_step=freeze)
