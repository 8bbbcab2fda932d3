"""Dev-set metrics and losses computed from model outputs (plain numpy/scipy)."""

import numpy as np


def accuracy(pred, labels):
    return float(np.mean(pred == labels))


def f1(pred, labels):
    """F1 of the positive class (label 1)."""
    tp = np.sum((pred == 1) & (labels == 1))
    denom = np.sum(pred == 1) + np.sum(labels == 1)
    return float(2 * tp / denom) if denom else 0.0


def matthews_corr(pred, labels):
    """Matthews correlation for binary labels; 0 when a row or column of the confusion matrix is empty."""
    tp = np.sum((pred == 1) & (labels == 1))
    tn = np.sum((pred == 0) & (labels == 0))
    fp = np.sum((pred == 1) & (labels == 0))
    fn = np.sum((pred == 0) & (labels == 1))
    denom = np.sqrt(float((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)))
    return float((tp * tn - fp * fn) / denom) if denom else 0.0


def _correlation(fn, scores, labels):
    if np.std(scores) == 0 or np.std(labels) == 0:
        return 0.0  # undefined for constant input; report no correlation
    return float(fn(scores, labels)[0])


def pearson(scores, labels):
    from scipy import stats  # imported here: scipy.stats takes longer to import than the rest of the package

    return _correlation(stats.pearsonr, scores, labels)


def spearman(scores, labels):
    from scipy import stats

    return _correlation(stats.spearmanr, scores, labels)


METRICS = {
    "accuracy": accuracy,
    "f1": f1,
    "matthews_corr": matthews_corr,
    "pearson": pearson,
    "spearman": spearman,
}


def predictions_from_outputs(spec, outputs):
    """Class ids (argmax of logits) or regression scores from `(N, num_labels)` outputs."""
    outputs = np.asarray(outputs)
    return outputs[:, 0] if spec.is_regression else np.argmax(outputs, axis=-1)


def compute_metrics(spec, outputs, labels):
    """`{metric: value}` for every metric of the task."""
    pred = predictions_from_outputs(spec, outputs)
    return {name: METRICS[name](pred, np.asarray(labels)) for name in spec.metrics}


def compute_loss(spec, outputs, labels):
    """Mean cross-entropy of logits, or mean squared error for regression."""
    outputs = np.asarray(outputs, dtype=np.float64)
    labels = np.asarray(labels)
    if spec.is_regression:
        return float(np.mean((outputs[:, 0] - labels) ** 2))
    shifted = outputs - outputs.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return float(-np.mean(log_probs[np.arange(len(labels)), labels]))
