"""`PruningCallback`: asks a schedule when to prune and tells the pruner to do it."""

import logging

import keras

from gated.masks import sparsity_stats

log = logging.getLogger(__name__)


class PruningCallback(keras.callbacks.Callback):
    """Prunes at the end of the batches the schedule names, and reports sparsity in the epoch logs.

    It binds the pruner to the model (`set_model`), starts it when training
    begins (resetting its scores) and stops it when training ends. The step
    is the optimizer's iteration count, so a second `fit` continues the
    schedule where the first stopped. Epoch logs gain `target_sparsity` (the
    last target applied), `sparsity` (counted from the masks) and
    `sparsity/<layer path>` per prunable layer.

    Args:
        pruner: a `pruners.Pruner`.
        schedule: a callable `step -> (should_prune, target_sparsity)`.
    """

    def __init__(self, pruner, schedule):
        super().__init__()
        self.pruner = pruner
        self.schedule = schedule
        self.target = 0.0
        self.events = 0
        self._step = 0

    def set_model(self, model):
        super().set_model(model)
        self.pruner.attach(model)

    def on_train_begin(self, logs=None):
        self.pruner.start()
        self._step = int(self.model.optimizer.iterations.numpy())

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        should_prune, target = self.schedule(self._step)
        if should_prune:
            self.pruner.prune(target)
            self.target = target
            self.events += 1
            log.debug("step %d: pruned to target sparsity %.4f", self._step, target)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        stats = sparsity_stats(self.model)
        logs["target_sparsity"] = self.target
        logs["sparsity"] = stats["global_sparsity"]
        logs.update({f"sparsity/{path}": value for path, value in stats["layers"].items()})
        if self.pruner.structured:
            logs["macs_kept"] = self.pruner.macs_kept()

    def on_train_end(self, logs=None):
        self.pruner.stop()

    def resume_state(self):
        arrays, values = self.pruner.resume_state()
        return arrays, {"target": self.target, "events": self.events, "pruner": values}

    def restore_state(self, arrays, values):
        """After the optimizer's state (`callbacks.ResumeState`): the step is its restored iteration count."""
        self._step = int(self.model.optimizer.iterations.numpy())
        self.target, self.events = values["target"], values["events"]
        self.pruner.restore_state(arrays, values["pruner"])
