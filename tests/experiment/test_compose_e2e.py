"""compose.py end to end on a micro checkpoint trained on real SST-2 rows: a 2-configuration run writes every
file and a summary consistent with its runs; the composed checkpoints load in evaluate.py and train with their
masks fixed; bad input gives one error and no output."""

import csv
import glob
import json
import os

import keras
import numpy as np
import pytest

from conftest import train_micro_sst2
from experiment import compose, evaluate

pytestmark = pytest.mark.heavy  # minutes of train.py runs: scheduled first (conftest.py)

RUN_FLAGS = ["--module_rows", "32", "--module_heldout_rows", "8", "--module_steps", "4", "--module_log_every", "2",
             "--epochs", "1", "--max_train_samples", "64", "--max_eval_samples", "32"]


@pytest.fixture(scope="module")
def micro_run(tmp_path_factory, glue_dir, bert_tokenizer_dir):
    root = tmp_path_factory.mktemp("compose")
    train_micro_sst2(root / "dense", glue_dir, bert_tokenizer_dir, 200, 50, "--num_heads", "4")
    checkpoint = root / "dense" / "checkpoints_baseline_sst2"
    conf = root / "conf.json"
    assert compose.main(["config", "-o", str(conf), "--attention", "0.25", "0.5", "--linear", "0.3", "0.5", "-n", "2",
                         "--ckpt_dir", str(checkpoint)]) == 0
    out = root / "run"
    assert compose.main(["run", "--verbose", "0", "-c", str(conf), "--ckpt_dir", str(checkpoint), "--output_dir",
                         str(out), "--data_dir", str(glue_dir), "--tokenizer", str(bert_tokenizer_dir), *RUN_FLAGS,
                         "--cache_dir", str(root / "cache")]) == 0
    return root, checkpoint, out


def _last_row(folder):
    (path,) = glob.glob(os.path.join(folder, "results_*", "results_*.csv"))
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))[-1]


def test_a_run_writes_every_file_and_a_consistent_summary(micro_run):
    _, _, out = micro_run
    for name in ("conf.json", "conf_prune.json", "modules/units.json", "tuned/units.json", "module_stats.csv",
                 "summary.csv", "summary.json", "summary.md", "runs.json", "loss_curves.png", "time_to_accuracy.png"):
        assert (out / name).is_file(), name
    # 2 attention rates x 2 layers + 2 linear rates x 3 modules x 2 layers, each with 3 stats rows (steps 0, 2, 4)
    assert len(json.loads((out / "tuned" / "units.json").read_text())["units"]) == 16
    assert (out / "module_stats.csv").read_text().count("\n") == 16 * 3 + 1
    summary = json.loads((out / "summary.json").read_text())
    starts = json.loads((out / "runs.json").read_text())["start"]
    assert [row["configuration"] for row in summary["rows"]] == [0, 1]
    for row in summary["rows"]:
        index = row["configuration"]
        for kind in ("composed", "baseline"):
            assert glob.glob(str(out / f"{kind}_{index}" / "best_composed_*.keras"))
            last = _last_row(out / f"finetune_{kind}_{index}")
            assert row[f"{kind}_dev"] == pytest.approx(float(last["dev_accuracy"]))
            assert row[f"{kind}_dev_start"] == pytest.approx(starts[f"{kind}_{index}"]["dev"])
        assert row["sparsity"] == pytest.approx(float(_last_row(out / f"finetune_composed_{index}")["global_sparsity"]))
        assert row["difference_points"] == pytest.approx(100 * (row["composed_dev"] - row["baseline_dev"]))
    assert summary["rows"][1]["sparsity"] > summary["rows"][0]["sparsity"] > 0.25
    totals = summary["totals"]
    assert totals["baseline_total_seconds"] == pytest.approx(sum(row["baseline_seconds"] for row in summary["rows"]))
    assert totals["composed_total_seconds"] == pytest.approx(totals["module_seconds"]
                                                             + totals["composed_model_level_seconds_to_reach"])


def test_a_composed_checkpoint_evaluates_as_scored_and_trains_with_its_masks_fixed(micro_run, glue_dir, capsys):
    _, _, out = micro_run
    capsys.readouterr()
    assert evaluate.main(["--ckpt_dir", str(out / "composed_0"), "--max_eval_samples", "32", "--data_dir",
                          str(glue_dir)]) == 0
    result = json.loads(capsys.readouterr().out)
    starts = json.loads((out / "runs.json").read_text())["start"]
    assert result["dev_accuracy"] == pytest.approx(starts["composed_0"]["dev"])
    (before,) = glob.glob(str(out / "composed_0" / "best_*.keras"))
    (after,) = glob.glob(str(out / "finetune_composed_0" / "checkpoints_*" / "last_*.keras"))
    before, after = keras.saving.load_model(before, compile=False), keras.saving.load_model(after, compile=False)
    masks = {v.path: v.numpy() for v in before.weights if v.path.endswith("kernel_mask")}
    assert masks and any(np.any(mask == 0) for mask in masks.values())
    weights = {v.path: v.numpy() for v in after.weights}
    for path, mask in masks.items():
        np.testing.assert_array_equal(weights[path], mask)
        assert np.all(weights[path.replace("kernel_mask", "kernel")][mask == 0] == 0)
    kernels = [path.replace("kernel_mask", "kernel") for path in masks]
    assert any(not np.array_equal(weights[path], v.numpy()) for v in before.weights for path in kernels
               if v.path == path)  # and the weights did train


def _fails(capsys, argv, message):
    capsys.readouterr()
    assert compose.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err


def test_bad_input_gives_one_error_and_no_output(micro_run, tmp_path, capsys):
    _, checkpoint, out = micro_run
    scheme = str(out / "conf_prune.json")
    _fails(capsys, ["config", "-o", str(tmp_path / "c.json"), "--attention", "1.0", "--linear", "0.3", "-n", "1",
                    "--num_layers", "2"], "a pruning rate must be a number in [0, 1), got 1.0")
    _fails(capsys, ["build", "--ckpt_dir", str(checkpoint), "-m", str(out / "tuned"), "-s", scheme, "-n", "2", "-o",
                    str(tmp_path / "b")], "configuration 2 is out of range")
    _fails(capsys, ["build", "--ckpt_dir", str(checkpoint), "-m", str(out / "tuned"), "-s", scheme, "-n", "0", "-o",
                    str(out / "composed_1")], "already exists; pass --overwrite")
    assert compose.main(["config", "-o", str(tmp_path / "wide.json"), "--attention", "0.5", "--linear", "0.5", "-n",
                         "1", "--layers", "0", "3"]) == 0
    assert compose.main(["scheme", "-i", str(tmp_path / "wide.json"), "-o", str(tmp_path / "wide_s.json")]) == 0
    _fails(capsys, ["prune", "--ckpt_dir", str(checkpoint), "-s", str(tmp_path / "wide_s.json"), "-o",
                    str(tmp_path / "m")], "prune block(s) [3], but the checkpoint has blocks 0 to 1")
    assert compose.main(["config", "-o", str(tmp_path / "other.json"), "--attention", "0.5", "--linear", "0.5",
                         "-n", "1", "--layers", "0"]) == 0
    other = str(tmp_path / "other_s.json")
    assert compose.main(["scheme", "-i", str(tmp_path / "other.json"), "-o", other]) == 0
    _fails(capsys, ["build", "--ckpt_dir", str(checkpoint), "-m", str(out / "tuned"), "-s", other, "-n", "0", "-o",
                    str(tmp_path / "b")], "made from another scheme")
    edited = json.loads((tmp_path / "other_s.json").read_text())
    edited["units"][0]["rate"] = 0.75
    (tmp_path / "other_s.json").write_text(json.dumps(edited))
    _fails(capsys, ["prune", "--ckpt_dir", str(checkpoint), "-s", other, "-o", str(tmp_path / "m")], "edited by hand")
    assert sorted(os.listdir(tmp_path)) == ["other.json", "other_s.json", "wide.json", "wide_s.json"]
