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


@pytest.fixture
def ctrl_c_not_ignored():
    """SIGINT as an interactive process has it: a process started in the background by a shell (a test run
    with `&`) inherits it ignored, and an ignored signal stays ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_take_the_same_path_and_a_second_signal_changes_nothing(signum, ctrl_c_not_ignored):
    class _TwoSignals(_SignalAtBatch):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == self.at:
                os.kill(os.getpid(), signum)
                os.kill(os.getpid(), signal.SIGTERM)  # the orchestrator's follow-up

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    recorded = []
    sender, stop = _TwoSignals(at=1), GracefulStop(on_signal=recorded.append)
    with pytest.raises(KeyboardInterrupt, match=f"signal {int(signum)}"), stop:
        model.fit(np.zeros((40, 3)), np.zeros(40), batch_size=4, epochs=1, verbose=0, callbacks=[sender, stop])
    assert recorded == [signum]  # recorded once, from the first signal
    assert sender.finished == [0, 1]


def test_signals_during_the_final_writes_wait_for_them(tmp_path, ctrl_c_not_ignored):
    from callbacks import deferred_signals

    before = signal.getsignal(signal.SIGINT)
    with deferred_signals() as received:
        os.kill(os.getpid(), signal.SIGINT)  # would raise KeyboardInterrupt here without the deferral
        os.kill(os.getpid(), signal.SIGTERM)
        (tmp_path / "written").write_text("complete")
    assert received == [signal.SIGINT, signal.SIGTERM]
    assert (tmp_path / "written").read_text() == "complete"
    assert signal.getsignal(signal.SIGINT) is before
