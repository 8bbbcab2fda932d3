"""Learned Gumbel-Sigmoid head and neuron masks at a 50% target vs the unpruned baseline, same recipe.

Both runs train the tiny preset with `pruning_accuracy.RECIPE` (first 20,000
SST-2 rows, 10 epochs, batch 96, lr 1e-3) through train.py's `run`. The
gumbel run learns `head` and `neuron` masks with `target_sparsity` 0.5
(defaults otherwise: temperature 5 -> 0.1 exponential, masks_lr 0.01, target
ramped over the first half). Prints the dev accuracy of the binary-masked
model (the final epoch: dev metrics always use the binary masks) against the
baseline, the fraction of heads and neurons the saved masks remove, and the
training step time with mask learning over the baseline's (median epoch,
dev evaluation excluded; both runs in this process, one after the other).

    python bench/gumbel_accuracy.py      # about 15 minutes on 2 cores
"""

import json
import statistics
import tempfile

import numpy as np

from common import glue_inputs_or_exit
from gated import load_learned_masks
from pruning_accuracy import RECIPE, train_one

GUMBEL = {"learn_masks": ("head", "neuron"), "target_sparsity": 0.5}


def step_seconds(rows):
    """Median seconds per training example over the epochs after the first (which traces the step)."""
    return statistics.median(1.0 / row["train_examples_per_second"] for row in rows[1:])


def main():
    glue, tokenizer = glue_inputs_or_exit()
    out = tempfile.mkdtemp(prefix="bench_gumbel_")
    print(f"recipe: {json.dumps(RECIPE)}; gumbel: {json.dumps(GUMBEL)}; outputs under {out}", flush=True)
    _, base_rows = train_one("baseline", glue, tokenizer, out)
    base_final, base_best = base_rows[-1]["dev_accuracy"], max(row["dev_accuracy"] for row in base_rows)
    print(f"baseline: final dev acc {base_final:.4f}, best epoch {base_best:.4f}", flush=True)

    metadata, rows = train_one("gumbel", glue, tokenizer, out, **GUMBEL)
    masks = load_learned_masks(metadata["pruning"]["masks_dir"])
    final = rows[-1]
    print(f"gumbel:   final dev acc {final['dev_accuracy']:.4f} (binary masks, epoch {int(final['epoch'])}); "
          f"weights removed {final['global_sparsity']:.4f}", flush=True)
    for kind, label in (("head", "heads"), ("neuron", "FFN neurons")):
        removed = int(masks[kind].size - np.count_nonzero(masks[kind]))
        per_layer = ", ".join(str(int(layer.size - np.count_nonzero(layer))) for layer in masks[kind])
        print(f"  {label} removed: {removed}/{masks[kind].size} = {removed / masks[kind].size:.3f} "
              f"(per layer: {per_layer}; target 0.5)")
    print(f"dev accuracy gumbel - baseline: final {100 * (final['dev_accuracy'] - base_final):+.2f} points, "
          f"vs baseline's best epoch {100 * (final['dev_accuracy'] - base_best):+.2f} points")
    ratio = step_seconds(rows) / step_seconds(base_rows)
    print(f"training step time with mask learning / without: {ratio:.3f} "
          f"({1 / step_seconds(rows):.0f} vs {1 / step_seconds(base_rows):.0f} train examples/s, median epoch)")


if __name__ == "__main__":
    main()
