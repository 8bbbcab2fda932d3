"""Retraining-free structured pruning of a trained model: the gates' Fisher information, mask search under a
MAC or latency budget, rearrangement, least-squares rescaling (Kwon et al.) and K-prune (Park et al.), with
the least-squares solvers (SciPy, CuPy) and the sublayer walk they share."""

from pruners.posttrain.fisher import collect_gate_gradients, fisher_importance
from pruners.posttrain.kprune import kprune
from pruners.posttrain.lstsq import BACKENDS, SharedDesign, UnitContributions, solve_lstsq
from pruners.posttrain.mask_search import search_latency, search_mac
from pruners.posttrain.rearrange import fisher_cost, rearrange, rearrange_layer
from pruners.posttrain.rescale import rescale

__all__ = [
    "BACKENDS",
    "SharedDesign",
    "UnitContributions",
    "collect_gate_gradients",
    "fisher_cost",
    "fisher_importance",
    "kprune",
    "rearrange",
    "rearrange_layer",
    "rescale",
    "search_latency",
    "search_mac",
    "solve_lstsq",
]
