"""`SoftMovementCallback`: attaches a soft-movement learner and reports the sparsity its masks reach."""

import keras

from efficiency.mac import macs_kept
from gated.masks import sparsity_stats


class SoftMovementCallback(keras.callbacks.Callback):
    """Registers `learner` with the model (`set_model`), freezes its masks when their step comes, and adds to the
    epoch logs `sparsity` (counted from the masks), `sparsity/<layer path>`, `macs_kept` (units granularities),
    the epoch mean of `score_regularization` and the current `regularization_lambda`, or with a target the
    current `target_sparsity` and the Lagrange multipliers `lagrange_l1`, `lagrange_l2`.

    Args:
        learner: a `pruners.SoftMovementLearner`.
        seq_len: the sequence length MACs are counted at.
    """

    def __init__(self, learner, seq_len=128):
        super().__init__()
        self.learner = learner
        self.seq_len = seq_len

    def set_model(self, model):
        super().set_model(model)
        self.learner.attach(model)

    def on_train_batch_begin(self, batch, logs=None):
        if self.learner.due_to_freeze():
            self.learner.freeze()

    def on_epoch_begin(self, epoch, logs=None):
        self.learner.reset_totals()

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        stats = sparsity_stats(self.model)
        logs["sparsity"] = stats["global_sparsity"]
        if self.learner.granularity != "weight":
            logs["macs_kept"] = macs_kept(self.model, self.seq_len)
        logs.update(self.learner.means())
        multipliers = self.learner.lagrange_multipliers()
        if multipliers is None:
            logs["regularization_lambda"] = float(self.learner.current_regularization())
        else:
            logs["target_sparsity"] = float(self.learner.current_target())
            logs["lagrange_l1"], logs["lagrange_l2"] = multipliers
        logs.update({f"sparsity/{path}": value for path, value in stats["layers"].items()})

    def resume_state(self):
        return self.learner.resume_state()

    def restore_state(self, arrays, values):
        self.learner.restore_state(arrays, values)
