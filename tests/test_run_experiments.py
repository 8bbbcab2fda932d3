"""run_experiments.sh: validation, parallel micro runs, failure isolation, SIGTERM; plot_comparison.py on fixtures."""

import csv
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO

pytestmark = pytest.mark.heavy  # minutes of train.py runs: scheduled first (conftest.py)

SCRIPT = REPO / "run_experiments.sh"
MICRO = ["--max_train_samples", "160", "--max_eval_samples", "64", "--num_layers", "1", "--d_model", "32",
         "--num_heads", "2", "--dff", "64", "--max_len", "64", "--batch_size", "32"]


def run_script(*args, env=None, timeout=300):
    environment = {**os.environ, "PYTHON": sys.executable, **(env or {})}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          env=environment, timeout=timeout)


def data_env(glue_dir, tokenizer_dir, tmp_path):
    return {"GLUE_DIR": str(glue_dir), "TOKENIZER": str(tokenizer_dir), "CACHE_DIR": str(tmp_path / "cache"),
            "HF_HUB_OFFLINE": "1"}


@pytest.mark.parametrize(("args", "message"), [
    (["-e", "0"], "--epochs must be a positive integer, got '0'"),
    (["-b", "x"], "--batch-size must be a positive integer, got 'x'"),
    (["-l", "fast"], "--learning-rate must be a positive number (e.g. 1e-3), got 'fast'"),
    (["-m", "huge"], "unknown --model-size 'huge'; choose one of: tiny small base large"),
    (["-t", "squad"], "unknown --task 'squad'"),
    (["-p", "baseline,pruney"],
     "unknown method 'pruney'; choose from: baseline magnitude movement spt soft_movement gumbel"),
    (["-s", "1.5"], "--start-sparsity must be a number in [0, 1], got '1.5'"),
    (["-f", "-0.1"], "--end-sparsity must be a number in [0, 1], got '-0.1'"),
    (["-ts", "half"], "--target-sparsity must be a number in [0, 1], got 'half'"),
    (["-se", "maybe"], "--spt-explore must be true or false, got 'maybe'"),
    (["-g", "rows"], "unknown --granularity 'rows'; choose one of: weight neuron head both"),
    (["-ss", "10 x"], "--sparsity-steps must be space-separated percentages, got 'x'"),
    (["-ml", "-3"], "--max-len must be a positive integer, got '-3'"),
    (["-max-parallel-jobs", "0"], "-max-parallel-jobs must be a positive integer, got '0'"),
    (["-o", "loud"], "unknown --output-mode 'loud'; choose one of: bars logs both"),
    (["--frobnicate"], "unknown option '--frobnicate'"),
])
def test_each_invalid_value_stops_before_any_job(tmp_path, args, message):
    result = run_script(*args, "-d", str(tmp_path / "out"))
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "out").exists()  # nothing started, nothing written


def test_several_problems_are_all_reported(tmp_path):
    result = run_script("-e", "0", "-m", "huge", "-d", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.count("error:") == 2


def test_help_is_true_to_the_code():
    from experiment.config import GatedBertConfig
    from gated import PRESETS
    from gated_bert.vocabulary import METHODS
    from tasks import TASKS

    result = run_script("-h")
    assert result.returncode == 0 and "Usage: ./run_experiments.sh" in result.stdout
    assert " ".join(METHODS) in result.stdout
    text = SCRIPT.read_text()
    assert re.search(r"^SIZES=\((.*)\)$", text, re.M).group(1).split() == list(PRESETS)
    task_choices = next(f for f in dataclasses.fields(GatedBertConfig) if f.name == "task").metadata["choices"]
    assert set(re.search(r"^TASKS=\((.*)\)$", text, re.M).group(1).split()) == set(task_choices) == {*TASKS, "custom"}
    defaults = GatedBertConfig()
    for flag, value in (("--epochs N", defaults.epochs), ("--batch-size N", defaults.batch_size),
                        ("--max-len N", defaults.max_len), ("--pruning-start N", defaults.pruning_start_epoch)):
        assert re.search(rf"{flag} .*\[{value}\]", result.stdout), flag


def test_parallel_micro_run_of_two_methods(tmp_path, glue_dir, bert_tokenizer_dir):
    out = tmp_path / "out"
    # -g goes to magnitude only: baseline would refuse a granularity.
    result = run_script("-parallel", "-p", "baseline,magnitude", "-e", "2", "-ps", "0", "-pe", "5", "-f", "0.5",
                        "-g", "both", "-o", "both", "-d", str(out), "--", *MICRO,
                        env=data_env(glue_dir, bert_tokenizer_dir, tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "--pruning-end 5 is past --epochs 2; capped at 2" in result.stdout
    assert "parallel, up to 2 jobs, 1 CPU thread(s) each" in result.stdout
    sparsity = {}
    for method in ("baseline", "magnitude"):
        (metadata,) = (out / f"results_{method}_sst2").glob("metadata_*.json")
        meta = json.loads(metadata.read_text())
        assert meta["status"] == "completed" and meta["config"]["intra_op_threads"] == 1
        assert meta["config"]["pruning_granularity"] == ("both" if method == "magnitude" else "weight")
        sparsity[method] = meta["final"]["global_sparsity"]
        assert re.search(rf"^{method} +\[#{{30}}\] +100.0%  epoch 2/2", result.stdout, re.M)
        assert re.search(rf"^{method} +done +0\.\d{{4}} +{sparsity[method]:.4f}", result.stdout, re.M)
        assert (out / "experiment_logs" / f"work_{method}_sst2").is_dir()
        assert list((out / "experiment_logs").glob(f"run_experiments_{method}_sst2_*.log"))
    assert (out / "pruning_methods_comparison_dual_axis.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "accuracy_vs_sparsity.png").stat().st_size > 0
    assert (out / "pareto_sst2.png").stat().st_size > 0  # the paper figure: one point per run
    rows = list(csv.DictReader((out / "comparison_summary.csv").open()))
    assert [row["method"] for row in rows] == ["baseline", "magnitude"]
    assert sparsity["baseline"] == 0 and sparsity["magnitude"] > 0.3  # heads and neurons went, with their weights
    assert meta["final"]["macs_kept"] <= 0.5
    assert float(rows[1]["final_sparsity"]) == pytest.approx(sparsity["magnitude"], abs=1e-4)


def test_a_job_that_would_fail_stops_the_run_before_any_job_starts(tmp_path, glue_dir, bert_tokenizer_dir):
    out = tmp_path / "out"
    # -e 1 with train.py's default pruning window (pruning starts after epoch 4): magnitude cannot prune.
    result = run_script("-p", "baseline,magnitude", "-e", "1", "-d", str(out))
    assert result.returncode == 2
    assert ("error: magnitude: pruning_start_epoch=4 leaves no epoch to prune in: it must be below "
            "pruning_end_epoch=23 and epochs=1") in result.stderr
    assert "no job was started" in result.stderr and "--pruning_start_epoch -ps" in result.stderr
    assert not out.exists()
    # Every job's problem is reported at once: target_sparsity is a setting of learned masks, which the others refuse.
    result = run_script("-p", "baseline,movement,gumbel", "-d", str(out), "--", "--target_sparsity", "0.5")
    assert result.returncode == 2
    assert result.stderr.count("target_sparsity is used by learned masks only") == 2
    assert "error: baseline: " in result.stderr and "error: movement: " in result.stderr
    assert "gumbel:" not in result.stderr and not out.exists()


def test_values_of_a_config_file_after_the_double_dash_reach_train_py(tmp_path, glue_dir, bert_tokenizer_dir):
    out, recipe = tmp_path / "out", tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"epochs": 2, "learning_rate": 5e-4, "max_len": 48, "batch_size": 64,
                                  "max_train_samples": 128, "max_eval_samples": 32, "num_layers": 1, "d_model": 32,
                                  "num_heads": 2, "dff": 64, "task": "sst2"}))
    result = run_script("-p", "baseline", "-o", "bars", "-d", str(out), "--", "--config", str(recipe),
                        env=data_env(glue_dir, bert_tokenizer_dir, tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "training:       2 epochs, batch 64, learning rate 0.0005" in result.stdout  # resolved, not the defaults
    (metadata,) = (out / "results_baseline_sst2").glob("metadata_*.json")
    config = json.loads(metadata.read_text())["config"]
    assert (config["epochs"], config["learning_rate"], config["max_len"], config["batch_size"]) == (2, 5e-4, 48, 64)
    assert config["max_train_samples"] == 128 and config["d_model"] == 32
    assert re.search(r"^baseline +\[#{30}\] +100.0%  epoch 2/2", result.stdout, re.M)


def test_a_failed_job_leaves_the_other_complete(tmp_path, glue_dir, bert_tokenizer_dir):
    out = tmp_path / "out"
    environment = {**os.environ, "PYTHON": sys.executable, **data_env(glue_dir, bert_tokenizer_dir, tmp_path)}
    # 12 epochs of a micro run: seconds of training in which to find and kill the job, even on a loaded machine.
    script = subprocess.Popen(["bash", str(SCRIPT), "-parallel", "-p", "baseline,gumbel", "-e", "12", "-o", "logs",
                               "-d", str(out), "--", *MICRO], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=environment)
    progress = out / "experiment_logs" / "work_gumbel_sst2" / "progress"
    deadline = time.monotonic() + 120
    while not progress.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    os.kill(_train_job(out, "gumbel"), signal.SIGKILL)  # the gumbel job dies mid-run; the baseline goes on
    stdout, stderr = script.communicate(timeout=300)
    assert script.returncode == 1
    assert "failed jobs: gumbel" in stderr
    assert "FAILED: gumbel, failed (exit 137)" in stdout
    assert "[baseline] " in stdout  # logs mode streams each job's lines with its method
    (metadata,) = (out / "results_baseline_sst2").glob("metadata_*.json")
    assert json.loads(metadata.read_text())["status"] == "completed"
    assert re.search(r"^gumbel +failed \(exit 137\)", stdout, re.M)


def _processes_mentioning(*texts, where="cmdline"):
    """Processes whose /proc `where` (cmdline, or environ: what every descendant inherits) holds every one of
    `texts`. Name the test's own output folder among them: tests running in parallel start the same commands."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/{where}", "rb") as handle:
                content = handle.read()
            if all(text.encode() in content for text in texts):
                found.append(int(pid))
        except OSError:
            continue
    return found


def _train_job(out, method):
    """The process id of the one train.py job of `method` that writes under `out` (a run's own folder: tests
    running in parallel start the same jobs elsewhere)."""
    (pid,) = _processes_mentioning("train.py\0", f"--pruning_method\0{method}\0", str(out))
    return pid


def _start_two_long_jobs(out, environment, methods=("baseline", "movement"), **popen):
    """run_experiments.sh with two methods for 50 epochs in parallel, once both train."""
    script = subprocess.Popen(["bash", str(SCRIPT), "-parallel", "-p", ",".join(methods), "-e", "50", "-ps", "0",
                               "-o", "bars", "-d", str(out), "--", *MICRO], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment, **popen)
    progress = [out / "experiment_logs" / f"work_{method}_sst2" / "progress" for method in methods]
    deadline = time.monotonic() + 120
    while not all(path.exists() for path in progress) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert all(path.exists() for path in progress), "the jobs never started training"
    return script


def test_sigterm_stops_every_job(tmp_path, glue_dir, bert_tokenizer_dir):
    out = tmp_path / "out"
    environment = {**os.environ, "PYTHON": sys.executable, **data_env(glue_dir, bert_tokenizer_dir, tmp_path)}
    script = _start_two_long_jobs(out, environment)
    assert len(_processes_mentioning(str(out))) >= 3  # the script and its two train.py jobs
    script.send_signal(signal.SIGTERM)
    stdout, stderr = script.communicate(timeout=60)
    assert script.returncode == 143, f"stdout:\n{stdout[-2000:]}\nstderr:\n{stderr[-2000:]}"
    assert "stopping:" in stderr
    time.sleep(0.5)
    assert _processes_mentioning(str(out)) == []
    for method in ("baseline", "movement"):  # train.py recorded the interruption
        (metadata,) = (out / f"results_{method}_sst2").glob("metadata_*.json")
        recorded = json.loads(metadata.read_text())
        assert recorded["status"] == "interrupted", recorded.get("error")


def test_ctrl_c_to_the_process_group_records_every_job_interrupted(tmp_path, glue_dir, bert_tokenizer_dir):
    # Ctrl-C at a terminal sends SIGINT to the whole foreground process group: the script and its jobs.
    out = tmp_path / "out"
    environment = {**os.environ, "PYTHON": sys.executable, **data_env(glue_dir, bert_tokenizer_dir, tmp_path)}
    # SIGINT as at a terminal: a test run started in the background would hand it down ignored, and bash cannot
    # trap a signal ignored when it starts.
    script = _start_two_long_jobs(out, environment, ("baseline", "gumbel"), start_new_session=True,
                                  preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    os.killpg(script.pid, signal.SIGINT)
    stdout, stderr = script.communicate(timeout=60)
    assert script.returncode == 130, f"stdout:\n{stdout[-2000:]}\nstderr:\n{stderr[-2000:]}"
    time.sleep(0.5)
    assert _processes_mentioning(str(out)) == []
    for method in ("baseline", "gumbel"):
        (metadata,) = (out / f"results_{method}_sst2").glob("metadata_*.json")
        recorded = json.loads(metadata.read_text())
        assert recorded["status"] == "interrupted", recorded.get("error")
        assert recorded["epochs_completed"] == len(recorded["timings"]["epoch_seconds"])
        progress = (out / "experiment_logs" / f"work_{method}_sst2" / "progress").read_text().split()
        assert progress[-1] == "interrupted"


def test_resume_continues_the_unfinished_jobs_and_skips_the_completed(tmp_path, glue_dir, bert_tokenizer_dir):
    out = tmp_path / "out"
    environment = {**os.environ, "PYTHON": sys.executable, **data_env(glue_dir, bert_tokenizer_dir, tmp_path)}
    # 12 epochs: seconds of training after the first epoch's state in which to kill the job, even on a loaded machine.
    flags = ["-parallel", "-p", "baseline,gumbel", "-e", "12", "-o", "logs", "-d", str(out), "--", *MICRO]
    script = subprocess.Popen(["bash", str(SCRIPT), *flags], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=environment)
    states = out / "checkpoints_gumbel_sst2"
    deadline = time.monotonic() + 120
    while not list(states.glob("resume_*.npz")) and time.monotonic() < deadline:
        time.sleep(0.1)
    os.kill(_train_job(out, "gumbel"), signal.SIGKILL)  # killed after its first epoch; the baseline completes
    script.communicate(timeout=300)
    assert script.returncode == 1
    (killed,) = (out / "results_gumbel_sst2").glob("metadata_*.json")
    assert json.loads(killed.read_text())["status"] == "running"

    again = run_script(*flags[:-len(MICRO) - 1], "-resume", "--", *MICRO, env=data_env(glue_dir, bert_tokenizer_dir,
                                                                                         tmp_path))
    assert again.returncode == 0, again.stderr[-2000:]
    assert "baseline: its latest run completed; not run again" in again.stdout
    assert "gumbel: resuming its unfinished run" in again.stdout
    assert re.search(r"^baseline +done \(earlier\)", again.stdout, re.M)
    (resumed,) = (out / "results_gumbel_sst2").glob("metadata_*.json")  # the same run, continued
    meta = json.loads(resumed.read_text())
    assert meta["status"] == "completed" and meta["epochs_completed"] == 12 and len(meta["resumed"]) == 1
    assert len(list((out / "results_baseline_sst2").glob("metadata_*.json"))) == 1  # not trained again


def test_a_failure_of_the_script_itself_names_the_line_and_stops_every_job(tmp_path, glue_dir, bert_tokenizer_dir):
    # A stand-in `sleep` fails the main loop's `sleep 0.5` once the jobs train: an error in the script itself.
    out, bin_dir, fail = tmp_path / "out", tmp_path / "bin", tmp_path / "fail-now"
    bin_dir.mkdir()
    real = shutil.which("sleep")
    (bin_dir / "sleep").write_text(f'#!/bin/sh\n[ "$1" = 0.5 ] && [ -e {fail} ] && exit 3\nexec {real} "$@"\n')
    (bin_dir / "sleep").chmod(0o755)
    environment = {**os.environ, "PYTHON": sys.executable, "PATH": f"{bin_dir}:{os.environ['PATH']}",
                   **data_env(glue_dir, bert_tokenizer_dir, tmp_path)}
    script = _start_two_long_jobs(out, environment)
    fail.touch()
    stdout, stderr = script.communicate(timeout=60)
    assert script.returncode == 3, f"stdout:\n{stdout[-2000:]}\nstderr:\n{stderr[-2000:]}"
    assert re.search(r'error: run_experiments.sh line \d+: "sleep 0.5" failed with status 3', stderr)
    assert "stopping the jobs still running:" in stderr
    time.sleep(0.5)
    assert _processes_mentioning(str(out)) == []  # no train.py outlives the script


def _fixture_run(root, method, stamp, accuracies, sparsities, wall, status="completed"):
    results = root / f"results_{method}_sst2"
    results.mkdir(parents=True, exist_ok=True)
    csv_path = results / f"results_{method}_{stamp}.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", "train_loss", "dev_loss", "dev_accuracy", "target_sparsity", "global_sparsity"])
        for epoch, (accuracy, sparsity) in enumerate(zip(accuracies, sparsities, strict=True), start=1):
            writer.writerow([epoch, 0.5, 0.6, accuracy, sparsity, sparsity])
    rows = [{"epoch": e + 1, "dev_accuracy": a, "global_sparsity": s}
            for e, (a, s) in enumerate(zip(accuracies, sparsities, strict=True))]
    best = max((row for row in rows if row["global_sparsity"] == sparsities[-1]), key=lambda r: r["dev_accuracy"])
    meta = {"method": method, "timestamp": stamp, "status": status, "primary_metric": "dev_accuracy", "best": best,
            "final": rows[-1],
            "model": {"parameters": 2000, "trainable_parameters": 1500, "prunable_weights": 1000},
            "timings": {"train_wall_seconds": wall}, "paths": {"csv": str(csv_path)}}
    (results / f"metadata_{method}_{stamp}.json").write_text(json.dumps(meta))


def test_plot_comparison_on_fixtures(tmp_path, capsys):
    from experiment import compare as plot_comparison

    # A run killed outright: its metadata still says running, with the epochs it finished.
    _fixture_run(tmp_path, "baseline", "20260101_000000_000001", [0.70, 0.80, 0.78], [0, 0, 0], 125.0, "running")
    _fixture_run(tmp_path, "movement", "20260101_000000_000001", [0.60, 0.65, 0.66], [0.1, 0.5, 0.9], 61.0)
    _fixture_run(tmp_path, "movement", "20260102_000000_000001", [0.70, 0.75, 0.74], [0.2, 0.9, 0.9], 70.0)
    assert plot_comparison.main(["--results_dir", str(tmp_path), "--formats", "png", "svg"]) == 0
    rows = list(csv.DictReader((tmp_path / "comparison_summary.csv").open()))
    assert [(row["method"], row["run"]) for row in rows] == [("baseline", "20260101_000000_000001"),
                                                             ("movement", "20260102_000000_000001")]  # latest
    assert [float(row["best_dev"]) for row in rows] == [0.80, 0.75]
    assert [float(row["final_dev"]) for row in rows] == [0.78, 0.74]
    assert [float(row["final_sparsity"]) for row in rows] == [0.0, 0.9]
    assert [int(row["parameters_remaining"]) for row in rows] == [1500, 600]
    assert [float(row["wall_seconds"]) for row in rows] == [125.0, 70.0]
    markdown = (tmp_path / "comparison_summary.md").read_text()
    assert [row["status"] for row in rows] == ["incomplete", "completed"]
    assert "| movement | 20260102_000000_000001 | completed | 0.7500 | 0.7400 | 0.9000 | 600 | 1m10s |" in markdown
    assert markdown in capsys.readouterr().out
    for name in ("pruning_methods_comparison_dual_axis", "accuracy_vs_sparsity"):
        assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert b"<svg" in (tmp_path / f"{name}.svg").read_bytes()[:500]
    assert plot_comparison.main(["--results_dir", str(tmp_path), "--all", "--output_dir", str(tmp_path / "all")]) == 0
    assert len(list(csv.DictReader((tmp_path / "all" / "comparison_summary.csv").open()))) == 3
    assert plot_comparison.main(["--results_dir", str(tmp_path / "none")]) == 1


def test_progress_file_reports_percent_epoch_and_metric(tmp_path):
    import keras
    import numpy as np

    from callbacks import ProgressFile

    class DevMetric(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["dev_accuracy"] = 0.5 + epoch / 10

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    path = tmp_path / "work" / "progress"
    seen = []

    class Reader(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(path.read_text().split())

    progress = ProgressFile(str(path), epochs=2, steps_per_epoch=4, metric="dev_accuracy", interval=0.0)
    x, y = np.ones((16, 3), "float32"), np.ones((16, 1), "float32")
    model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[DevMetric(), progress, Reader()])
    assert seen == [["50.0", "1", "2", "dev_accuracy", "0.5000", "running"],
                    ["100.0", "2", "2", "dev_accuracy", "0.6000", "running"]]
    assert path.read_text().split()[-1] == "done"
