"""Pruning while training: schedules, importance criteria, scores-to-mask maths, the weight pruners
(magnitude, movement, SPT) and the Gumbel mask learner, plus building them from a run's config."""

from pruners.training.distillation import Distiller, hidden_loss, kd_loss, teacher_layers
from pruners.training.from_config import gumbel_from_config, pruning_from_config, soft_movement_from_config
from pruners.training.gumbel_learner import GumbelMaskLearner, binary_entropy, quantization_term, sparsity_term
from pruners.training.importance import (
    blend_rewards,
    follow_magnitudes,
    initial_rewards,
    magnitude,
    movement,
    movement_update,
    reward,
)
from pruners.training.lagrangian import lagrangian_term
from pruners.training.masking import SCOPES, masks_for_sparsity
from pruners.training.schedules import (
    ANNEALING,
    PolynomialSchedule,
    StepListSchedule,
    TemperatureSchedule,
    pruning_window,
    schedule_from_config,
    step_levels,
)
from pruners.training.soft_movement import SoftMovementLearner
from pruners.training.units import unit_scores, units_to_keep
from pruners.training.weight_pruners import (
    PRUNERS,
    MagnitudePruner,
    MovementPruner,
    Pruner,
    SptPruner,
    movement_frequency,
    scaled_spt_epsilon,
)

__all__ = [
    "Distiller",
    "ANNEALING",
    "PRUNERS",
    "SCOPES",
    "GumbelMaskLearner",
    "MagnitudePruner",
    "MovementPruner",
    "PolynomialSchedule",
    "Pruner",
    "SoftMovementLearner",
    "SptPruner",
    "StepListSchedule",
    "TemperatureSchedule",
    "binary_entropy",
    "blend_rewards",
    "follow_magnitudes",
    "gumbel_from_config",
    "soft_movement_from_config",
    "hidden_loss",
    "kd_loss",
    "initial_rewards",
    "lagrangian_term",
    "magnitude",
    "masks_for_sparsity",
    "movement",
    "movement_frequency",
    "movement_update",
    "pruning_from_config",
    "pruning_window",
    "quantization_term",
    "reward",
    "scaled_spt_epsilon",
    "schedule_from_config",
    "sparsity_term",
    "step_levels",
    "teacher_layers",
    "unit_scores",
    "units_to_keep",
]
