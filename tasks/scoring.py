"""Scoring a model on a split: its loss and the task's metrics, from one pass of predictions."""

import numpy as np

from tasks.metrics import compute_loss, compute_metrics


def dataset_labels(dataset):
    """The labels of a deterministic dataset of `(features, label)` batches, in batch order."""
    return np.concatenate([np.asarray(label) for _, label in dataset])


def score_model(model, dataset, spec, labels=None, prefix="dev_"):
    """`{<prefix>loss, <prefix><metric>...}` of `model` on a deterministic (unshuffled) dataset.

    Args:
        model: anything with Keras' `predict`.
        dataset: batches of `(features, label)` in a fixed order.
        spec: the task's `TaskSpec` (its metrics and whether it is a regression).
        labels: the dataset's labels (`dataset_labels`), when they are already at hand.
        prefix: put before every key (`dev_` for the dev set).
    """
    labels = dataset_labels(dataset) if labels is None else labels
    outputs = model.predict(dataset, verbose=0)
    scores = {"loss": compute_loss(spec, outputs, labels), **compute_metrics(spec, outputs, labels)}
    return {f"{prefix}{name}": value for name, value in scores.items()}
