"""Soft movement: scores learn through the masks (straight-through), masks follow the scores, the regulariser
decides the sparsity."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from callbacks import SoftMovementCallback
from conftest import MICRO
from gated import build_gated_encoder, compact_model, compact_shape, sparsity_stats, structured_gates
from pruners import SoftMovementLearner


def _data(rows=64, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, MICRO["vocab_size"], size=(rows, 8)).astype("int32")
    x = {"input_ids": ids, "token_type_ids": np.zeros_like(ids), "attention_mask": np.ones_like(ids)}
    return x, (ids[:, 1] % 2).astype("int64")


def _model(kernel_masks=True):
    keras.utils.set_random_seed(0)
    model = build_gated_encoder(**MICRO, num_labels=2, kernel_masks=kernel_masks)
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_scores_learn_the_loss_gradient_through_their_masks():
    x, y = _data(rows=16)
    reference = _model()
    layer = reference.get_layer("block_1").ffn.intermediate
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(layer.kernel_mask.value)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, reference(x, training=True))
    through_mask = tape.gradient(loss, layer.kernel_mask.value).numpy()
    # With every mask at 1, dL/dM = dL/dW' * W = dL/dW * W: movement.
    np.testing.assert_allclose(through_mask, tape.gradient(loss, layer.kernel).numpy() * layer.kernel.numpy(),
                               rtol=1e-5, atol=1e-9)
    model = _model()
    learner = SoftMovementLearner(regularization=0.0, scores_lr=0.01)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[SoftMovementCallback(learner)])
    moved = learner.scores["block_1/ffn/intermediate"].numpy() - learner.initial_score
    # Keras Adam's first step: lr * sqrt(1 - b2) * g / (sqrt(1 - b2) * |g| + eps), b2 0.999, eps 1e-7.
    root = np.sqrt(1 - 0.999)
    expected = -0.01 * root * through_mask / (root * np.abs(through_mask) + 1e-7)
    np.testing.assert_allclose(moved, expected, rtol=1e-3, atol=1e-6)
    assert np.abs(moved).max() > 1e-3


def test_masks_follow_the_scores_threshold():
    model = _model()
    learner = SoftMovementLearner(threshold=0.3)
    learner.attach(model)
    score = learner.scores["block_0/attention/query"]
    values = np.random.default_rng(1).normal(size=score.shape).astype("float32")
    score.assign(values)
    learner.update_masks()
    mask = model.get_layer("block_0").attention.query.kernel_mask.numpy()
    np.testing.assert_array_equal(mask, (1 / (1 + np.exp(-values)) > 0.3).astype("float32"))
    assert 0 < mask.mean() < 1


@pytest.mark.parametrize("granularity", ["weight", "both"])
def test_the_regulariser_pushes_sparsity_up_and_the_logs_count_it_from_the_masks(granularity):
    x, y = _data()
    sparsity = {}
    for regularization in (0.0, 200.0):
        model = _model(kernel_masks=granularity == "weight")
        learner = SoftMovementLearner(regularization=regularization, warmup_steps=8, scores_lr=0.05,
                                      granularity=granularity)
        history = model.fit(x, y, batch_size=16, epochs=6, verbose=0,
                            callbacks=[SoftMovementCallback(learner, seq_len=16)])
        sparsity[regularization] = history.history["sparsity"][-1]
        assert sparsity[regularization] == pytest.approx(sparsity_stats(model)["global_sparsity"])
        below = sum(int(np.sum(1 / (1 + np.exp(-s.numpy())) <= 0.5)) for s in learner.scores.values())
        if granularity == "weight":
            assert sparsity_stats(model)["zeros"] == below
        else:
            gates = structured_gates(model, ("head", "neuron"))
            assert sum(int(np.sum(g == 0)) for g in gates.values()) == below
            heads, widths = compact_shape(compact_model(model))
            assert heads == [int(np.sum(g != 0)) for g in gates["head"]]
            assert widths == [int(np.sum(g != 0)) for g in gates["neuron"]]
    assert sparsity[0.0] == 0.0
    assert sparsity[200.0] > 0.2


def test_resume_state_gives_back_the_scores_and_their_optimizer():
    x, y = _data()
    model = _model()
    learner = SoftMovementLearner(regularization=50.0, scores_lr=0.05)
    callback = SoftMovementCallback(learner)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[callback])
    arrays, values = callback.resume_state()
    saved = {name: score.numpy().copy() for name, score in learner.scores.items()}
    iterations = int(learner.optimizer.iterations.numpy())
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[callback])
    callback.restore_state(arrays, values)
    for name, score in learner.scores.items():
        np.testing.assert_array_equal(score.numpy(), saved[name])
    assert int(learner.optimizer.iterations.numpy()) == iterations == 4
