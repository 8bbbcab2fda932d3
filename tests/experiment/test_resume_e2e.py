"""train.py --resume: a run killed with SIGKILL (mid-epoch, or during a checkpoint save) and resumed ends with the
same masks, sparsity and results rows as the same run left alone (micro runs on real SST-2 rows)."""

import csv
import json
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import REPO
from experiment import train
from gated import get_weight_masks, structured_masks

pytestmark = pytest.mark.heavy  # minutes of train.py runs: scheduled first (conftest.py)

# 160 rows at batch 32 (9 length buckets: 9 steps per epoch), 4 epochs; pruning over epochs 2-3, then an epoch at
# the end sparsity; dropout on, so that the noise seeds must be restored too.
METHOD_FLAGS = {
    "movement": ["--pruning_method", "movement", "--pruning_start_epoch", "1", "--pruning_end_epoch", "3",
                 "--end_sparsity", "0.8", "--movement_schedule", "linear", "--pruning_frequency_steps", "5"],
    "spt": ["--pruning_method", "spt", "--pruning_start_epoch", "1", "--pruning_end_epoch", "3", "--end_sparsity",
            "0.8", "--sparsity_steps", "30 60"],
    "gumbel": ["--pruning_method", "gumbel", "--learn_masks", "all", "--target_sparsity", "0.5", "--masks_lr",
               "0.2"],
    # SPT over heads and neurons: rewards per unit, probes through the gates.
    "spt_units": ["--pruning_method", "spt", "--pruning_granularity", "both", "--pruning_start_epoch", "1",
                  "--pruning_end_epoch", "3", "--end_sparsity", "0.5", "--sparsity_steps", "30"],
    # Soft movement over weights: scores, their optimizer and the regulariser's warm-up.
    "soft_movement": ["--pruning_method", "soft_movement", "--soft_movement_lambda", "0.3", "--masks_lr", "0.1",
                      "--soft_movement_warmup", "0.5"],
    # Soft movement over heads and neurons to a MAC target: the Lagrange multipliers and their optimizer too, and
    # masks frozen (set to the target) after 2 of the 4 epochs, before the kill.
    "soft_movement_units": ["--pruning_method", "soft_movement", "--pruning_granularity", "both", "--target_sparsity",
                            "0.3", "--masks_lr", "0.1", "--soft_movement_warmup", "0.25", "--soft_movement_freeze",
                            "0.5"],
}
# Runs whose masks are gates (structured) rather than kernel masks.
STRUCTURED = ("gumbel", "spt_units", "soft_movement_units")
# What may differ between a resumed run and the same run left alone: timings only.
TIMING_COLUMNS = ("epoch_seconds", "train_examples_per_second")


def _method(run):
    """The train.py method of a run of `METHOD_FLAGS` (its results folder's name)."""
    return run.removesuffix("_units")


def _argv(out, glue_dir, tokenizer_dir, method):
    return ["--num_layers", "1", "--d_model", "32", "--num_heads", "2", "--dff", "64", "--max_len", "64",
            "--batch_size", "32", "--learning_rate", "1e-3", "--dropout_rate", "0.1", "--verbose", "0",
            "--task", "sst2", "--epochs", "4", "--max_train_samples", "160", "--max_eval_samples", "64",
            "--data_dir", str(glue_dir), "--tokenizer", str(tokenizer_dir), "--output_dir", str(out),
            "--cache_dir", str(out.parent / "cache"), "--seed", "3", *METHOD_FLAGS[method]]


def _outcome(out, method):
    """`(metadata, CSV rows without timings, masks of the last checkpoint)` of the run in `out`."""
    (metadata,) = (out / f"results_{_method(method)}_sst2").glob("metadata_*.json")
    meta = json.loads(metadata.read_text())
    with open(meta["paths"]["csv"]) as handle:
        rows = [{key: value for key, value in row.items() if key not in TIMING_COLUMNS}
                for row in csv.DictReader(handle)]
    model = keras.saving.load_model(meta["paths"]["last_checkpoint"], compile=False)
    masks = structured_masks(model) if method in STRUCTURED else get_weight_masks(model)
    return meta, rows, masks


@pytest.fixture(scope="module")
def left_alone(tmp_path_factory, glue_dir, bert_tokenizer_dir):
    runs = {}
    for method in METHOD_FLAGS:
        out = tmp_path_factory.mktemp(f"alone_{method}") / "out"
        assert train.main(_argv(out, glue_dir, bert_tokenizer_dir, method)) == 0
        runs[method] = _outcome(out, method)
    return runs


# train.py that kills itself (SIGKILL) in the middle of the epoch after `after_epochs` finished ones: at the end
# of that epoch's third step, after the resume state of the finished epochs was written. Deterministic, unlike
# watching the state file from outside, which a loaded machine can make miss the whole rest of a micro run.
KILLED_MID_EPOCH = """
import os, signal, sys
from callbacks.resume_state import ResumeState
after_epochs = int(sys.argv[1])
written = []
def on_epoch_end(self, epoch, logs=None, write=ResumeState.on_epoch_end):
    write(self, epoch, logs)
    written.append(epoch + 1)
def on_train_batch_end(self, batch, logs=None):
    if written and written[-1] >= after_epochs and batch == 2:
        os.kill(os.getpid(), signal.SIGKILL)
ResumeState.on_epoch_end, ResumeState.on_train_batch_end = on_epoch_end, on_train_batch_end
from experiment import train
sys.exit(train.main(sys.argv[2:]))
"""


def _killed_mid_epoch(argv, after_epochs):
    """Run train.py with `argv` until it kills itself during the epoch after `after_epochs` finished ones."""
    job = subprocess.run([sys.executable, "-c", KILLED_MID_EPOCH, str(after_epochs), *argv], cwd=REPO,
                         stdin=subprocess.DEVNULL, capture_output=True, timeout=300)
    assert job.returncode == -signal.SIGKILL, job.stderr.decode()[-3000:]


def _assert_same(resumed, alone, method):
    meta, rows, masks = resumed
    meta_alone, rows_alone, masks_alone = alone
    assert meta["status"] == "completed" and meta["epochs_completed"] == 4 and len(meta["resumed"]) == 1
    assert [row["epoch"] for row in rows] == [str(epoch) for epoch in range(1, 5)]  # no epoch twice, none lost
    assert set(masks) == set(masks_alone)
    for path in masks:
        np.testing.assert_array_equal(masks[path], masks_alone[path], err_msg=path)
    for row, row_alone in zip(rows, rows_alone, strict=True):
        assert row.keys() == row_alone.keys()
        for key in row:  # tolerance: 1e-5 relative (float32 training); in practice they are equal
            assert float(row[key]) == pytest.approx(float(row_alone[key]), rel=1e-5, abs=1e-7), (method, key)
    assert meta["final"]["global_sparsity"] == meta_alone["final"]["global_sparsity"]


# movement: killed during a save, below
@pytest.mark.parametrize("method", ["spt", "gumbel", "spt_units", "soft_movement", "soft_movement_units"])
def test_a_run_killed_mid_epoch_resumes_to_the_same_end(left_alone, tmp_path, glue_dir, bert_tokenizer_dir, method,
                                                        capsys):
    from experiment import compare

    out = tmp_path / "out"
    argv = _argv(out, glue_dir, bert_tokenizer_dir, method)
    _killed_mid_epoch(argv, after_epochs=2)
    # Written at every epoch end, the metadata says running, with the finished epochs; summaries say incomplete.
    (metadata,) = (out / f"results_{_method(method)}_sst2").glob("metadata_*.json")
    killed = json.loads(metadata.read_text())
    assert killed["status"] == "running" and killed["epochs_completed"] == 2
    assert compare.main(["--results_dir", str(out), "--output_dir", str(tmp_path / "figures")]) == 0
    assert f"| {_method(method)} | {killed['timestamp']} | incomplete |" in capsys.readouterr().out
    # Other settings than the run's are refused, naming them.
    assert train.main([*argv, "--learning_rate", "2e-3", "--resume"]) == 1
    assert "learning_rate: 0.001 in the run, 0.002 now" in capsys.readouterr().err
    # The run named by its metadata file, or found as the newest unfinished one.
    assert train.main([*argv, "--resume", *([str(metadata)] if method == "gumbel" else [])]) == 0
    _assert_same(_outcome(out, method), left_alone[method], method)
    assert not list((out / f"checkpoints_{_method(method)}_sst2").glob("resume_*.npz"))  # complete: no state left
    # Nothing is left to resume now.
    assert train.main([*argv, "--resume"]) == 1


# train.py with its checkpoint writer replaced: the third save (epoch 3's) is killed halfway, its temporary
# file written and not yet renamed.
KILLED_DURING_SAVE = """
import os, signal, sys
import callbacks.checkpoints as checkpoints
from gated_bert.files import atomic_path
saves, save = [], checkpoints.save_model_atomic
def killed_on_the_third(model, path):
    saves.append(path)
    if len(saves) == 3:
        with atomic_path(path) as tmp:
            open(tmp, "wb").write(b"half a model")
            os.kill(os.getpid(), signal.SIGKILL)
    save(model, path)
checkpoints.save_model_atomic = killed_on_the_third
from experiment import train
sys.exit(train.main(sys.argv[1:]))
"""


def test_a_run_killed_during_a_checkpoint_save_resumes_to_the_same_end(left_alone, tmp_path, glue_dir,
                                                                       bert_tokenizer_dir):
    out, method = tmp_path / "out", "movement"
    argv = _argv(out, glue_dir, bert_tokenizer_dir, method)
    job = subprocess.run([sys.executable, "-c", KILLED_DURING_SAVE, *argv], cwd=REPO, stdin=subprocess.DEVNULL,
                         capture_output=True, timeout=300)
    assert job.returncode == -signal.SIGKILL
    checkpoints = out / f"checkpoints_{method}_sst2"
    assert len(list(checkpoints.glob(".partial-*"))) == 1  # the half-written save
    (csv_path,) = (out / f"results_{method}_sst2").glob("results_*.csv")
    assert len(csv_path.read_text().splitlines()) == 1 + 3  # epoch 3's row was written before its save
    assert train.main([*argv, "--resume"]) == 0
    _assert_same(_outcome(out, method), left_alone[method], method)  # epoch 3 once, as the run left alone had it
    assert not list(out.rglob(".partial-*"))
