"""Physically pruned models: per-block shapes, zero-width blocks, same outputs as the gated model."""

import keras
import numpy as np
import pytest

from conftest import MICRO
from gated import (
    GatedMultiHeadAttention,
    build_gated_encoder,
    get_head_gates,
    get_neuron_gates,
    set_head_gates,
    set_neuron_gates,
)
from gated.slicing import slice_pruned


def _gate(model, heads, neurons):
    set_head_gates(model, dict(zip(get_head_gates(model), np.asarray(heads, "float32"), strict=True)))
    set_neuron_gates(model, dict(zip(get_neuron_gates(model), np.asarray(neurons, "float32"), strict=True)))


def test_sliced_model_computes_the_gated_models_outputs_with_fewer_weights(micro_model, micro_batch, tmp_path):
    rng = np.random.default_rng(1)
    neurons = rng.uniform(0.5, 2.0, size=(2, MICRO["dff"])) * (rng.random((2, MICRO["dff"])) < 0.6)
    neurons[1] = 0.0  # a block with no FFN neuron left
    heads = np.array([[0.0, 1.5, 0.0, 0.7], [0.0, 0.0, 0.0, 0.0]])  # and one with no head left
    _gate(micro_model, heads, neurons)
    small = slice_pruned(micro_model)
    np.testing.assert_allclose(small(micro_batch), micro_model(micro_batch), atol=1e-5)
    kept = int(np.count_nonzero(neurons))
    d, dh = MICRO["d_model"], MICRO["d_model"] // MICRO["num_heads"]
    # Kernels count twice (weights and masks). A head: q/k/v columns and biases, output rows, its gate.
    # A neuron: intermediate column and bias, output row, its gate.
    removed = 6 * (3 * (2 * d * dh + dh) + 2 * dh * d + 1) + (2 * MICRO["dff"] - kept) * (4 * d + 2)
    assert micro_model.count_params() - small.count_params() == removed
    blocks = [small.get_layer(f"block_{i}") for i in range(2)]
    assert [b.attention.num_heads for b in blocks] == [2, 0] and [b.ffn.dff for b in blocks] == [kept, 0]
    path = tmp_path / "small.keras"
    small.save(path)
    np.testing.assert_array_equal(keras.saving.load_model(path)(micro_batch), small(micro_batch))


def test_unpruned_model_slices_to_an_equal_copy(micro_model, micro_batch):
    small = slice_pruned(micro_model)
    assert small.count_params() == micro_model.count_params()
    np.testing.assert_allclose(small(micro_batch), micro_model(micro_batch), atol=1e-6)


def test_per_block_shapes_and_their_errors():
    model = build_gated_encoder(**{**MICRO, "num_heads": [4, 1], "dff": [8, 0]}, head_dim=4, num_labels=2)
    blocks = [model.get_layer(f"block_{i}") for i in range(2)]
    assert [b.attention.num_heads for b in blocks] == [4, 1] and [b.ffn.dff for b in blocks] == [8, 0]
    with pytest.raises(ValueError, match=r"one value per block \(2\), got num_heads=\[4\]"):
        build_gated_encoder(**{**MICRO, "num_heads": [4]}, num_labels=2)
    with pytest.raises(ValueError, match="num_heads=0 needs an explicit head_dim"):
        GatedMultiHeadAttention(0)
    with pytest.raises(ValueError, match="head_dim must be a positive integer"):
        GatedMultiHeadAttention(2, head_dim=0)
