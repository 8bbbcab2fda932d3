"""export_model on a micro encoder pruned unevenly: every format reproduces the masked model, checks stop bad
exports before anything is written, the card counts what is really there."""

import json
import os

import keras
import numpy as np
import pytest

import deploy.export
from conftest import MICRO, compact_parameter_count, micro_sample_batches
from deploy import FORMATS, DevRows, ExportError, export_model, load_runner, onnx_available, predict
from deploy.formats import FILES
from gated import (
    add_logit_bias,
    get_head_gates,
    get_neuron_gates,
    get_weight_masks,
    set_head_gates,
    set_neuron_gates,
    set_weight_masks,
)
from tasks import TASKS

HEADS = [[0.0, 1.3, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]  # block 1 keeps no head (block 0 no neuron, below)
SHIFT = np.array([0.3, -0.2], "float32")


@pytest.fixture
def pruned(micro_model):
    """The micro encoder with real-valued head gates, block 0's FFN cut to no neuron, block 1's to 11 (and no
    head, above), and 30% of every kernel masked."""
    rng = np.random.default_rng(5)
    neurons = np.zeros((2, MICRO["dff"]), "float32")
    neurons[1, rng.choice(MICRO["dff"], 11, replace=False)] = rng.uniform(0.5, 1.5, 11)
    set_head_gates(micro_model, dict(zip(get_head_gates(micro_model), np.asarray(HEADS, "float32"), strict=True)))
    set_neuron_gates(micro_model, dict(zip(get_neuron_gates(micro_model), neurons, strict=True)))
    set_weight_masks(micro_model, {path: (rng.random(mask.shape) < 0.7).astype("float32")
                                   for path, mask in get_weight_masks(micro_model).items()})
    return micro_model


def _dev(seed=0):
    return DevRows(micro_sample_batches(seed, count=4, size=8), TASKS["sst2"])


def test_every_format_computes_the_masked_model_and_the_card_counts_it(pruned, tmp_path):
    folder = tmp_path / "export"
    (unseen, _), = micro_sample_batches(99, count=1, size=5)  # rows the export never checked
    reference = np.asarray(pruned(unseen)) + SHIFT  # the shift must reach every format
    add_logit_bias(pruned, SHIFT)  # a mask folder's bias correction, as export.py puts it on
    card = export_model(pruned, str(folder), _dev(), latency_runs=1, about={"method": "test"})
    expected = [fmt for fmt in FORMATS if fmt != "onnx" or onnx_available()]
    if os.environ.get("CI") == "true":
        assert onnx_available(), "CI installs the dev extra, which brings tf2onnx and onnxruntime"
    assert list(card["formats"]) == expected
    assert sorted(p.name for p in folder.iterdir()) == sorted(["README.md", "card.json", *(FILES[f] for f in expected)])
    assert json.loads((folder / "card.json").read_text()) == json.loads(json.dumps(card))
    for fmt in expected:
        outputs = load_runner(fmt, str(folder / FILES[fmt]))(unseen)
        tolerance = 5e-2 if fmt == "tflite_int8" else 1e-4
        np.testing.assert_allclose(outputs, reference, atol=tolerance, err_msg=fmt)
        assert card["formats"][fmt]["latency_ms"]["batch_32"] > 0
    assert 0.99 <= card["formats"]["tflite_int8"]["agreement"] <= 1.0
    compact = keras.saving.load_model(folder / "model.keras", compile=False)
    assert not [v.path for v in compact.weights if "gate" in v.path or "mask" in v.path]
    assert compact.count_params() == card["parameters"] == compact_parameter_count([2, 0], [0, 11])
    assert card["shape"]["heads_per_layer"] == [2, 0] and card["shape"]["ffn_width_per_layer"] == [0, 11]
    assert card["task"] == "sst2" and card["text_pairs"] is False
    assert card["dense_parameters"] == compact_parameter_count([4, 4], [MICRO["dff"]] * 2)
    sparsity = card["weight_sparsity"]
    assert 0.2 < sparsity["fraction"] < 0.4 and "run no faster" in sparsity["note"]
    dh = MICRO["d_model"] // MICRO["num_heads"]
    head, neuron = 4 * 16 * MICRO["d_model"] * dh + 2 * 16 * 16 * dh, 2 * 16 * MICRO["d_model"]  # at 16 tokens
    assert card["macs"]["seq_len"] == 16  # the micro position table's length, not 128
    assert card["macs"]["total"] == 2 * head + 11 * neuron
    assert card["macs"]["dense"] == 8 * head + 2 * MICRO["dff"] * neuron
    assert "| tflite_int8 | `model_int8.tflite` |" in (folder / "README.md").read_text()


def test_a_failed_parity_check_leaves_no_folder(pruned, tmp_path, monkeypatch):
    def drifting(fmt, path, threads=None):
        runner = load_runner(fmt, path, threads)
        return (lambda batch: runner(batch) + 1e-3) if fmt == "tflite" else runner

    monkeypatch.setattr(deploy.export, "load_runner", drifting)
    with pytest.raises(ExportError, match=r"tflite: its logits differ from the gated model's by up to 0\.001"):
        export_model(pruned, str(tmp_path / "export"), _dev(), formats=("keras", "tflite"), latency_runs=0)
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its staging copy


def test_a_pair_task_export_refuses_single_texts_and_a_single_text_one_refuses_pairs(pruned, tmp_path):
    pairs = export_model(pruned, str(tmp_path / "mrpc"), DevRows(micro_sample_batches(0, count=2, size=8),
                                                                 TASKS["mrpc"]), formats=("keras",), latency_runs=0)
    assert pairs["task"] == "mrpc" and pairs["text_pairs"] is True
    with pytest.raises(ValueError, match=r"mrpc reads text pairs \(task mrpc\); give each text its pair"):
        predict(str(tmp_path / "mrpc"), ["a sentence without its pair"])
    export_model(pruned, str(tmp_path / "sst2"), _dev(), formats=("keras",), latency_runs=0)
    with pytest.raises(ValueError, match=r"sst2 reads single texts \(task sst2\); give no pairs"):
        predict(str(tmp_path / "sst2"), ["a review"], ["a pair it does not read"])


def test_an_existing_folder_is_refused_unless_overwrite_and_formats_are_checked(pruned, tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "old.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="exists; choose another --output_dir or pass --overwrite"):
        export_model(pruned, str(folder), _dev(), formats=("keras",), latency_runs=0)
    assert (folder / "old.txt").read_text() == "keep me"
    card = export_model(pruned, str(folder), _dev(), formats=("tflite",), latency_runs=0, overwrite=True)
    assert list(card["formats"]) == ["saved_model", "tflite"]  # the converter's input comes along
    assert not (folder / "old.txt").exists()
    with pytest.raises(ValueError, match="unknown format tflite8; formats: keras, saved_model"):
        export_model(pruned, str(tmp_path / "other"), _dev(), formats=("tflite8",))


def test_an_int8_model_below_the_agreement_is_refused_unless_the_check_is_lowered(pruned, tmp_path, monkeypatch):
    def swapping(fmt, path, threads=None):  # "int8": the float SavedModel with every fourth row's logits swapped
        if fmt != "tflite_int8":
            return load_runner(fmt, path, threads)
        runner = load_runner("saved_model", os.path.join(os.path.dirname(path), FILES["saved_model"]))

        def run(batch):
            logits = np.array(runner(batch))
            logits[::4] = logits[::4, ::-1]
            return logits

        return run

    monkeypatch.setattr(deploy.export, "load_runner", swapping)
    formats = ("tflite_int8",)
    with pytest.raises(ExportError, match=r"tflite_int8: share of predictions equal to the gated model's is 0\.7500 "
                                          r"on the dev rows, below 0\.99; .* or accept less with --int8_agreement"):
        export_model(pruned, str(tmp_path / "strict"), _dev(), formats=formats, latency_runs=0)
    assert not (tmp_path / "strict").exists()
    card = export_model(pruned, str(tmp_path / "lenient"), _dev(), formats=formats, latency_runs=0,
                        int8_agreement=0.7)
    assert card["formats"]["tflite_int8"]["agreement"] == 0.75
    assert card["formats"]["tflite_int8"]["agreement_required"] == 0.7


def test_a_mean_pooling_head_exports_to_keras_tflite_and_onnx(tmp_path):
    """The head that reads the mean of the real tokens' states (`pooling="mean"`) survives conversion: padded rows
    give the gated model's logits in TFLite and ONNX too."""
    from gated import build_gated_encoder

    keras.utils.set_random_seed(0)
    model = build_gated_encoder(**MICRO, num_labels=2, pooling="mean", pooler=None)
    set_head_gates(model, dict(zip(get_head_gates(model), np.asarray(HEADS, "float32"), strict=True)))
    formats = ["keras", "tflite", *(["onnx"] if onnx_available() else [])]
    export_model(model, str(tmp_path / "export"), _dev(), formats=formats, latency_runs=0, int8_agreement=0)
    (unseen, _), = micro_sample_batches(98, count=1, size=5)  # rows 0 and 1 padded
    for fmt in formats:
        outputs = load_runner(fmt, str(tmp_path / "export" / FILES[fmt]))(unseen)
        np.testing.assert_allclose(outputs, np.asarray(model(unseen)), atol=1e-4, err_msg=fmt)
