"""prune.py and evaluate.py end to end on a micro checkpoint trained on real SST-2 rows."""

import hashlib
import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest

from conftest import GUMBEL_FLAGS, train_micro_sst2
from efficiency import generate_lut
from experiment import evaluate, prune
from experiment.checkpoints import find_checkpoint, load_checkpoint
from gated import structured_gates
from gated_bert.mask_folders import read_mask_folder

pytestmark = pytest.mark.heavy  # minutes of train.py runs: scheduled first (conftest.py)

PRUNE_FLAGS = ["--num_samples", "64", "--sample_batch_size", "16", "--max_eval_samples", "100"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, glue_dir, bert_tokenizer_dir):
    out = train_micro_sst2(tmp_path_factory.mktemp("ckpt"), glue_dir, bert_tokenizer_dir, 300, 100)
    return out / "checkpoints_baseline_sst2"


def _env(glue_dir, tokenizer_dir):
    return {"GLUE_DIR": str(glue_dir), "TOKENIZER": str(tokenizer_dir)}


def run_prune(checkpoint, out, env, *flags):
    return prune.main(["--ckpt_dir", str(checkpoint), "--output_dir", str(out), *PRUNE_FLAGS, *flags], env)


def test_prune_writes_every_output_and_evaluate_reproduces_its_metric(checkpoint, tmp_path, glue_dir,
                                                                        bert_tokenizer_dir, capsys):
    env = _env(glue_dir, bert_tokenizer_dir)
    assert run_prune(checkpoint, tmp_path, env, "--constraint", "0.6", "--seed", "3") == 0
    folder = tmp_path / "L2_D32_H2_F64" / "sst2" / "mac" / "0.6" / "seed_3"
    assert sorted(p.name for p in folder.iterdir()) == ["head_mask.npy", "log.txt", "masks.json", "metrics.json",
                                                        "neuron_mask.npy"]
    assert [p.name for p in folder.parent.iterdir()] == ["seed_3"]  # no partial folder left
    metrics = json.loads((folder / "metrics.json").read_text())
    assert list(metrics["dev"]) == ["dense", "search", "rearrange", "rescale", "bias_correction"]
    assert {"load", "fisher", "search", "rearrange", "rescale", "bias_correction", "evaluation",
            "pruning"} <= set(metrics["seconds"])
    assert metrics["fisher"]["samples"] == 64 and metrics["fisher"]["samples_per_second"] > 0
    macs = metrics["macs"]
    assert macs["after"] <= 0.6 * macs["dense"] and macs["before"] == macs["dense"]
    assert macs["kept_fraction"] == pytest.approx(macs["after"] / macs["dense"])
    masks = read_mask_folder(folder)
    heads, neurons = masks.masks["head"], masks.masks["neuron"]
    assert heads.shape == (2, 2) and neurons.shape == (2, 64)
    assert masks.source["stage"] == "bias_correction" and masks.source["method"] == "fisher"
    correction = metrics["bias_correction"]
    np.testing.assert_array_equal(masks.logit_bias, np.float32(correction["logit_bias"]))
    assert masks.logit_bias.shape == (2,) and correction["kl_after"] <= correction["kl_before"]
    assert metrics["kept"]["neurons"] == np.count_nonzero(neurons) < 128
    log = (folder / "log.txt").read_text()
    assert "keep 0.6 of its MACs (remove 0.4)" in log and "removed" in log and "rescale: dev accuracy" in log
    assert "bias correction: logit bias" in log

    # The saved masks (with their logit bias) score the same again: on the gated model and on the physically
    # smaller one; a copy of the folder in prune.py's earlier format (the two .npy files, no masks.json, so no
    # logit bias) scores as the masks did before the bias correction.
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    for name in ("head_mask.npy", "neuron_mask.npy"):
        shutil.copy(folder / name, legacy / name)
    scored = []
    for masks_dir, extra in ((folder, []), (folder, ["--slice"]), (legacy, [])):
        capsys.readouterr()
        assert evaluate.main(["--ckpt_dir", str(checkpoint), "--masks_dir", str(masks_dir), "--max_eval_samples",
                              "100", *extra], env) == 0
        scored.append(json.loads(capsys.readouterr().out))
    for result, stage in zip(scored, ("bias_correction", "bias_correction", "rescale"), strict=True):
        assert result["dev_accuracy"] == metrics["dev"][stage]["dev_accuracy"]
        assert result["dev_loss"] == pytest.approx(metrics["dev"][stage]["dev_loss"], abs=1e-5)
        assert result["macs"] == macs["after"]
    # This micro model's logits hardly move under pruning, so its correction is ~0: a copy of the folder with a
    # large logit bias shows that evaluate.py applies it (every row predicted label 0, counted from the TSV).
    shifted = tmp_path / "shifted"
    shutil.copytree(folder, shifted)
    described = json.loads((shifted / "masks.json").read_text())
    (shifted / "masks.json").write_text(json.dumps({**described, "logit_bias": [50.0, -50.0]}))
    labels = [line.rsplit("\t", 1)[1] for line in (glue_dir / "SST-2" / "dev.tsv").read_text().splitlines()[1:101]]
    for extra in ([], ["--slice"]):
        capsys.readouterr()
        assert evaluate.main(["--ckpt_dir", str(checkpoint), "--masks_dir", str(shifted), "--max_eval_samples",
                              "100", *extra], env) == 0
        assert json.loads(capsys.readouterr().out)["dev_accuracy"] == pytest.approx(labels.count("0") / 100)
    assert scored[1]["parameters"] < scored[0]["parameters"]


def test_prune_under_a_latency_budget_with_luts_from_this_machine(checkpoint, tmp_path, glue_dir,
                                                                  bert_tokenizer_dir):
    luts = tmp_path / "luts"
    assert generate_lut.main(["--d_model", "32", "--num_heads", "2", "--dff", "64", "--batch_size", "2", "--max_len",
                              "8", "--ffn_points", "4", "--repeats", "2", "--output_dir", str(luts)]) == 0
    env = _env(glue_dir, bert_tokenizer_dir)
    assert run_prune(checkpoint, tmp_path / "out", env, "--constraint", "0.5", "--metric", "latency", "--head_lut",
                     str(luts / "head_lut.json"), "--neuron_lut", str(luts / "neuron_lut.json"), "--per_row_fisher",
                     "true") == 0
    (metrics_path,) = (tmp_path / "out").glob("*/sst2/latency/0.5/seed_0/metrics.json")
    metrics = json.loads(metrics_path.read_text())
    latency = metrics["latency_ms"]
    assert latency["estimated"] <= latency["budget"] == pytest.approx(0.5 * latency["dense"])
    assert metrics["args"]["per_row_fisher"] is True and metrics["fisher"]["samples"] > 0


def test_without_bias_correction_the_masks_stand_alone(checkpoint, tmp_path, glue_dir, bert_tokenizer_dir):
    env = _env(glue_dir, bert_tokenizer_dir)
    assert run_prune(checkpoint, tmp_path, env, "--constraint", "0.6", "--seed", "3", "--bias_correction",
                     "false") == 0
    (folder,) = tmp_path.glob("*/sst2/mac/0.6/seed_3")
    metrics = json.loads((folder / "metrics.json").read_text())
    assert list(metrics["dev"]) == ["dense", "search", "rearrange", "rescale"] and "bias_correction" not in metrics
    assert "logit_bias" not in json.loads((folder / "masks.json").read_text())
    assert read_mask_folder(folder).source["stage"] == "rescale"


def test_kprune_writes_a_tuned_checkpoint_that_reproduces_its_metric(checkpoint, tmp_path, glue_dir,
                                                                     bert_tokenizer_dir, capsys):
    env = _env(glue_dir, bert_tokenizer_dir)
    # Weight tuning is K-prune's default, as in its paper.
    assert run_prune(checkpoint, tmp_path, env, "--constraint", "0.4", "--method", "kprune", "--num_tokens",
                     "1500") == 0
    folder = tmp_path / "L2_D32_H2_F64" / "sst2" / "kprune_mac" / "0.4" / "seed_0"
    names = sorted(p.name for p in folder.iterdir())
    assert names[2:] == ["head_mask.npy", "log.txt", "masks.json", "metrics.json", "neuron_mask.npy"]
    assert names[0].startswith("best_kprune_") and names[0].endswith(".keras")
    assert names[1] == names[0].replace("best_", "config_").replace(".keras", ".json")
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["method"] == "kprune" and list(metrics["dev"]) == ["dense", "kprune", "bias_correction"]
    correction = metrics["bias_correction"]
    assert len(correction["logit_bias"]) == 2 and correction["kl_after"] <= correction["kl_before"]
    assert "logit_bias" not in json.loads((folder / "masks.json").read_text())  # it is in the checkpoint's bias
    assert metrics["macs"]["after"] <= 0.4 * metrics["macs"]["dense"]
    assert {"load", "kprune", "evaluation", "pruning"} <= set(metrics["seconds"])
    assert set(metrics["kprune"]["seconds"]) == {"measure", "search", "tuning"}
    assert metrics["kprune"]["mu"] == 16.0  # by default the head width (32 / 2): importance per MAC alone
    steps = metrics["kprune"]["steps"]
    assert [(s["layer"], s["kind"]) for s in steps] == [(0, "head"), (0, "neuron"), (1, "head"), (1, "neuron")]
    tuned = [s["tuning"] for s in steps if "tuning" in s]
    assert tuned and all(t["mse_after"] <= t["mse_before"] for t in tuned)
    assert any(t["mse_after"] < t["mse_before"] for t in tuned)
    log = (folder / "log.txt").read_text()
    assert "with kprune to keep 0.4 of its MACs (remove 0.6)" in log and "tuning mse" in log
    # The saved checkpoint carries the masks and the tuned weights: evaluate.py scores it as prune.py did,
    # as saved and physically sliced.
    scored = []
    for args in (["--ckpt_dir", str(folder)], ["--ckpt_dir", str(folder), "--slice"]):
        capsys.readouterr()
        assert evaluate.main([*args, "--max_eval_samples", "100"], env) == 0
        scored.append(json.loads(capsys.readouterr().out))
    final = metrics["dev"]["bias_correction"]
    for result in scored[:2]:
        assert result["dev_accuracy"] == final["dev_accuracy"]
        assert result["dev_loss"] == pytest.approx(final["dev_loss"], abs=1e-5)
        assert result["macs"] == metrics["macs"]["after"]
    assert scored[1]["parameters"] < scored[0]["parameters"]
    tuned_model, original = (load_checkpoint(find_checkpoint(path)[0]) for path in (folder, checkpoint))
    np.testing.assert_array_equal(structured_gates(tuned_model)["head"], np.load(folder / "head_mask.npy"))
    changed = {a.path for a, b in zip(tuned_model.weights, original.weights, strict=True)
               if not np.allclose(a.numpy(), b.numpy())}
    tuned = {path for path in changed if path.endswith(("output/kernel", "output/bias"))}
    gates = {path for path in changed if path.endswith(("head_gate", "intermediate/unit_gate"))}
    # The masks, the output projections and (here by ~1e-8: see the next test) the classifier's bias.
    assert tuned and changed <= tuned | gates | {original.get_layer("classifier").bias.path}


def test_kprune_puts_its_bias_correction_in_the_checkpoint_and_can_leave_it_out(checkpoint, tmp_path, glue_dir,
                                                                              bert_tokenizer_dir, capsys,
                                                                              monkeypatch):
    # This micro model's logits hardly move under pruning, so its correction is ~0: a forced large shift shows
    # where it goes (every row predicted label 0, counted from the TSV).
    import pruners.posttrain.bias_correction

    monkeypatch.setattr(pruners.posttrain.bias_correction, "fit_logit_bias",
                        lambda dense, pruned, regression=False: np.float32([50.0, -50.0]))
    env = _env(glue_dir, bert_tokenizer_dir)
    labels = [line.rsplit("\t", 1)[1] for line in (glue_dir / "SST-2" / "dev.tsv").read_text().splitlines()[1:101]]
    original = load_checkpoint(find_checkpoint(checkpoint)[0])
    for correction, stages in (("true", ["dense", "kprune", "bias_correction"]), ("false", ["dense", "kprune"])):
        out = tmp_path / correction
        assert run_prune(checkpoint, out, env, "--constraint", "0.4", "--method", "kprune", "--num_tokens",
                         "1500", "--sublayerwise_tuning", "false", "--bias_correction", correction) == 0
        (folder,) = out.glob("*/sst2/kprune_mac/0.4/seed_0")
        metrics = json.loads((folder / "metrics.json").read_text())
        assert list(metrics["dev"]) == stages and ("bias_correction" in metrics) == (correction == "true")
        capsys.readouterr()
        assert evaluate.main(["--ckpt_dir", str(folder), "--max_eval_samples", "100"], env) == 0
        scored = json.loads(capsys.readouterr().out)["dev_accuracy"]
        assert scored == metrics["dev"][stages[-1]]["dev_accuracy"]
        pruned = load_checkpoint(find_checkpoint(folder)[0])
        shift = pruned.get_layer("classifier").bias.numpy() - original.get_layer("classifier").bias.numpy()
        if correction == "true":
            assert scored == pytest.approx(labels.count("0") / 100)
            np.testing.assert_allclose(shift, [50.0, -50.0], atol=1e-4)
        else:
            np.testing.assert_array_equal(shift, [0.0, 0.0])
            changed = {a.path for a, b in zip(pruned.weights, original.weights, strict=True)
                       if not np.array_equal(a.numpy(), b.numpy())}
            assert changed and all(path.endswith(("head_gate", "intermediate/unit_gate")) for path in changed)


@pytest.mark.parametrize("flags, message", [
    (["--constraint", "1.5"], "must be in (0, 1), got 1.5"),
    (["--constraint", "0"], "must be in (0, 1), got 0.0"),
    (["--constraint", "0.5", "--metric", "latency"], "--metric latency needs --head_lut and --neuron_lut"),
    (["--constraint", "0.5", "--task_name", "rte"], "does not match the checkpoint's task sst2"),
    (["--constraint", "0.5", "--num_samples", "0"], "--num_samples must be positive, got 0"),
    (["--constraint", "0.5", "--method", "kprune", "--metric", "latency"], "--method kprune supports --metric mac"),
    (["--constraint", "0.5", "--method", "kprune", "--T", "0"], "--T must be positive, got 0.0"),
    (["--constraint", "0.5", "--method", "kprune", "--lam_rep", "-1"], "must be non-negative and not both 0"),
    pytest.param(["--constraint", "0.5", "--backend", "cupy"], "backend='cupy' needs CuPy",
                 marks=pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed")),
])
def test_bad_input_stops_before_any_work(checkpoint, tmp_path, glue_dir, bert_tokenizer_dir, capsys, flags,
                                         message):
    assert run_prune(checkpoint, tmp_path / "out", _env(glue_dir, bert_tokenizer_dir), *flags) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_missing_checkpoint_files_and_foreign_luts_are_clear_errors(checkpoint, tmp_path, glue_dir,
                                                                    bert_tokenizer_dir, capsys):
    env = _env(glue_dir, bert_tokenizer_dir)
    assert prune.main(["--ckpt_dir", str(tmp_path / "nowhere"), "--constraint", "0.5"], env) == 2
    assert "checkpoint folder not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert prune.main(["--ckpt_dir", str(tmp_path / "empty"), "--constraint", "0.5"], env) == 2
    assert "holds no config_*.json: not a train.py checkpoint folder\n" in capsys.readouterr().err
    # train.py's output folder, or its results folder, given instead: the message names the checkpoint folder.
    output_dir, results = checkpoint.parent, next(checkpoint.parent.glob("results_*"))
    for wrong in (output_dir, results):
        assert prune.main(["--ckpt_dir", str(wrong), "--constraint", "0.5"], env) == 2
        assert (f"{wrong} holds no config_*.json: not a train.py checkpoint folder; train.py's checkpoint folders "
                f"beside or inside it: {checkpoint} (pass one as --ckpt_dir)") in capsys.readouterr().err
    luts = tmp_path / "luts"
    assert generate_lut.main(["--model_size", "tiny", "--batch_size", "1", "--max_len", "4", "--ffn_points", "1",
                              "--repeats", "1", "--output_dir", str(luts)]) == 0
    # The earlier flag names still work (the seed tool's --mha_lut / --ffn_lut).
    assert run_prune(checkpoint, tmp_path / "out", env, "--constraint", "0.5", "--metric", "latency", "--mha_lut",
                     str(luts / "head_lut.json"), "--ffn_lut", str(luts / "neuron_lut.json")) == 2
    assert "measured for another shape (d_model: LUT 256, model 32" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_runs_in_their_own_process_print_no_start_up_banners(checkpoint, tmp_path, glue_dir, bert_tokenizer_dir):
    from conftest import REPO

    def run(script, *flags):
        return subprocess.run([sys.executable, str(REPO / script), "--ckpt_dir", str(checkpoint), "--verbose", "0",
                               *flags], capture_output=True, text=True, timeout=300,
                              env={**os.environ, **_env(glue_dir, bert_tokenizer_dir)})

    # --verbose 0 shows warnings only: nothing at all is expected on stderr (no oneDNN, CUDA, absl or
    # transformers start-up line, no TensorFlow retracing warning).
    pruned = run("prune.py", "--constraint", "0.5", "--output_dir", str(tmp_path), *PRUNE_FLAGS)
    assert pruned.returncode == 0 and pruned.stderr == "", pruned.stderr
    scored = run("evaluate.py", "--max_eval_samples", "40")
    assert scored.returncode == 0 and scored.stderr == "", scored.stderr
    assert json.loads(scored.stdout)["dev_rows"] == 40


def test_evaluate_rejects_masks_it_cannot_use(checkpoint, tmp_path, glue_dir, bert_tokenizer_dir, capsys):
    env = _env(glue_dir, bert_tokenizer_dir)
    assert evaluate.main(["--ckpt_dir", str(checkpoint), "--task", "rte"], env) == 2
    assert "--task rte does not match the checkpoint's task sst2" in capsys.readouterr().err
    assert evaluate.main(["--ckpt_dir", str(checkpoint), "--masks_dir", str(tmp_path)], env) == 2
    assert f"mask folder {tmp_path} holds no masks" in capsys.readouterr().err
    # A folder from before masks.json (prune.py's two files), made for another shape.
    np.save(tmp_path / "head_mask.npy", np.ones((2, 4), np.float32))
    np.save(tmp_path / "neuron_mask.npy", np.ones((2, 64), np.float32))
    assert evaluate.main(["--ckpt_dir", str(checkpoint), "--masks_dir", str(tmp_path)], env) == 2
    assert ("do not fit this model: head masks have shape (2, 4), but the model's head gates are (2, 2); they were "
            "made for another model") in capsys.readouterr().err


def test_a_gumbel_checkpoint_keeps_its_learned_masks_off(tmp_path, glue_dir, bert_tokenizer_dir):
    out = train_micro_sst2(tmp_path / "gumbel", glue_dir, bert_tokenizer_dir, 200, 50, *GUMBEL_FLAGS)
    (masks_dir,) = (out / "results_gumbel_sst2").glob("masks_gumbel_*")
    learned = read_mask_folder(masks_dir).masks["neuron"]
    assert 0 < learned.sum() < learned.size  # the learned masks did switch some neurons off
    env = _env(glue_dir, bert_tokenizer_dir)
    assert run_prune(out / "checkpoints_gumbel_sst2", tmp_path / "pruned", env, "--constraint", "0.9") == 0
    (folder,) = (tmp_path / "pruned").glob("*/sst2/mac/0.9/seed_0")
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["macs"]["before"] < metrics["macs"]["dense"]  # the learned masks already removed MACs
    assert np.all(np.load(folder / "neuron_mask.npy")[learned == 0] == 0)


def test_a_failure_mid_run_leaves_nothing_behind(checkpoint, tmp_path, glue_dir, bert_tokenizer_dir, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(importlib.import_module("pruners.posttrain.rescale"), "rescale", broken)
    assert run_prune(checkpoint, tmp_path / "out", _env(glue_dir, bert_tokenizer_dir), "--constraint", "0.5") == 1
    left = [path for path in (tmp_path / "out").rglob("*") if path.is_file()]
    assert left == [] and not list((tmp_path / "out").rglob(".partial-*"))


def test_a_sample_file_is_drawn_from_as_the_training_rows_would_be(checkpoint, tmp_path, glue_dir,
                                                                    bert_tokenizer_dir, capsys):
    # The same 200 rows given twice: as --sample_file, and as the train.tsv of another GLUE folder (read through the
    # tokenization cache). The same seed draws the same 64 of them, so the masks and scores are the same.
    env = _env(glue_dir, bert_tokenizer_dir)
    lines = (glue_dir / "SST-2" / "train.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    rows = tmp_path / "served.tsv"
    rows.write_text("".join(lines[:201]), encoding="utf-8")
    other = tmp_path / "glue" / "SST-2"
    other.mkdir(parents=True)
    shutil.copy(rows, other / "train.tsv")
    shutil.copy(glue_dir / "SST-2" / "dev.tsv", other / "dev.tsv")
    assert run_prune(checkpoint, tmp_path / "file", env, "--constraint", "0.6", "--sample_file", str(rows)) == 0
    glue = str(tmp_path / "glue")
    assert run_prune(checkpoint, tmp_path / "dir", env, "--constraint", "0.6", "--data_dir", glue) == 0
    found = [next((tmp_path / which).rglob("metrics.json")).parent for which in ("file", "dir")]
    metrics = [json.loads((folder / "metrics.json").read_text()) for folder in found]
    assert metrics[0]["sample"] == {"file": str(rows), "sha256": hashlib.sha256(rows.read_bytes()).hexdigest(),
                                    "rows": 64, "of_rows": 200, "tokens": metrics[1]["sample"]["tokens"]}
    assert metrics[1]["sample"]["file"] is None and metrics[1]["sample"]["of_rows"] == 200
    assert metrics[0]["fisher"]["samples"] == 64 and metrics[0]["dev"] == metrics[1]["dev"]
    for name in ("head_mask.npy", "neuron_mask.npy"):
        np.testing.assert_array_equal(np.load(found[0] / name), np.load(found[1] / name))
    assert f"64 rows sampled of 200 in {rows}" in (found[0] / "log.txt").read_text()

    # A malformed row is named by file and line, and nothing is written; a missing file stops before any work.
    rows.write_text(lines[0] + lines[1] + "only one field\n", encoding="utf-8")
    capsys.readouterr()
    assert run_prune(checkpoint, tmp_path / "bad", env, "--constraint", "0.6", "--sample_file", str(rows)) == 1
    assert f"{rows}:3: expected 2 tab-separated fields, got 1" in capsys.readouterr().err
    assert not [path for path in (tmp_path / "bad").rglob("*") if path.is_file()]
    assert run_prune(checkpoint, tmp_path / "none", env, "--constraint", "0.6", "--sample_file",
                     str(tmp_path / "nowhere.tsv")) == 2
    assert f"--sample_file {tmp_path / 'nowhere.tsv'} is not a file" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize("flags, max_len, size", [
    ([], 128, 32),  # fisher: its estimate is per batch, 32 rows as in the reference code
    (["--method", "kprune"], 128, 128),
    (["--method", "kprune"], 512, 32),  # at most 16,384 tokens of max_len, at least 32 rows
    (["--method", "kprune"], 256, 64),
    (["--method", "kprune", "--sample_batch_size", "8"], 512, 8),
])
def test_the_sample_batch_size_defaults_by_method_and_max_len(flags, max_len, size):
    args = prune.build_parser().parse_args(["--ckpt_dir", "x", "--constraint", "0.5", *flags])
    assert prune.sample_batch_size(args, types.SimpleNamespace(max_len=max_len)) == size
