"""Mask folders: the one on-disk format of structured masks, and the folders written before it."""

import json

import numpy as np
import pytest

from gated_bert.mask_folders import MaskFolderError, read_mask_folder, write_mask_folder


def test_masks_round_trip_with_their_description(tmp_path):
    heads = np.array([[1, 0, 1, 1], [0, 1, 1, 0]], np.float32)
    neurons = np.array([[0.0, 1.25, 0.5], [1.0, 0.0, 1.0]])  # rescaled: real-valued
    written = write_mask_folder(tmp_path / "m", {"neuron": neurons, "head": heads}, {"written_by": "test"})
    assert written == ["head_mask.npy", "neuron_mask.npy", "masks.json"]  # kinds in vocabulary order, JSON last
    described = json.loads((tmp_path / "m" / "masks.json").read_text())
    assert described["kinds"] == {"head": {"file": "head_mask.npy", "shape": [2, 4], "binary": True},
                                  "neuron": {"file": "neuron_mask.npy", "shape": [2, 3], "binary": False}}
    folder = read_mask_folder(tmp_path / "m")
    np.testing.assert_array_equal(folder.masks["head"], heads)
    np.testing.assert_array_equal(folder.masks["neuron"], neurons.astype(np.float32))
    assert folder.masks["neuron"].dtype == np.float32 and folder.logits == {}
    assert folder.source == {"written_by": "test"} and folder.logit_bias is None


def test_a_logit_bias_goes_with_the_masks(tmp_path):
    write_mask_folder(tmp_path, {"head": np.ones((2, 4))}, {}, logit_bias=np.array([0.25, -0.25], np.float32))
    assert json.loads((tmp_path / "masks.json").read_text())["logit_bias"] == [0.25, -0.25]
    folder = read_mask_folder(tmp_path)
    assert folder.logit_bias.dtype == np.float32
    np.testing.assert_array_equal(folder.logit_bias, [0.25, -0.25])
    for bad in ([], ["0.1"], 0.5, [True, 0.1]):
        described = json.loads((tmp_path / "masks.json").read_text())
        (tmp_path / "masks.json").write_text(json.dumps({**described, "logit_bias": bad}))
        with pytest.raises(MaskFolderError, match=r"logit_bias must be a list of numbers, one per label, got"):
            read_mask_folder(tmp_path)


def test_logits_and_the_earlier_kind_name(tmp_path):
    logits = np.array([[0.5, -1.0]], np.float32)
    write_mask_folder(tmp_path, {"ffn_int": (logits > 0).astype(np.float32)}, {}, logits={"ffn_int": logits})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["masks.json", "neuron_logits.npy", "neuron_mask.npy"]
    folder = read_mask_folder(tmp_path)
    np.testing.assert_array_equal(folder.logits["neuron"], logits)
    np.testing.assert_array_equal(folder.masks["neuron"], [[1.0, 0.0]])


def test_a_prune_folder_from_before_masks_json_still_loads(tmp_path):
    np.save(tmp_path / "head_mask.npy", np.array([[1, 0]], np.float32))
    np.save(tmp_path / "neuron_mask.npy", np.array([[0.5, 0, 2]], np.float32))
    folder = read_mask_folder(tmp_path)
    assert sorted(folder.masks) == ["head", "neuron"]
    np.testing.assert_array_equal(folder.masks["neuron"], [[0.5, 0, 2]])


def test_a_gumbel_folder_from_before_masks_json_still_loads(tmp_path):
    for index, stem in enumerate(("head", "ffn_intermediate", "ffn_output")):
        np.save(tmp_path / f"{stem}_mask.npy", np.full((2, 3), index % 2, np.float32))
        np.save(tmp_path / f"{stem}_logits.npy", np.full((2, 3), float(index), np.float32))
    folder = read_mask_folder(tmp_path)
    assert list(folder.masks) == ["head", "neuron", "ffn_out"] and list(folder.logits) == list(folder.masks)
    np.testing.assert_array_equal(folder.masks["neuron"], np.ones((2, 3)))
    np.testing.assert_array_equal(folder.logits["ffn_out"], np.full((2, 3), 2.0))


def test_bad_folders_are_named(tmp_path):
    with pytest.raises(MaskFolderError, match="mask folder not found"):
        read_mask_folder(tmp_path / "missing")
    with pytest.raises(MaskFolderError, match="holds no masks .*masks.json, head_mask.npy, neuron_mask.npy.*; pass "
                                              "a folder that prune.py or a gumbel run"):
        read_mask_folder(tmp_path)
    # A folder above mask folders (prune.py's output folder, or a constraint's): the message names them.
    seeds = [tmp_path / "out" / "L1" / "sst2" / "mac" / "0.5" / f"seed_{seed}" for seed in range(7)]
    for seed in seeds:
        write_mask_folder(seed, {"head": np.ones((2, 4))}, {})
    with pytest.raises(MaskFolderError) as raised:
        read_mask_folder(tmp_path / "out" / "L1" / "sst2" / "mac" / "0.5")
    assert str(raised.value).endswith(f"mask folders inside it: {', '.join(str(seed) for seed in seeds[:5])} and 2 "
                                      "more (pass one)")
    with pytest.raises(MaskFolderError, match=f"mask folders inside it: {seeds[0]}, "):
        read_mask_folder(tmp_path / "out")  # five levels up
    (tmp_path / "masks.json").write_text(json.dumps({"format": "something else", "kinds": {}}))
    with pytest.raises(MaskFolderError, match="is not a mask folder description"):
        read_mask_folder(tmp_path)
    write_mask_folder(tmp_path, {"head": np.ones((2, 4))}, {})
    np.save(tmp_path / "head_mask.npy", np.ones((2, 3), np.float32))  # replaced behind the description's back
    with pytest.raises(MaskFolderError, match=r"head_mask.npy has shape \(2, 3\), but masks.json says \(2, 4\)"):
        read_mask_folder(tmp_path)
    with pytest.raises(ValueError, match=r"\[layers, units\] per kind, got shape \(4,\)"):
        write_mask_folder(tmp_path / "other", {"head": np.ones(4)}, {})
