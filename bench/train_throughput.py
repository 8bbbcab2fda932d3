"""Training throughput: the gated tiny encoder vs a plain Keras encoder of identical shape.

Same SST-2 rows, same bucketed batches, same optimizer, same process.
Target: gated/plain >= 0.90.
"""

import os

import numpy as np

from common import (
    build_plain_encoder,
    compile_for_training,
    examples_per_second,
    load_sst2_train,
    print_comparison,
)
from experiment.config import GatedBertConfig
from gated import PRESETS, build_gated_encoder
from tasks.pipeline import make_dataset

ROWS = int(os.environ.get("BENCH_ROWS", 6400))
BATCH = GatedBertConfig().batch_size  # the project default


def main():
    import keras

    split = load_sst2_train(ROWS)
    shape = {**PRESETS["tiny"], "vocab_size": 30522, "max_len": 128, "num_labels": 2}
    contenders = {}
    for name, build in (("gated", build_gated_encoder), ("plain", build_plain_encoder)):
        keras.utils.set_random_seed(0)
        dataset = make_dataset(split, BATCH, shuffle=True, seed=0, max_len=128)
        model = compile_for_training(build(**shape), int(dataset.cardinality()))
        contenders[name] = (model, dataset)
    gated_params, plain_params = (
        sum(int(np.prod(w.shape)) for w in model.trainable_weights) for model, _ in contenders.values()
    )
    if gated_params != plain_params:
        raise SystemExit(f"shapes differ: gated {gated_params} vs plain {plain_params} trainable parameters")
    rates = examples_per_second(contenders, len(split))
    print(f"tiny preset, SST-2 first {len(split)} rows, batch {BATCH}, bucketed batches, "
          f"{gated_params} trainable parameters each")
    print_comparison(rates, {"gated": "gated encoder", "plain": "plain Keras encoder"}, 0.9,
                     "gated/plain throughput ratio")


if __name__ == "__main__":
    main()
