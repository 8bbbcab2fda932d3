"""Logit bias correction: one shift of the classifier's bias that brings a pruned model's predictions on the
sample back to the dense model's.

Pruning moves the decision boundary. On a fine-tuned MiniLM pruned for SST-2
to 0.4 of its MACs (sample seed 2), the rescaled masks predict the positive
class for 62% of the dev rows where the dense model predicts it for 52%:
accuracy on the negative rows falls from 0.88 to 0.72 while the dev loss
falls at every stage. The stages cannot see this: rescaling matches each
sublayer's output on every token, not the logits.

The correction is fitted on the sampled training rows, without their labels:
the shift `d` of the logits (a vector, one entry per label) that minimises

    mean_rows KL(softmax(z_dense) || softmax(z_pruned + d))

which is convex in `d`; at its minimum the pruned model's mean predicted
distribution equals the dense model's. For a regression head the loss is
`mean (z_dense - z_pruned - d)^2`, so `d` is the mean difference. Only
`num_labels` numbers are fitted to thousands of rows, so the sample cannot be
over-fitted the way a per-unit fit can.
"""

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax, softmax


def fit_logit_bias(dense_logits, pruned_logits, regression=False):
    """The shift `d` (`[num_labels]`, float32) to add to the pruned model's logits; see the module's text.

    Args:
        dense_logits, pruned_logits: `[rows, num_labels]`, the same rows through both models.
        regression: fit the mean squared difference instead of the KL divergence.
    """
    dense = np.asarray(dense_logits, np.float64)
    pruned = np.asarray(pruned_logits, np.float64)
    if dense.shape != pruned.shape or dense.ndim != 2 or not len(dense):
        raise ValueError(f"dense and pruned logits must be the same [rows, labels] shape, got {dense.shape} and "
                         f"{pruned.shape}")
    if regression:
        return np.mean(dense - pruned, axis=0).astype(np.float32)
    target = softmax(dense, axis=-1)

    def cross_entropy(shift):  # the KL divergence less the target's entropy, a constant; and its gradient
        log_q = log_softmax(pruned + shift, axis=-1)
        return -np.mean(np.sum(target * log_q, axis=-1)), np.mean(np.exp(log_q) - target, axis=0)

    result = minimize(cross_entropy, np.zeros(dense.shape[1]), jac=True, method="L-BFGS-B",
                      options={"gtol": 1e-10, "ftol": 1e-15})
    shift = result.x - result.x.mean()  # softmax ignores a common offset: the smallest shift that does the same
    return shift.astype(np.float32)


def logit_distance(dense_logits, pruned_logits, regression=False):
    """What the correction lowers, to report it: `mean_rows KL(softmax(dense) || softmax(pruned))`, or for a
    regression head the mean squared difference."""
    dense = np.asarray(dense_logits, np.float64)
    pruned = np.asarray(pruned_logits, np.float64)
    if regression:
        return float(np.mean(np.square(dense - pruned)))
    log_p, log_q = log_softmax(dense, axis=-1), log_softmax(pruned, axis=-1)
    return float(np.mean(np.sum(np.exp(log_p) * (log_p - log_q), axis=-1)))


def sample_logits(probe, batches):
    """The logits of a `GateProbe`'s model, with the gates it has now, on every sample batch (`(features, labels)`
    pairs), stacked: `[rows, num_labels]`. `GateProbe.predict` is one compiled pass for every batch shape that
    reads the gates as variables, so one probe scores the dense model and then the masked one."""
    return np.concatenate([probe.predict(features).numpy() for features, _ in batches])
