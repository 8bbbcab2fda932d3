"""The logit bias correction, against the conditions its optimum must meet, computed here in numpy."""

import numpy as np
import pytest

from pruners.posttrain.bias_correction import fit_logit_bias, logit_distance


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _kl(dense, pruned):
    p, q = _softmax(dense), _softmax(pruned)
    return np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=-1))


def test_a_constant_shift_of_the_logits_is_undone_exactly():
    rng = np.random.default_rng(0)
    dense = rng.normal(size=(500, 3))
    shift = fit_logit_bias(dense, dense + np.array([0.7, -0.2, 0.4]))
    np.testing.assert_allclose(_softmax(dense + np.array([0.7, -0.2, 0.4]) + shift), _softmax(dense), atol=1e-5)
    assert shift.dtype == np.float32 and abs(shift.sum()) < 1e-6  # the smallest shift: no common offset


def test_the_shift_matches_the_mean_prediction_and_minimises_the_kl():
    rng = np.random.default_rng(1)
    dense = rng.normal(size=(2000, 2)) * 2
    # A pruned model that agrees with the dense one only roughly, and leans to label 1.
    pruned = dense * 0.6 + rng.normal(size=dense.shape) * 0.8 + np.array([-0.3, 0.3])
    shift = fit_logit_bias(dense, pruned).astype(np.float64)
    # At the minimum, the gradient of the cross-entropy in the shift is zero: equal mean predictions.
    np.testing.assert_allclose(_softmax(pruned + shift).mean(axis=0), _softmax(dense).mean(axis=0), atol=1e-6)
    assert shift[1] < 0 < shift[0]  # it leans back towards label 0
    best = _kl(dense, pruned + shift)
    assert best < _kl(dense, pruned)
    for step in (np.array([0.01, -0.01]), np.array([-0.01, 0.01])):
        assert best < _kl(dense, pruned + shift + step)
    assert logit_distance(dense, pruned + shift) == pytest.approx(best, rel=1e-9)


def test_a_regression_head_gets_the_mean_difference():
    dense = np.array([[1.0], [2.0], [4.0]])
    pruned = np.array([[0.5], [2.5], [2.0]])
    np.testing.assert_allclose(fit_logit_bias(dense, pruned, regression=True), [(0.5 - 0.5 + 2.0) / 3])
    assert logit_distance(dense, pruned, regression=True) == pytest.approx((0.25 + 0.25 + 4.0) / 3)


def test_logits_of_different_shapes_are_refused():
    with pytest.raises(ValueError, match=r"same \[rows, labels\] shape, got \(3, 2\) and \(3, 3\)"):
        fit_logit_bias(np.zeros((3, 2)), np.zeros((3, 3)))


def test_the_sample_logits_follow_the_gates_set_after_tracing(micro_model, micro_batch):
    from gated import masks_applied
    from pruners.posttrain.bias_correction import sample_logits
    from pruners.posttrain.probe import GateProbe

    batches = [(micro_batch, None), ({name: value[:2, :5] for name, value in micro_batch.items()}, None)]
    probe = GateProbe(micro_model)
    dense = sample_logits(probe, batches)
    heads = np.array([[1, 0, 1, 1], [0, 0, 1, 0]], "float32")
    with masks_applied(micro_model, {"head": heads}):
        pruned = sample_logits(probe, batches)
        eager = np.concatenate([np.asarray(micro_model(features)) for features, _ in batches])
    assert dense.shape == (5, 2) and not np.allclose(pruned, dense)
    np.testing.assert_allclose(pruned, eager, atol=1e-5)
    np.testing.assert_allclose(dense, np.concatenate([np.asarray(micro_model(f)) for f, _ in batches]), atol=1e-5)
