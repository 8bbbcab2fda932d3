"""FiniteGuard: a non-finite loss or non-finite weights stop fit before the epoch is recorded or saved."""

import keras
import numpy as np
import pytest

from callbacks import FiniteGuard, NonFiniteError


class _Recorder(keras.callbacks.Callback):
    """Stands for the callbacks after the guard (dev scoring, results row, checkpoints): counts epoch ends."""

    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(epoch)


def _model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    return model


def test_a_nan_loss_stops_at_its_step_with_the_advice():
    model, recorder = _model(), _Recorder()
    x = np.ones((8, 3), "float32")
    y = np.ones((8, 1), "float32")
    y[5] = np.nan  # the third batch of two rows has a NaN target; its mean loss is NaN from then on
    with pytest.raises(NonFiniteError, match=r"the training loss is nan at epoch 1, step 3; lower the rate"):
        model.fit(x, y, batch_size=2, epochs=2, verbose=0, shuffle=False,
                  callbacks=[FiniteGuard("lower the rate"), recorder])
    assert recorder.epochs == []


class _Poison(keras.callbacks.Callback):
    """Makes a weight infinite as epoch `at` ends, after its last batch (so no loss sees it)."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.at:
            self.model.weights[0].assign(np.full((3, 1), np.inf, "float32"))


def test_non_finite_weights_at_an_epoch_end_stop_before_later_callbacks():
    model, recorder = _model(), _Recorder()
    x, y = np.ones((4, 3), "float32"), np.ones((4, 1), "float32")
    with pytest.raises(NonFiniteError, match=r"NaN or infinite values in 1 of the model's weight tensors "
                                             r"\(first: \w+/dense\w*/kernel\) at epoch 2 end"):
        model.fit(x, y, batch_size=2, epochs=3, verbose=0, callbacks=[_Poison(1), FiniteGuard(), recorder])
    assert recorder.epochs == [0]  # epoch 1 finished and was recorded; epoch 2 was not
