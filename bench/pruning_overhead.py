"""Step-time overhead of pruning during training: each method against unpruned training, tiny preset.

For each method, one gated tiny encoder is first timed training without
pruning, then with its PruningCallback, on the same SST-2 rows and bucketed
batches (held in memory, so the input pipeline is not timed). Timing both on
the same model instance matters here: on this 2-core machine two identical
instances differed by 7% in speed. The callback prunes every 67 steps
(about once per epoch here; the movement default for the tiny preset).
Magnitude and SPT prune less often under their default step lists, so this
overstates their cost. Movement and SPT also run their train-step hooks at
every step.
Targets (step time, method / unpruned): magnitude <= 1.10, movement and SPT <= 1.25.
"""

import os

from common import cached_batches, compile_for_training, load_sst2_train, median_epoch_rate
from experiment.config import GatedBertConfig
from gated import PRESETS, build_gated_encoder
from pruners import MagnitudePruner, MovementPruner, PolynomialSchedule, SptPruner, movement_frequency
from tasks.pipeline import make_dataset

ROWS = int(os.environ.get("BENCH_ROWS", 6400))
EPOCHS = 3  # timed epochs per phase
BATCH = GatedBertConfig().batch_size
TARGETS = {"magnitude": 1.10, "movement": 1.25, "spt": 1.25}
PRUNERS = {"magnitude": MagnitudePruner, "movement": MovementPruner, "spt": SptPruner}


def main():
    import keras

    from callbacks import PruningCallback

    split = load_sst2_train(ROWS)
    dataset = cached_batches(make_dataset(split, BATCH, shuffle=True, seed=0, max_len=128))
    steps = int(dataset.cardinality())
    shape = {**PRESETS["tiny"], "vocab_size": 30522, "max_len": 128, "num_labels": 2}
    frequency = movement_frequency(PRESETS["tiny"]["num_layers"])
    print(f"tiny preset, SST-2 first {len(split)} rows, batch {BATCH}, {steps} steps per epoch, "
          f"pruning every {frequency} steps, {EPOCHS} timed epochs per phase", flush=True)
    for name, target in TARGETS.items():
        keras.utils.set_random_seed(0)
        model = compile_for_training(build_gated_encoder(**shape), steps)
        unpruned = median_epoch_rate(model, dataset, len(split), EPOCHS)
        schedule = PolynomialSchedule(0.0, 0.9, begin_step=1, end_step=10 * steps, frequency=frequency, power=3)
        callback = PruningCallback(PRUNERS[name](), schedule)
        pruned = median_epoch_rate(model, dataset, len(split), EPOCHS, [callback])
        ratio = unpruned / pruned
        verdict = "PASS" if ratio <= target else "FAIL"
        print(f"{name}: unpruned {unpruned:.0f}, pruning {pruned:.0f} train examples/s; step time ratio "
              f"{ratio:.3f} (target <= {target}: {verdict})", flush=True)


if __name__ == "__main__":
    main()
