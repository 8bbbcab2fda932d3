"""Unit pruning: L1 maths on hand examples, exact rates per module, binary masks, whole heads by L1 norm."""

import numpy as np
import pytest

from composability.units import head_keep, l1_mask, lowest, prune_unit, removed_count, unit_masks


def _unit(module, method, rate):
    return {"id": f"layer0.{module}.{method}.r{rate:g}", "layer": 0, "module": module, "method": method, "rate": rate}


def test_removed_count_rounds_half_up():
    assert [removed_count(0.25, 2), removed_count(0.25, 4), removed_count(0.3, 10), removed_count(0.5, 12)] == \
        [1, 1, 3, 6]


def test_l1_mask_removes_the_smallest_magnitudes():
    kernel = np.array([[0.5, -0.1, 2.0], [-3.0, 0.05, 0.2]], np.float32)
    mask = l1_mask(kernel, 0.5)  # 3 of 6: |0.05|, |-0.1|, |0.2|
    np.testing.assert_array_equal(mask, [[1, 0, 1], [1, 0, 0]])


def test_lowest_breaks_ties_by_position():
    np.testing.assert_array_equal(lowest(np.array([1.0, 1.0, 1.0, 0.5]), 0.5), [False, True, True, False])


def test_heads_are_ranked_by_the_l1_norm_of_their_query_key_value_columns():
    # 4 heads of width 1 over 2 inputs; per-head L1 norms summed over q, k, v by hand: 6, 3, 10, 1.5.
    q = np.array([[1, 0, 3, 0.5], [1, 1, 0, 0]], np.float32)
    k = np.array([[-2, 1, 0, 0], [0, 0, 4, 0]], np.float32)
    v = np.array([[0, 1, 0, 0], [2, 0, -3, 1]], np.float32)
    np.testing.assert_array_equal(head_keep([q, k, v], 4, 0.5), [True, False, True, False])
    masks, gates = unit_masks(_unit("attention", "l1_heads", 0.5), {"query": q, "key": k, "value": v}, 4)
    np.testing.assert_array_equal(gates["head_gate"], [1, 0, 1, 0])
    for mask in masks.values():
        np.testing.assert_array_equal(mask, [[1, 0, 1, 0]] * 2)


def test_heads_of_several_columns_remove_all_their_columns():
    rng = np.random.default_rng(0)
    kernels = [rng.normal(size=(16, 16)).astype(np.float32) for _ in range(3)]
    kernels[0][:, 4:8] *= 0.01  # head 1 is clearly the weakest
    keep = head_keep(kernels, 4, 0.25)
    np.testing.assert_array_equal(keep, [True, False, True, True])
    masks, _ = unit_masks(_unit("attention", "l1_heads", 0.25), dict(zip("qkv", kernels, strict=True)), 4)
    assert np.all(masks["q"][:, 4:8] == 0) and np.all(np.delete(masks["q"], range(4, 8), axis=1) == 1)


def test_structured_neurons_remove_whole_columns_or_input_rows():
    kernel = np.array([[1, 0.1, 2], [1, 0.1, -2]], np.float32)  # column norms 2, 0.2, 4; row norms 3.1, 3.1
    masks, gates = unit_masks(_unit("ffn_intermediate", "l1_neurons", 0.34), {"intermediate": kernel}, 4)
    np.testing.assert_array_equal(gates["neuron_gate"], [1, 0, 1])
    np.testing.assert_array_equal(masks["intermediate"], [[1, 0, 1], [1, 0, 1]])
    masks, gates = unit_masks(_unit("ffn_output", "l1_neurons", 0.5), {"output": kernel}, 4)
    assert gates == {}
    np.testing.assert_array_equal(masks["output"], [[0, 0, 0], [1, 1, 1]])  # a tie: the earlier row goes


@pytest.mark.parametrize("module, sublayers", [("attention_output", ("output",)),
                                               ("ffn_intermediate", ("intermediate",)),
                                               ("ffn_output", ("output",)),
                                               ("attention", ("query", "key", "value"))])
def test_prune_unit_hits_the_exact_rate_with_binary_masks_and_zeroed_kernels(micro_model, module, sublayers):
    block = micro_model.get_layer("block_1")
    arrays = prune_unit(block, _unit(module, "l1", 0.3))
    for name in sublayers:
        mask, kernel = arrays[f"{name}/kernel_mask"], arrays[f"{name}/kernel"]
        assert set(np.unique(mask)) == {0.0, 1.0}
        assert mask.size - np.count_nonzero(mask) == int(round(0.3 * mask.size))
        assert np.all(kernel[mask == 0] == 0)
        dense = {"query": block.attention.query, "key": block.attention.key, "value": block.attention.value,
                 "intermediate": block.ffn.intermediate}.get(name)
        if dense is None:
            dense = block.attention.output_dense if module == "attention_output" else block.ffn.output_dense
        np.testing.assert_array_equal(kernel[mask == 1], dense.kernel.numpy()[mask == 1])
        smallest_kept = np.abs(kernel[mask == 1]).min()
        assert np.abs(dense.kernel.numpy()[mask == 0]).max() <= smallest_kept


def test_prune_unit_removes_whole_heads_by_l1_norm(micro_model):
    block = micro_model.get_layer("block_0")
    arrays = prune_unit(block, _unit("attention", "l1_heads", 0.5))
    width = 16 // 4
    norms = sum(np.abs(getattr(block.attention, name).kernel.numpy()).reshape(16, 4, width).sum(axis=(0, 2))
                for name in ("query", "key", "value"))
    expected = np.ones(4)
    expected[np.argsort(norms)[:2]] = 0
    np.testing.assert_array_equal(arrays["head_gate"], expected)
    columns = np.repeat(expected, width)
    for name in ("query", "key", "value"):
        np.testing.assert_array_equal(arrays[f"{name}/kernel_mask"], np.broadcast_to(columns, (16, 16)))
