"""Pruning maths: schedules, importance criteria, scores-to-mask, the pruners that apply them, and the
retraining-free stages (Fisher, mask search, rearrangement, least-squares rescaling)."""

from pruners.fisher import collect_gate_gradients, fisher_importance
from pruners.from_config import gumbel_from_config, pruning_from_config
from pruners.gumbel import (
    ANNEALING,
    GumbelMaskLearner,
    TemperatureSchedule,
    binary_entropy,
    lagrangian_term,
    quantization_term,
    sparsity_term,
)
from pruners.importance import (
    blend_rewards,
    initial_rewards,
    magnitude,
    movement,
    movement_update,
    reward,
)
from pruners.lstsq import BACKENDS, UnitContributions, solve_lstsq
from pruners.mask_search import search_latency, search_mac
from pruners.masking import SCOPES, masks_for_sparsity
from pruners.pruners import (
    PRUNERS,
    MagnitudePruner,
    MovementPruner,
    Pruner,
    SptPruner,
    movement_frequency,
    scaled_spt_epsilon,
)
from pruners.rearrange import fisher_cost, rearrange, rearrange_layer
from pruners.rescale import rescale
from pruners.schedules import (
    PolynomialSchedule,
    StepListSchedule,
    pruning_window,
    schedule_from_config,
    step_levels,
)

__all__ = [
    "ANNEALING",
    "BACKENDS",
    "UnitContributions",
    "collect_gate_gradients",
    "fisher_cost",
    "fisher_importance",
    "rearrange",
    "rearrange_layer",
    "rescale",
    "search_latency",
    "search_mac",
    "solve_lstsq",
    "GumbelMaskLearner",
    "TemperatureSchedule",
    "binary_entropy",
    "lagrangian_term",
    "quantization_term",
    "sparsity_term",
    "PRUNERS",
    "SCOPES",
    "MagnitudePruner",
    "MovementPruner",
    "PolynomialSchedule",
    "Pruner",
    "SptPruner",
    "StepListSchedule",
    "blend_rewards",
    "gumbel_from_config",
    "initial_rewards",
    "magnitude",
    "masks_for_sparsity",
    "movement",
    "movement_frequency",
    "movement_update",
    "pruning_from_config",
    "pruning_window",
    "reward",
    "scaled_spt_epsilon",
    "schedule_from_config",
    "step_levels",
]
