"""`GumbelMaskCallback`: anneals the mask temperature and logs the mask losses while masks are learned."""

import csv
import logging
import os

import keras
import numpy as np

from efficiency.mac import macs_kept
from gated.masks import save_learned_masks, structured_masks
from gated_bert.files import sha256_of

log = logging.getLogger(__name__)


class GumbelMaskCallback(keras.callbacks.Callback):
    """Sets the Gumbel temperature before every batch and reports the mask losses.

    It attaches the learner to the model (`set_model`); the learner stays
    attached after training, so a second `fit` reuses the traced train step
    (call `learner.detach()` to train without it). The step continues from
    the mask optimizer's iteration count, so a second `fit` resumes the
    annealing. Every `log_every` steps
    the latest loss terms go to the log, into the batch logs (for trackers)
    and, with `step_log_path`, as a row of a CSV. Epoch logs gain
    `temperature`, the epoch means of `sparsity_loss` and `quantization_loss`,
    `mask_sparsity/<kind>` (fraction of units the binary masks remove),
    `expected_sparsity/<kind>`, `macs_kept` (the blocks' MACs the binary head
    and neuron masks keep) and, in target mode, `lagrange_l1/<kind>`.

    Args:
        learner: a `pruners.GumbelMaskLearner`.
        schedule: a callable `step -> temperature` (e.g. `pruners.TemperatureSchedule`).
        log_every: steps between two loss logs.
        step_log_path: CSV file for the per-step loss terms (None: no file).
        masks_dir: folder for the learned masks and logits, written when
            training ends (`gated.save_learned_masks`; None: not saved).
        checkpoints: the run's checkpoint files; the mask folder records the
            SHA-256 of those that exist when training ends (the masks go with them).
        seq_len: the sequence length MACs are counted at.
    """

    def __init__(self, learner, schedule, log_every=5, step_log_path=None, masks_dir=None, checkpoints=(),
                 seq_len=128):
        super().__init__()
        if isinstance(log_every, bool) or not isinstance(log_every, int) or log_every <= 0:
            raise ValueError(f"log_every must be a positive integer, got log_every={log_every!r}")
        self.learner = learner
        self.schedule = schedule
        self.log_every = log_every
        self.step_log_path = step_log_path
        self.masks_dir = masks_dir
        self.checkpoints = tuple(checkpoints)
        self.seq_len = seq_len
        self.temperature = None
        self._step = 0

    def set_model(self, model):
        super().set_model(model)
        self.learner.attach(model)

    def on_train_begin(self, logs=None):
        self._step = int(self.learner.optimizer.iterations.numpy())
        self.learner.reset_totals()
        if self.step_log_path and not os.path.exists(self.step_log_path):
            with open(self.step_log_path, "w", newline="", encoding="utf-8") as handle:
                csv.writer(handle).writerow(["step", "temperature", *self.learner.term_names])

    def on_train_batch_begin(self, batch, logs=None):
        temperature = float(self.schedule(self._step))
        if temperature != self.temperature:
            self.learner.set_temperature(temperature)
            self.temperature = temperature

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if self._step % self.log_every:
            return
        terms = self.learner.latest()
        if logs is not None:
            logs.update({"temperature": self.temperature, **terms})
        log.debug("step %d: temperature %.4f, %s", self._step, self.temperature,
                  ", ".join(f"{name} {value:.5f}" for name, value in terms.items()))
        if self.step_log_path:
            with open(self.step_log_path, "a", newline="", encoding="utf-8") as handle:
                csv.writer(handle).writerow([self._step, self.temperature, *terms.values()])

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        masks = structured_masks(self.model)
        means = self.learner.means()
        logs["temperature"] = self.temperature
        logs["sparsity_loss"] = means.get("sparsity_loss", float("nan"))
        logs["quantization_loss"] = means.get("quantization_loss", float("nan"))
        for kind in self.learner.kinds:
            logs[f"mask_sparsity/{kind}"] = float(1.0 - np.mean(masks[kind]))
            logs[f"expected_sparsity/{kind}"] = means.get(f"expected_sparsity/{kind}", float("nan"))
        logs["macs_kept"] = macs_kept(self.model, self.seq_len)
        for kind, (l1, _) in self.learner.lagrange_multipliers().items():
            logs[f"lagrange_l1/{kind}"] = l1
        log.info("epoch %d: temperature %.4f; masks remove %s", epoch + 1, self.temperature,
                 ", ".join(f"{logs[f'mask_sparsity/{kind}']:.1%} of {kind}" for kind in self.learner.kinds))
        self.learner.reset_totals()

    def resume_state(self):
        arrays, values = self.learner.resume_state()
        return arrays, {"learner": values}

    def restore_state(self, arrays, values):
        self.learner.restore_state(arrays, values["learner"])
        self._step = int(self.learner.optimizer.iterations.numpy())  # as on_train_begin reads it

    def on_train_end(self, logs=None):
        if self.masks_dir:
            made_for = [{"path": os.path.abspath(path), "weights_sha256": sha256_of([path])}
                        for path in self.checkpoints if os.path.isfile(path)]
            saved = save_learned_masks(self.model, self.masks_dir, {"written_by": "train.py (gumbel)",
                                                                    "steps": self._step, "checkpoints": made_for})
            log.info("learned masks in %s: %s", self.masks_dir, ", ".join(saved))
