import keras
import numpy as np
import pytest

from conftest import MICRO
from gated import (
    EncoderBlock,
    EncoderEmbeddings,
    GatedDense,
    GatedFeedForward,
    GatedMultiHeadAttention,
    build_gated_encoder,
    get_head_gates,
    get_neuron_gates,
    get_weight_masks,
    last_hidden_state_model,
    pooling_of,
    set_head_gates,
    set_neuron_gates,
    set_weight_masks,
)


def _prune_some(model):
    """Give the model non-trivial masks and gates; return what was set."""
    rng = np.random.default_rng(5)
    masks = {path: (rng.random(m.shape) > 0.5).astype("float32") for path, m in get_weight_masks(model).items()}
    heads = {path: np.array([1, 0, 1, 0], "float32") for path in get_head_gates(model)}
    neurons = {path: (rng.random(g.shape) > 0.3).astype("float32") for path, g in get_neuron_gates(model).items()}
    set_weight_masks(model, masks)
    set_head_gates(model, heads)
    set_neuron_gates(model, neurons)
    return masks, heads, neurons


def _assert_same_gates(model, masks, heads, neurons):
    for expected, actual in ((masks, get_weight_masks(model)), (heads, get_head_gates(model)),
                             (neurons, get_neuron_gates(model))):
        assert expected.keys() == actual.keys()
        for path in expected:
            np.testing.assert_array_equal(actual[path], expected[path])


def test_output_shapes_and_regression_head(micro_batch):
    classifier = build_gated_encoder(**MICRO, num_labels=3)
    regressor = build_gated_encoder(**MICRO, num_labels=1)
    assert classifier(micro_batch).shape == (3, 3)
    assert regressor(micro_batch).shape == (3, 1)


def test_padding_does_not_change_real_tokens(micro_model, micro_batch):
    out = micro_model(micro_batch).numpy()
    garbage = {key: value.copy() for key, value in micro_batch.items()}
    garbage["input_ids"][micro_batch["attention_mask"] == 0] = 7
    np.testing.assert_allclose(micro_model(garbage).numpy(), out, rtol=1e-5, atol=1e-5)
    # Trimming the padding away gives the same result too (dynamic padding is exact).
    short = {key: value[2:3, :3] for key, value in micro_batch.items()}
    np.testing.assert_allclose(micro_model(short).numpy()[0], out[2], rtol=1e-5, atol=1e-5)


def test_keras_file_round_trip_keeps_masks_and_gates(micro_model, micro_batch, tmp_path):
    state = _prune_some(micro_model)
    expected = micro_model(micro_batch).numpy()
    path = tmp_path / "model.keras"
    micro_model.save(path)
    loaded = keras.saving.load_model(path)
    _assert_same_gates(loaded, *state)
    np.testing.assert_allclose(loaded(micro_batch).numpy(), expected, rtol=1e-6, atol=1e-6)


def test_weights_checkpoint_round_trip_keeps_masks_and_gates(micro_model, micro_batch, tmp_path):
    state = _prune_some(micro_model)
    expected = micro_model(micro_batch).numpy()
    path = tmp_path / "model.weights.h5"
    micro_model.save_weights(path)
    fresh = build_gated_encoder(**MICRO, num_labels=2)
    assert not np.allclose(fresh(micro_batch).numpy(), expected)
    fresh.load_weights(path)
    _assert_same_gates(fresh, *state)
    np.testing.assert_allclose(fresh(micro_batch).numpy(), expected, rtol=1e-6, atol=1e-6)


def test_model_config_round_trip(micro_model, micro_batch):
    clone = keras.Model.from_config(micro_model.get_config())
    clone.set_weights(micro_model.get_weights())
    np.testing.assert_allclose(clone(micro_batch).numpy(), micro_model(micro_batch).numpy(), rtol=1e-6)


@pytest.mark.parametrize(
    "cls,kwargs",
    [
        (GatedDense, {"units": 3, "activation": "gelu", "use_bias": False, "use_unit_gate": True,
                      "kernel_initializer": keras.initializers.TruncatedNormal(stddev=0.02),
                      "bias_initializer": "ones"}),
        (GatedMultiHeadAttention, {"num_heads": 4, "dropout_rate": 0.1, "kernel_initializer": "he_normal",
                                   "gates": False, "kernel_masks": False}),
        (GatedMultiHeadAttention, {"num_heads": 2, "gates": False, "kernel_masks": False, "fused_qkv": True}),
        (GatedFeedForward, {"dff": 12, "activation": "relu", "kernel_initializer": "lecun_normal", "gates": False}),
        (EncoderEmbeddings, {"vocab_size": 50, "max_len": 12, "d_model": 8, "type_vocab_size": 3,
                             "dropout_rate": 0.2}),
        (EncoderBlock, {"num_heads": 2, "dff": 24, "dropout_rate": 0.1, "gates": False}),
        (EncoderBlock, {"num_heads": 2, "dff": 24, "gates": False, "kernel_masks": False, "fused_qkv": True}),
    ],
)
def test_every_constructor_argument_survives_get_config(cls, kwargs):
    """Each argument set away from its default must come back from `from_config(get_config())`."""
    clone = cls.from_config(cls(**kwargs, name="probe").get_config())
    assert clone.name == "probe"
    for key, value in kwargs.items():
        restored = getattr(clone, key)
        if key.endswith("initializer"):
            expected = keras.initializers.get(value)
            assert type(restored) is type(expected) and restored.get_config() == expected.get_config(), key
        elif key == "activation":
            assert keras.activations.serialize(restored) == value, key
        else:
            assert restored == value, key


def test_mean_pooling_reads_the_mean_of_the_real_tokens(micro_batch):
    keras.utils.set_random_seed(0)
    model = build_gated_encoder(**MICRO, num_labels=3, pooling="mean", pooler=None)
    assert pooling_of(model) == "mean" and pooling_of(build_gated_encoder(**MICRO, num_labels=3)) == "cls"
    hidden = np.asarray(last_hidden_state_model(model)(micro_batch), np.float64)
    mask = micro_batch["attention_mask"][:, :, None].astype(np.float64)
    assert (mask == 0).any()  # a padded row: its padding must not enter the mean
    classifier = model.get_layer("classifier")
    expected = (hidden * mask).sum(axis=1) / mask.sum(axis=1) @ classifier.kernel.numpy() + classifier.bias.numpy()
    np.testing.assert_allclose(model(micro_batch).numpy(), expected, atol=1e-5)
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    assert pooling_of(clone) == "mean"
    np.testing.assert_allclose(clone(micro_batch).numpy(), model(micro_batch).numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="pooling must be one of.*pooling='max'"):
        build_gated_encoder(**MICRO, num_labels=2, pooling="max")


def test_bad_shape_is_rejected():
    with pytest.raises(ValueError, match="num_heads=3, d_model=16"):
        build_gated_encoder(**{**MICRO, "num_heads": 3}, num_labels=2)
    with pytest.raises(ValueError, match="vocab_size=0"):
        EncoderEmbeddings(0, 8, 8)
