"""`WandbLogger`: sends a run's step and epoch logs to Weights & Biases."""

import numbers

import keras


def start_wandb_run(name, config, directory, project="gated-bert"):
    """Start a W&B run (online, or offline when `WANDB_MODE=offline`); files go under `directory`."""
    import wandb

    return wandb.init(project=project, name=name, config=config, dir=directory)


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
