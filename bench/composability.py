"""Composability on the fine-tuned MiniLM (SST-2): 4 pruning configurations that share units, each fine-tuned
at model level from its composed units (module-level fine-tuning once) and, as the control, from direct pruning.

Configurations: attention (whole heads, L1) at {0.25, 0.5} x linear modules (weight by weight, L1) at {0.3, 0.5},
in all 6 blocks: 2 x 6 + 2 x 3 x 6 = 48 distinct units fill 4 x 24 = 96 modules. Module level: 512 training
rows (64 held out), 200 Adam steps per unit. Model level: train.py's fine-tuning recipe (lr 5e-5, batch 32,
warm-up 10%, dropout 0.1) on the first 2,000 SST-2 rows for 3 epochs (about 190 steps), dev accuracy on all
872 rows before fine-tuning and after every epoch. Prints the run's summary table, then per configuration the
accuracy difference at equal model-level steps, and the total time (module level once + each composed run until
it reaches its baseline's final accuracy) against the 4 baselines. Target: >= 30% less total time at equal final
accuracy (every composed run reaching its baseline's final accuracy), or higher accuracy at equal time (final
accuracy at equal steps no more than 0.3 points below the baseline's); both readings are printed.

Uses the checkpoint of bench/finetune_pretrained.py (bench_results/finetune_minilm/sst2/); ~12 min on 2 cores.

    python bench/composability.py
    COMPOSE_ARGS="--max_train_samples 8000 --epochs 2" OUTPUT_DIR=bench_results/composability_8000 \
        python bench/composability.py   # other flags for compose.py run (the last one given wins)
"""

import json
import os
import shlex
import subprocess
import sys
import time

from common import glue_inputs_or_exit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKPOINT = os.path.join(ROOT, "bench_results", "finetune_minilm", "sst2", "checkpoints_baseline_sst2")
OUTPUT = os.environ.get("OUTPUT_DIR") or os.path.join(ROOT, "bench_results", "composability")
ATTENTION, LINEAR = ("0.25", "0.25", "0.5", "0.5"), ("0.3", "0.5", "0.3", "0.5")
MODEL_LEVEL = ("--max_train_samples", "2000", "--epochs", "3")
MODULE_LEVEL = ("--module_rows", "512", "--module_heldout_rows", "64", "--module_steps", "200")
TARGET_SAVING, TOLERANCE_POINTS = 0.30, 0.3


def compose(*argv, log):
    result = subprocess.run([sys.executable, os.path.join(ROOT, "compose.py"), *argv], stdout=log,
                            stderr=subprocess.STDOUT, check=False)
    if result.returncode:
        sys.exit(f"compose.py {argv[0]} exited with {result.returncode}; see {log.name}")


def main():
    if not os.path.isdir(CHECKPOINT):
        sys.exit(f"no fine-tuned checkpoint at {CHECKPOINT}: run python bench/finetune_pretrained.py sst2 first")
    glue, _ = glue_inputs_or_exit()
    os.makedirs(OUTPUT, exist_ok=True)
    conf, run_dir = os.path.join(OUTPUT, "conf.json"), os.path.join(OUTPUT, "run")
    start = time.perf_counter()
    with open(os.path.join(OUTPUT, "compose.log"), "w") as log:
        compose("config", "-o", conf, "--attention", *ATTENTION, "--linear", *LINEAR, "-n", "4", "--ckpt_dir",
                CHECKPOINT, "--overwrite", log=log)
        compose("run", "--verbose", "2", "-c", conf, "--ckpt_dir", CHECKPOINT, "--output_dir", run_dir,
                "--overwrite", "--data_dir", glue, *MODULE_LEVEL, *MODEL_LEVEL,
                *shlex.split(os.environ.get("COMPOSE_ARGS", "")), log=log)
    wall = time.perf_counter() - start
    with open(os.path.join(run_dir, "summary.md")) as handle:
        print(handle.read().rstrip())
    with open(os.path.join(run_dir, "summary.json")) as handle:
        summary = json.load(handle)
    rows, totals = summary["rows"], summary["totals"]
    for row in rows:
        print(f"configuration {row['configuration']}: sparsity {row['sparsity']:.3f}; dev accuracy composed "
              f"{row['composed_dev']:.4f} vs baseline {row['baseline_dev']:.4f} at {row['steps']} model-level steps "
              f"({row['difference_points']:+.2f} points); composed reaches the baseline's final accuracy at "
              f"{row['composed_steps_to_reach'] if row['composed_steps_to_reach'] is not None else 'never'} steps")
    equal = sum(row["difference_points"] >= -TOLERANCE_POINTS for row in rows)
    saved = totals["time_saved"]
    print(f"total training time: module level {totals['module_seconds']:.0f} s once + model level "
          f"{totals['composed_model_level_seconds_to_reach']:.0f} s = {totals['composed_total_seconds']:.0f} s vs "
          f"4 baselines {totals['baseline_total_seconds']:.0f} s: {100 * saved:+.1f}% time saved; mean accuracy "
          f"difference at equal steps {sum(r['difference_points'] for r in rows) / len(rows):+.2f} points; "
          f"bench wall time {wall:.0f} s")
    time_met = saved >= TARGET_SAVING and totals["reached"] == len(rows)
    print(f"target, time to the baseline's accuracy (>= {100 * TARGET_SAVING:.0f}% less, every configuration "
          f"reaching it): {'met' if time_met else 'NOT met'}")
    print(f"target, accuracy at equal steps (no more than {TOLERANCE_POINTS} points below the baseline): {equal} of "
          f"{len(rows)} configurations")
    print(f"figures: {os.path.join(run_dir, 'loss_curves.png')}, {os.path.join(run_dir, 'time_to_accuracy.png')}")


if __name__ == "__main__":
    main()
