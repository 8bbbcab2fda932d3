"""PruningCallback on micro models: honest sparsity through training, save/load and every method."""

import keras
import numpy as np
import pytest

from callbacks import PruningCallback
from gated import collect_gated_layers, effective_kernel_masks, get_weight_masks, sparsity_stats
from pruners import MagnitudePruner, MovementPruner, PolynomialSchedule, SptPruner, StepListSchedule

PRUNERS = {"magnitude": MagnitudePruner, "movement": MovementPruner, "spt": lambda: SptPruner(epsilon=0.05)}


def _data(micro_batch, repeats=8):
    x = {key: np.tile(value, (repeats, 1)) for key, value in micro_batch.items()}
    return x, np.tile(np.array([0, 1, 1]), repeats)


def _compile(model):
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


class MaskRecorder(keras.callbacks.Callback):
    """Keeps the kernel masks after every batch."""

    def __init__(self):
        super().__init__()
        self.history = []

    def on_train_batch_end(self, batch, logs=None):
        self.history.append(get_weight_masks(self.model))


def _effective_kernels(model):
    masks = effective_kernel_masks(model)
    return {path: layer.kernel.numpy() * masks[path] for path, layer in collect_gated_layers(model).items()}


@pytest.mark.parametrize("method", sorted(PRUNERS))
def test_pruned_weights_stay_zero_and_never_revive(micro_model, micro_batch, method, tmp_path):
    x, y = _data(micro_batch)  # 24 rows, batch 3: 8 steps per epoch
    _compile(micro_model)
    schedule = PolynomialSchedule(0.0, 0.8, begin_step=2, end_step=20, frequency=3, power=1)
    recorder = MaskRecorder()
    callback = PruningCallback(PRUNERS[method](), schedule)
    history = micro_model.fit(x, y, batch_size=3, epochs=4, verbose=0, callbacks=[callback, recorder]).history

    for before, after in zip(recorder.history, recorder.history[1:], strict=False):
        for path in before:
            assert np.all(after[path] <= before[path]), f"{method} revived a weight of {path}"
    last_events = (8, 14, 20, 20)  # the last pruning step of each 8-step epoch
    assert history["target_sparsity"] == pytest.approx([schedule.target(step) for step in last_events])
    assert history["sparsity"][-1] == pytest.approx(0.8, abs=1 / sparsity_stats(micro_model)["total"])
    assert history["sparsity"] == sorted(history["sparsity"])
    assert set(history) >= {f"sparsity/{path}" for path in get_weight_masks(micro_model)}

    pruned = {path: mask == 0 for path, mask in get_weight_masks(micro_model).items()}
    micro_model.fit(x, y, batch_size=3, epochs=2, verbose=0, callbacks=[callback])  # schedule is over
    kernels = _effective_kernels(micro_model)
    assert all(np.all(kernels[path][pruned[path]] == 0) for path in pruned)

    micro_model.save(tmp_path / "pruned.keras")
    loaded = keras.saving.load_model(tmp_path / "pruned.keras")
    assert sparsity_stats(loaded)["global_sparsity"] == sparsity_stats(micro_model)["global_sparsity"]
    reloaded = _effective_kernels(loaded)
    assert all(np.array_equal(reloaded[path], kernels[path]) for path in kernels)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), micro_model.predict(x, verbose=0), atol=1e-6)


def test_schedule_continues_across_fits_and_counts_events(micro_model, micro_batch):
    x, y = _data(micro_batch, repeats=2)  # 2 steps per epoch
    _compile(micro_model)
    callback = PruningCallback(MagnitudePruner(), StepListSchedule([0.2, 0.4, 0.6], begin_step=1, end_step=5))
    micro_model.fit(x, y, batch_size=3, epochs=1, verbose=0, callbacks=[callback])
    assert callback.events == 1 and callback.target == 0.2
    history = micro_model.fit(x, y, batch_size=3, epochs=2, verbose=0, callbacks=[callback]).history
    assert callback.events == 3 and history["target_sparsity"] == [0.4, 0.6]


def test_gated_model_trains_exactly_like_a_plain_keras_model(micro_model, micro_batch):
    x, y = _data(micro_batch)
    plain = keras.Model(micro_model.inputs, micro_model.outputs)
    start = micro_model.get_weights()
    gated_loss = _compile(micro_model).fit(x, y, batch_size=6, epochs=2, verbose=0, shuffle=False).history["loss"]
    gated_weights = micro_model.get_weights()
    plain.set_weights(start)
    plain_loss = _compile(plain).fit(x, y, batch_size=6, epochs=2, verbose=0, shuffle=False).history["loss"]
    np.testing.assert_allclose(gated_loss, plain_loss, rtol=1e-5)
    for ours, theirs in zip(gated_weights, plain.get_weights(), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6)


def test_the_train_step_is_traced_once_with_the_optimizer_already_built(micro_model, micro_batch):
    # A hook's Python body runs once per trace of the train step. Keras builds an unbuilt optimizer inside that
    # trace, and tf.function then traces the step again without variable creation: two traces, not one.
    traces = []

    def hook(inputs, labels, variables, gradients):
        traces.append(micro_model.optimizer.built)

    micro_model.add_train_step_hook(hook)
    x, y = _data(micro_batch)
    _compile(micro_model).fit(x, y, batch_size=6, epochs=2, verbose=0)
    assert traces == [True]
    assert len(micro_model.optimizer.variables) > 1  # its moments, one pair per trained variable
