"""Step-time overhead of learning Gumbel head and neuron masks, against unpruned training, tiny preset.

Two gated tiny encoders train on the same SST-2 rows and bucketed batches
(held in memory, so the input pipeline is not timed): one unpruned, one with
learned `head` and `neuron` masks, its `GumbelMaskLearner` (target 0.5) and
the annealing callback. They take turns, one epoch each, for `ROUNDS` rounds;
the medians are compared. Set BENCH_ROWS for a quicker smoke run.
"""

import os

from common import cached_batches, compile_for_training, examples_per_second, load_sst2_train
from experiment.config import GatedBertConfig
from gated import PRESETS, build_gated_encoder
from pruners import GumbelMaskLearner, TemperatureSchedule
from tasks.pipeline import make_dataset

ROWS = int(os.environ.get("BENCH_ROWS", 6400))
ROUNDS = 5
BATCH = GatedBertConfig().batch_size


def main():
    import keras

    from callbacks import GumbelMaskCallback

    split = load_sst2_train(ROWS)
    dataset = cached_batches(make_dataset(split, BATCH, shuffle=True, seed=0, max_len=128))
    steps = int(dataset.cardinality())
    shape = {**PRESETS["tiny"], "vocab_size": 30522, "max_len": 128, "num_labels": 2}
    keras.utils.set_random_seed(0)
    unpruned = compile_for_training(build_gated_encoder(**shape), steps)
    learned = compile_for_training(build_gated_encoder(**shape, learn_masks=("head", "neuron")), steps)
    callback = GumbelMaskCallback(GumbelMaskLearner(target_sparsity=0.5, target_warmup_steps=5 * steps),
                                  TemperatureSchedule(5.0, 0.1, 10 * steps))
    print(f"tiny preset, SST-2 first {len(split)} rows, batch {BATCH}, {steps} steps per epoch, "
          f"{ROUNDS} rounds of one epoch each", flush=True)
    rates = examples_per_second({"unpruned": (unpruned, dataset), "gumbel": (learned, dataset, [callback])},
                                len(split), ROUNDS)
    print(f"unpruned: {rates['unpruned']:.0f} train examples/s")
    print(f"gumbel (head + neuron masks, target 0.5): {rates['gumbel']:.0f} train examples/s")
    print(f"step time with mask learning / without: {rates['unpruned'] / rates['gumbel']:.3f}")


if __name__ == "__main__":
    main()
