"""`DevEvaluator`: scores the dev set with the task's metrics after every epoch."""

import time

import keras
import numpy as np

from tasks.metrics import compute_loss, compute_metrics


class DevEvaluator(keras.callbacks.Callback):
    """Adds `dev_loss`, `dev_<metric>` and `dev_seconds` to the epoch logs.

    Place it before callbacks that read those keys (logger, checkpoints):
    Keras hands every callback the same logs dict, in list order.

    Args:
        dataset: the dev `tf.data.Dataset` of `(features, label)`; not shuffled.
        spec: the task's `TaskSpec`.
    """

    def __init__(self, dataset, spec):
        super().__init__()
        self.dataset = dataset
        self.spec = spec
        # The dataset is deterministic, so labels line up with predict's outputs.
        self.labels = np.concatenate([label.numpy() for _, label in dataset])

    def evaluate(self):
        """`{dev_loss, dev_<metric>...}` for the model as it is now."""
        outputs = self.model.predict(self.dataset, verbose=0)
        scores = compute_metrics(self.spec, outputs, self.labels)
        return {"dev_loss": compute_loss(self.spec, outputs, self.labels)} | {
            f"dev_{name}": value for name, value in scores.items()
        }

    def on_epoch_end(self, epoch, logs=None):
        start = time.perf_counter()
        results = self.evaluate()
        if logs is not None:
            logs.update(results)
            logs["dev_seconds"] = time.perf_counter() - start
