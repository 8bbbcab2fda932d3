"""run_experiments.sh grids (-seeds, -sparsities, -tasks) and its Ray backend: a local instance, two nodes on this
machine, failure isolation, SIGTERM, and the error without ray."""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

from test_run_experiments import MICRO, SCRIPT, _processes_mentioning, _train_job, data_env, run_script

pytestmark = pytest.mark.heavy  # minutes of train.py runs: scheduled first (conftest.py)

RECIPE = ["-e", "2", "-ps", "0", "-pe", "1", "-o", "logs"]


@pytest.fixture
def ray_installed():
    try:
        import ray  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must have ray (the dev extra installs it)", pytrace=False)
        pytest.skip("ray is not installed")


def _listed(result):
    """`{job: train.py flags}` from `-list`."""
    assert result.returncode == 0, result.stderr
    jobs = {}
    for line in result.stdout.splitlines():
        job, folder, command = line.split("\t")
        jobs[job] = (folder, command.split())
    return jobs


def _flag(command, name):
    return command[command.index(name) + 1] if name in command else None


def test_a_grid_is_every_combination_with_the_baseline_once_per_seed(tmp_path):
    out = tmp_path / "out"
    jobs = _listed(run_script("-list", "-p", "baseline,magnitude", "-sparsities", "0.5,0.9", "-seeds", "0,1",
                              *RECIPE, "-d", str(out)))
    expected = {"baseline_sst2_dense_seed0", "baseline_sst2_dense_seed1"} | {
        f"magnitude_sst2_sparsity{target}_seed{seed}" for target in ("0.5", "0.9") for seed in (0, 1)}
    assert set(jobs) == expected and len(jobs) == 6
    for job, (folder, command) in jobs.items():
        method, task, setting, seed = job.split("_")
        assert folder == str(out / job) and _flag(command, "--output_dir") == folder  # a folder each
        assert _flag(command, "--seed") == seed.removeprefix("seed") and _flag(command, "--task") == task
        assert _flag(command, "--end_sparsity") == (None if method == "baseline" else setting.removeprefix("sparsity"))
    assert not out.exists()  # -list runs nothing and writes nothing
    # gumbel and soft movement take their targets from -sparsities as --target_sparsity; -tasks multiplies.
    jobs = _listed(run_script("-list", "-p", "gumbel,soft_movement", "-sparsities", "0.3", "-tasks", "sst2,rte",
                              "-g", "both", "-d", str(out)))
    assert set(jobs) == {"gumbel_sst2_sparsity0.3_seed42", "gumbel_rte_sparsity0.3_seed42",
                         "soft_movement_sst2_sparsity0.3_seed42", "soft_movement_rte_sparsity0.3_seed42"}
    for job, (_, command) in jobs.items():
        assert _flag(command, "--target_sparsity") == "0.3" and _flag(command, "--end_sparsity") is None
        assert _flag(command, "--pruning_granularity") == ("both" if job.startswith("soft") else None)
    # Without a target, soft movement's setting is its lambda.
    jobs = _listed(run_script("-list", "-p", "soft_movement", "-seeds", "0", "-d", str(out)))
    assert set(jobs) == {"soft_movement_sst2_lambda10_seed0"}
    # Without a grid flag the jobs keep the one-folder layout.
    jobs = _listed(run_script("-list", "-p", "baseline,movement", *RECIPE, "-d", str(out)))
    assert {job: folder for job, (folder, _) in jobs.items()} == {"baseline": str(out), "movement": str(out)}


@pytest.mark.parametrize(("args", "message"), [
    (["-seeds", "0,x"], "-seeds must be a comma list of non-negative integers, got 'x'"),
    (["-seeds", "1,1"], "-seeds lists a value twice: 1 1"),
    (["-sparsities", "0.5,2"], "-sparsities must be a number in [0, 1], got '2'"),
    (["-sparsities", "0.5", "-f", "0.9"], "-sparsities sets each job's -f (and gumbel's and soft_movement's -ts)"),
    (["-tasks", "sst2,squad"], "unknown task 'squad' in -tasks"),
    (["-tasks", "sst2", "-t", "rte"], "give -t or -tasks, not both"),
    (["-backend", "spark"], "unknown -backend 'spark'; choose local or ray"),
    (["-ray-address", "auto"], "-ray-address 'auto' needs -backend ray"),
])
def test_grid_and_backend_mistakes_stop_before_any_job(tmp_path, args, message):
    result = run_script(*args, "-d", str(tmp_path / "out"))
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "out").exists()


def _metadata(folder, method, task="sst2"):
    (path,) = (folder / f"results_{method}_{task}").glob("metadata_*.json")
    return json.loads(path.read_text())


def test_grid_jobs_write_their_own_folders_and_a_rerun_never_overwrites_one(tmp_path, glue_dir, bert_tokenizer_dir):
    out, env = tmp_path / "out", data_env(glue_dir, bert_tokenizer_dir, tmp_path)
    first = run_script("-parallel", "-p", "baseline", "-seeds", "0,1", "-e", "1", "-o", "bars", "-d", str(out), "--",
                       *MICRO, env=env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    finished = {}
    for seed in (0, 1):
        folder = out / f"baseline_sst2_dense_seed{seed}"
        meta = _metadata(folder, "baseline")
        assert meta["status"] == "completed" and meta["config"]["seed"] == seed
        finished[seed] = {path: path.stat().st_mtime_ns for path in folder.rglob("*") if path.is_file()}
    assert re.search(r"^baseline +sst2 +dense +2 +0\.\d{4} ± 0\.\d{4}", first.stdout, re.M)  # mean ± std of 2 seeds

    again = run_script("-p", "baseline", "-seeds", "0,1,2", "-e", "1", "-o", "bars", "-d", str(out), "--", *MICRO,
                       env=env)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    for seed in (0, 1):
        assert f"baseline_sst2_dense_seed{seed}: its latest run completed; not run again" in again.stdout
        assert re.search(rf"^baseline_sst2_dense_seed{seed} +done \(earlier\)", again.stdout, re.M)
        folder = out / f"baseline_sst2_dense_seed{seed}"
        assert {path: path.stat().st_mtime_ns for path in folder.rglob("*") if path.is_file()} == finished[seed]
    assert _metadata(out / "baseline_sst2_dense_seed2", "baseline")["status"] == "completed"
    assert re.search(r"^baseline +sst2 +dense +3 ", again.stdout, re.M)
    assert "| baseline | None | 3 | 0 1 2 |" in (out / "pareto_sst2.md").read_text()  # plot_comparison's grouping


# -- The Ray backend ------------------------------------------------------------------------------------------

# Two jobs: one per node of the two-node cluster, one per core with the local backend.
GRID = ["-p", "baseline,magnitude", "-sparsities", "0.5", "-seeds", "0"]
GRID_JOBS = ("baseline_sst2_dense_seed0", "magnitude_sst2_sparsity0.5_seed0")


def _results(out):
    """`{job: (files with their timestamps cut, best dev, final sparsity)}` of a grid's folders."""
    found = {}
    for job in GRID_JOBS:
        files = sorted(re.sub(r"\d{8}_\d{6}(_\d{6})?", "T", str(path.relative_to(out / job)))
                       for path in (out / job).rglob("*") if path.is_file())
        meta = _metadata(out / job, job.split("_")[0])
        assert meta["status"] == "completed", (job, meta.get("error"))
        found[job] = (files, meta["best"]["dev_accuracy"], meta["final"]["global_sparsity"])
    return found


def test_ray_backend_gives_the_local_backends_results(tmp_path, glue_dir, bert_tokenizer_dir, ray_installed):
    env = data_env(glue_dir, bert_tokenizer_dir, tmp_path)
    local = run_script("-parallel", *GRID, *RECIPE, "-d", str(tmp_path / "local"), "--", *MICRO, env=env)
    assert local.returncode == 0, local.stdout[-3000:] + local.stderr[-3000:]
    ray = run_script("-backend", "ray", *GRID, *RECIPE, "-d", str(tmp_path / "ray"), "--", *MICRO, env=env)
    assert ray.returncode == 0, ray.stdout[-3000:] + ray.stderr[-3000:]
    assert "[ray] ray: started a local instance" in ray.stdout and "1 node(s), 2 CPUs" in ray.stdout
    assert "Ray tasks on a local instance on 127.0.0.1" in ray.stdout
    assert _results(tmp_path / "ray") == _results(tmp_path / "local")  # the same files and the same numbers
    for job in GRID_JOBS:  # the summary names each job's node
        assert re.search(rf"^{job} +done +0\.\d{{4}} +0\.\d{{4}} +\S+/127\.0\.0\.1/[0-9a-f]{{8}} ", ray.stdout, re.M)
    assert (tmp_path / "ray" / "pareto_sst2.png").stat().st_size > 0
    (driver_log,) = (tmp_path / "ray" / "experiment_logs").glob("ray_*.log")  # kept once the run ends
    assert "ray: started a local instance" in driver_log.read_text()


def _processes_with(marker):
    """Processes whose environment holds `marker`: everything a run started, Ray's daemons and workers included."""
    return _processes_mentioning(marker, where="environ")


def _command_line(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace")[:200]
    except OSError:
        return "(gone)"


def _start(args, environment):
    return subprocess.Popen(["bash", str(SCRIPT), *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=environment)


def _wait_for(paths, timeout=120):
    deadline = time.monotonic() + timeout
    while not all(path.exists() for path in paths) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert all(path.exists() for path in paths), f"never appeared: {[p for p in paths if not p.exists()]}"


def test_a_failed_ray_job_is_reported_and_the_other_completes(tmp_path, glue_dir, bert_tokenizer_dir, ray_installed):
    out = tmp_path / "out"
    environment = {**os.environ, "PYTHON": sys.executable, **data_env(glue_dir, bert_tokenizer_dir, tmp_path)}
    script = _start(["-backend", "ray", "-p", "gumbel,baseline", "-seeds", "0", "-e", "3", "-ps", "0",
                     "-o", "bars", "-d", str(out), "--", *MICRO], environment)
    _wait_for([out / "experiment_logs" / "work_gumbel_sst2_untargeted_seed0" / "progress"])
    os.kill(_train_job(out, "gumbel"), signal.SIGKILL)  # its train.py, not the Ray worker; the other goes on
    stdout, stderr = script.communicate(timeout=300)
    assert script.returncode == 1, stdout[-3000:] + stderr[-3000:]
    assert "failed jobs: gumbel_sst2_untargeted_seed0" in stderr
    assert "FAILED: gumbel_sst2_untargeted_seed0, failed (exit 137)" in stdout
    assert _metadata(out / "baseline_sst2_dense_seed0", "baseline")["status"] == "completed"


def test_sigterm_stops_every_ray_task_and_the_instance(tmp_path, glue_dir, bert_tokenizer_dir, ray_installed):
    out, marker = tmp_path / "out", f"GATED_BERT_TEST_RUN={uuid.uuid4().hex}"
    key, value = marker.split("=")
    environment = {**os.environ, "PYTHON": sys.executable, key: value,
                   **data_env(glue_dir, bert_tokenizer_dir, tmp_path)}
    script = _start(["-backend", "ray", "-p", "baseline,movement", "-seeds", "0", "-e", "50", "-ps", "0", "-o", "bars",
                     "-d", str(out), "--", *MICRO], environment)
    _wait_for([out / "experiment_logs" / f"work_{job}" / "progress"
               for job in ("baseline_sst2_dense_seed0", "movement_sst2_sparsity0.99_seed0")])
    started = _processes_with(marker)
    assert len(started) >= 5  # the script, the driver, Ray's daemons, two workers and their train.py
    script.send_signal(signal.SIGTERM)
    stdout, stderr = script.communicate(timeout=90)
    assert script.returncode == 143, f"stdout:\n{stdout[-2000:]}\nstderr:\n{stderr[-2000:]}"
    deadline = time.monotonic() + 10
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = {pid: _command_line(pid) for pid in _processes_with(marker)}
    assert left == {}  # no train.py, Ray worker or Ray daemon of this run is left
    for method, setting in (("baseline", "dense"), ("movement", "sparsity0.99")):  # train.py recorded it
        meta = _metadata(out / f"{method}_sst2_{setting}_seed0", method)
        assert meta["status"] == "interrupted", meta.get("error")


def test_ray_backend_without_ray_is_a_clear_error(tmp_path):
    shadow = tmp_path / "shadow" / "ray"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    result = run_script("-backend", "ray", "-p", "baseline", "-d", str(tmp_path / "out"),
                        env={"PYTHONPATH": str(shadow.parent)})
    assert result.returncode == 2
    assert "-backend ray needs the ray package" in result.stderr and "pip install 'gated-bert[ray]'" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_setting_mistake_with_the_ray_backend_leaves_no_process_and_no_folder(tmp_path, ray_installed):
    # The driver starts its Ray instance while train.py --dry_run checks the jobs; a job that would fail ends the
    # run before any starts, and whatever the driver began is stopped.
    marker = f"GATED_BERT_TEST_RUN={uuid.uuid4().hex}"
    key, value = marker.split("=")
    result = run_script("-backend", "ray", "-p", "baseline,magnitude", "-seeds", "0,1,2", "-d", str(tmp_path / "out"),
                        "--", "--no_such_flag", "1", env={key: value})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "magnitude (task default, sparsity default, seed 2): unrecognized arguments: --no_such_flag 1" in \
        result.stderr
    assert not (tmp_path / "out").exists()
    assert _processes_with(marker) == []


def test_the_ray_driver_starts_ray_before_its_jobs_exist_and_stops_it_when_told_first(tmp_path, ray_installed):
    marker = f"GATED_BERT_TEST_RUN={uuid.uuid4().hex}"
    key, value = marker.split("=")
    log = tmp_path / "driver.log"
    with open(log, "w") as handle:
        driver = subprocess.Popen([sys.executable, "-m", "experiment.ray_jobs", "--jobs", str(tmp_path / "jobs.jsonl"),
                                   "--events", str(tmp_path / "events"), "--imported", str(tmp_path / "imported"),
                                   "--cores", "1"], cwd=SCRIPT.parent, stdout=handle, stderr=subprocess.STDOUT,
                                  env={**os.environ, key: value})
    try:
        deadline = time.monotonic() + 120
        while "ray: started a local instance" not in log.read_text():  # up, and waiting for its jobs
            assert driver.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        assert (tmp_path / "imported").exists() and len(_processes_with(marker)) >= 3  # the driver and Ray's daemons
        time.sleep(1)
        assert driver.poll() is None and not (tmp_path / "events").exists()  # no jobs file: it waits, runs nothing
        driver.send_signal(signal.SIGTERM)
        assert driver.wait(60) == 128 + signal.SIGTERM, log.read_text()
        assert _processes_with(marker) == []  # its instance is gone
    finally:
        driver.kill()
        from experiment.ray_jobs import stop_leftovers

        stop_leftovers(key, value)


def test_ray_jobs_run_on_both_nodes_of_a_two_node_cluster(tmp_path, glue_dir, bert_tokenizer_dir, ray_installed):
    ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
    marker = f"GATED_BERT_TEST_CLUSTER={uuid.uuid4().hex}"
    key, value = marker.split("=")
    temp = tempfile.mkdtemp(prefix="gbray", dir="/tmp")  # short: Ray's socket paths must stay under 107 bytes
    # One machine, two nodes, as `ray start` makes them on a cluster's machines (token authentication on).
    cluster_env = {**os.environ, key: value, "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}
    try:
        head = subprocess.run([ray_bin, "start", "--head", "--num-cpus", "1", "--port", "0", "--temp-dir", temp,
                               "--include-dashboard", "false"], capture_output=True, text=True, env=cluster_env,
                              timeout=120)
        assert head.returncode == 0, head.stdout + head.stderr
        address = re.search(r"ray start --address='([^']+)'", head.stdout + head.stderr).group(1)
        worker = subprocess.run([ray_bin, "start", "--address", address, "--num-cpus", "1"], capture_output=True,
                                text=True, env=cluster_env, timeout=120)
        assert worker.returncode == 0, worker.stdout + worker.stderr
        result = run_script("-backend", "ray", "-ray-address", address, *GRID, *RECIPE, "-d", str(tmp_path / "out"),
                            "--", *MICRO, env={**data_env(glue_dir, bert_tokenizer_dir, tmp_path), key: value,
                                               "RAY_AUTH_MODE": "token"})  # as on the cluster's nodes
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert f"joined {address}" in result.stdout and "2 node(s), 2 CPUs; 1 CPU(s) per job" in result.stdout
        nodes = {}
        for job in GRID_JOBS:
            assert _metadata(tmp_path / "out" / job, job.split("_")[0])["status"] == "completed"
            nodes[job] = re.search(rf"^{job} +done .* (\S+/[0-9.]+/[0-9a-f]{{8}}) ", result.stdout, re.M).group(1)
        assert len(set(nodes.values())) == 2, nodes  # each node ran at least one job
    finally:
        from experiment.ray_jobs import stop_leftovers

        stop_leftovers(key, value)  # this test's Ray daemons and workers only
        subprocess.run(["rm", "-rf", temp], check=False)


def test_the_ray_driver_reads_its_jobs_and_forwards_only_the_settings_train_py_reads(tmp_path):
    from experiment.ray_jobs import forwarded_environment, read_jobs

    path = tmp_path / "jobs.jsonl"
    path.write_text(json.dumps({"id": "0", "argv": ["python", "train.py"], "cwd": "/w", "log": "/l",
                                "output_dir": "/o"}) + "\n\n")
    assert read_jobs(path) == [{"id": "0", "argv": ["python", "train.py"], "cwd": "/w", "log": "/l",
                                "output_dir": "/o"}]
    kept = forwarded_environment({"GLUE_DIR": "/g", "EPOCHS": "3", "HF_HUB_OFFLINE": "1", "WANDB_PROJECT": "p",
                                  "HOME": "/root", "PATH": "/bin", "RANDOM_THING": "x"})
    assert kept == {"GLUE_DIR": "/g", "EPOCHS": "3", "HF_HUB_OFFLINE": "1", "WANDB_PROJECT": "p"}


def test_leftovers_of_a_local_instance_are_stopped_and_nothing_else_is():
    from experiment.ray_jobs import stop_leftovers

    value = uuid.uuid4().hex
    marked = {**os.environ, "GATED_BERT_TEST_INSTANCE": value}
    # One that ends on SIGTERM, one that ignores it (as a busy Ray agent may), and one of somebody else's.
    polite = subprocess.Popen(["sleep", "60"], env=marked)
    stubborn = subprocess.Popen(["bash", "-c", "trap '' TERM; sleep 60 & wait"], env=marked)  # and its sleep
    other = subprocess.Popen(["sleep", "60"], env={**os.environ, "GATED_BERT_TEST_INSTANCE": value + "x"})
    try:
        deadline = time.monotonic() + 10  # until the shell has started its child
        while len(_processes_mentioning(f"GATED_BERT_TEST_INSTANCE={value}\0", where="environ")) < 3:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        began = time.monotonic()
        assert stop_leftovers("GATED_BERT_TEST_INSTANCE", value, grace=1.0) == 3
        assert 1.0 <= time.monotonic() - began < 5  # the stubborn one waited for its grace, then SIGKILL
        assert polite.wait(5) == -signal.SIGTERM and stubborn.wait(5) == -signal.SIGKILL
        assert _processes_mentioning(f"GATED_BERT_TEST_INSTANCE={value}\0", where="environ") == []
        assert other.poll() is None  # a different value is not ours
    finally:
        for process in (polite, stubborn, other):
            process.kill()
            process.wait()


def test_the_drivers_sweep_stops_the_named_instance_only_and_needs_no_jobs():
    from experiment.ray_jobs import INSTANCE_VARIABLE

    value = uuid.uuid4().hex
    ours = subprocess.Popen(["sleep", "60"], env={**os.environ, INSTANCE_VARIABLE: value})
    other = subprocess.Popen(["sleep", "60"], env={**os.environ, INSTANCE_VARIABLE: value + "x"})
    root = os.path.dirname(SCRIPT)
    try:
        deadline = time.monotonic() + 10
        while not _processes_mentioning(f"{INSTANCE_VARIABLE}={value}\0", where="environ"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        swept = subprocess.run([sys.executable, "-m", "experiment.ray_jobs", "--sweep", value], cwd=root,
                               capture_output=True, text=True, timeout=60)
        assert swept.returncode == 0, swept.stderr
        assert f"stopped 1 process(es) carrying {INSTANCE_VARIABLE}={value}" in swept.stderr
        assert ours.wait(5) == -signal.SIGTERM
        assert other.poll() is None
        for argv, message in ((["--sweep", value, "--jobs", "j.jsonl"], "--sweep takes a non-empty instance value "
                               "and no jobs"), (["--events", "e"], "--jobs and --events are required")):
            refused = subprocess.run([sys.executable, "-m", "experiment.ray_jobs", *argv], cwd=root,
                                     capture_output=True, text=True, timeout=60)
            assert refused.returncode == 2 and message in refused.stderr
        assert other.poll() is None
    finally:
        for process in (ours, other):
            process.kill()
            process.wait()
