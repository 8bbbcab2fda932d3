"""`GracefulStop`: a stop signal during `fit` ends training at the next batch boundary, recorded at once."""

import signal
import threading

import keras


class GracefulStop(keras.callbacks.Callback):
    """Turns a signal (SIGTERM) received during `fit` into a `KeyboardInterrupt` at the next batch or epoch end.

    Raising from the signal handler itself could land anywhere, including
    inside TensorFlow's tracing, which then fails with an unrelated error. The
    handler only calls `on_signal` (e.g. to record the interruption, in case
    the process is killed before the next batch ends) and sets a flag; the
    callback raises at a point where Keras unwinds cleanly.

    Use as a context manager around `fit` to install the handler (main thread
    only; elsewhere it does nothing):

        stop = GracefulStop(on_signal=record)
        with stop:
            model.fit(..., callbacks=[..., stop])

    Args:
        on_signal: optional `on_signal(signum)` called from the handler.
        signum: the signal to handle.
    """

    def __init__(self, on_signal=None, signum=signal.SIGTERM):
        super().__init__()
        self.on_signal = on_signal
        self.signum = signum
        self.received = None
        self._previous = None

    def handle(self, signum, frame):
        self.received = signum
        if self.on_signal is not None:
            self.on_signal(signum)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(self.signum, self.handle)
        return self

    def __exit__(self, *exc_info):
        if self._previous is not None:
            signal.signal(self.signum, self._previous)
            self._previous = None
        return False

    def _stop_if_signalled(self, *args, **kwargs):
        if self.received is not None:
            raise KeyboardInterrupt(f"signal {self.received}")

    on_train_batch_end = on_epoch_end = on_test_batch_end = on_predict_batch_end = _stop_if_signalled
