"""Mask rearrangement with the per-layer Fisher block."""

import itertools

import numpy as np
import pytest

from pruners.posttrain.rearrange import fisher_cost, rearrange, rearrange_layer


def test_fisher_cost_is_the_quadratic_form_of_the_fisher_block():
    grads = np.array([[1.0, 2.0, -1.0], [0.0, 1.0, 3.0]])
    pruned = np.array([True, False, True])
    fisher = grads.T @ grads / 2
    assert fisher_cost(grads, pruned) == pytest.approx(pruned @ fisher @ pruned) == pytest.approx((0 + 9) / 2)


@pytest.mark.parametrize("seed", range(25))
def test_rearrange_keeps_the_count_and_never_raises_the_cost(seed):
    rng = np.random.default_rng(seed)
    grads = rng.normal(size=(16, 12)) * rng.exponential(size=12)
    mask = (rng.random(12) < 0.5).astype(np.float32)
    new, before, after = rearrange_layer(mask, grads)
    assert new.sum() == mask.sum()
    assert before == pytest.approx(fisher_cost(grads, mask == 0))
    assert after == pytest.approx(fisher_cost(grads, new == 0)) and after <= before


def test_rearrange_finds_the_interaction_the_diagonal_misses():
    # Units 2 and 3 have the smallest gradients, so the diagonal ranking prunes both, but they add up.
    # Unit 1 looks more important alone, yet it cancels unit 2: pruning 1 and 2 together costs far less.
    grads = np.array([[4.0, -1.5, 1.0, 1.0], [-4.0, -1.5, 1.0, 1.0]])
    by_diagonal = np.array([1.0, 1.0, 0.0, 0.0])
    new, before, after = rearrange_layer(by_diagonal, grads)
    assert new[0] == 1.0 and new[1] == 0.0 and new.sum() == 2  # unit 1 pruned with one of 2 and 3
    assert before == pytest.approx(4.0) and after == pytest.approx(0.25)
    best = min(fisher_cost(grads, np.array(p)) for p in itertools.product([True, False], repeat=4) if sum(p) == 2)
    assert after == pytest.approx(best)


def test_rearrange_changes_only_what_the_sample_supports():
    # Independent units (no interaction): the exchanges give back the search's mask, whatever the noise.
    rng = np.random.default_rng(3)
    scale = np.linspace(0.1, 2.0, 40)
    grads = np.zeros((64, 40))
    for column in range(40):  # one batch per unit: the units never move together
        grads[column, column] = scale[column]
    mask = (scale > 1.0).astype(np.float32)
    new, before, after = rearrange_layer(mask, grads + 1e-9 * rng.normal(size=grads.shape))
    assert new.tolist() == mask.tolist() and after == pytest.approx(before)


def test_rearrange_runs_per_layer():
    rng = np.random.default_rng(0)
    masks = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], dtype=np.float32)
    grads = rng.normal(size=(8, 3, 4))
    new, costs = rearrange(masks, grads)
    assert new.sum(axis=1).tolist() == [2, 4, 0] and len(costs) == 3
    assert all(after <= before for before, after in costs)
