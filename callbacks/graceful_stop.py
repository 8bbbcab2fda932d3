"""`GracefulStop`: a stop signal during `fit` ends training at the next batch boundary, recorded at once;
`deferred_signals`: the writes that follow are not cut short by a later signal."""

import contextlib
import signal
import threading

import keras

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _installed(handlers):
    """Install `{signum: handler}` (main thread only; elsewhere nothing); returns the previous handlers. A signal
    this process ignores stays ignored (a shell starts its background jobs ignoring SIGINT, so that Ctrl-C goes
    to the script, which stops them with SIGTERM)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {signum: signal.signal(signum, handler) for signum, handler in handlers.items()
            if signal.getsignal(signum) is not signal.SIG_IGN}


def _restore(previous):
    for signum, handler in previous.items():
        signal.signal(signum, handler)


@contextlib.contextmanager
def deferred_signals(signums=STOP_SIGNALS):
    """Hold SIGINT and SIGTERM while the block runs (a run's final writes: metadata, plots), so that a second
    Ctrl-C, or the SIGTERM an orchestrator sends after one, cannot cut them short; yields the list of signals
    received. The caller ends the process once the block is done."""
    received = []
    previous = _installed({signum: lambda signum, frame: received.append(signum) for signum in signums})
    try:
        yield received
    finally:
        _restore(previous)


class GracefulStop(keras.callbacks.Callback):
    """Turns a stop signal (SIGINT, as Ctrl-C sends, or SIGTERM) received during `fit` into a `KeyboardInterrupt`
    at the next batch or epoch end.

    Raising from the signal handler itself could land anywhere, including
    inside TensorFlow's tracing, which then fails with an unrelated error. The
    handler only calls `on_signal` (e.g. to record the interruption, in case
    the process is killed before the next batch ends) and sets a flag; the
    callback raises at a point where Keras unwinds cleanly. A second signal
    before then changes nothing.

    Use as a context manager around `fit` to install the handlers (main thread
    only; elsewhere it does nothing):

        stop = GracefulStop(on_signal=record)
        with stop:
            model.fit(..., callbacks=[..., stop])

    Args:
        on_signal: optional `on_signal(signum)` called from the handler, once.
        signums: the signals to handle.
    """

    def __init__(self, on_signal=None, signums=STOP_SIGNALS):
        super().__init__()
        self.on_signal = on_signal
        self.signums = tuple(signums)
        self.received = None
        self._previous = {}

    def handle(self, signum, frame):
        if self.received is not None:
            return
        self.received = signum
        if self.on_signal is not None:
            self.on_signal(signum)

    def __enter__(self):
        self._previous = _installed({signum: self.handle for signum in self.signums})
        return self

    def __exit__(self, *exc_info):
        _restore(self._previous)
        self._previous = {}
        return False

    def _stop_if_signalled(self, *args, **kwargs):
        if self.received is not None:
            raise KeyboardInterrupt(f"signal {self.received}")

    on_train_batch_end = on_epoch_end = on_test_batch_end = on_predict_batch_end = _stop_if_signalled
