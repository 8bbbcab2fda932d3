"""Tracking: `WandbLogger` sends a run's step and epoch logs to Weights & Biases; `tensorboard_callback` writes
them for TensorBoard."""

import hashlib
import json
import numbers
import os

import keras

DEFAULT_PROJECT = "gated-bert"
# Settings that do not make two runs different experiments: the seed (their group's point) and bookkeeping.
NOT_THE_EXPERIMENT = ("seed", "name", "output_dir", "progress_file", "verbose", "intra_op_threads",
                      "inter_op_threads", "wandb", "tensorboard", "cache_dir")


def wandb_group(config):
    """The W&B group of a run's config (`to_dict()`): runs that differ only by seed share it."""
    kept = {key: value for key, value in sorted(config.items()) if key not in NOT_THE_EXPERIMENT}
    digest = hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:10]
    method = config.get("pruning_method") if config.get("pruning_method") not in (None, "none") else "baseline"
    return f"{method}_{config.get('task')}_{digest}"


def start_wandb_run(name, config, directory, environ=None):
    """Start a W&B run (online, or offline when `WANDB_MODE=offline`) in the project `WANDB_PROJECT` (default
    `gated-bert`) and the entity `WANDB_ENTITY` (default: the account's), grouped with the runs that differ only by
    seed (`wandb_group`); files go under `directory`."""
    import wandb

    environ = os.environ if environ is None else environ
    return wandb.init(project=environ.get("WANDB_PROJECT") or DEFAULT_PROJECT, entity=environ.get("WANDB_ENTITY"),
                      group=wandb_group(config), name=name, config=config, dir=directory)


def tensorboard_callback(log_dir):
    """Keras' TensorBoard callback writing every epoch's logs as scalars (`epoch_<name>`: losses, dev metrics,
    sparsity, MACs kept, temperatures, loss terms) under `log_dir`; no graph, no profiling."""
    return keras.callbacks.TensorBoard(log_dir=log_dir, write_graph=False, profile_batch=0, update_freq="epoch")


def _scalars(logs):
    return {key: float(value) for key, value in (logs or {}).items() if isinstance(value, numbers.Number)}


class WandbLogger(keras.callbacks.Callback):
    """Logs the batch logs every `log_every` steps and the epoch logs at each epoch's end.

    Place it after the callbacks that add to the logs (dev metrics, sparsity,
    mask losses). The W&B step is the training step.

    Args:
        run: a W&B run (`start_wandb_run`).
        log_every: steps between two batch-log records.
    """

    def __init__(self, run, log_every=5):
        super().__init__()
        self.run = run
        self.log_every = log_every
        self._step = 0

    def on_train_begin(self, logs=None):
        self._step = int(self.model.optimizer.iterations.numpy())

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if self._step % self.log_every == 0:
            self.run.log({f"train/{key}": value for key, value in _scalars(logs).items()}, step=self._step)

    def on_epoch_end(self, epoch, logs=None):
        self.run.log({"epoch": epoch + 1, **_scalars(logs)}, step=self._step)
