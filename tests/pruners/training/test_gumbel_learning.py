"""Learning Gumbel masks: annealing, the loss terms, the learner's optimizers, freeze and the target controller."""

import math

import keras
import numpy as np
import pytest

from conftest import MICRO

pytestmark = pytest.mark.heavy  # a minute of micro training loops: scheduled first (conftest.py)


@pytest.mark.parametrize("mode, middle", [("linear", 2.55), ("exponential", math.sqrt(0.5)), ("constant", 5.0)])
def test_temperature_at_start_middle_and_end(mode, middle):
    from pruners import TemperatureSchedule

    schedule = TemperatureSchedule(5.0, 0.1, total_steps=100, mode=mode)
    end = 5.0 if mode == "constant" else 0.1
    assert schedule(0) == pytest.approx(5.0)
    assert schedule(50) == pytest.approx(middle)
    assert schedule(100) == pytest.approx(end)
    assert schedule(250) == pytest.approx(end)  # past the end it stays


def test_temperature_schedule_rejects_bad_values():
    from pruners import TemperatureSchedule

    with pytest.raises(ValueError, match="'cosine'"):
        TemperatureSchedule(5.0, 0.1, 10, "cosine")
    with pytest.raises(ValueError, match="end=0"):
        TemperatureSchedule(5.0, 0, 10)


def test_sparsity_and_quantization_terms_match_hand_computed_values():
    from pruners import binary_entropy, lagrangian_term, quantization_term, sparsity_term

    heads = np.array([0.0, math.log(3.0)], "float32")  # keep-probabilities 0.5 and 0.75
    neurons = np.array([math.log(1 / 3), math.log(3.0), 50.0], "float32")  # 0.25, 0.75, 1
    keep = [1 / (1 + np.exp(-heads)), 1 / (1 + np.exp(-neurons))]
    mean_keep = ((0.5 + 0.75) / 2 + (0.25 + 0.75 + 1.0) / 3) / 2
    assert float(sparsity_term(keep, 0.1)) == pytest.approx(0.1 * mean_keep, rel=1e-5)

    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    mean_entropy = ((math.log(2) + h) / 2 + (h + h + 0.0) / 3) / 2
    assert float(quantization_term(keep, 0.01)) == pytest.approx(0.01 * mean_entropy, rel=1e-4)
    assert float(binary_entropy(np.float32(0.5))) == pytest.approx(math.log(2))
    assert float(lagrangian_term(0.3, 0.5, 2.0, 3.0)) == pytest.approx(2.0 * -0.2 + 3.0 * 0.04)


def _data(rows=256, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, MICRO["vocab_size"], size=(rows, 8)).astype("int32")
    labels = (ids[:, 1] > MICRO["vocab_size"] // 2).astype("int32")
    features = {"input_ids": ids, "token_type_ids": np.zeros_like(ids), "attention_mask": np.ones_like(ids)}
    return features, labels


def _learning_model(learn_masks=("head", "neuron")):
    from gated import build_gated_encoder

    keras.utils.set_random_seed(0)
    model = build_gated_encoder(**MICRO, num_labels=2, learn_masks=learn_masks)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _fit(model, learner, epochs=1, total_steps=None, mode="exponential", rows=256, **kwargs):
    from callbacks import GumbelMaskCallback
    from pruners import TemperatureSchedule

    x, y = _data(rows)
    steps = total_steps or epochs * rows // 32
    callback = GumbelMaskCallback(learner, TemperatureSchedule(5.0, 0.1, steps, mode), **kwargs)
    history = model.fit(x, y, batch_size=32, epochs=epochs, callbacks=[callback], verbose=0)
    return history, callback


def _backbone(model):
    return {v.path: v.numpy().copy() for v in model.weights if "mask/" not in v.path}


def test_freeze_leaves_every_backbone_weight_bit_identical_while_the_logits_move():
    from gated import mask_logits
    from pruners import GumbelMaskLearner

    model = _learning_model()
    before, logits_before = _backbone(model), mask_logits(model)
    _fit(model, GumbelMaskLearner(sparsity_weight=1.0, masks_lr=0.05, freeze=True), epochs=2)
    after = _backbone(model)
    assert after.keys() == before.keys()
    for path, value in before.items():
        np.testing.assert_array_equal(after[path], value, err_msg=path)
    for kind, logits in mask_logits(model).items():
        assert np.abs(logits - logits_before[kind]).min() > 0.01


def test_without_freeze_the_backbone_trains_and_the_logits_use_their_own_optimizer():
    from gated import mask_logits
    from pruners import GumbelMaskLearner

    model = _learning_model()
    before, logits_before = _backbone(model), mask_logits(model)
    learner = GumbelMaskLearner(sparsity_weight=1.0, masks_lr=0.05)
    _fit(model, learner)
    assert not np.array_equal(_backbone(model)["block_0/ffn/intermediate/kernel"],
                              before["block_0/ffn/intermediate/kernel"])
    assert int(learner.optimizer.iterations.numpy()) == 8
    # Adam at 0.05 on a steady pull moves each logit by about 0.05 per step; the model's 1e-3 could not.
    assert (logits_before["head"] - mask_logits(model)["head"]).min() > 0.2


def test_fixed_sparsity_weight_pulls_keep_probabilities_down():
    from pruners import GumbelMaskLearner

    means = {}
    for weight in (0.0, 1.0):
        model = _learning_model()
        history, _ = _fit(model, GumbelMaskLearner(sparsity_weight=weight, masks_lr=0.05), epochs=2)
        means[weight] = history.history["expected_sparsity/neuron"][-1]
    assert means[1.0] > means[0.0] + 0.05


def test_callback_anneals_logs_every_n_steps_and_resumes_across_fits(tmp_path):
    import csv

    from pruners import GumbelMaskLearner, TemperatureSchedule

    model = _learning_model()
    learner = GumbelMaskLearner(masks_lr=0.05)
    schedule = TemperatureSchedule(5.0, 0.1, 32, "linear")
    history, _ = _fit(model, learner, epochs=2, total_steps=32, mode="linear", log_every=5,
                      step_log_path=tmp_path / "steps.csv")
    assert history.history["temperature"] == pytest.approx([schedule(7), schedule(15)])
    assert history.history["mask_sparsity/head"] == [0.0, 0.0]  # logits start at 3: nothing removed yet
    rows = list(csv.DictReader(open(tmp_path / "steps.csv")))
    assert [int(row["step"]) for row in rows] == [5, 10, 15]
    assert {"task_loss", "sparsity_loss", "quantization_loss", "expected_sparsity/head"} <= set(rows[0])
    assert float(rows[0]["sparsity_loss"]) == pytest.approx(0.1 * (1 - float(rows[0]["expected_sparsity/head"])
                                                                   + 1 - float(rows[0]["expected_sparsity/neuron"]))
                                                            / 2, rel=1e-4)
    history, _ = _fit(model, learner, epochs=1, total_steps=32, mode="linear", log_every=5,
                      step_log_path=tmp_path / "steps.csv")
    assert history.history["temperature"] == pytest.approx([schedule(23)])  # continues at step 16
    assert [int(row["step"]) for row in csv.DictReader(open(tmp_path / "steps.csv"))] == [5, 10, 15, 20]


def test_target_sparsity_controller_lands_the_binary_masks_at_the_target():
    """Tolerance: within 0.1 of the target for every kind (one micro run, 960 steps, masks_lr 0.05).

    Heads come 8 to a model here, so 0.1 means the exact count (4 of 8).
    """
    from gated import structured_masks
    from pruners import GumbelMaskLearner

    model = _learning_model()
    learner = GumbelMaskLearner(target_sparsity=0.5, masks_lr=0.05, target_warmup_steps=480)
    history, _ = _fit(model, learner, epochs=30, rows=1024)
    masks = structured_masks(model)
    for kind in ("head", "neuron"):
        assert abs(1 - masks[kind].mean() - 0.5) <= 0.1, kind
        assert history.history[f"mask_sparsity/{kind}"][-1] == pytest.approx(1 - masks[kind].mean())
    # The multipliers ascended while the masks were too dense (the only way the logits could fall).
    assert min(history.history["lagrange_l1/neuron"]) < 0


def test_learner_needs_a_model_with_learned_masks(micro_model):
    from pruners import GumbelMaskLearner

    with pytest.raises(ValueError, match="learn_masks"):
        GumbelMaskLearner().attach(micro_model)
    with pytest.raises(ValueError, match="target_sparsity=1.5"):
        GumbelMaskLearner(target_sparsity=1.5)


def _set_logits(model, values):
    """Assign every learned gate's logits from `{kind: array [layers, units]}`."""
    from gated import learned_gates

    for kind, gates in learned_gates(model).items():
        for gate, row in zip(gates, values[kind], strict=True):
            gate.logits.assign(np.asarray(row, "float32"))


def test_a_mac_target_controls_the_mac_fraction_counted_by_hand_with_its_gradient():
    import tensorflow as tf

    from gated import learned_gates, set_structured_masks, structured_masks
    from pruners import GumbelMaskLearner

    model = _learning_model()  # 2 blocks, 4 heads and 32 neurons each
    static = structured_masks(model)
    static["neuron"][1, 5] = 0.0  # removed before learning: counts as removed, and its logit gets no pull
    set_structured_masks(model, static)
    rng = np.random.default_rng(3)
    logits = {"head": rng.normal(0, 2, (2, 4)), "neuron": rng.normal(0, 2, (2, 32))}
    _set_logits(model, logits)
    costs = {"head": 10.0, "neuron": 1.0}
    learner = GumbelMaskLearner(quantization_weight=0.0, target_sparsity=0.3, unit_costs=costs)
    learner.attach(model)
    learner.multipliers["macs"].assign([1.0, 0.0])  # the term is then s - t
    with tf.GradientTape() as tape:
        _, terms = learner.penalty()
    total = 10.0 * 8 + 32 * 2
    alive = {"head": np.ones((2, 4)), "neuron": static["neuron"]}
    kept = sum(costs[kind] * np.sum(alive[kind] * (logits[kind] > 0)) for kind in costs)
    assert float(terms["sparsity_loss"]) == pytest.approx(1 - kept / total - 0.3, abs=1e-6)
    # Straight-through: the gradient is that of the expected MAC fraction, -cost / total * p (1 - p) per live unit.
    gates = learned_gates(model)
    grads = tape.gradient(terms["sparsity_loss"], [gate.logits for kind in ("head", "neuron") for gate in gates[kind]])
    for index, kind in enumerate(("head", "head", "neuron", "neuron")):
        layer = index % 2
        p = 1 / (1 + np.exp(-logits[kind][layer]))
        expected = -costs[kind] / total * p * (1 - p) * alive[kind][layer]
        np.testing.assert_allclose(grads[index].numpy(), expected, rtol=1e-4, atol=1e-8, err_msg=f"{kind} {layer}")
    assert learner.lagrange_multipliers() == {"macs": (1.0, 0.0)}  # one controller for both kinds


def test_l1_restarts_from_zero_when_the_sparsity_crosses_the_target():
    from pruners import GumbelMaskLearner

    model = _learning_model()
    learner = GumbelMaskLearner(quantization_weight=0.0, target_sparsity=0.5)
    learner.attach(model)
    every = {"head": np.full((2, 4), 5.0), "neuron": np.full((2, 32), 5.0)}
    none = {kind: -value for kind, value in every.items()}
    for lam in learner.multipliers.values():
        lam.assign([-2.0, 1.0])
    _set_logits(model, every)  # s = 0 < t: the first gap, nothing to compare with yet
    _, terms = learner.penalty()
    assert learner.lagrange_multipliers() == {"head": (-2.0, 1.0), "neuron": (-2.0, 1.0)}
    assert float(terms["sparsity_loss"]) == pytest.approx(2 * (-2.0 * -0.5 + 1.0 * 0.25))
    learner.penalty()  # the same side of the target again: l1 kept
    assert learner.lagrange_multipliers()["head"] == (-2.0, 1.0)
    _set_logits(model, none)  # s = 1 > t: crossed, so l1 restarts from 0 and l2 stays
    _, terms = learner.penalty()
    assert learner.lagrange_multipliers() == {"head": (0.0, 1.0), "neuron": (0.0, 1.0)}
    assert float(terms["sparsity_loss"]) == pytest.approx(2 * (1.0 * 0.25))


def test_a_resume_state_saved_before_the_anti_windup_restores_with_no_gap_seen():
    from pruners import GumbelMaskLearner

    saved = GumbelMaskLearner(quantization_weight=0.0, target_sparsity=0.5)
    saved.attach(_learning_model())
    for lam in saved.multipliers.values():
        lam.assign([-2.0, 1.0])
    saved.penalty()  # records a gap per controller
    arrays, values = saved.resume_state()
    old = {key: value for key, value in arrays.items() if not key.startswith("gaps/")}  # what stop 37's code saved
    assert len(old) == len(arrays) - 2
    resumed = GumbelMaskLearner(quantization_weight=0.0, target_sparsity=0.5)
    model = _learning_model()
    resumed.attach(model)
    resumed.restore_state(old, values)
    assert resumed.lagrange_multipliers() == {"head": (-2.0, 1.0), "neuron": (-2.0, 1.0)}
    assert [float(gap.numpy()) for gap in resumed.gaps.values()] == [0.0, 0.0]
    _set_logits(model, {"head": np.full((2, 4), -5.0), "neuron": np.full((2, 32), -5.0)})  # s = 1 > t
    resumed.penalty()  # the first gap after the resume: nothing to compare with, so l1 is kept
    assert resumed.lagrange_multipliers()["head"] == (-2.0, 1.0)
    resumed.restore_state(arrays, values)  # a new state brings its gaps: s - t was < 0 there, so this step crosses
    assert float(resumed.gaps["head"].numpy()) < 0
    resumed.penalty()
    assert resumed.lagrange_multipliers()["head"] == (0.0, 1.0)


def test_a_mac_target_lands_the_binary_masks_at_that_fraction_of_the_blocks_macs():
    """Tolerance: one head's share of the MACs, 0.075 (a neuron's is 0.00625). At the end of this micro run (960
    steps, masks_lr 0.05) the neurons have settled and the controller moves the mask of a head back and forth
    across the target: measured, 0.45 and 0.525 of the MACs removed in the last epochs."""
    from efficiency.mac import head_macs, macs_kept, neuron_macs
    from gated import structured_masks
    from pruners import GumbelMaskLearner

    model = _learning_model()
    d_model, head_dim, seq_len = MICRO["d_model"], MICRO["d_model"] // MICRO["num_heads"], MICRO["max_len"]
    costs = {"head": head_macs(d_model, head_dim, seq_len), "neuron": neuron_macs(d_model, seq_len)}
    learner = GumbelMaskLearner(target_sparsity=0.5, masks_lr=0.05, target_warmup_steps=480, unit_costs=costs)
    history, _ = _fit(model, learner, epochs=30, rows=1024, seq_len=seq_len)
    masks = structured_masks(model)
    kept = sum(costs[kind] * masks[kind].sum() for kind in costs) / sum(costs[kind] * masks[kind].size
                                                                         for kind in costs)
    one_head = costs["head"] / (MICRO["num_layers"] * (MICRO["num_heads"] * costs["head"] + MICRO["dff"]
                                                        * costs["neuron"]))
    assert one_head == pytest.approx(0.075)
    assert abs(kept - 0.5) <= one_head + 1e-6
    assert history.history["macs_kept"][-1] == pytest.approx(kept) == pytest.approx(macs_kept(model, seq_len))
    assert "lagrange_l1/macs" in history.history and "lagrange_l1/head" not in history.history
