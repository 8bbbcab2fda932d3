"""`BestAndLastCheckpoint`: keeps the best and the latest `.keras` model of a run."""

import math
import os
import shutil

import keras

from gated_bert.files import atomic_path


def save_model_atomic(model, path):
    """Save a `.keras` file through a temporary name, so a crash never leaves half a file."""
    with atomic_path(path) as tmp:
        model.save(tmp)


def can_be_best(epoch, logs, min_target_sparsity=0.0, min_epoch=1):
    """Whether epoch `epoch` (1-based) with these logs (or CSV row) may count as the best.

    Its target sparsity must be the final one (a pruning run's best model is a
    pruned one) and it must not come before `min_epoch` (learned masks are
    final only once the temperature is annealed).
    """
    return epoch >= min_epoch and logs.get("target_sparsity", 0.0) >= min_target_sparsity - 1e-9


def _duplicate(source, path):
    """Make `path` a copy of `source`: a hard link where the file system allows, else a byte copy."""
    with atomic_path(path) as tmp:
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


class BestAndLastCheckpoint(keras.callbacks.Callback):
    """Saves the model after every epoch to `last_path`, and to `best_path` when `monitor` improves.

    Args:
        best_path: `.keras` file for the best epoch so far.
        last_path: `.keras` file for the latest epoch.
        monitor: logs key to maximise (for example `dev_accuracy`).
        min_target_sparsity: only epochs whose `target_sparsity` log reaches
            this can be the best (a pruning run's best model is a pruned one).
        min_epoch: only epochs from this one (1-based) on can be the best
            (learned masks are final only once the temperature is annealed).
    """

    def __init__(self, best_path, last_path, monitor, min_target_sparsity=0.0, min_epoch=1):
        super().__init__()
        self.best_path = best_path
        self.last_path = last_path
        self.monitor = monitor
        self.min_target_sparsity = min_target_sparsity
        self.min_epoch = min_epoch
        self.best = -math.inf

    def on_train_begin(self, logs=None):
        self.best = -math.inf

    def resume_state(self):
        return {}, {"best": None if math.isinf(self.best) else self.best}

    def restore_state(self, arrays, values):
        self.best = -math.inf if values["best"] is None else values["best"]

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            raise KeyError(
                f"{self.monitor} is not in the epoch logs ({sorted(logs or {})}); "
                "put the DevEvaluator before this callback"
            )
        save_model_atomic(self.model, self.last_path)
        if value > self.best and can_be_best(epoch + 1, logs, self.min_target_sparsity, self.min_epoch):
            self.best = value
            # Same model as the file just written: link it rather than serialise twice. `last` is
            # later replaced by rename, which leaves this link (the best model) untouched.
            _duplicate(self.last_path, self.best_path)
