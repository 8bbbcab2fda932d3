"""Empirical Fisher information of the head and neuron gates (Kwon et al., NeurIPS 2022).

Every gate multiplies one unit's output, so `dL/dgate` at gate = 1 says how
much the loss moves when the unit is scaled; the squared gradients summed
over sample batches are the diagonal of the empirical Fisher information,
and the per-batch gradients themselves give each layer's Fisher block for
rearrangement (`pruners.posttrain.rearrange`).
"""

import logging
import time

import numpy as np
import tensorflow as tf

from gated.attention import GatedMultiHeadAttention
from gated.feed_forward import GatedFeedForward
from gated.masks import collect_gated_layers
from gated_bert.progress import track

log = logging.getLogger(__name__)


def gate_variables(model):
    """`(head gates, neuron gates)`: the per-layer gate variables, in block order."""
    heads = [layer.head_gate for layer in collect_gated_layers(model, GatedMultiHeadAttention).values()]
    neurons = [layer.neuron_gate for layer in collect_gated_layers(model, GatedFeedForward).values()]
    return heads, neurons


def gate_gradient_fn(model, loss_fn):
    """A compiled `(inputs, labels) -> (head grads [L, H], neuron grads [L, F], loss)` for one batch.

    The gates are non-trainable variables, so the tape watches them
    explicitly; the model runs in inference mode (no dropout).
    """
    # The backend (tf.Variable) objects under the Keras variables, which the tape can watch.
    heads, neurons = ([gate.value for gate in gates] for gates in gate_variables(model))

    @tf.function(reduce_retracing=True)
    def gradients(inputs, labels):
        with tf.GradientTape() as tape:
            tape.watch(heads + neurons)
            loss = loss_fn(labels, model(inputs, training=False))
        head_grads, neuron_grads = tape.gradient(loss, (heads, neurons))
        return tf.stack(head_grads), tf.stack(neuron_grads), loss

    return gradients


def collect_gate_gradients(model, batches, loss_fn):
    """Gate gradients of the mean loss for every batch of `batches` (`(inputs, labels)` pairs), with progress.

    Args:
        model: a gated encoder.
        batches: an iterable of `(inputs, labels)`, e.g. a list or a `tf.data.Dataset`.
        loss_fn: `loss_fn(labels, outputs)` -> scalar mean loss (a Keras loss).

    Returns:
        `(head_grads [batches, L, H], neuron_grads [batches, L, F], stats)` as
        float64 numpy arrays; `stats` holds `samples`, `seconds` and
        `samples_per_second`.
    """
    gradients = gate_gradient_fn(model, loss_fn)
    head_grads, neuron_grads, samples = [], [], 0
    start = time.perf_counter()
    for inputs, labels in track(batches, "fisher", unit="batch", logger=log):
        head, neuron, _ = gradients(inputs, labels)
        head_grads.append(head.numpy())
        neuron_grads.append(neuron.numpy())
        samples += int(labels.shape[0])
    if not head_grads:
        raise ValueError("no sample batches to collect gate gradients from; check num_samples and the data")
    seconds = time.perf_counter() - start
    stats = {"samples": samples, "seconds": seconds, "samples_per_second": samples / seconds}
    return np.stack(head_grads).astype(np.float64), np.stack(neuron_grads).astype(np.float64), stats


def fisher_importance(grads):
    """Diagonal empirical Fisher `sum_batches grad^2`: `[batches, L, units]` -> `[L, units]`."""
    return np.sum(np.square(grads), axis=0)
