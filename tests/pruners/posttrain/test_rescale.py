"""Least-squares rescaling of the kept heads and neurons."""

import numpy as np
import pytest

from conftest import MICRO, micro_sample_batches
from gated import set_structured_masks, structured_gates
from pruners.posttrain.rescale import rescale


def _masks(seed):
    rng = np.random.default_rng(seed)
    heads = np.array([[1, 0, 1, 1], [0, 1, 1, 0]], np.float32)
    neurons = (rng.random((2, MICRO["dff"])) < 0.5).astype(np.float32)
    return heads, neurons


def _first_attention_error(model, batches, heads_row):
    """MSE of block 0's attention output (pre-LN) against the dense one, over every non-padding token."""
    block, embeddings = model.get_layer("block_0"), model.get_layer("embeddings")
    errors = []
    for inputs, _ in batches:
        x = embeddings(inputs["input_ids"], inputs["token_type_ids"])
        dense = block.attention_residual(x, inputs["attention_mask"]).numpy()
        block.attention.head_gate.assign(heads_row)
        pruned = block.attention_residual(x, inputs["attention_mask"]).numpy()
        block.attention.head_gate.assign(np.ones(4, "float32"))
        errors.append((pruned - dense)[inputs["attention_mask"] == 1])
    return float(np.mean(np.square(np.concatenate(errors))))


def test_rescale_lowers_every_sublayer_error_and_leaves_the_gates_alone(micro_model):
    batches = micro_sample_batches(0)
    heads, neurons = _masks(0)
    new_heads, new_neurons, report = rescale(micro_model, heads, neurons, batches, backend="scipy",
                                             max_tokens=10_000, max_scale=100.0)
    assert [(r["layer"], r["kind"]) for r in report] == [(0, "head"), (0, "neuron"), (1, "head"), (1, "neuron")]
    assert all(r["status"] == "rescaled" and r["mse_after"] < r["mse_before"] for r in report)
    # Pruned units stay pruned; kept ones get real-valued scales.
    assert np.all(new_heads[heads == 0] == 0) and np.all(new_neurons[neurons == 0] == 0)
    assert np.any(new_heads[heads == 1] != 1)
    for mask in structured_gates(micro_model).values():
        np.testing.assert_array_equal(mask, np.ones_like(mask))
    # Measured again through the model, independently of the solver's own numbers.
    binary = _first_attention_error(micro_model, batches, heads[0])
    scaled = _first_attention_error(micro_model, batches, new_heads[0])
    assert binary == pytest.approx(report[0]["mse_before"], rel=1e-4)
    assert scaled == pytest.approx(report[0]["mse_after"], rel=1e-4) and scaled < binary


def test_rescaled_masks_bring_the_logits_closer_to_the_dense_model(micro_model):
    batches = micro_sample_batches(1, count=4)
    heads, neurons = _masks(1)
    dense = np.concatenate([micro_model(inputs).numpy() for inputs, _ in batches])
    new_heads, new_neurons, _ = rescale(micro_model, heads, neurons, batches, backend="scipy", max_scale=100.0)
    set_structured_masks(micro_model, {"head": heads, "neuron": neurons})
    binary = np.concatenate([micro_model(inputs).numpy() for inputs, _ in batches])
    set_structured_masks(micro_model, {"head": new_heads, "neuron": new_neurons})
    scaled = np.concatenate([micro_model(inputs).numpy() for inputs, _ in batches])
    assert np.mean(np.square(scaled - dense)) < np.mean(np.square(binary - dense))


def test_a_scale_out_of_range_stops_rescaling_and_keeps_the_binary_masks(micro_model):
    heads, neurons = _masks(0)
    new_heads, new_neurons, report = rescale(micro_model, heads, neurons, micro_sample_batches(0), backend="scipy",
                                             max_scale=1e-3)
    np.testing.assert_array_equal(new_heads, heads)
    np.testing.assert_array_equal(new_neurons, neurons)
    assert report[0]["status"].startswith("failed") and [r["status"] for r in report[1:]] == ["stopped"] * 3
