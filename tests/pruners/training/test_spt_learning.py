"""SPT learns under the demo's schedule (pruning from the first step): the rewards follow the trained weights.

`make demo` once showed SPT at chance at every epoch while magnitude, under the same schedule, learned. Its
rewards were the magnitudes of the first pruning event, a few steps after the random initialisation, and never
moved again (exploration touches a quarter of a percent of the weights per event): every later event pruned by
the initialisation, which can cut a model's only paths. The micro task below needs attention to carry one token
to the classifier; at 98% sparsity the frozen rewards left seeds 1 and 5 at chance (dev accuracy 0.51 and 0.47)
while magnitude pruning reached 1.00 on both.
"""

import keras
import numpy as np
import pytest

from callbacks import PruningCallback
from experiment.config import DEFAULT_SPARSITY_STEPS
from gated import build_gated_encoder
from pruners import MagnitudePruner, SptPruner, StepListSchedule, step_levels

ROWS, BATCH, EPOCHS = 2048, 32, 4


def _token_task(rng, rows, length=12, vocab=64):
    """Label 1 when token 3 appears somewhere after the first position (which always holds token 1)."""
    ids = rng.integers(4, vocab, size=(rows, length)).astype("int32")
    labels = rng.integers(0, 2, size=rows)
    where = rng.integers(1, length, size=rows)
    ids[np.flatnonzero(labels), where[labels == 1]] = 3
    ids[:, 0] = 1
    return {"input_ids": ids, "token_type_ids": np.zeros_like(ids), "attention_mask": np.ones_like(ids)}, labels


def _dev_accuracy(pruner, seed):
    """Train a micro encoder while `pruner` walks the demo's levels (to 98%) from the first step to the end of the
    next-to-last epoch, as `make demo` does; the dev accuracy at the end."""
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    (x, y), (dev_x, dev_y) = _token_task(rng, ROWS), _token_task(rng, 512)
    model = build_gated_encoder(vocab_size=64, max_len=16, num_layers=2, d_model=32, num_heads=4, dff=64,
                                num_labels=2)
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    levels = step_levels(DEFAULT_SPARSITY_STEPS, 0.0, 0.98)
    schedule = StepListSchedule(levels, 0, ROWS // BATCH * (EPOCHS - 1))
    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, verbose=0, callbacks=[PruningCallback(pruner, schedule)])
    return model.evaluate(dev_x, dev_y, verbose=0)[1]


@pytest.mark.parametrize("seed", [1, 5])
def test_spt_under_the_demo_schedule_learns_as_well_as_magnitude(seed):
    by_magnitude = _dev_accuracy(MagnitudePruner(), seed)
    by_spt = _dev_accuracy(SptPruner(seed=seed), seed)
    assert by_magnitude > 0.9  # the task is learnable at this sparsity
    assert by_spt >= by_magnitude - 0.02
