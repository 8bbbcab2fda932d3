"""`GumbelGate` and the learned head/FFN masks of the gated encoder."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import MICRO


def _gate(logits, temperature=1.0, seed=0):
    from gated import GumbelGate

    gate = GumbelGate(len(logits), seed=seed)
    gate.build()
    gate.logits.assign(np.asarray(logits, "float32"))
    gate.temperature.assign(temperature)
    return gate


def test_gradients_reach_the_logits_through_the_relaxed_sample():
    gate = _gate([0.5, -1.0, 2.0])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(gate.gates(training=True) * tf.constant([1.0, 2.0, 3.0]))
    gradient = tape.gradient(loss, gate.logits.value)
    assert gradient is not None
    assert np.all(gradient.numpy() > 0)  # a larger logit raises every sample


def test_samples_follow_tensorflow_probabilitys_relaxed_bernoulli():
    import tensorflow_probability as tfp

    logits, temperature = np.array([0.7] * 20000, "float32"), 0.5
    samples = _gate(logits, temperature).sample().numpy()
    reference = tfp.distributions.RelaxedBernoulli(temperature, logits=0.7)
    for point in (0.1, 0.3, 0.5, 0.7, 0.9):
        assert np.mean(samples <= point) == pytest.approx(float(reference.cdf(point)), abs=0.015)


def test_samples_are_nearly_binary_at_a_very_low_temperature():
    samples = _gate(np.linspace(-3, 3, 1000), temperature=1e-4).sample().numpy()
    assert np.all(np.minimum(samples, 1 - samples) < 1e-3)
    assert 0 < samples.mean() < 1  # both values occur


def test_evaluation_gate_is_deterministic_and_binary():
    logits = np.array([-2.0, -1e-3, 1e-3, 4.0], "float32")
    gate = _gate(logits, temperature=5.0)
    first, second = gate.gates(training=False).numpy(), gate.gates(training=False).numpy()
    np.testing.assert_array_equal(first, [0, 0, 1, 1])
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(gate.gates(training=True).numpy(), gate.gates(training=True).numpy())


def test_gate_config_round_trips_and_bad_units_are_named():
    from gated import GumbelGate

    gate = GumbelGate(5, initial_logit=1.5, seed=3, name="g")
    assert GumbelGate.from_config(gate.get_config()).get_config() == gate.get_config()
    with pytest.raises(ValueError, match="units=0"):
        GumbelGate(0)


def test_a_block_saved_with_the_earlier_kind_name_still_learns_neuron_masks():
    from gated import EncoderBlock

    block = EncoderBlock.from_config({"num_heads": 4, "dff": 32, "learn_masks": ["head", "ffn_int"], "name": "b"})
    block.build((None, None, 16))
    assert block.learn_masks == ("head", "neuron") and block.get_config()["learn_masks"] == ["head", "neuron"]
    assert block.ffn.neuron_mask is not None and block.ffn.output_mask is None


@pytest.fixture
def learned_model():
    from gated import build_gated_encoder

    keras.utils.set_random_seed(0)
    return build_gated_encoder(**MICRO, num_labels=2, learn_masks=("all",))


def _set_logits(model, seed=1):
    """Random logits, about half of each kind negative."""
    from gated import learned_gates

    rng = np.random.default_rng(seed)
    for gates in learned_gates(model).values():
        for gate in gates:
            gate.logits.assign(rng.normal(size=gate.units).astype("float32"))


def test_model_learns_one_logit_per_head_neuron_and_output_unit(learned_model):
    from gated import learned_gates, mask_logits

    assert {kind: len(gates) for kind, gates in learned_gates(learned_model).items()} == {
        "head": 2, "neuron": 2, "ffn_out": 2}
    shapes = {kind: logits.shape for kind, logits in mask_logits(learned_model).items()}
    assert shapes == {"head": (2, 4), "neuron": (2, 32), "ffn_out": (2, 16)}
    trainable = {variable.path for variable in learned_model.trainable_variables}
    assert "block_0/attention/head_mask/logits" in trainable
    assert "block_1/ffn/output_mask/logits" in trainable


def test_learned_model_evaluates_its_binary_masks_exactly_like_the_baked_model(learned_model, micro_batch):
    from gated import structured_masks, without_learned_masks

    _set_logits(learned_model)
    baked = without_learned_masks(learned_model)
    assert not any("mask/logits" in variable.path for variable in baked.weights)
    for kind, masks in structured_masks(baked).items():
        np.testing.assert_array_equal(masks, structured_masks(learned_model)[kind])
    expected = learned_model(micro_batch, training=False).numpy()
    np.testing.assert_array_equal(baked(micro_batch, training=False).numpy(), expected)
    np.testing.assert_array_equal(learned_model(micro_batch, training=False).numpy(), expected)


def test_binary_masks_count_in_the_effective_kernel_masks(learned_model):
    from gated import effective_kernel_masks, learned_gates, sparsity_stats

    gates = learned_gates(learned_model)
    gates["ffn_out"][0].logits.assign(np.where(np.arange(16) < 4, -1.0, 1.0).astype("float32"))
    gates["head"][1].logits.assign(np.array([1.0, -1.0, 1.0, 1.0], "float32"))
    masks = effective_kernel_masks(learned_model)
    assert masks["block_0/ffn/output"][:, :4].sum() == 0 and masks["block_0/ffn/output"][:, 4:].all()
    assert masks["block_1/attention/query"][:, 4:8].sum() == 0  # head 1 of 4, head_dim 4
    removed = 32 * 4 + 3 * 16 * 4 + 4 * 16  # ffn output columns; q/k/v columns and output rows of one head
    assert sparsity_stats(learned_model)["zeros"] == removed


def test_learned_masks_survive_a_keras_round_trip(learned_model, micro_batch, tmp_path):
    from gated import mask_logits

    _set_logits(learned_model)
    learned_model.save(tmp_path / "model.keras")
    restored = keras.models.load_model(tmp_path / "model.keras")
    for kind, logits in mask_logits(learned_model).items():
        np.testing.assert_array_equal(mask_logits(restored)[kind], logits)
    np.testing.assert_array_equal(restored(micro_batch).numpy(), learned_model(micro_batch).numpy())


def test_saved_masks_have_the_documented_shapes_and_reload(learned_model, tmp_path):
    from gated import load_learned_masks, save_learned_masks, structured_masks

    _set_logits(learned_model)
    written = save_learned_masks(learned_model, tmp_path / "masks")
    assert sorted(written) == sorted([f"{kind}_{part}.npy" for kind in ("head", "neuron", "ffn_out")
                                      for part in ("mask", "logits")] + ["masks.json"])
    loaded = load_learned_masks(tmp_path / "masks")
    assert {kind: mask.shape for kind, mask in loaded.items()} == {"head": (2, 4), "neuron": (2, 32),
                                                                   "ffn_out": (2, 16)}
    for kind, mask in structured_masks(learned_model).items():
        np.testing.assert_array_equal(loaded[kind], mask)
        assert set(np.unique(mask)) <= {0.0, 1.0}


def test_structured_masks_reject_a_wrong_layer_count(micro_model):
    from gated import set_structured_masks

    with pytest.raises(ValueError, match=r"head masks have shape \(3, 4\), but the model's head gates are \(2, 4\)"):
        set_structured_masks(micro_model, {"head": np.ones((3, 4))})
    with pytest.raises(ValueError, match=r"neuron masks have shape \(2, 31\).* are \(2, 32\)"):
        set_structured_masks(micro_model, {"head": np.zeros((2, 4)), "neuron": np.ones((2, 31))})
    assert np.all(micro_model.get_layer("block_0").attention.head_gate.numpy() == 1)  # nothing was written
