"""Accuracy at 90% sparsity: baseline, magnitude, movement and SPT on an SST-2 subset, through train.py's `run`.

Every method trains the tiny preset with the same recipe (RECIPE) on the
first 20,000 SST-2 training rows; the pruned ones reach 90% sparsity at the
end of epoch 7 and train 3 more epochs at it. Prints, per method, the dev
accuracy at the final epoch and the best dev accuracy among the epochs at
full sparsity, then the gap of the best method to the baseline.
Target: the best pruned method within 3 points of the baseline's best epoch.

    python bench/pruning_accuracy.py                 # all four methods, about 30 minutes on 2 cores
    python bench/pruning_accuracy.py magnitude spt   # some of them (the baseline always runs first)
"""

import csv
import json
import sys
import tempfile

import keras

from common import glue_inputs_or_exit
from experiment.config import GatedBertConfig
from experiment.train import configure_tensorflow, run

RECIPE = {"model_size": "tiny", "task": "sst2", "max_train_samples": 20000, "epochs": 10, "batch_size": 96,
          "learning_rate": 1e-3, "warmup_ratio": 0.1, "weight_decay": 0.01, "dropout_rate": 0.1, "max_len": 128,
          "seed": 42, "end_sparsity": 0.9, "pruning_start_epoch": 1, "pruning_end_epoch": 7}
METHODS = ("baseline", "magnitude", "movement", "spt")
TOLERANCE = 0.03


def train_one(method, glue, tokenizer, out, **overrides):
    """Train `method` with RECIPE (plus `overrides`) through train.py's `run`; returns its metadata and CSV rows."""
    pruning = {} if method == "baseline" else {"enable_pruning": True, "pruning_method": method}
    config = GatedBertConfig(**{**RECIPE, **pruning, **overrides}, data_dir=glue, tokenizer=tokenizer, output_dir=out,
                             verbose=0)
    keras.backend.clear_session()
    configure_tensorflow(config)
    with open(run(config)) as handle:
        metadata = json.load(handle)
    with open(metadata["paths"]["csv"]) as handle:
        rows = [{key: float(value) for key, value in row.items()} for row in csv.DictReader(handle)]
    return metadata, rows


def summarise(method, rows):
    final = rows[-1]
    at_target = [row for row in rows if row["global_sparsity"] >= final["global_sparsity"] - 1e-9]
    best = max(row["dev_accuracy"] for row in at_target)
    overall = max(row["dev_accuracy"] for row in rows)
    seconds = sum(row["epoch_seconds"] for row in rows)
    print(f"{method:>9}: sparsity {final['global_sparsity']:.4f}  final dev acc {final['dev_accuracy']:.4f}  "
          f"best at this sparsity {best:.4f}  best any epoch {overall:.4f}  ({seconds / 60:.1f} min)", flush=True)
    return best


def main():
    glue, tokenizer = glue_inputs_or_exit()
    chosen = ["baseline", *[m for m in sys.argv[1:] if m != "baseline"]] if len(sys.argv) > 1 else list(METHODS)
    unknown = sorted(set(chosen) - set(METHODS))
    if unknown:
        sys.exit(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    out = tempfile.mkdtemp(prefix="bench_pruning_")
    print(f"recipe: {json.dumps(RECIPE)}; outputs under {out}", flush=True)
    scores = {}
    for method in chosen:
        metadata, rows = train_one(method, glue, tokenizer, out)
        scores[method] = summarise(method, rows)
    pruned = {m: s for m, s in scores.items() if m != "baseline"}
    if pruned:
        best_method = max(pruned, key=pruned.get)
        gap = scores["baseline"] - pruned[best_method]
        verdict = "PASS" if gap <= TOLERANCE else "FAIL"
        print(f"best pruned method: {best_method} at {pruned[best_method]:.4f}, {100 * gap:.2f} points below the "
              f"baseline's {scores['baseline']:.4f} (target <= {100 * TOLERANCE:.0f}: {verdict})")


if __name__ == "__main__":
    main()
