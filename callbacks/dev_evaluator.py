"""`DevEvaluator`: scores the dev set with the task's metrics after every epoch."""

import time

import keras

from tasks.scoring import dataset_labels, score_model


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
        # The dataset is deterministic, so labels line up with predict's outputs; gathered once.
        self.labels = dataset_labels(dataset)

    def evaluate(self):
        """`{dev_loss, dev_<metric>...}` for the model as it is now."""
        return score_model(self.model, self.dataset, self.spec, self.labels)

    def on_epoch_end(self, epoch, logs=None):
        start = time.perf_counter()
        results = self.evaluate()
        if logs is not None:
            logs.update(results)
            logs["dev_seconds"] = time.perf_counter() - start
