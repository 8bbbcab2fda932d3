"""Wall time of run_experiments.sh with 4 methods: -parallel vs sequential, and the CPU utilisation of each.

Runs `run_experiments.sh -p baseline,magnitude,movement,spt` twice on the
tiny preset and a small SST-2 subset (RECIPE), first sequentially, then with
`-parallel`. Utilisation is the CPU time of all child processes over
(wall time x cores). Target: parallel wall time <= sequential.

    python bench/parallel_wall_time.py     # about 5 minutes on 2 cores
"""

import os
import resource
import subprocess
import sys
import tempfile
import time

from common import glue_inputs_or_exit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = "baseline,magnitude,movement,spt"
RECIPE = ["-m", "tiny", "-e", "2", "-ps", "0", "-pe", "2", "-f", "0.9", "-l", "1e-3", "-o", "bars", "--",
          "--max_train_samples", "3000", "--max_eval_samples", "872"]


def timed_run(mode_flags, out):
    """Wall seconds and child CPU seconds of one run_experiments.sh invocation."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(["bash", os.path.join(ROOT, "run_experiments.sh"), "-p", METHODS, *mode_flags, "-d", out,
                    *RECIPE], check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   env={**os.environ, "PYTHON": sys.executable})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main():
    glue, tokenizer = glue_inputs_or_exit()
    os.environ.update({"GLUE_DIR": glue, "TOKENIZER": tokenizer, "HF_HUB_OFFLINE": "1"})
    cores = os.cpu_count()
    print(f"{METHODS.replace(',', ', ')}; tiny preset, 3000 SST-2 rows, 2 epochs; {cores} cores", flush=True)
    results = {}
    for name, flags in (("sequential", []), ("parallel", ["-parallel"])):
        wall, cpu = timed_run(flags, tempfile.mkdtemp(prefix=f"bench_{name}_"))
        results[name] = wall
        print(f"{name}: wall {wall:.1f} s, CPU {cpu:.1f} s, utilisation {100 * cpu / (wall * cores):.0f}% "
              f"of {cores} cores", flush=True)
    ratio = results["parallel"] / results["sequential"]
    verdict = "PASS" if ratio <= 1.0 else "FAIL"
    print(f"parallel / sequential wall time: {ratio:.3f} (target <= 1.0: {verdict})")


if __name__ == "__main__":
    main()
