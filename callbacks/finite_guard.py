"""`FiniteGuard`: a diverging run stops with a message instead of training on, and saving, non-finite weights."""

import math

import keras

from gated.masks import non_finite_weights


class NonFiniteError(RuntimeError):
    """Training produced a non-finite loss or non-finite weights."""


class FiniteGuard(keras.callbacks.Callback):
    """Raises `NonFiniteError` at the first batch whose training loss is not finite, and at an epoch end whose
    weights are not all finite, naming the epoch and step and what to change.

    Place it first in the callback list: its epoch-end check must run before
    the dev evaluation, the results row and the checkpoints, so that a
    diverged epoch is neither recorded as finished nor saved.

    Args:
        advice: what to change, appended to the message (e.g. the learning rate in use).
    """

    def __init__(self, advice=""):
        super().__init__()
        self.advice = advice
        self.epoch = 0

    def _fail(self, what, step=None):
        where = f"epoch {self.epoch + 1}" + (f", step {step + 1}" if step is not None else " end")
        raise NonFiniteError(f"training diverged: {what} at {where}; {self.advice}".rstrip("; "))

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self._fail(f"the training loss is {float(loss)}", batch)

    def on_epoch_end(self, epoch, logs=None):
        bad = non_finite_weights(self.model)
        if bad:
            self._fail(f"NaN or infinite values in {len(bad)} of the model's weight tensors (first: {bad[0]})")
