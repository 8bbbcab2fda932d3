"""Wall time of one 4-job grid through run_experiments.sh: sequential, local parallel, and Ray (a local instance,
and a two-node cluster on this machine).

Runs `run_experiments.sh -p baseline,magnitude,movement,spt` on the tiny preset
and a small SST-2 subset (RECIPE) four ways, each into its own folder, in this
order: `sequential` (one job at a time), `parallel` (`-parallel`), `ray`
(`-backend ray`: the script starts a Ray instance on 127.0.0.1 for the run) and
`ray 2 nodes` (`-backend ray -ray-address` to a head and a second node started
here with `ray start`, one CPU each). ROUNDS rounds (default 2) alternate the
order of the four; each round prints its wall times, then the medians give
the speed-up over sequential and Ray's scheduling overhead per job: its wall
time minus local parallel's, over the jobs (instance start included).
Targets: overhead <= 5 s per job; Ray within 10% of local parallel.

    ROUNDS=2 python bench/parallel_wall_time.py     # about 4 to 5 minutes a round on 2 cores
"""

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

from common import glue_inputs_or_exit
from experiment.ray_jobs import stop_leftovers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = "baseline,magnitude,movement,spt"
JOBS = len(METHODS.split(","))
RECIPE = ["-m", "tiny", "-e", "2", "-ps", "0", "-pe", "2", "-f", "0.9", "-l", "1e-3", "-o", "bars", "--",
          "--max_train_samples", "3000", "--max_eval_samples", "872"]


def timed_run(mode_flags, out, env):
    """Wall seconds of one run_experiments.sh invocation, and its stdout."""
    start = time.perf_counter()
    result = subprocess.run(["bash", os.path.join(ROOT, "run_experiments.sh"), "-p", METHODS, *mode_flags, "-d", out,
                             *RECIPE], check=True, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            env={**os.environ, "PYTHON": sys.executable, **env})
    return time.perf_counter() - start, result.stdout


def two_node_cluster(marker):
    """`ray start` a head and a second node on this machine, one CPU each; returns the head's address."""
    ray = os.path.join(os.path.dirname(sys.executable), "ray")
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0", **marker}
    temp = tempfile.mkdtemp(prefix="gbray", dir="/tmp")
    head = subprocess.run([ray, "start", "--head", "--num-cpus", "1", "--port", "0", "--temp-dir", temp,
                           "--include-dashboard", "false"], capture_output=True, text=True, env=env, check=True)
    address = re.search(r"ray start --address='([^']+)'", head.stdout + head.stderr).group(1)
    subprocess.run([ray, "start", "--address", address, "--num-cpus", "1"], capture_output=True, env=env, check=True)
    return address


def main():
    glue, tokenizer = glue_inputs_or_exit()
    os.environ.update({"GLUE_DIR": glue, "TOKENIZER": tokenizer, "HF_HUB_OFFLINE": "1"})
    cores = os.cpu_count()
    print(f"{METHODS.replace(',', ', ')}; tiny preset, 3000 SST-2 rows, 2 epochs; {cores} cores", flush=True)
    marker = {"GATED_BERT_BENCH_CLUSTER": uuid.uuid4().hex}
    names = ["sequential", "parallel", "ray", "ray 2 nodes"]
    walls = {name: [] for name in names}
    try:
        address = None
        for round_ in range(int(os.environ.get("ROUNDS", "2"))):
            for name in names if round_ % 2 == 0 else names[::-1]:
                flags, env = {"sequential": [], "parallel": ["-parallel"], "ray": ["-backend", "ray"]}.get(name), {}
                if name == "ray 2 nodes":
                    address = address or two_node_cluster(marker)
                    flags, env = ["-backend", "ray", "-ray-address", address], {"RAY_AUTH_MODE": "token"}
                wall, stdout = timed_run(flags, tempfile.mkdtemp(prefix="bench_grid_"), env)
                walls[name].append(wall)
                started = re.search(r"ray: (started a local instance|joined \S+) in ([0-9.]+) s; (\d+) node", stdout)
                extra = f"; Ray ready in {started.group(2)} s, {started.group(3)} node(s)" if started else ""
                nodes = sorted(set(re.findall(r" (\S+/[0-9.]+/[0-9a-f]{8}) ", stdout)))
                extra += f"; jobs ran on {len(nodes)} node(s)" if nodes else ""
                print(f"round {round_ + 1}, {name}: wall {wall:.1f} s{extra}", flush=True)
    finally:
        stop_leftovers(*next(iter(marker.items())))  # the two nodes' processes
    median = {name: statistics.median(values) for name, values in walls.items()}
    for name in names:
        print(f"{name}: median wall {median[name]:.1f} s, speed-up over sequential "
              f"{median['sequential'] / median[name]:.2f}x")
    for name in ("ray", "ray 2 nodes"):
        overhead = (median[name] - median["parallel"]) / JOBS
        ratio = median[name] / median["parallel"]
        print(f"{name}: scheduling overhead {overhead:+.1f} s per job (target <= 5 s: "
              f"{'PASS' if overhead <= 5 else 'FAIL'}); wall / local parallel {ratio:.3f} (target <= 1.10: "
              f"{'PASS' if ratio <= 1.10 else 'FAIL'})")


if __name__ == "__main__":
    main()
