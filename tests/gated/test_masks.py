import numpy as np
import pytest

from gated import (
    GatedFeedForward,
    GatedMultiHeadAttention,
    collect_gated_layers,
    effective_kernel_masks,
    get_weight_masks,
    set_head_gates,
    set_neuron_gates,
    set_weight_masks,
    sparsity_stats,
)


def test_collects_every_prunable_kernel_by_path(micro_model):
    layers = collect_gated_layers(micro_model)
    expected = {f"block_{b}/{part}" for b in range(2) for part in
                ("attention/query", "attention/key", "attention/value", "attention/output",
                 "ffn/intermediate", "ffn/output")}
    assert set(layers) == expected
    assert set(collect_gated_layers(micro_model, GatedMultiHeadAttention)) == {"block_0/attention", "block_1/attention"}
    assert set(collect_gated_layers(micro_model, GatedFeedForward)) == {"block_0/ffn", "block_1/ffn"}


def test_dense_model_has_zero_sparsity_and_counts_only_encoder_kernels(micro_model):
    stats = sparsity_stats(micro_model)
    # Per block: 4 attention kernels 16x16 plus FFN 16x32 and 32x16; embeddings and head excluded.
    assert stats["total"] == 2 * (4 * 16 * 16 + 2 * 16 * 32)
    assert stats["zeros"] == 0 and stats["global_sparsity"] == 0.0


def test_sparsity_counts_masks_exactly(micro_model):
    mask = np.ones((16, 16), "float32")
    mask[:4] = 0  # 64 zeros
    set_weight_masks(micro_model, {"block_0/attention/query": mask})
    stats = sparsity_stats(micro_model)
    assert stats["zeros"] == 64
    assert stats["layers"]["block_0/attention/query"] == 64 / 256
    assert stats["global_sparsity"] == pytest.approx(64 / stats["total"])


def test_head_and_neuron_gates_count_as_removed_weights(micro_model):
    set_head_gates(micro_model, {"block_1/attention": np.array([0, 1, 1, 1], "float32")})
    gate = np.ones(32, "float32")
    gate[:8] = 0
    set_neuron_gates(micro_model, {"block_0/ffn": gate})
    masks = effective_kernel_masks(micro_model)
    # Head 0 (dims 0..3): q/k/v columns and output rows.
    for name in ("query", "key", "value"):
        assert np.all(masks[f"block_1/attention/{name}"][:, :4] == 0)
        assert np.all(masks[f"block_1/attention/{name}"][:, 4:] == 1)
    assert np.all(masks["block_1/attention/output"][:4] == 0)
    assert np.all(masks["block_0/ffn/intermediate"][:, :8] == 0)
    assert np.all(masks["block_0/ffn/output"][:8] == 0)
    stats = sparsity_stats(micro_model)
    assert stats["zeros"] == 4 * (16 * 4) + 2 * (16 * 8)


def test_overlapping_mask_and_gate_are_not_double_counted(micro_model):
    mask = np.ones((16, 16), "float32")
    mask[:, :4] = 0
    set_weight_masks(micro_model, {"block_0/attention/value": mask})
    set_head_gates(micro_model, {"block_0/attention": np.array([0, 1, 1, 1], "float32")})
    assert sparsity_stats(micro_model)["layers"]["block_0/attention/value"] == 64 / 256


def test_get_masks_returns_copies(micro_model):
    masks = get_weight_masks(micro_model)
    masks["block_0/ffn/output"][:] = 0
    assert sparsity_stats(micro_model)["zeros"] == 0


def test_set_rejects_unknown_paths_and_wrong_shapes(micro_model):
    with pytest.raises(KeyError, match="block_9/ffn"):
        set_weight_masks(micro_model, {"block_9/ffn": np.ones((2, 2))})
    with pytest.raises(ValueError, match=r"block_0/ffn/output must have shape \(32, 16\), got \(16, 32\)"):
        set_weight_masks(micro_model, {"block_0/ffn/output": np.ones((16, 32))})
    with pytest.raises(ValueError, match="head_gate"):
        set_head_gates(micro_model, {"block_0/attention": np.ones(3)})


def test_masks_applied_sets_the_gates_only_inside_the_block(micro_model):
    from gated import masks_applied, structured_gates

    micro_model.get_layer("block_1").attention.head_gate.assign(np.array([1, 0.5, 1, 1], "float32"))
    before = structured_gates(micro_model)
    heads = np.array([[0, 1, 1, 1], [1, 1, 0, 0]], "float32")
    with masks_applied(micro_model, {"head": heads}):
        np.testing.assert_array_equal(structured_gates(micro_model)["head"], heads)
    for kind, gates in structured_gates(micro_model).items():
        np.testing.assert_array_equal(gates, before[kind])
    with pytest.raises(RuntimeError, match="scoring failed"):
        with masks_applied(micro_model, {"neuron": np.zeros((2, 32))}):
            raise RuntimeError("scoring failed")
    np.testing.assert_array_equal(structured_gates(micro_model)["neuron"], before["neuron"])


def test_a_logit_bias_shifts_the_logits_inside_the_block_only(micro_model, micro_batch):
    from gated import add_logit_bias, masks_applied

    logits = np.asarray(micro_model(micro_batch))
    shift = np.array([0.5, -1.5], "float32")
    with masks_applied(micro_model, {}, logit_bias=shift):
        np.testing.assert_allclose(np.asarray(micro_model(micro_batch)), logits + shift, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(micro_model(micro_batch)), logits)
    with pytest.raises(ValueError, match=r"a logit bias of shape \(3,\) does not fit the classifier's bias \(2,\)"):
        add_logit_bias(micro_model, np.zeros(3))
