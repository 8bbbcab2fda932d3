"""GracefulStop: SIGTERM during fit stops at a batch boundary, after recording it."""

import os
import signal

import keras
import numpy as np
import pytest

from callbacks import GracefulStop


class _SignalAtBatch(keras.callbacks.Callback):
    """Sends SIGTERM to this process when batch `at` begins."""

    def __init__(self, at):
        super().__init__()
        self.at = at
        self.finished = []

    def on_train_batch_begin(self, batch, logs=None):
        if batch == self.at:
            os.kill(os.getpid(), signal.SIGTERM)

    def on_train_batch_end(self, batch, logs=None):
        self.finished.append(batch)


def test_sigterm_during_fit_ends_at_the_next_batch_end_and_is_recorded_first():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    recorded = []
    stop = GracefulStop(on_signal=recorded.append)
    sender = _SignalAtBatch(at=2)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt, match="signal 15"), stop:
        model.fit(np.zeros((40, 3)), np.zeros(40), batch_size=4, epochs=1, verbose=0, callbacks=[sender, stop])
    assert recorded == [signal.SIGTERM]
    assert sender.finished == [0, 1, 2]  # batch 2 ran to its end; nothing after it
    assert signal.getsignal(signal.SIGTERM) is before  # the previous handler is back
