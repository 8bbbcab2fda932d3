"""Faults that must never lose or fake a result (micro runs on real SST-2 rows): a diverging run, a checkpoint that
diverged or was cut short, a rerun into an earlier result, masks put on another checkpoint."""

import csv
import json
import shutil

import keras
import numpy as np
import pytest

from conftest import train_micro_sst2
from experiment import evaluate, prune, train
from experiment.checkpoints import find_checkpoint
from gated import non_finite_weights

pytestmark = pytest.mark.heavy  # minutes of train.py runs: scheduled first (conftest.py)

PRUNE_FLAGS = ["--num_samples", "32", "--sample_batch_size", "16", "--max_eval_samples", "60", "--verbose", "0"]


def strict_json(path):
    """The JSON in `path`, parsed as standard JSON (NaN or Infinity, which Python accepts by default, fail)."""
    def refuse(name):
        raise ValueError(f"{path}: {name} is not JSON")
    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, glue_dir, bert_tokenizer_dir):
    """Two micro checkpoints of the same shape, trained with different seeds."""
    return [train_micro_sst2(tmp_path_factory.mktemp(f"ckpt{seed}"), glue_dir, bert_tokenizer_dir, 200, 60,
                             "--seed", str(seed)) / "checkpoints_baseline_sst2" for seed in (0, 1)]


@pytest.fixture
def env(glue_dir, bert_tokenizer_dir):
    return {"GLUE_DIR": str(glue_dir), "TOKENIZER": str(bert_tokenizer_dir)}


def test_a_diverging_run_fails_and_keeps_no_nan_checkpoint(tmp_path, glue_dir, bert_tokenizer_dir, capsys):
    # The learning rate of the reported defect: epoch 1 ends with finite (huge) weights, epoch 2's loss turns NaN.
    argv = ["--num_layers", "1", "--d_model", "32", "--num_heads", "2", "--dff", "64", "--max_len", "64",
            "--batch_size", "32", "--verbose", "0", "--task", "sst2", "--max_train_samples", "300",
            "--max_eval_samples", "30", "--epochs", "3", "--learning_rate", "1e3", "--seed", "1",
            "--data_dir", str(glue_dir), "--tokenizer", str(bert_tokenizer_dir), "--output_dir", str(tmp_path / "out"),
            "--cache_dir", str(tmp_path / "cache")]
    assert train.main(argv) == 1
    error = capsys.readouterr().err
    assert "training diverged: the training loss is nan at epoch 2, step" in error
    assert "lower --learning_rate (now 1000" in error
    (metadata,) = (tmp_path / "out").glob("results_baseline_sst2/metadata_*.json")
    meta = strict_json(metadata)
    assert meta["status"] == "failed" and meta["error"].startswith("NonFiniteError: training diverged")
    assert meta["epochs_completed"] == 1
    (results,) = (tmp_path / "out").glob("results_baseline_sst2/results_*.csv")
    with open(results) as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["1"]
    saved = sorted((tmp_path / "out" / "checkpoints_baseline_sst2").glob("*.keras"))
    assert [path.name.split("_")[0] for path in saved] == ["best", "last"]  # epoch 1's, never a later one
    for path in saved:
        assert non_finite_weights(keras.saving.load_model(path, compile=False)) == []


def _ruin(checkpoint, how):
    """Replace the checkpoint's best model by one with a NaN weight, or by its first half."""
    path, _ = find_checkpoint(str(checkpoint))
    if how == "nan":
        model = keras.saving.load_model(path, compile=False)
        kernel = model.weights[3]
        kernel.assign(np.full(kernel.shape, np.nan, "float32"))
        model.save(path)
    else:
        data = open(path, "rb").read()
        open(path, "wb").write(data[:len(data) // 2])
    return path


@pytest.mark.parametrize("how, message", [("nan", "holds NaN or infinite weights"),
                                          ("truncated", "is not a Keras archive or is truncated")])
def test_prune_and_evaluate_refuse_a_broken_checkpoint(checkpoints, tmp_path, env, how, message, capsys):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(checkpoints[0], ckpt)
    _ruin(ckpt, how)
    assert evaluate.main(["--ckpt_dir", str(ckpt), "--max_eval_samples", "30", "--verbose", "0"], env) == 2
    assert message in capsys.readouterr().err
    assert prune.main(["--ckpt_dir", str(ckpt), "--output_dir", str(tmp_path / "out"), "--constraint", "0.5",
                       *PRUNE_FLAGS], env) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.npy"))
    # The other checkpoint of the run is untouched and still loads.
    assert evaluate.main(["--ckpt_dir", str(ckpt), "--checkpoint", "last", "--max_eval_samples", "30",
                          "--verbose", "0"], env) == 0


def test_prune_refuses_to_replace_an_earlier_result_without_overwrite(checkpoints, tmp_path, env, capsys):
    run = ["--ckpt_dir", str(checkpoints[0]), "--output_dir", str(tmp_path), "--constraint", "0.5", *PRUNE_FLAGS]
    assert prune.main(run, env) == 0
    (folder,) = tmp_path.glob("*/sst2/mac/0.5/seed_0")
    first = (folder / "metrics.json").read_bytes()
    # Another sample size into the same folder: refused, the first result kept byte for byte.
    assert prune.main([*run, "--num_samples", "16"], env) == 2
    error = capsys.readouterr().err
    assert str(folder) in error and "--overwrite" in error
    assert (folder / "metrics.json").read_bytes() == first
    assert prune.main([*run, "--num_samples", "16", "--overwrite"], env) == 0
    assert strict_json(folder / "metrics.json")["args"]["num_samples"] == 16


def test_masks_record_their_checkpoint_and_another_checkpoint_refuses_them(checkpoints, tmp_path, env, capsys):
    import hashlib

    assert prune.main(["--ckpt_dir", str(checkpoints[0]), "--output_dir", str(tmp_path), "--constraint", "0.5",
                       *PRUNE_FLAGS], env) == 0
    (folder,) = tmp_path.glob("*/sst2/mac/0.5/seed_0")
    model_path, _ = find_checkpoint(str(checkpoints[0]))
    digest = hashlib.sha256(open(model_path, "rb").read()).hexdigest()  # the checkpoint file's own bytes
    assert strict_json(folder / "metrics.json")["weights_sha256"] == digest
    assert strict_json(folder / "masks.json")["source"]["checkpoints"][0]["weights_sha256"] == digest

    scored = ["--masks_dir", str(folder), "--max_eval_samples", "30", "--verbose", "0"]
    assert evaluate.main(["--ckpt_dir", str(checkpoints[0]), *scored], env) == 0
    assert json.loads(capsys.readouterr().out)["weights_sha256"] == digest
    # Same shape, other weights: the masks are refused, and --force (named in the message) overrides.
    assert evaluate.main(["--ckpt_dir", str(checkpoints[1]), *scored], env) == 2
    error = capsys.readouterr().err
    assert f"were made from {model_path}" in error and "--force" in error
    assert evaluate.main(["--ckpt_dir", str(checkpoints[1]), *scored, "--force"], env) == 0
    from experiment import export

    target = tmp_path / "export"
    assert export.main(["--ckpt_dir", str(checkpoints[1]), "--masks_dir", str(folder), "--output_dir", str(target),
                        "--verbose", "0"], env) == 2
    assert "--force" in capsys.readouterr().err and not target.exists()


def _micro_train_argv(out, glue_dir, tokenizer_dir, *flags):
    return ["--num_layers", "1", "--d_model", "32", "--num_heads", "2", "--dff", "64", "--max_len", "64",
            "--batch_size", "32", "--verbose", "0", "--task", "sst2", "--max_train_samples", "160",
            "--max_eval_samples", "30", "--data_dir", str(glue_dir), "--tokenizer", str(tokenizer_dir),
            "--output_dir", str(out), "--cache_dir", str(out.parent / "cache"), *flags]


def test_a_run_failing_before_its_first_checkpoint_leaves_no_empty_folder_and_says_failed_in_its_progress_file(
        tmp_path, glue_dir, bert_tokenizer_dir):
    out, progress = tmp_path / "out", tmp_path / "progress"
    assert train.main(_micro_train_argv(out, glue_dir, bert_tokenizer_dir, "--epochs", "2", "--learning_rate",
                                        "1e30", "--progress_file", str(progress))) == 1
    assert progress.read_text().split()[-1] == "failed"
    assert not (out / "checkpoints_baseline_sst2").exists()  # no checkpoint saved: no folder, no orphan config
    (metadata,) = (out / "results_baseline_sst2").glob("metadata_*.json")
    assert strict_json(metadata)["status"] == "failed" and strict_json(metadata)["epochs_completed"] == 0
