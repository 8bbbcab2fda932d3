"""In-training structured pruning of the fine-tuned MiniLM on SST-2, with and without distillation, against the
post-training methods, in one Pareto figure.

Every in-training method (magnitude, movement, SPT, soft movement, gumbel) removes heads and FFN neurons from
the SST-2 fine-tune of bench/finetune_pretrained.py down to 0.5 of the blocks' MACs, with and without
distillation from that same fine-tune (`--teacher`, logit KD: alpha 0.5, T 2), on the first ROWS SST-2 training
rows (default 20,000) for 2 epochs (pruning over the first), seeds 0 and 1. Then prune.py's Fisher and K-prune
at 0.5 and 0.4 on the same checkpoint (sample seed 0), and the best in-training method with distillation (on
the first seed) at 0.4.

Setup: the train.py checkpoint is written as a Hugging Face folder (`gated.save_pretrained`, with MiniLM's
tokenizer files) so that `train.py --init_from` starts every run from it. The schedules: magnitude and SPT
walk levels 0.1 ... 0.5 over the first epoch; movement a cubic ramp with an event every 25 steps; gumbel learns
head and neuron masks to the same fraction of the blocks' MACs (`--target_measure macs`); soft movement's
controller aims its scores at that fraction over the first half epoch, and its masks are set to it and frozen
at the end of the first epoch (`--soft_movement_freeze 0.5`), so every method fine-tunes its last epoch on
fixed masks.

Prints a line per run as it ends (dev accuracy, MACs kept, weight sparsity, wall time), then the table, the
Pareto figure (plot_comparison.py --pareto) and the targets: the best structured method with distillation
within 1 point of dense at 0.5 MACs kept and better than the best post-training method at 0.4; distillation
improving every method. Runs already finished in OUTPUT_DIR are read back, not run again, so a stopped bench
continues where it stopped.

    python bench/in_training_pruning.py                 # ~5 hours on 2 cores at 20,000 rows
    ROWS=8000 SEEDS=0 python bench/in_training_pruning.py   # a quicker, one-seed version
    METHODS=gumbel python bench/in_training_pruning.py      # some methods only (comma-separated)
"""

import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

from common import glue_inputs_or_exit, minilm_or_exit, prune_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FINETUNED = os.path.join(ROOT, "bench_results", "finetune_minilm", "sst2", "checkpoints_baseline_sst2")
OUTPUT_DIR = os.environ.get("OUTPUT_DIR") or os.path.join(ROOT, "bench_results", "in_training")
ROWS = int(os.environ.get("ROWS", "20000"))
SEEDS = [int(seed) for seed in os.environ.get("SEEDS", "0,1").split(",")]
SCHEDULED = ["--pruning_granularity", "both", "--pruning_start_epoch", "0", "--pruning_end_epoch", "1",
             "--sparsity_steps", "10 20 30 40 50"]
METHODS = {
    "magnitude": ["--pruning_method", "magnitude", *SCHEDULED],
    "movement": ["--pruning_method", "movement", *SCHEDULED, "--pruning_frequency_steps", "25"],
    "spt": ["--pruning_method", "spt", *SCHEDULED],
    "soft_movement": ["--pruning_method", "soft_movement", "--pruning_granularity", "both", "--soft_movement_warmup",
                      "0.25", "--soft_movement_freeze", "0.5", "--masks_lr", "0.05"],
    "gumbel": ["--pruning_method", "gumbel", "--learn_masks", "head,neuron", "--masks_lr", "0.05"],
}
CHOSEN = os.environ.get("METHODS", ",".join(METHODS)).split(",")
if set(CHOSEN) - set(METHODS):
    sys.exit(f"METHODS names {', '.join(sorted(set(CHOSEN) - set(METHODS)))}; choose among {', '.join(METHODS)}")
METHODS = {name: flags for name, flags in METHODS.items() if name in CHOSEN}


def setup():
    """The fine-tune as a Hugging Face folder (the runs' `--init_from`), made once."""
    folder = os.path.join(OUTPUT_DIR, "minilm_sst2_hf")
    if os.path.isfile(os.path.join(folder, "model.safetensors")):
        return folder
    from experiment.checkpoints import find_checkpoint, load_checkpoint
    from gated import save_pretrained

    if not os.path.isdir(FINETUNED):
        sys.exit(f"no SST-2 fine-tune in {FINETUNED}: run python bench/finetune_pretrained.py sst2 first")
    save_pretrained(load_checkpoint(find_checkpoint(FINETUNED, "best")[0]), folder)
    minilm = minilm_or_exit()
    for name in os.listdir(minilm):
        if "token" in name or name == "vocab.txt":
            shutil.copy(os.path.join(minilm, name), folder)
    return folder


def target_flags(method, macs_kept):
    """The flags that aim a method at `macs_kept` of the blocks' MACs."""
    if method == "gumbel":
        return ["--target_sparsity", f"{1 - macs_kept:g}", "--target_measure", "macs", "--target_warmup", "0.5"]
    if method == "soft_movement":
        return ["--target_sparsity", f"{1 - macs_kept:g}"]
    return ["--end_sparsity", f"{1 - macs_kept:g}"]


def train_run(name, method, seed, macs_kept, distill, init_from, glue):
    """`(metadata, wall seconds)` of one train.py run (read back when it already completed)."""
    out = os.path.join(OUTPUT_DIR, "runs", name)
    done = [json.load(open(path)) for path in glob.glob(os.path.join(out, "results_*", "metadata_*.json"))]
    done = [meta for meta in done if meta.get("status") == "completed"]
    if done:
        return done[0], done[0]["timings"]["train_wall_seconds"]
    shutil.rmtree(out, ignore_errors=True)
    argv = [sys.executable, os.path.join(ROOT, "train.py"), "--init_from", init_from, "--task", "sst2",
            "--data_dir", glue, "--epochs", "2", "--max_train_samples", str(ROWS), "--seed", str(seed),
            "--output_dir", out, "--verbose", "2", *METHODS[method], *target_flags(method, macs_kept),
            *(["--teacher", FINETUNED] if distill else [])]
    os.makedirs(out, exist_ok=True)
    start = time.perf_counter()
    with open(os.path.join(out, "train.log"), "w") as log:
        status = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
    if status:
        sys.exit(f"train.py {name} exited with {status}; see {out}/train.log")
    (path,) = glob.glob(os.path.join(out, "results_*", "metadata_*.json"))
    with open(path) as handle:
        return json.load(handle), time.perf_counter() - start


def prune_run(method, constraint):
    """prune.py's metrics.json for `method` at `constraint` (read back when it already exists)."""
    out = os.path.join(OUTPUT_DIR, "runs", f"{method}_{constraint:g}")
    found = glob.glob(os.path.join(out, "**", "metrics.json"), recursive=True)
    if found:
        with open(found[0]) as handle:
            return json.load(handle)
    flags = ["--constraint", f"{constraint:g}", "--seed", "0", *(["--method", "kprune"] if method == "kprune" else [])]
    return prune_metrics(FINETUNED, out, *flags)


def main():
    glue, _ = glue_inputs_or_exit()
    init_from = setup()
    rows = []

    def record(method, distill, seed, macs_target, meta, seconds):
        final = meta["final"]
        row = {"method": method, "kd": distill, "seed": seed, "target": macs_target,
               "accuracy": final["dev_accuracy"], "macs_kept": final.get("macs_kept"),
               "sparsity": final["global_sparsity"], "seconds": seconds}
        rows.append(row)
        print(f"{method:<13} {'+KD' if distill else '   '} seed {seed} target {macs_target:.1f}: dev_accuracy "
              f"{row['accuracy']:.4f}, MACs kept {row['macs_kept']:.3f}, weight sparsity {row['sparsity']:.3f}, "
              f"{seconds:.0f} s", flush=True)

    post, mean = {}, {}

    def train(method, distill, seed, macs_kept):
        name = f"{method}{'_kd' if distill else ''}_{macs_kept:g}_s{seed}"
        record(method, distill, seed, macs_kept,
               *train_run(name, method, seed, macs_kept, distill, init_from, glue))
        mean.setdefault((method, distill, macs_kept), []).append(rows[-1]["accuracy"])

    def post_training(method):
        for constraint in (0.5, 0.4):
            metrics = post[method, constraint] = prune_run(method, constraint)
            final = metrics["dev"][metrics["final"]]["dev_accuracy"]
            print(f"{method:<13} post-training at {constraint}: dev_accuracy {final:.4f} (dense "
                  f"{metrics['dev']['dense']['dev_accuracy']:.4f}), MACs kept {metrics['macs']['kept_fraction']:.3f},"
                  f" {metrics['seconds']['pruning']:.0f} s", flush=True)

    # What the targets need first: one seed of everything, Fisher, the best method at 0.4; then K-prune (minutes
    # per run) and the other seeds.
    for seed_index, seed in enumerate(SEEDS):
        for distill in (False, True):
            for method in METHODS:
                train(method, distill, seed, 0.5)
        if seed_index == 0:
            post_training("fisher")
            at_04 = best_with_distillation(rows, mean)  # chosen on the first seed, then run at 0.4 for every seed
        train(at_04, True, seed, 0.4)
        if seed_index == 0:
            post_training("kprune")
    report(rows, mean, post, at_04)


def best_with_distillation(rows, mean):
    """The best method with distillation (mean over the seeds so far) among those whose runs at the 0.5 target
    reached it."""
    on_target = [key for key in mean if key[1] and key[2] == 0.5 and statistics.mean(
        r["macs_kept"] for r in rows if (r["method"], r["kd"], r["target"]) == key) <= 0.52]
    return max(on_target, key=lambda key: statistics.mean(mean[key]))[0]


def report(rows, mean, post, at_04):
    """The table, the figures and the targets. The method at 0.4 was chosen on the first seed; the best at 0.5 is
    chosen here, over every seed."""
    from experiment import compare

    dense = next(iter(post.values()))["dev"]["dense"]["dev_accuracy"]
    print("\n| method | KD | target MACs | seeds | dev accuracy (mean) | MACs kept (mean) | wall s (mean) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for (method, distill, target), values in sorted(mean.items(), key=lambda item: (item[0][2], item[0][0])):
        mine = [r for r in rows if (r["method"], r["kd"], r["target"]) == (method, distill, target)]
        print(f"| {method} | {'yes' if distill else 'no'} | {target} | {len(values)} | {statistics.mean(values):.4f} "
              f"| {statistics.mean(r['macs_kept'] for r in mine):.3f} | "
              f"{statistics.mean(r['seconds'] for r in mine):.0f} |")
    print(f"dense (the fine-tune): {dense:.4f}")
    compare.main(["--results_dir", os.path.join(OUTPUT_DIR, "runs"), "--task", "sst2", "--pareto",
                  "--output_dir", OUTPUT_DIR, "--formats", "png", "pdf"])
    best = best_with_distillation(rows, mean)
    at_half = statistics.mean(mean[best, True, 0.5])
    post_04 = max(m["dev"][m["final"]]["dev_accuracy"] for (_, c), m in post.items() if c == 0.4)
    verdict = "PASS" if dense - at_half <= 0.01 else "FAIL"
    print(f"target: best structured method with KD ({best}) within 1 point of dense at 0.5: {at_half:.4f} vs "
          f"{dense:.4f} ({verdict})")
    ours_04 = statistics.mean(mean[at_04, True, 0.4])
    print(f"target: {at_04} with KD at 0.4 better than the best post-training method at 0.4: {ours_04:.4f} vs "
          f"{post_04:.4f} ({'PASS' if ours_04 > post_04 else 'FAIL'})")
    for method in METHODS:
        if (method, False, 0.5) in mean and (method, True, 0.5) in mean:
            plain, distilled = statistics.mean(mean[method, False, 0.5]), statistics.mean(mean[method, True, 0.5])
            print(f"target: distillation improves {method} at 0.5: {distilled:.4f} vs {plain:.4f} "
                  f"({'PASS' if distilled > plain else 'FAIL'})")


if __name__ == "__main__":
    main()
