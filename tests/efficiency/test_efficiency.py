"""MAC counts, the latency model fitted to LUTs, and generate_lut's files."""

import json

import numpy as np
import pytest

from efficiency import count_macs, head_macs, neuron_macs, unit_macs
from efficiency.latency import LatencyModel, LutError, fit_lut, read_lut, write_lut

SHAPE = {"d_model": 8, "num_heads": 2, "head_dim": 4, "dff": 6}


def test_mac_counts_equal_a_hand_count():
    # d_model 8, head width 4, 3 tokens. One head: q, k, v, o are each 3 x 8 x 4 = 96 MACs; q k^T and probs v
    # are each 3 x 3 x 4 = 36. One neuron: 3 x 8 in, 3 x 8 out.
    assert head_macs(8, 4, 3) == 4 * 96 + 2 * 36 == 456
    assert neuron_macs(8, 3) == 48
    assert unit_macs(d_model=8, head_dim=4, seq_len=3) == {"head": 456, "neuron": 48}
    heads = np.array([[1, 1], [1, 0]])
    neurons = np.array([[1, 1, 1, 0, 0, 0], [0.5, 0, 0, 0, 0, 2.0]])  # real-valued gates count as kept
    assert count_macs(heads, neurons, d_model=8, head_dim=4, seq_len=3) == {
        "head": 3 * 456, "neuron": 5 * 48, "total": 3 * 456 + 5 * 48}


def test_removing_all_heads_of_a_layer_removes_exactly_its_attention_macs():
    shape = {"d_model": 256, "head_dim": 64, "seq_len": 128}
    dense = count_macs(np.ones((2, 4)), np.ones((2, 512)), **shape)
    heads = np.ones((2, 4))
    heads[1] = 0
    pruned = count_macs(heads, np.ones((2, 512)), **shape)
    # One layer's attention: 4 projections of 128 x 256 x 256, plus scores and context of 128 x 128 x 256.
    layer_attention = 4 * 128 * 256 * 256 + 2 * 128 * 128 * 256
    assert dense["head"] - pruned["head"] == layer_attention == dense["head"] // 2
    assert dense["neuron"] == pruned["neuron"] == 2 * 2 * 128 * 256 * 512


def test_fit_recovers_a_linear_lut_and_skipped_sublayers_cost_nothing():
    counts = np.arange(0, 9)
    latency = np.where(counts > 0, 1.5 + 0.25 * counts, 0.0)
    assert fit_lut(counts, latency) == pytest.approx((1.5, 0.25))
    model = LatencyModel((1.5, 0.25), (0.5, 0.01))
    assert model.sublayer("head", [0, 2]).tolist() == [0.0, 2.0]
    assert model.get_config() == {"head": [1.5, 0.25], "neuron": [0.5, 0.01]}
    heads, neurons = np.array([[1, 1], [0, 0]]), np.array([[1] * 6, [1, 0, 0, 0, 0, 0]])
    assert model.estimate(heads, neurons) == pytest.approx(2.0 + 0.56 + 0.51)
    # A decreasing fit is clipped: the estimate never falls as units are added.
    assert fit_lut([1, 2, 3], [3.0, 2.0, 1.0])[1] == 0.0


def test_luts_round_trip_and_reject_another_shape_or_kind(tmp_path):
    path = write_lut(tmp_path, "head", [0, 1, 2], [0.0, 1.0, 1.5], SHAPE, 4, 16, "CPU")
    assert path == str(tmp_path / "head_lut.json")
    assert read_lut(path, "head", SHAPE)["latency_ms"] == [0.0, 1.0, 1.5]
    with pytest.raises(LutError, match="another shape .*dff: LUT 6, model 12"):
        read_lut(path, "head", {**SHAPE, "dff": 12})
    with pytest.raises(LutError, match="is not a neuron LUT"):
        read_lut(path, "neuron")
    with pytest.raises(LutError, match="LUT not found"):
        read_lut(tmp_path / "missing.json", "head")
    (tmp_path / "short.json").write_text(json.dumps({"kind": "neuron", "counts": [0], "latency_ms": [0.0]}))
    with pytest.raises(LutError, match="2 or more entries"):
        read_lut(tmp_path / "short.json", "neuron")


def test_luts_written_before_the_unit_kinds_were_unified_still_read(tmp_path):
    for old, kind in (("mha", "head"), ("ffn", "neuron")):
        path = tmp_path / f"{old}_lut.json"
        path.write_text(json.dumps({"kind": old, "shape": SHAPE, "counts": [0, 1, 2], "latency_ms": [0.0, 1.0, 1.5]}))
        assert read_lut(path, kind, SHAPE)["kind"] == kind
        with pytest.raises(LutError, match=f"is not a {'neuron' if kind == 'head' else 'head'} LUT"):
            read_lut(path, "neuron" if kind == "head" else "head")


def test_generate_lut_times_every_head_count_and_a_neuron_grid(tmp_path):
    from efficiency import generate_lut

    # --bs and --seq_len: the earlier names of --batch_size and --max_len, still accepted.
    assert generate_lut.main(["--d_model", "8", "--num_heads", "2", "--dff", "6", "--bs", "2", "--seq_len", "4",
                              "--ffn_points", "3", "--repeats", "1", "--output_dir", str(tmp_path)]) == 0
    mha = read_lut(tmp_path / "head_lut.json", "head", SHAPE)
    ffn = read_lut(tmp_path / "neuron_lut.json", "neuron", SHAPE)
    assert mha["counts"] == [0, 1, 2] and ffn["counts"] == [0, 2, 4, 6]
    assert mha["latency_ms"][0] == 0 and all(t > 0 for t in mha["latency_ms"][1:] + ffn["latency_ms"][1:])
    assert mha["batch_size"] == 2 and mha["seq_len"] == 4 and mha["device"].startswith(("CPU", "GPU"))
