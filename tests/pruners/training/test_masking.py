"""Scores + target sparsity -> masks: exact counts, lowest scores first, no regrowth, deterministic ties."""

import numpy as np
import pytest

from pruners import magnitude, masks_for_sparsity


def _weights():
    rng = np.random.default_rng(0)
    return {"a": rng.normal(size=(8, 16)), "b": 3 * rng.normal(size=(16, 4)), "c": rng.normal(size=(5, 7))}


def _ones(weights):
    return {path: np.ones_like(w) for path, w in weights.items()}


def _zeros(masks):
    return sum(int(np.size(m) - np.count_nonzero(m)) for m in masks.values())


@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.37, 0.5, 0.9, 0.99, 1.0])
def test_global_magnitude_hits_the_target_to_one_weight_and_removes_the_smallest(sparsity):
    weights = _weights()
    masks = masks_for_sparsity(magnitude(weights), _ones(weights), sparsity, "global")
    total = sum(w.size for w in weights.values())
    assert abs(_zeros(masks) / total - sparsity) <= 1 / total
    kept = np.concatenate([np.abs(weights[p])[masks[p] == 1] for p in sorted(weights)])
    pruned = np.concatenate([np.abs(weights[p])[masks[p] == 0] for p in sorted(weights)])
    if kept.size and pruned.size:
        assert pruned.max() <= kept.min()


def test_layer_scope_prunes_every_layer_to_the_target():
    weights = _weights()
    masks = masks_for_sparsity(magnitude(weights), _ones(weights), 0.75, "layer")
    for path, w in weights.items():
        assert abs((w.size - masks[path].sum()) / w.size - 0.75) <= 1 / w.size
        assert np.abs(w)[masks[path] == 0].max() <= np.abs(w)[masks[path] == 1].min()
    # Global scope instead prunes the small-weight layers harder than the 3x larger "b".
    global_masks = masks_for_sparsity(magnitude(weights), _ones(weights), 0.75, "global")
    assert global_masks["b"].mean() > global_masks["a"].mean()


def test_masks_never_revive_a_weight():
    weights = _weights()
    first = masks_for_sparsity(magnitude(weights), _ones(weights), 0.5, "global")
    # The pruned weights now score highest, yet stay pruned; a lower target changes nothing.
    inverted = {p: -np.abs(w) for p, w in weights.items()}
    second = masks_for_sparsity(inverted, first, 0.7, "global")
    lower = masks_for_sparsity(inverted, second, 0.2, "global")
    for path in weights:
        assert np.all(second[path] <= first[path])
        np.testing.assert_array_equal(lower[path], second[path])
    total = sum(w.size for w in weights.values())
    assert _zeros(second) == round(0.7 * total)


def test_ties_are_broken_by_position():
    scores = {"x": np.ones((2, 3)), "y": np.ones(4)}
    masks = masks_for_sparsity(scores, _ones(scores), 0.8, "global")
    np.testing.assert_array_equal(masks["x"], np.zeros((2, 3)))  # path order, then row-major: x goes first
    np.testing.assert_array_equal(masks["y"], [0, 0, 1, 1])
    again = masks_for_sparsity(scores, _ones(scores), 0.8, "global")
    assert all(np.array_equal(masks[p], again[p]) for p in masks)


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"sparsity": 1.2}, ValueError, "sparsity=1.2"),
    ({"scope": "block"}, ValueError, "unknown scope 'block'"),
    ({"scores": {"a": np.ones(3)}}, KeyError, "same layers"),
    ({"scores": {"a": np.ones(4), "b": np.ones(2)}}, ValueError, "shape"),
    ({"scores": {"a": np.array([1.0, np.nan, 0.0]), "b": np.ones(2)}}, ValueError, "finite"),
])
def test_bad_inputs_are_named(kwargs, error, message):
    args = {"scores": {"a": np.ones(3), "b": np.ones(2)}, "masks": {"a": np.ones(3), "b": np.ones(2)},
            "sparsity": 0.5, "scope": "global", **kwargs}
    with pytest.raises(error, match=message):
        masks_for_sparsity(**args)
