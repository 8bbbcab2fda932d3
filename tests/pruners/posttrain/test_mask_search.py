"""Global mask search under MAC and latency budgets."""

import itertools

import numpy as np
import pytest

from efficiency import count_macs, head_macs, neuron_macs
from efficiency.latency import LatencyModel
from pruners.posttrain.mask_search import search_latency, search_mac


def _brute_force_best(head_importance, neuron_importance, head_cost, neuron_cost, budget):
    """The best total importance over every (heads, neurons) count pair within the budget."""
    heads = np.sort(head_importance.ravel())[::-1]
    neurons = np.sort(neuron_importance.ravel())[::-1]
    return max(heads[:h].sum() + neurons[:n].sum()
               for h, n in itertools.product(range(heads.size + 1), range(neurons.size + 1))
               if h * head_cost + n * neuron_cost <= budget)


def test_search_mac_picks_the_optimal_split_on_a_constructed_case():
    # Heads cost 10, neurons 3, budget 15. Keeping all five neurons (cost 15) scores 4+3+3+2+2 = 14; the best head
    # with the one neuron still affordable scores 9 + 4 = 13: neurons only is optimal.
    neurons = np.array([[4.0, 3.0, 3.0, 2.0, 2.0]])
    head_mask, neuron_mask = search_mac(np.array([[9.0, 1.0]]), neurons, 10, 3, 15)
    assert head_mask.tolist() == [[0.0, 0.0]] and neuron_mask.tolist() == [[1.0] * 5]
    # A head worth 20 changes the answer: 20 + 4 = 24 > 14.
    head_mask, neuron_mask = search_mac(np.array([[20.0, 1.0]]), neurons, 10, 3, 15)
    assert head_mask.tolist() == [[1.0, 0.0]] and neuron_mask.tolist() == [[1.0, 0.0, 0.0, 0.0, 0.0]]


@pytest.mark.parametrize("seed", range(20))
def test_search_mac_is_optimal_and_within_budget_on_random_importance(seed):
    rng = np.random.default_rng(seed)
    heads, neurons = rng.exponential(size=(2, 3)), rng.exponential(size=(2, 5))
    head_cost, neuron_cost = head_macs(8, 4, 3), neuron_macs(8, 3)
    dense = count_macs(np.ones((2, 3)), np.ones((2, 5)), d_model=8, head_dim=4, seq_len=3)["total"]
    budget = rng.uniform(0.05, 0.95) * dense
    head_mask, neuron_mask = search_mac(heads, neurons, head_cost, neuron_cost, budget)
    assert count_macs(head_mask, neuron_mask, d_model=8, head_dim=4, seq_len=3)["total"] <= budget
    kept = (heads * head_mask).sum() + (neurons * neuron_mask).sum()
    assert kept == pytest.approx(_brute_force_best(heads, neurons, head_cost, neuron_cost, budget))


@pytest.mark.parametrize("seed", range(10))
def test_search_latency_respects_the_estimated_budget(seed):
    rng = np.random.default_rng(seed)
    latency = LatencyModel((rng.uniform(0.5, 2.0), rng.uniform(0.1, 0.5)), (rng.uniform(0.5, 2.0), 0.05))
    heads, neurons = rng.exponential(size=(3, 4)), rng.exponential(size=(3, 64))
    dense = latency.estimate(np.ones((3, 4)), np.ones((3, 64)))
    budget = rng.uniform(0.1, 0.9) * dense
    head_mask, neuron_mask = search_latency(heads, neurons, latency, budget)
    assert latency.estimate(head_mask, neuron_mask) <= budget
    # For its head count the search keeps as many neurons as fit: the next best one would break the budget.
    pruned = np.flatnonzero(neuron_mask.ravel() == 0)
    if len(pruned):  # (otherwise the search dropped heads and kept every neuron)
        grown = neuron_mask.ravel().copy()
        grown[pruned[np.argmax(neurons.ravel()[pruned])]] = 1
        assert latency.estimate(head_mask, grown.reshape(neuron_mask.shape)) > budget


def test_search_latency_counts_a_skipped_layer_as_free():
    # Layer intercepts dominate: keeping one head in a second layer costs a whole intercept.
    latency = LatencyModel((5.0, 1.0), (5.0, 1.0))
    heads = np.array([[3.0, 3.0], [1.0, 0.5]])
    neurons = np.zeros((2, 2))
    head_mask, neuron_mask = search_latency(heads, neurons, latency, budget=7.0)
    assert head_mask.tolist() == [[1.0, 1.0], [0.0, 0.0]] and latency.estimate(head_mask, neuron_mask) == 7.0
