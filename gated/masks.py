"""Find gated layers in a model; read and write their masks and gates; count sparsity.

Everything here is keyed by the layer's Keras path (e.g.
`block_0/attention/query`), is plain numpy on the way in and out, and knows
nothing about how masks are chosen: that is the pruners' job.
"""

from collections.abc import Mapping

import numpy as np

from gated.attention import GatedMultiHeadAttention
from gated.dense import GatedDense
from gated.feed_forward import GatedFeedForward


def collect_gated_layers(model, layer_type=GatedDense):
    """Return `{path: layer}` for every `layer_type` inside `model` (deterministic order).

    The default collects the prunable `GatedDense` layers; pass
    `GatedMultiHeadAttention` or `GatedFeedForward` for the structured ones.
    """
    return {
        layer.path: layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if isinstance(layer, layer_type)
    }


def _read(model, layer_type, attr):
    layers = collect_gated_layers(model, layer_type)
    return {path: np.array(getattr(layer, attr).numpy()) for path, layer in layers.items()}


def _write(model, layer_type, attr, values):
    if not isinstance(values, Mapping):
        raise TypeError(f"expected a mapping of layer path -> array, got {type(values).__name__}")
    layers = collect_gated_layers(model, layer_type)
    unknown = sorted(set(values) - set(layers))
    if unknown:
        raise KeyError(f"no {layer_type.__name__} at {unknown}; known paths: {sorted(layers)}")
    for path, value in values.items():
        variable = getattr(layers[path], attr)
        value = np.asarray(value, dtype=variable.dtype)
        if value.shape != tuple(variable.shape):
            raise ValueError(
                f"{attr} for {path} must have shape {tuple(variable.shape)}, got {value.shape}"
            )
        variable.assign(value)


def get_weight_masks(model):
    """`{path: kernel_mask}` for every `GatedDense` in the model."""
    return _read(model, GatedDense, "kernel_mask")


def set_weight_masks(model, masks):
    """Assign kernel masks for the given paths (a subset is fine)."""
    _write(model, GatedDense, "kernel_mask", masks)


def get_head_gates(model):
    """`{attention path: head_gate [num_heads]}`."""
    return _read(model, GatedMultiHeadAttention, "head_gate")


def set_head_gates(model, gates):
    """Assign head gates for the given attention paths."""
    _write(model, GatedMultiHeadAttention, "head_gate", gates)


def get_neuron_gates(model):
    """`{feed-forward path: neuron_gate [dff]}`."""
    return _read(model, GatedFeedForward, "neuron_gate")


def set_neuron_gates(model, gates):
    """Assign neuron gates for the given feed-forward paths."""
    _write(model, GatedFeedForward, "neuron_gate", gates)


def effective_kernel_masks(model):
    """`{GatedDense path: 0/1 array}` of the kernel weights that still act.

    A weight is removed when its own mask entry is zero, or when a structural
    gate silences it: a zero head gate removes that head's q/k/v columns and
    output-projection rows; a zero neuron gate removes that neuron's
    intermediate column and output row.
    """
    masks = {path: layer.kernel_mask.numpy() != 0 for path, layer in collect_gated_layers(model).items()}
    for layer in collect_gated_layers(model, GatedMultiHeadAttention).values():
        alive = np.repeat(layer.head_gate.numpy() != 0, layer.head_dim)  # (D,)
        for projection in (layer.query, layer.key, layer.value):
            masks[projection.path] &= alive[None, :]
        masks[layer.output_dense.path] &= alive[:, None]
    for layer in collect_gated_layers(model, GatedFeedForward).values():
        alive = layer.neuron_gate.numpy() != 0  # (dff,)
        masks[layer.intermediate.path] &= alive[None, :]
        masks[layer.output_dense.path] &= alive[:, None]
    return {path: mask.astype(np.float32) for path, mask in masks.items()}


def sparsity_stats(model):
    """Sparsity of the prunable kernels, counted from the effective masks.

    Returns a dict with `global_sparsity` (fraction of prunable weights
    removed), `zeros`, `total` and `layers` (`{path: sparsity}`).
    """
    masks = effective_kernel_masks(model)
    zeros = {path: int(mask.size - np.count_nonzero(mask)) for path, mask in masks.items()}
    total = sum(mask.size for mask in masks.values())
    return {
        "global_sparsity": sum(zeros.values()) / total if total else 0.0,
        "zeros": sum(zeros.values()),
        "total": int(total),
        "layers": {path: zeros[path] / masks[path].size for path in masks},
    }
