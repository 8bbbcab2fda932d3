"""`ProgressFile`: a one-line progress file that other processes (run_experiments.sh) can poll."""

import os
import time

import keras

from gated_bert.files import atomic_path


class ProgressFile(keras.callbacks.Callback):
    """Keeps `path` holding one line: `percent epoch epochs metric value status`.

    `percent` is the share of training steps done (0-100, one decimal),
    `epoch` the epochs finished, `value` the latest `metric` from the epoch
    logs (`-` before the first epoch ends) and `status` `running`, `done`,
    `stopped` (fit ended early), or what `finish` is given (`failed`,
    `interrupted`) when fit raised.
    The file is replaced atomically at most every `interval` seconds during
    an epoch, and at every epoch end. Place it after the `DevEvaluator`.

    Args:
        path: the progress file.
        epochs: epochs in the run.
        steps_per_epoch: training steps per epoch.
        metric: the epoch-log key to report (for example `dev_accuracy`).
        interval: least seconds between two writes within an epoch.
    """

    def __init__(self, path, epochs, steps_per_epoch, metric, interval=0.5):
        super().__init__()
        self.path = path
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch
        self.metric = metric
        self.interval = interval
        self.epoch = 0
        self.value = None
        self._written = 0.0

    def _write(self, steps, status="running"):
        percent = 100.0 * min(steps / (self.epochs * self.steps_per_epoch), 1.0)
        value = "-" if self.value is None else f"{self.value:.4f}"
        with atomic_path(self.path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
            handle.write(f"{percent:.1f} {self.epoch} {self.epochs} {self.metric} {value} {status}\n")
        self._written = time.monotonic()

    def on_train_begin(self, logs=None):
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._write(0)

    def on_train_batch_end(self, batch, logs=None):
        if time.monotonic() - self._written >= self.interval:
            self._write(self.epoch * self.steps_per_epoch + batch + 1)

    def on_epoch_end(self, epoch, logs=None):
        self.epoch = epoch + 1
        if logs and self.metric in logs:
            self.value = float(logs[self.metric])
        self._write(self.epoch * self.steps_per_epoch)

    def on_train_end(self, logs=None):
        self._write(self.epoch * self.steps_per_epoch, "done" if self.epoch == self.epochs else "stopped")

    def resume_state(self):
        return {}, {"epoch": self.epoch, "value": self.value}

    def restore_state(self, arrays, values):
        self.epoch, self.value = values["epoch"], values["value"]
        self._write(self.epoch * self.steps_per_epoch)

    def finish(self, status):
        """Record the run's end when `fit` raised (Keras then skips `on_train_end`): `failed` or `interrupted`."""
        self._write(self.epoch * self.steps_per_epoch, status)
