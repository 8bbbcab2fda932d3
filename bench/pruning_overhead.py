"""Step-time overhead of pruning during training: each method against unpruned training, tiny preset.

Every contender is the same gated tiny encoder on the same SST-2 rows and
bucketed batches with the same optimizer; the pruned ones carry a
PruningCallback that prunes every 67 steps (about once per epoch here, the
movement default for the tiny preset; magnitude and SPT prune less often
under their default step lists, so this overstates their cost). Movement and
SPT also run their train-step hooks at every step. Epochs are timed in turn.
Targets (step time, method / unpruned): magnitude <= 1.10, movement and SPT <= 1.25.
"""

import os

from common import compile_for_training, examples_per_second, load_sst2_train
from config import GatedBertConfig
from gated import PRESETS, build_gated_encoder
from pruners import MagnitudePruner, MovementPruner, PolynomialSchedule, SptPruner, movement_frequency
from tasks.pipeline import make_dataset

ROWS = int(os.environ.get("BENCH_ROWS", 6400))
BATCH = GatedBertConfig().batch_size
TARGETS = {"magnitude": 1.10, "movement": 1.25, "spt": 1.25}
PRUNERS = {"magnitude": MagnitudePruner, "movement": MovementPruner, "spt": SptPruner}


def main():
    import keras

    from callbacks import PruningCallback

    split = load_sst2_train(ROWS)
    shape = {**PRESETS["tiny"], "vocab_size": 30522, "max_len": 128, "num_labels": 2}
    frequency = movement_frequency(PRESETS["tiny"]["num_layers"])
    contenders = {}
    for name in ("unpruned", *PRUNERS):
        keras.utils.set_random_seed(0)
        dataset = make_dataset(split, BATCH, shuffle=True, seed=0, max_len=128)
        steps = int(dataset.cardinality())
        model = compile_for_training(build_gated_encoder(**shape), steps)
        callbacks = []
        if name in PRUNERS:
            schedule = PolynomialSchedule(0.0, 0.9, begin_step=1, end_step=10 * steps, frequency=frequency, power=3)
            callbacks = [PruningCallback(PRUNERS[name](), schedule)]
        contenders[name] = (model, dataset, callbacks)
    rates = examples_per_second(contenders, len(split))
    print(f"tiny preset, SST-2 first {len(split)} rows, batch {BATCH}, {steps} steps per epoch, "
          f"pruning every {frequency} steps")
    print(f"unpruned: {rates['unpruned']:.0f} train examples/s")
    for name, target in TARGETS.items():
        ratio = rates["unpruned"] / rates[name]
        verdict = "PASS" if ratio <= target else "FAIL"
        print(f"{name}: {rates[name]:.0f} train examples/s; step time vs unpruned {ratio:.3f} "
              f"(target <= {target}: {verdict})")


if __name__ == "__main__":
    main()
