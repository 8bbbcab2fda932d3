"""Padding: training examples/s with length-bucketed batches vs every batch padded to max_len=128.

SST-2 sentences average about 13 tokens, so padding to 128 spends most of the
compute on padding. Target: bucketed/padded >= 3x.
"""

import os

from common import compile_for_training, examples_per_second, load_sst2_train, print_comparison
from experiment.config import GatedBertConfig
from gated import PRESETS, build_gated_encoder
from tasks.pipeline import make_dataset

ROWS = int(os.environ.get("BENCH_ROWS", 4800))
BATCH = GatedBertConfig().batch_size  # the project default


def main():
    import keras

    split = load_sst2_train(ROWS)
    contenders = {}
    for name, dynamic in (("bucketed", True), ("padded", False)):
        keras.utils.set_random_seed(0)
        dataset = make_dataset(split, BATCH, shuffle=True, seed=0, max_len=128, dynamic_padding=dynamic)
        model = build_gated_encoder(**PRESETS["tiny"], vocab_size=30522, max_len=128, num_labels=2)
        contenders[name] = (compile_for_training(model, int(dataset.cardinality())), dataset)
    lengths = split.lengths
    padded_cells = sum(f["input_ids"].size for f, _ in contenders["bucketed"][1].as_numpy_iterator())
    print(f"tiny gated encoder, SST-2 first {len(split)} rows, batch {BATCH}: mean length {lengths.mean():.1f} "
          f"tokens; bucketed batches hold {padded_cells / lengths.sum():.2f}x the real tokens, "
          f"max_len padding {128 * len(split) / lengths.sum():.2f}x")
    rates = examples_per_second(contenders, len(split))
    print_comparison(rates, {"bucketed": "bucketed", "padded": "padded to 128"}, 3, "bucketed/padded speed-up")


if __name__ == "__main__":
    main()
