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


@pytest.mark.parametrize("target", [None, 0.5])
def test_resume_state_gives_back_the_scores_their_optimizer_and_the_multipliers(target):
    x, y = _data()
    model = _model()
    learner = SoftMovementLearner(regularization=50.0, scores_lr=0.05, target_sparsity=target)
    callback = SoftMovementCallback(learner)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[callback])
    arrays, values = callback.resume_state()
    saved = {name: score.numpy().copy() for name, score in learner.scores.items()}
    iterations = int(learner.optimizer.iterations.numpy())
    multipliers = learner.lagrange_multipliers()
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[callback])
    assert target is None or learner.lagrange_multipliers() != multipliers
    callback.restore_state(arrays, values)
    for name, score in learner.scores.items():
        np.testing.assert_array_equal(score.numpy(), saved[name])
    assert int(learner.optimizer.iterations.numpy()) == iterations == 4
    assert learner.lagrange_multipliers() == multipliers
    if target is not None:
        assert multipliers[0] < 0 and int(learner.multiplier_optimizer.iterations.numpy()) == 4


def _hand_macs_kept(model, seq_len):
    """Blocks' MACs the gates keep, counted by hand: a head `4 T D Dh + 2 T T Dh`, a neuron `2 T D`."""
    d, dh = MICRO["d_model"], MICRO["d_model"] // MICRO["num_heads"]
    head, neuron = 4 * seq_len * d * dh + 2 * seq_len * seq_len * dh, 2 * seq_len * d
    gates = structured_gates(model, ("head", "neuron"))
    kept = head * np.count_nonzero(gates["head"]) + neuron * np.count_nonzero(gates["neuron"])
    return kept / (head * gates["head"].size + neuron * gates["neuron"].size)


def test_a_targets_sparsity_is_the_share_of_macs_the_masks_remove_with_the_scores_gradient():
    from efficiency.mac import unit_macs

    model = _model(kernel_masks=False)
    costs = unit_macs(MICRO["d_model"], MICRO["d_model"] // MICRO["num_heads"], 16)
    learner = SoftMovementLearner(granularity="both", target_sparsity=0.5, unit_costs=costs)
    learner.attach(model)
    rng = np.random.default_rng(3)
    for score in learner.scores.values():
        score.assign(rng.normal(size=score.shape).astype("float32"))
    learner.update_masks()
    scores = list(learner.scores.values())
    with tf.GradientTape() as tape:
        sparsity = learner.controlled_sparsity()
    assert float(sparsity) == pytest.approx(1.0 - _hand_macs_kept(model, 16), abs=1e-6)
    assert 0.2 < float(sparsity) < 0.8
    # The gradient is that of sum(cost * (1 - sigmoid(S))): -cost * sigmoid'(S), a head's cost its MACs' share.
    total = 2 * (4 * costs["head"] + 32 * costs["neuron"])
    for (name, score), gradient in zip(learner.scores.items(), tape.gradient(sparsity, scores), strict=True):
        cost = costs["head" if name.endswith("head_gate") else "neuron"] / total
        probability = 1 / (1 + np.exp(-score.numpy()))
        np.testing.assert_allclose(gradient.numpy(), -cost * probability * (1 - probability), rtol=1e-5)


def _spread_learner(granularity, target, seed, **options):
    """A micro model and a learner bound to it aiming at `target`, its scores spread around the first value: a
    micro task hardly tells its units apart, and every score would cross the threshold on the same step."""
    from efficiency.mac import unit_macs

    model = _model(kernel_masks=granularity == "weight")
    costs = unit_macs(MICRO["d_model"], MICRO["d_model"] // MICRO["num_heads"], 16)
    learner = SoftMovementLearner(scores_lr=0.05, granularity=granularity, target_sparsity=target, unit_costs=costs,
                                  **options)
    learner.attach(model)
    rng = np.random.default_rng(seed)
    for score in learner.scores.values():
        score.assign(score.numpy() + rng.normal(0.0, 0.5, score.shape).astype("float32"))
    learner.update_masks()
    return model, learner


@pytest.mark.parametrize(("granularity", "target"), [("neuron", 0.2), ("neuron", 0.35), ("weight", 0.5)])
def test_the_controller_holds_the_masks_around_a_target_that_lambda_alone_would_not_reach(granularity, target):
    x, y = _data()
    # lambda 0 removes nothing (test above): the target alone drives the masks.
    model, learner = _spread_learner(granularity, target, regularization=0.0, warmup_steps=16, seed=0)
    history = model.fit(x, y, batch_size=16, epochs=30, verbose=0,
                        callbacks=[SoftMovementCallback(learner, seq_len=16)])
    if granularity == "weight":
        reached = history.history["sparsity"]
        assert reached[-1] == pytest.approx(sparsity_stats(model)["global_sparsity"])
    else:
        reached = [1.0 - kept for kept in history.history["macs_kept"]]
        assert reached[-1] == pytest.approx(1.0 - _hand_macs_kept(model, 16))
    # 4 steps an epoch: the target ramps up over the first 4 epochs, then the masks swing around it and settle.
    assert history.history["target_sparsity"] == pytest.approx([target * min(4 * epoch / 16, 1) for epoch in
                                                                range(1, 31)])
    assert np.mean(reached[-10:]) == pytest.approx(target, abs=0.05)
    assert reached[-1] == pytest.approx(target, abs=0.1)
    assert learner.lagrange_multipliers()[1] > 0


def _frozen_run(target, freeze_step):
    """A micro 'both' run with spread scores, 4 steps an epoch: `(model, scores after epoch 1, gates after epochs
    1, 2 and 3, whether a kernel moved)`."""
    x, y = _data()
    model, learner = _spread_learner("both", target, regularization=200.0, freeze_step=freeze_step, seed=5)
    callback = SoftMovementCallback(learner, seq_len=16)
    kernel = model.get_layer("block_0").ffn.intermediate.kernel
    start, gates, scores = kernel.numpy().copy(), [], None
    for _ in range(3):
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[callback])
        scores = scores or {name: score.numpy().copy() for name, score in learner.scores.items()}
        gates.append(structured_gates(model, ("head", "neuron")))
    assert float(learner.frozen.numpy()) == float(freeze_step is not None)
    return model, scores, gates, not np.allclose(kernel.numpy(), start)


@pytest.mark.parametrize("target", [None, 0.45])
def test_frozen_masks_stay_while_the_weights_train_and_a_target_is_met_lowest_scores_first(target):
    # lambda 200 keeps pruning when the masks move on (checked without a target); frozen after 4 steps (an epoch).
    model, scores, gates, trained = _frozen_run(target, freeze_step=4)
    assert trained
    for kind in gates[1]:
        np.testing.assert_array_equal(gates[2][kind], gates[1][kind])
    if target is None:  # as the scores left them
        for kind in gates[0]:
            np.testing.assert_array_equal(gates[1][kind], gates[0][kind])
        _, _, moving, _ = _frozen_run(None, freeze_step=None)
        assert any(not np.array_equal(moving[2][kind], moving[0][kind]) for kind in moving[0])
        return
    # By hand: units from the lowest score up, until their MACs reach 0.45 of the blocks'.
    d, dh, t = MICRO["d_model"], MICRO["d_model"] // MICRO["num_heads"], 16
    head, neuron = 4 * t * d * dh + 2 * t * t * dh, 2 * t * d
    units = [(value, head if name.endswith("head_gate") else neuron, name, index)
             for name, values in scores.items() for index, value in enumerate(values)]
    total, removed, expected = 2 * (4 * head + 32 * neuron), 0, {}
    for _, cost, name, index in sorted(units, key=lambda unit: unit[0]):
        if removed >= 0.45 * total:
            break
        removed += cost
        expected[name, index] = 0.0
    kept = 1.0 - removed / total
    assert 0.55 - head / total < kept <= 0.55
    assert _hand_macs_kept(model, 16) == pytest.approx(kept)
    for layer in range(2):
        for kind, name in (("head", f"block_{layer}/attention/head_gate"),
                           ("neuron", f"block_{layer}/ffn/neuron_gate")):
            hand = [expected.get((name, index), 1.0) for index in range(gates[2][kind].shape[1])]
            np.testing.assert_array_equal(gates[2][kind][layer], hand)
