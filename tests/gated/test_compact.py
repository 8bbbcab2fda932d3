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
    kept = compact.get_layer("block_0").attention.query.kernel.numpy()  # heads 1 and 3 of the q kernel
    source = micro_model.get_layer("block_0").attention.query
    dh = MICRO["d_model"] // MICRO["num_heads"]
    expected = (source.kernel.numpy() * source.kernel_mask.numpy())[:, [*range(dh, 2 * dh), *range(3 * dh, 4 * dh)]]
    np.testing.assert_array_equal(kept, expected)
    path = tmp_path / "compact.keras"
    compact.save(path)
    np.testing.assert_array_equal(keras.saving.load_model(path)(micro_batch), compact(micro_batch))


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
