"""Compact models: gates, scales and masks folded into the kernels, pruned units cut out, no gate or mask left."""

import keras
import numpy as np
import pytest

from conftest import MICRO, compact_parameter_count
from gated import (
    build_gated_encoder,
    compact_model,
    compact_shape,
    count_parameters,
    get_head_gates,
    get_neuron_gates,
    get_output_gates,
    get_weight_masks,
    mask_variables,
    pooling_of,
    set_head_gates,
    set_neuron_gates,
    set_output_gates,
    set_weight_masks,
)

HEADS = np.array([[0.0, 1.5, 0.0, 0.7], [0.0, 0.0, 0.0, 0.0]], "float32")  # block 1 keeps no head


def _set(setter, getter, model, values):
    setter(model, dict(zip(getter(model), np.asarray(values, "float32"), strict=True)))


def _pruned_unevenly(model, rng):
    """Real-valued head gates, neuron gates with block 0 partly and block 1 wholly cut, two output units off."""
    neurons = rng.uniform(0.5, 2.0, size=(2, MICRO["dff"])) * (rng.random((2, MICRO["dff"])) < 0.6)
    neurons[1] = 0.0
    outputs = np.ones((2, MICRO["d_model"]))
    outputs[0, [3, 7]] = 0.0
    _set(set_head_gates, get_head_gates, model, HEADS)
    _set(set_neuron_gates, get_neuron_gates, model, neurons)
    _set(set_output_gates, get_output_gates, model, outputs)
    return neurons


def test_compact_model_computes_the_masked_models_logits_with_only_the_kept_units(micro_model, micro_batch, tmp_path):
    rng = np.random.default_rng(3)
    neurons = _pruned_unevenly(micro_model, rng)
    masks = {path: (rng.random(mask.shape) < 0.7).astype("float32") for path, mask in
             get_weight_masks(micro_model).items()}
    set_weight_masks(micro_model, masks)  # weight-level masks too: folded in, zeros stay zeros
    compact = compact_model(micro_model)
    np.testing.assert_allclose(compact(micro_batch), micro_model(micro_batch), atol=1e-5)
    widths = [int(np.count_nonzero(row)) for row in neurons]
    assert compact_shape(compact) == ([2, 0], widths)
    assert mask_variables(compact) == []
    assert not [v.path for v in compact.weights if "gate" in v.path or "mask" in v.path]
    assert count_parameters(compact) == compact.count_params() == compact_parameter_count([2, 0], widths)
    attention = compact.get_layer("block_0").attention
    assert attention.query is attention.key is attention.value is None  # one fused projection instead
    assert compact.get_layer("block_1").attention.qkv is None  # no head left: no projection at all
    dh = MICRO["d_model"] // MICRO["num_heads"]
    kept = [*range(dh, 2 * dh), *range(3 * dh, 4 * dh)]  # heads 1 and 3
    source = micro_model.get_layer("block_0").attention
    projections = (source.query, source.key, source.value)
    expected = [(dense.kernel.numpy() * dense.kernel_mask.numpy())[:, kept] for dense in projections]
    np.testing.assert_array_equal(attention.qkv.kernel.numpy(), np.concatenate(expected, axis=1))
    np.testing.assert_array_equal(attention.qkv.bias.numpy(),
                                  np.concatenate([dense.bias.numpy()[kept] for dense in projections]))
    path = tmp_path / "compact.keras"
    compact.save(path)
    np.testing.assert_array_equal(keras.saving.load_model(path)(micro_batch), compact(micro_batch))


def test_the_unfused_layout_computes_the_same_function_with_three_projections(micro_model, micro_batch):
    _pruned_unevenly(micro_model, np.random.default_rng(4))
    fused, unfused = compact_model(micro_model), compact_model(micro_model, fused_qkv=False)
    np.testing.assert_allclose(unfused(micro_batch), micro_model(micro_batch), atol=1e-5)
    np.testing.assert_allclose(fused(micro_batch), unfused(micro_batch), atol=1e-6)
    attention = unfused.get_layer("block_0").attention
    assert attention.qkv is None and attention.query.kernel.shape == (MICRO["d_model"], 2 * MICRO["d_model"] // 4)
    assert count_parameters(fused) == count_parameters(unfused)


def test_a_mean_pooling_head_compacts_and_reloads(micro_batch, tmp_path):
    keras.utils.set_random_seed(0)
    model = build_gated_encoder(**MICRO, num_labels=2, pooling="mean", pooler=None)
    _pruned_unevenly(model, np.random.default_rng(5))
    compact = compact_model(model)
    assert pooling_of(compact) == "mean"
    np.testing.assert_allclose(compact(micro_batch), model(micro_batch), atol=1e-5)
    path = tmp_path / "compact.keras"
    compact.save(path)
    np.testing.assert_array_equal(keras.saving.load_model(path)(micro_batch), compact(micro_batch))


def test_fused_projections_are_for_plain_layers_only():
    from gated import GatedMultiHeadAttention

    with pytest.raises(ValueError, match="fused_qkv=True is for plain layers.*gates=True, kernel_masks=False"):
        GatedMultiHeadAttention(2, kernel_masks=False, fused_qkv=True)


def test_an_unpruned_model_compacts_to_the_same_function_and_parameter_count(micro_model, micro_batch):
    compact = compact_model(micro_model)
    np.testing.assert_allclose(compact(micro_batch), micro_model(micro_batch), atol=1e-6)
    full = compact_parameter_count([4, 4], [MICRO["dff"]] * 2)
    assert count_parameters(compact) == count_parameters(micro_model) == full
    assert compact.count_params() < micro_model.count_params()  # the gated model also holds masks and gates


def test_learned_masks_are_baked_in_and_dropped(micro_batch):
    keras.utils.set_random_seed(0)
    model = build_gated_encoder(**MICRO, num_labels=2, learn_masks=("head", "neuron"))
    block = model.get_layer("block_0")
    block.attention.head_mask.logits.assign([-5.0, 5.0, 5.0, -5.0])  # heads 0 and 3 off when evaluated
    model.get_layer("block_1").attention.head_mask.logits.assign([5.0] * 4)
    compact = compact_model(model)
    np.testing.assert_allclose(compact(micro_batch), model(micro_batch, training=False), atol=1e-5)
    assert compact_shape(compact)[0] == [2, 4] and mask_variables(compact) == []


def test_learned_masks_need_gates():
    with pytest.raises(ValueError, match="learn_head_mask=True needs gates=True"):
        build_gated_encoder(**MICRO, num_labels=2, learn_masks=("head",), gates=False)
