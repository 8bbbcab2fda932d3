"""End-to-end micro runs of train.py on real GLUE rows."""

import csv
import json
import re

import keras
import numpy as np
import pytest

from experiment import train
from gated import get_weight_masks

pytestmark = pytest.mark.heavy  # minutes of train.py runs: scheduled first (conftest.py)

MICRO_FLAGS = ["--num_layers", "1", "--d_model", "32", "--num_heads", "2", "--dff", "64", "--max_len", "64",
               "--batch_size", "32", "--learning_rate", "1e-3", "--verbose", "0"]


def run_train(tmp_path, glue_dir, tokenizer_dir, *flags):
    argv = [*MICRO_FLAGS, "--data_dir", str(glue_dir), "--tokenizer", str(tokenizer_dir),
            "--output_dir", str(tmp_path / "out"), "--cache_dir", str(tmp_path / "cache"), *flags]
    assert train.main(argv) == 0
    (metadata_path,) = (tmp_path / "out").glob("results_*/metadata_*.json")
    return json.loads(metadata_path.read_text())


def test_sst2_micro_run_writes_every_output(tmp_path, glue_dir, bert_tokenizer_dir, capsys):
    meta = run_train(tmp_path, glue_dir, bert_tokenizer_dir, "--task", "sst2", "--epochs", "2",
                     "--max_train_samples", "300", "--max_eval_samples", "100", "--verbose", "1")
    # Off a terminal (here, captured) Keras' bar becomes a plain line per epoch, without escape codes.
    console = capsys.readouterr().out
    assert "\x1b[" not in console and "\r" not in console
    epoch_line = r"^(\d+)/\1 - \d+s - .*loss: \d\.\d+ - dev_loss: \d\.\d+ - dev_accuracy: "
    assert len(re.findall(epoch_line, console, re.M)) == 2
    out = tmp_path / "out"
    stamp = meta["timestamp"]
    results = out / "results_baseline_sst2"
    for name in (f"results_baseline_{stamp}.csv", f"metadata_baseline_{stamp}.json",
                 f"accuracy_sparsity_baseline_{stamp}.png", f"loss_sparsity_baseline_{stamp}.png"):
        assert (results / name).stat().st_size > 0, name
    assert (results / f"accuracy_sparsity_baseline_{stamp}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    checkpoints = out / "checkpoints_baseline_sst2"
    assert {p.name for p in checkpoints.iterdir()} == {
        f"best_baseline_{stamp}.keras", f"last_baseline_{stamp}.keras", f"config_baseline_{stamp}.json"}
    assert (out / "experiment_logs" / f"baseline_sst2_{stamp}.log").read_text().count("training baseline") == 1

    with open(results / f"results_baseline_{stamp}.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["epoch", "train_loss", "dev_loss", "dev_accuracy", "learning_rate", "target_sparsity",
                             "global_sparsity",
                             "epoch_seconds", "train_examples_per_second"]
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(0 <= float(r["dev_accuracy"]) <= 1 and float(r["global_sparsity"]) == 0 for r in rows)
    assert float(rows[-1]["learning_rate"]) < float(rows[0]["learning_rate"])  # linear decay

    assert meta["status"] == "completed" and meta["method"] == "baseline" and meta["epochs_completed"] == 2
    assert meta["config"]["max_train_samples"] == 300 and meta["data"]["train_rows"] == 300
    assert meta["data"]["dev_rows"] == 100
    assert {"tensorflow", "keras", "numpy", "transformers", "python"} <= set(meta["versions"])
    assert meta["train_examples_per_second"] > 0 and len(meta["timings"]["epoch_seconds"]) == 2
    assert meta["final"]["dev_accuracy"] == pytest.approx(float(rows[-1]["dev_accuracy"]))
    assert meta["best"]["dev_accuracy"] == max(float(r["dev_accuracy"]) for r in rows)

    # The resolved config beside the checkpoint loads back; the best model loads with its masks.
    from experiment.config import GatedBertConfig

    assert GatedBertConfig.load(checkpoints / f"config_baseline_{stamp}.json").to_dict() == meta["config"]
    model = keras.saving.load_model(checkpoints / f"best_baseline_{stamp}.keras")
    assert all(np.all(mask == 1) for mask in get_weight_masks(model).values())


def test_stsb_trains_as_regression(tmp_path, glue_dir, bert_tokenizer_dir):
    meta = run_train(tmp_path, glue_dir, bert_tokenizer_dir, "--task", "stsb", "--epochs", "2",
                     "--max_train_samples", "200", "--max_eval_samples", "80")
    assert meta["primary_metric"] == "dev_pearson"
    assert set(meta["final"]) >= {"dev_pearson", "dev_spearman", "dev_loss"}
    assert "dev_accuracy" not in meta["final"]
    # MSE on 0..5 scores starts far above a cross-entropy's ~0.69 for an untrained model
    assert meta["best"]["train_loss"] > 1.0
    model = keras.saving.load_model(meta["paths"]["last_checkpoint"])
    assert model.output_shape == (None, 1)


def test_bad_input_stops_before_any_work(tmp_path, capsys):
    out = tmp_path / "out"
    assert train.main(["--task", "sst3", "--output_dir", str(out)]) == 2
    assert "unknown task 'sst3'" in capsys.readouterr().err
    assert train.main(["--data_dir", str(tmp_path), "--output_dir", str(out)]) == 2
    assert "lacks the sst2 files" in capsys.readouterr().err
    assert not out.exists()


def test_dry_run_prints_the_resolved_config_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    assert train.main(["--pruning_method", "movement", "--epochs", "6", "--output_dir", str(out), "--dry_run"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert (config["pruning_method"], config["enable_pruning"], config["epochs"]) == ("movement", True, 6)
    assert config["num_layers"] == 2  # the preset filled in
    assert not out.exists()
    # The checks a run would fail on fail the dry run too (the default pruning window starts after epoch 4).
    assert train.main(["--pruning_method", "movement", "--epochs", "3", "--dry_run"]) == 2
    assert "pruning_start_epoch=4 leaves no epoch to prune in" in capsys.readouterr().err


def test_unavailable_tokenizer_fails_cleanly(tmp_path, glue_dir, capsys):
    out = tmp_path / "out"
    argv = ["--data_dir", str(glue_dir), "--tokenizer", str(tmp_path / "missing"), "--output_dir", str(out)]
    assert train.main(argv) == 1
    assert "TOKENIZER or --tokenizer" in capsys.readouterr().err
    assert not out.exists()  # nothing half-written


def test_log_file_gets_info_when_run_is_called_directly(tmp_path, glue_dir, bert_tokenizer_dir):
    import logging

    from experiment.config import GatedBertConfig

    logging.getLogger().setLevel(logging.WARNING)
    config = GatedBertConfig(num_layers=1, d_model=16, num_heads=2, dff=32, max_len=32, epochs=1, batch_size=64,
                             max_train_samples=64, max_eval_samples=32, data_dir=str(glue_dir),
                             tokenizer=str(bert_tokenizer_dir), output_dir=str(tmp_path), cache_dir=str(tmp_path),
                             verbose=0)
    train.run(config)
    (log_path,) = (tmp_path / "experiment_logs").glob("*.log")
    assert "training baseline on sst2" in log_path.read_text()
    assert logging.getLogger().level == logging.WARNING  # restored afterwards


def test_failed_run_keeps_finished_epochs_and_says_so(tmp_path, glue_dir, bert_tokenizer_dir, monkeypatch):
    from callbacks import DevEvaluator

    calls = {"n": 0}
    original = DevEvaluator.evaluate

    def fail_in_second_epoch(self):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk on fire")
        return original(self)

    monkeypatch.setattr(DevEvaluator, "evaluate", fail_in_second_epoch)
    argv = [*MICRO_FLAGS, "--data_dir", str(glue_dir), "--tokenizer", str(bert_tokenizer_dir), "--epochs", "3",
            "--max_train_samples", "64", "--max_eval_samples", "32", "--output_dir", str(tmp_path / "out"),
            "--cache_dir", str(tmp_path / "cache")]
    with pytest.raises(RuntimeError, match="disk on fire"):
        train.main(argv)
    (metadata_path,) = (tmp_path / "out").glob("results_*/metadata_*.json")
    meta = json.loads(metadata_path.read_text())
    assert meta["status"] == "failed" and "disk on fire" in meta["error"] and meta["epochs_completed"] == 1
    (csv_path,) = (tmp_path / "out").glob("results_*/results_*.csv")
    assert len(list(csv.DictReader(csv_path.open()))) == 1
    leftovers = [p.name for p in (tmp_path / "out").rglob("*") if p.name.startswith(".partial")]
    assert leftovers == []


@pytest.mark.parametrize("method", ["magnitude", "movement", "spt"])
def test_micro_pruning_run_records_rising_sparsity(tmp_path, glue_dir, bert_tokenizer_dir, method):
    # 160 rows at batch 32: 5 steps per epoch; pruning over epochs 2-4 (steps 5-20), then one epoch at 0.8.
    meta = run_train(tmp_path, glue_dir, bert_tokenizer_dir, "--epochs", "5", "--max_train_samples", "160",
                     "--max_eval_samples", "64", "--enable_pruning", "true", "--pruning_method", method,
                     "--pruning_start_epoch", "1", "--pruning_end_epoch", "4", "--end_sparsity", "0.8",
                     "--sparsity_steps", "30 60", "--movement_schedule", "linear", "--dynamic_padding", "false",
                     *(["--pruning_frequency_steps", "5"] if method == "movement" else []))
    assert meta["method"] == method and meta["config"]["pruning_method"] == method
    assert meta["pruning"]["pruner"]["method"] == method
    assert (meta["pruning"]["schedule"]["begin_step"], meta["pruning"]["schedule"]["end_step"]) == (5, 20)
    results = tmp_path / "out" / f"results_{method}_sst2"
    (csv_path,) = results.glob("results_*.csv")
    rows = list(csv.DictReader(csv_path.open()))
    total = meta["model"]["prunable_weights"]
    actual = [float(row["global_sparsity"]) for row in rows]
    # Targets at the epoch ends (steps 5, 10, 15, 20, 25): levels 0.3/0.6/0.8 at steps 5/12/20, or a linear ramp.
    expected = [0.0, 0.8 / 3, 1.6 / 3, 0.8, 0.8] if method == "movement" else [0.3, 0.3, 0.6, 0.8, 0.8]
    assert [float(row["target_sparsity"]) for row in rows] == pytest.approx(expected)
    assert actual == pytest.approx(expected, abs=1 / total)
    assert meta["final"]["global_sparsity"] == pytest.approx(0.8, abs=1 / total)
    layer_columns = [column for column in rows[0] if column.startswith("sparsity/")]
    assert len(layer_columns) == 6  # q, k, v, output, intermediate, ffn output of the one block
    assert (tmp_path / "out" / f"checkpoints_{method}_sst2").is_dir()
    from gated import sparsity_stats

    model = keras.saving.load_model(meta["paths"]["last_checkpoint"])
    assert sparsity_stats(model)["global_sparsity"] == pytest.approx(actual[-1])
    # The best epoch is one at the final sparsity, and so is the best checkpoint.
    assert meta["best"]["epoch"] in (4, 5) and meta["best"]["target_sparsity"] == pytest.approx(0.8)
    best = keras.saving.load_model(meta["paths"]["best_checkpoint"])
    assert sparsity_stats(best)["global_sparsity"] == pytest.approx(0.8, abs=1 / total)


def test_micro_gumbel_run_saves_the_masks_it_evaluated_with(tmp_path, glue_dir, bert_tokenizer_dir, capsys):
    from callbacks import DevEvaluator
    from experiment import evaluate
    from experiment.config import GatedBertConfig
    from gated import load_learned_masks, set_structured_masks, structured_masks, without_learned_masks
    from gated_bert.mask_folders import write_mask_folder
    from tasks import get_task

    # 320 rows at batch 32: 10 steps per epoch, 80 in all; a fast mask optimizer so that masks move.
    meta = run_train(tmp_path, glue_dir, bert_tokenizer_dir, "--epochs", "8", "--max_train_samples", "320",
                     "--max_eval_samples", "64", "--enable_pruning", "true", "--pruning_method", "gumbel",
                     "--learn_masks", "all", "--target_sparsity", "0.5", "--masks_lr", "0.2",
                     "--gumbel_temp_anneal", "linear", "--name", "my-run", "--dynamic_padding", "false")
    assert meta["method"] == "gumbel" and meta["name"] == "my-run"
    assert meta["pruning"]["learner"]["target_sparsity"] == 0.5
    assert meta["pruning"]["temperature"] == {"start": 5.0, "end": 0.1, "total_steps": 80, "mode": "linear"}
    (csv_path,) = (tmp_path / "out" / "results_gumbel_sst2").glob("results_*.csv")
    rows = list(csv.DictReader(csv_path.open()))
    kinds = ("head", "neuron", "ffn_out")
    assert {"temperature", "sparsity_loss", "quantization_loss", *(f"mask_sparsity/{k}" for k in kinds),
            *(f"expected_sparsity/{k}" for k in kinds), *(f"lagrange_l1/{k}" for k in kinds)} <= set(rows[0])
    assert [float(row["temperature"]) for row in rows] == pytest.approx([5 - 4.9 * s / 80 for s in range(9, 80, 10)])
    assert meta["best"]["epoch"] == 8  # learned masks are final only at the end

    masks_dir = meta["pruning"]["masks_dir"]
    saved = load_learned_masks(masks_dir)
    assert {kind: mask.shape for kind, mask in saved.items()} == {"head": (1, 2), "neuron": (1, 64),
                                                                  "ffn_out": (1, 32)}
    for kind in kinds:
        assert np.load(f"{masks_dir}/{kind}_logits.npy").shape == saved[kind].shape
        assert 1 - saved[kind].mean() == pytest.approx(float(rows[-1][f"mask_sparsity/{kind}"]))
    assert 0 < saved["neuron"].mean() < 1  # the masks moved and kept some neurons
    learned = keras.saving.load_model(meta["paths"]["last_checkpoint"])
    for kind, mask in structured_masks(learned).items():
        np.testing.assert_array_equal(saved[kind], mask)

    # The saved masks, put on the gates of a gated model without learned masks, reproduce the reported dev metric.
    plain = without_learned_masks(learned)
    set_structured_masks(plain, {kind: np.ones_like(mask) for kind, mask in saved.items()})  # forget baked gates
    set_structured_masks(plain, saved)
    config = GatedBertConfig.load(meta["paths"]["checkpoint_config"])
    spec = get_task("sst2")
    _, dev_ds = train.make_datasets(config, spec, *train.load_data(config, spec))
    evaluator = DevEvaluator(dev_ds, spec)
    evaluator.set_model(plain)
    assert evaluator.evaluate()["dev_accuracy"] == pytest.approx(meta["final"]["dev_accuracy"])

    # evaluate.py scores the run's mask folder as the run did; an all-ones folder puts every unit back.
    env = {"GLUE_DIR": str(glue_dir), "TOKENIZER": str(bert_tokenizer_dir)}
    ckpt_dir = str(tmp_path / "out" / "checkpoints_gumbel_sst2")
    write_mask_folder(tmp_path / "ones", {kind: np.ones_like(mask) for kind, mask in saved.items()}, {})
    scored = []
    for folder in (masks_dir, str(tmp_path / "ones")):
        capsys.readouterr()
        assert evaluate.main(["--ckpt_dir", ckpt_dir, "--checkpoint", "last", "--masks_dir", folder,
                              "--max_eval_samples", "64"], env) == 0
        scored.append(json.loads(capsys.readouterr().out))
    assert scored[0]["dev_accuracy"] == meta["final"]["dev_accuracy"]
    assert scored[0]["dev_loss"] == pytest.approx(meta["final"]["dev_loss"], abs=1e-5)
    assert scored[0]["macs_kept_fraction"] == pytest.approx(float(rows[-1]["macs_kept"]))  # the CSV's MACs kept
    assert (scored[0]["kept_heads"], scored[0]["kept_neurons"]) == (saved["head"].sum(), saved["neuron"].sum())
    assert (scored[1]["kept_heads"], scored[1]["kept_neurons"]) == (2, 64) and scored[1]["macs_kept_fraction"] == 1


def test_wandb_offline_run_records_the_epoch_logs(tmp_path, glue_dir, bert_tokenizer_dir, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    meta = run_train(tmp_path, glue_dir, bert_tokenizer_dir, "--epochs", "1", "--max_train_samples", "64",
                     "--max_eval_samples", "32", "--wandb", "true", "--name", "offline-check")
    (record,) = (tmp_path / "out" / "results_baseline_sst2" / "wandb").glob("offline-run-*/run-*.wandb")
    data = record.read_bytes()
    assert b"offline-check" in data and b"dev_accuracy" in data
    assert meta["name"] == "offline-check"


@pytest.mark.parametrize("method", ["magnitude", "movement", "spt"])
def test_micro_structured_run_compacts_to_the_macs_its_csv_reports(tmp_path, glue_dir, bert_tokenizer_dir, method):
    from gated import compact_model, compact_shape

    meta = run_train(tmp_path, glue_dir, bert_tokenizer_dir, "--epochs", "3", "--max_train_samples", "160",
                     "--max_eval_samples", "64", "--pruning_method", method, "--pruning_granularity", "both",
                     "--pruning_start_epoch", "0", "--pruning_end_epoch", "2", "--end_sparsity", "0.5",
                     "--sparsity_steps", "25", "--pruning_frequency_steps", "5")
    assert meta["pruning"]["pruner"]["granularity"] == "both"
    (csv_path,) = (tmp_path / "out" / f"results_{method}_sst2").glob("results_*.csv")
    rows = list(csv.DictReader(csv_path.open()))
    reported = float(rows[-1]["macs_kept"])
    model = keras.saving.load_model(meta["paths"]["last_checkpoint"])
    assert get_weight_masks(model) == {}  # units go through gates: no per-weight kernel masks
    heads, widths = compact_shape(compact_model(model))
    # One block, d_model 32, 2 heads of 16, 64 neurons, 64 tokens: a head costs 4*64*32*16 + 2*64*64*16 MACs and
    # a neuron 2*64*32 (efficiency.mac, counted here by hand).
    head, neuron = 4 * 64 * 32 * 16 + 2 * 64 * 64 * 16, 2 * 64 * 32
    compact_macs = heads[0] * head + widths[0] * neuron
    assert compact_macs / (2 * head + 64 * neuron) == pytest.approx(reported)
    assert 0.5 - max(head, neuron) / (2 * head + 64 * neuron) < reported <= 0.5  # the target, overshot by < 1 unit
    # The weight sparsity beside it counts the removed units' kernel weights.
    removed = (2 - heads[0]) * (4 * 32 * 16) + (64 - widths[0]) * (2 * 32)
    assert float(rows[-1]["global_sparsity"]) == pytest.approx(removed / (4 * 32 * 32 + 2 * 32 * 64))


def test_micro_gumbel_run_distils_from_a_train_py_teacher(tmp_path, glue_dir, bert_tokenizer_dir, wordpiece_dir,
                                                          capsys):
    teacher_run = run_train(tmp_path / "teacher", glue_dir, bert_tokenizer_dir, "--epochs", "1",
                            "--max_train_samples", "96", "--max_eval_samples", "32")
    folder = tmp_path / "teacher" / "out" / "checkpoints_baseline_sst2"
    meta = run_train(tmp_path / "student", glue_dir, bert_tokenizer_dir, "--epochs", "2", "--max_train_samples",
                     "96", "--max_eval_samples", "32", "--pruning_method", "gumbel", "--teacher", str(folder),
                     "--distill_alpha", "0.8", "--distill_hidden_weight", "0.5", "--d_model", "16")
    assert meta["distillation"]["teacher"]["path"] == teacher_run["paths"]["best_checkpoint"]
    assert meta["distillation"]["alpha"] == 0.8 and meta["distillation"]["hidden_weight"] == 0.5
    (csv_path,) = (tmp_path / "student" / "out" / "results_gumbel_sst2").glob("results_*.csv")
    rows = list(csv.DictReader(csv_path.open()))
    # The task loss, the KD term and the hidden term apart, beside the mask learner's columns.
    for row in rows:
        assert float(row["train_loss"]) > 0 and float(row["distill_loss"]) > 0 and float(row["hidden_loss"]) > 0
        assert "sparsity_loss" in row
    # A teacher of another task, or of another vocabulary, is refused before any training.
    common = [*MICRO_FLAGS, "--data_dir", str(glue_dir), "--output_dir", str(tmp_path / "bad"), "--cache_dir",
              str(tmp_path / "cache"), "--teacher", str(folder), "--max_train_samples", "32"]
    assert train.main([*common, "--tokenizer", str(bert_tokenizer_dir), "--task", "rte"]) == 1
    assert "--task rte does not match the checkpoint's task sst2" in capsys.readouterr().err
    assert train.main([*common, "--tokenizer", str(wordpiece_dir)]) == 1
    assert "reads another vocabulary" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    # A resumed run takes only the teacher it distilled from.
    from experiment.config import ConfigError, GatedBertConfig

    config = GatedBertConfig.load(meta["paths"]["checkpoint_config"])
    spec = config.task_spec()
    tokenizer = train.load_data(config, spec)[0]
    _, source = train.load_teacher(config, spec, tokenizer, resumed=meta)
    assert source == meta["distillation"]["teacher"]
    changed = {**meta, "distillation": {"teacher": {**source, "weights_sha256": "0" * 64}}}
    with pytest.raises(ConfigError, match="its weights changed"):
        train.load_teacher(config, spec, tokenizer, resumed=changed)


def test_micro_soft_movement_run_reports_the_sparsity_its_regulariser_reached(tmp_path, glue_dir, bert_tokenizer_dir):
    from gated import compact_model, compact_shape, structured_gates

    # A micro model's neuron gates get tiny gradients: lambda 0.001 already removes about half of them (0: none).
    meta = run_train(tmp_path, glue_dir, bert_tokenizer_dir, "--epochs", "3", "--max_train_samples", "160",
                     "--max_eval_samples", "64", "--pruning_method", "soft_movement", "--pruning_granularity",
                     "neuron", "--soft_movement_lambda", "0.001", "--soft_movement_warmup", "0.5", "--masks_lr",
                     "0.1")
    assert meta["pruning"]["learner"]["granularity"] == "neuron"
    (csv_path,) = (tmp_path / "out" / "results_soft_movement_sst2").glob("results_*.csv")
    rows = list(csv.DictReader(csv_path.open()))
    # 27 steps, the warm-up over 14 of them: 9 steps into it after the first epoch.
    assert float(rows[0]["regularization_lambda"]) == pytest.approx(0.001 * 9 / 14)
    assert float(rows[-1]["regularization_lambda"]) == pytest.approx(0.001)
    model = keras.saving.load_model(meta["paths"]["last_checkpoint"])
    gates = structured_gates(model, ("head", "neuron"))
    assert np.all(gates["head"] == 1) and 0 < np.count_nonzero(gates["neuron"] == 0) < 64
    heads, widths = compact_shape(compact_model(model))
    head, neuron = 4 * 64 * 32 * 16 + 2 * 64 * 64 * 16, 2 * 64 * 32  # as in the structured test above
    assert float(rows[-1]["macs_kept"]) == pytest.approx((heads[0] * head + widths[0] * neuron)
                                                         / (2 * head + 64 * neuron))
    assert float(rows[-1]["global_sparsity"]) == pytest.approx((64 - widths[0]) * 2 * 32 / (4 * 32 * 32 + 2 * 32 * 64))


def test_micro_soft_movement_run_to_a_mac_target_logs_its_controller(tmp_path, glue_dir, bert_tokenizer_dir):
    meta = run_train(tmp_path, glue_dir, bert_tokenizer_dir, "--epochs", "3", "--max_train_samples", "160",
                     "--max_eval_samples", "64", "--pruning_method", "soft_movement", "--pruning_granularity",
                     "both", "--target_sparsity", "0.4", "--soft_movement_warmup", "0.5", "--masks_lr", "0.1")
    learner = meta["pruning"]["learner"]
    assert learner["target_sparsity"] == 0.4
    # At 64 tokens, width 32, heads of 16: a head 4*64*32*16 + 2*64*64*16 MACs, a neuron 2*64*32.
    assert learner["unit_costs"] == {"head": 4 * 64 * 32 * 16 + 2 * 64 * 64 * 16, "neuron": 2 * 64 * 32}
    (csv_path,) = (tmp_path / "out" / "results_soft_movement_sst2").glob("results_*.csv")
    rows = list(csv.DictReader(csv_path.open()))
    assert "regularization_lambda" not in rows[0]
    # 27 steps, the target ramped over 14 of them: 9 steps into it after the first epoch.
    assert [float(row["target_sparsity"]) for row in rows] == pytest.approx([0.4 * 9 / 14, 0.4, 0.4])
    assert float(rows[0]["lagrange_l1"]) < 0  # the masks lag the rising target: l1 pushes sparsity up
    assert float(rows[-1]["lagrange_l2"]) > 0
    assert float(rows[-1]["macs_kept"]) == pytest.approx(meta["final"]["macs_kept"])


def test_tensorboard_gets_every_epoch_scalar_of_the_csv(tmp_path, glue_dir, bert_tokenizer_dir):
    import tensorflow as tf

    meta = run_train(tmp_path, glue_dir, bert_tokenizer_dir, "--epochs", "2", "--max_train_samples", "96",
                     "--max_eval_samples", "32", "--pruning_method", "magnitude", "--pruning_granularity", "both",
                     "--pruning_start_epoch", "0", "--end_sparsity", "0.5", "--tensorboard", str(tmp_path / "tb"),
                     "--name", "tb-run")
    scalars = {}
    for path in (tmp_path / "tb" / "tb-run").rglob("events.out.tfevents.*"):
        for record in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                number = tf.make_ndarray(value.tensor) if value.HasField("tensor") else value.simple_value
                scalars.setdefault(value.tag, {})[event.step] = float(number)
    (csv_path,) = (tmp_path / "out" / "results_magnitude_sst2").glob("results_*.csv")
    rows = list(csv.DictReader(csv_path.open()))
    for name in ("dev_accuracy", "sparsity", "macs_kept", "target_sparsity"):
        column = "global_sparsity" if name == "sparsity" else name
        assert scalars[f"epoch_{name}"] == pytest.approx({e: float(row[column]) for e, row in enumerate(rows)}), name
    assert meta["config"]["tensorboard"] == str(tmp_path / "tb")


def test_wandb_project_entity_and_seed_groups_come_from_the_environment(monkeypatch):
    from callbacks import start_wandb_run, wandb_group
    from experiment.config import GatedBertConfig

    wandb = pytest.importorskip("wandb")
    seen = {}
    monkeypatch.setattr(wandb, "init", lambda **kwargs: seen.update(kwargs))
    config = GatedBertConfig(pruning_method="magnitude", end_sparsity=0.5).to_dict()
    start_wandb_run("r", config, "/tmp", {"WANDB_PROJECT": "papers", "WANDB_ENTITY": "lab"})
    assert (seen["project"], seen["entity"], seen["group"]) == ("papers", "lab", wandb_group(config))
    start_wandb_run("r", config, "/tmp", {})
    assert (seen["project"], seen["entity"]) == ("gated-bert", None)
    other_seed = GatedBertConfig(pruning_method="magnitude", end_sparsity=0.5, seed=7, name="x").to_dict()
    other_target = GatedBertConfig(pruning_method="magnitude", end_sparsity=0.6).to_dict()
    assert wandb_group(other_seed) == wandb_group(config) != wandb_group(other_target)
    assert wandb_group(config).startswith("magnitude_sst2_")


def test_micro_run_with_layer_wise_rate_decay_saves_a_model_that_reloads_with_its_optimizer(
        tmp_path, glue_dir, bert_tokenizer_dir):
    meta = run_train(tmp_path, glue_dir, bert_tokenizer_dir, "--task", "sst2", "--epochs", "1",
                     "--max_train_samples", "64", "--max_eval_samples", "32", "--layer_lr_decay", "0.5")
    assert meta["status"] == "completed" and meta["config"]["layer_lr_decay"] == 0.5
    (best,) = (tmp_path / "out" / "checkpoints_baseline_sst2").glob("best_*.keras")
    optimizer = keras.saving.load_model(best).optimizer  # compiled: the optimizer is rebuilt from its config
    assert type(optimizer).__name__ == "LayerwiseAdamW"
    assert (optimizer.num_layers, optimizer.layer_decay) == (1, 0.5)
