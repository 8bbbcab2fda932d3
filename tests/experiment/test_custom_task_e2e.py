"""A task from your own files (CSV classification, JSON-lines regression) through train.py, prune.py,
evaluate.py and run_experiments.sh."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from experiment import evaluate, prune, train
from experiment.config import GatedBertConfig

MICRO = ["--num_layers", "1", "--d_model", "16", "--num_heads", "2", "--dff", "32", "--max_len", "16",
         "--batch_size", "8", "--learning_rate", "1e-3", "--verbose", "0", "--epochs", "2"]
POSITIVE = ["the movie was great", "a good film", "it is great", "the film is good"]
NEGATIVE = ["the movie was bad", "a bad film", "it is not good", "not a good movie"]


def _classification_files(folder):
    rng = np.random.default_rng(0)
    lines = {"train": [], "dev": []}
    for split, count in (("train", 40), ("dev", 16)):
        for index in range(count):
            positive = (index % 2 == 0)  # the first row is "pos": first-seen order is not the class-id order
            text = rng.choice(POSITIVE if positive else NEGATIVE)
            lines[split].append(f'"{text}, ""quoted""",{"pos" if positive else "neg"}')
    paths = []
    for split in ("train", "dev"):
        path = folder / f"{split}.csv"
        path.write_text("review,sentiment\n" + "\n".join(lines[split]) + "\n")
        paths.append(str(path))
    return paths


def _regression_files(folder):
    rng = np.random.default_rng(1)
    paths = []
    for split, count in (("train", 40), ("dev", 16)):
        path = folder / f"{split}.jsonl"
        rows = [{"a": str(rng.choice(POSITIVE)), "b": str(rng.choice(NEGATIVE)), "score": float(rng.uniform(0, 5))}
                for _ in range(count)]
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        paths.append(str(path))
    return paths


def _train(tmp_path, tokenizer, *flags):
    out = tmp_path / "out"
    argv = [*MICRO, "--tokenizer", str(tokenizer), "--output_dir", str(out), "--cache_dir", str(tmp_path / "cache"),
            *flags]
    assert train.main(argv) == 0
    (path,) = out.glob("results_*_custom/metadata_*.json")
    return out, json.loads(path.read_text())


def test_a_csv_classification_task_trains_prunes_and_scores(tmp_path, wordpiece_dir, capsys):
    train_file, dev_file = _classification_files(tmp_path)
    out, meta = _train(tmp_path, wordpiece_dir, "--train_file", train_file, "--validation_file", dev_file,
                       "--text_column", "review", "--label_column", "sentiment")
    assert meta["task"] == "custom" and meta["config"]["label_names"] == ["neg", "pos"]
    assert meta["data"]["train_rows"] == 40 and set(meta["final"]) >= {"dev_accuracy", "dev_f1"}
    ckpt = out / "checkpoints_baseline_custom"
    (config_path,) = ckpt.glob("config_*.json")
    assert GatedBertConfig.load(config_path).task_spec().label_names == ("neg", "pos")
    env = {}
    assert prune.main(["--ckpt_dir", str(ckpt), "--constraint", "0.5", "--num_samples", "16", "--sample_batch_size",
                       "8", "--output_dir", str(tmp_path / "pruned"), "--verbose", "0"], env) == 0
    (metrics_path,) = (tmp_path / "pruned").glob("**/metrics.json")
    metrics = json.loads(metrics_path.read_text())
    assert metrics["task"] == "custom"
    capsys.readouterr()
    assert evaluate.main(["--ckpt_dir", str(ckpt), "--masks_dir", str(metrics_path.parent), "--verbose", "0"],
                         env) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["dev_rows"] == 16 and scored["dev_accuracy"] == metrics["dev"][metrics["final"]]["dev_accuracy"]
    # The dense model scored by evaluate.py equals the run's own final dev accuracy: the same label ids.
    assert evaluate.main(["--ckpt_dir", str(ckpt), "--checkpoint", "last", "--verbose", "0"], env) == 0
    assert json.loads(capsys.readouterr().out)["dev_accuracy"] == pytest.approx(meta["final"]["dev_accuracy"])


def test_a_json_lines_regression_task_of_pairs(tmp_path, wordpiece_dir, capsys):
    train_file, dev_file = _regression_files(tmp_path)
    out, meta = _train(tmp_path, wordpiece_dir, "--train_file", train_file, "--validation_file", dev_file,
                       "--text_column", "a", "--text_pair_column", "b", "--label_column", "score")
    assert meta["config"]["label_names"] is None and meta["primary_metric"] == "dev_pearson"
    ckpt = out / "checkpoints_baseline_custom"
    assert evaluate.main(["--ckpt_dir", str(ckpt), "--checkpoint", "last", "--verbose", "0"], {}) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["dev_pearson"] == pytest.approx(meta["final"]["dev_pearson"])
    # prune.py on it: the regression head's bias correction is fitted by least squares (the mean difference).
    assert prune.main(["--ckpt_dir", str(ckpt), "--constraint", "0.5", "--num_samples", "16", "--sample_batch_size",
                       "8", "--output_dir", str(tmp_path / "pruned"), "--verbose", "0"], {}) == 0
    (metrics_path,) = (tmp_path / "pruned").glob("**/metrics.json")
    metrics = json.loads(metrics_path.read_text())
    correction = metrics["bias_correction"]
    assert metrics["final"] == "bias_correction" and len(correction["logit_bias"]) == 1
    assert correction["mse_after"] <= correction["mse_before"]
    assert evaluate.main(["--ckpt_dir", str(ckpt), "--masks_dir", str(metrics_path.parent), "--verbose", "0"],
                         {}) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["dev_pearson"] == pytest.approx(metrics["dev"]["bias_correction"]["dev_pearson"], abs=1e-6)


def test_custom_task_errors_are_clear(tmp_path, wordpiece_dir, capsys):
    train_file, dev_file = _classification_files(tmp_path)
    assert train.main(["--train_file", train_file, "--validation_file", dev_file, "--dry_run"]) == 2
    assert "train.csv:2: no column ['text', 'label'] (columns here: ['review', 'sentiment'])" in \
        capsys.readouterr().err
    assert train.main(["--train_file", train_file, "--task", "sst2", "--dry_run"]) == 2
    assert "drop --task" in capsys.readouterr().err
    assert train.main(["--task", "custom", "--dry_run"]) == 2
    assert "add --train_file and --validation_file" in capsys.readouterr().err
    assert train.main(["--train_file", train_file, "--validation_file", str(tmp_path / "nope.csv"),
                       "--dry_run"]) == 2
    assert "validation_file" in capsys.readouterr().err


def test_run_experiments_takes_a_custom_task(tmp_path, wordpiece_dir):
    train_file, dev_file = _classification_files(tmp_path)
    os.chdir(tmp_path)  # relative paths after -- are made absolute for the jobs
    environment = {**os.environ, "PYTHON": sys.executable, "CACHE_DIR": str(tmp_path / "cache")}
    result = subprocess.run(
        ["bash", str(REPO / "run_experiments.sh"), "-p", "baseline", "-e", "1", "-d", "out", "--", *MICRO[:-2],
         "--tokenizer", str(wordpiece_dir), "--train_file", "train.csv", "--validation_file", "dev.csv",
         "--text_column", "review", "--label_column", "sentiment"],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, env=environment, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    (metadata,) = (tmp_path / "out" / "results_baseline_custom").glob("metadata_*.json")
    meta = json.loads(metadata.read_text())
    assert meta["status"] == "completed" and meta["config"]["train_file"] == train_file
