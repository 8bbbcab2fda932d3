"""Find gated layers in a model; read and write their masks and gates; count sparsity.

Everything here is keyed by the layer's Keras path (e.g.
`block_0/attention/query`), is plain numpy on the way in and out, and knows
nothing about how masks are chosen: that is the pruners' job.
"""

import os
from collections.abc import Mapping

import numpy as np

from gated.attention import GatedMultiHeadAttention
from gated.dense import GatedDense
from gated.feed_forward import GatedFeedForward
from gated.gumbel_gate import MASK_KINDS
from gated_bert.files import atomic_path


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


def get_output_gates(model):
    """`{feed-forward path: output_gate [d_model]}`."""
    return _read(model, GatedFeedForward, "output_gate")


def set_output_gates(model, gates):
    """Assign FFN output-unit gates for the given feed-forward paths."""
    _write(model, GatedFeedForward, "output_gate", gates)


# Per mask kind: the layer type that holds it, its static gate and its learnable `GumbelGate` attribute.
_KIND_ATTRIBUTES = {
    "head": (GatedMultiHeadAttention, "head_gate", "head_mask"),
    "ffn_int": (GatedFeedForward, "neuron_gate", "neuron_mask"),
    "ffn_out": (GatedFeedForward, "output_gate", "output_mask"),
}


def _alive(layer, kind):
    """Boolean `[units]`: the static gate is non-zero and the learned binary mask (if any) keeps the unit."""
    _, gate_name, mask_name = _KIND_ATTRIBUTES[kind]
    alive = getattr(layer, gate_name).numpy() != 0
    learned = getattr(layer, mask_name)
    return alive if learned is None else alive & (learned.logits.numpy() > 0)


def structured_masks(model):
    """`{kind: 0/1 float32 array [layers, units]}` for `head`, `ffn_int` and `ffn_out`.

    A unit is kept (1) when its static gate is non-zero and, where the model
    learns that kind, its learned binary mask (`sigmoid(logits) > 0.5`) keeps
    it: the masks the model evaluates with.
    """
    return {
        kind: np.stack([_alive(layer, kind) for layer in collect_gated_layers(model, layer_type).values()])
        .astype(np.float32)
        for kind, (layer_type, _, _) in _KIND_ATTRIBUTES.items()
    }


def set_structured_masks(model, masks):
    """Assign the static gates from `{kind: array [layers, units]}` (as written by `structured_masks`)."""
    for kind, values in masks.items():
        if kind not in _KIND_ATTRIBUTES:
            raise KeyError(f"unknown mask kind {kind!r}; choose from {', '.join(MASK_KINDS)}")
        layer_type, gate_name, _ = _KIND_ATTRIBUTES[kind]
        paths = list(collect_gated_layers(model, layer_type))
        values = np.asarray(values)
        if values.ndim != 2 or len(values) != len(paths):
            raise ValueError(f"{kind} masks must be [layers={len(paths)}, units], got shape {values.shape}")
        _write(model, layer_type, gate_name, dict(zip(paths, values, strict=True)))


def learned_gates(model):
    """`{kind: [GumbelGate per layer]}` for every mask kind the model learns (others left out)."""
    gates = {}
    for kind, (layer_type, _, mask_name) in _KIND_ATTRIBUTES.items():
        found = [getattr(layer, mask_name) for layer in collect_gated_layers(model, layer_type).values()]
        found = [gate for gate in found if gate is not None]
        if found:
            gates[kind] = found
    return gates


def mask_logits(model):
    """`{kind: float32 array [layers, units]}` of the learned mask logits."""
    return {kind: np.stack([gate.logits.numpy() for gate in gates]) for kind, gates in learned_gates(model).items()}


def effective_kernel_masks(model):
    """`{GatedDense path: 0/1 array}` of the kernel weights that still act.

    A weight is removed when its own mask entry is zero, or when a structural
    gate (static or learned binary) silences it: a removed head takes its
    q/k/v columns and output-projection rows; a removed neuron its
    intermediate column and output row; a removed FFN output unit its
    output-kernel column.
    """
    masks = {path: layer.kernel_mask.numpy() != 0 for path, layer in collect_gated_layers(model).items()}
    for layer in collect_gated_layers(model, GatedMultiHeadAttention).values():
        alive = np.repeat(_alive(layer, "head"), layer.head_dim)  # (D,)
        for projection in (layer.query, layer.key, layer.value):
            masks[projection.path] &= alive[None, :]
        masks[layer.output_dense.path] &= alive[:, None]
    for layer in collect_gated_layers(model, GatedFeedForward).values():
        alive = _alive(layer, "ffn_int")  # (dff,)
        masks[layer.intermediate.path] &= alive[None, :]
        masks[layer.output_dense.path] &= alive[:, None]
        masks[layer.output_dense.path] &= _alive(layer, "ffn_out")[None, :]
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


def without_learned_masks(model):
    """A copy of `model` with its learned masks baked into the static gates, and no mask logits left.

    The copy evaluates exactly like `model` does (binary masks): this is the
    model to export once masks are learned.
    """
    config = model.get_config()
    for layer in config["layers"]:
        if "learn_masks" in layer["config"]:
            layer["config"]["learn_masks"] = []
    plain = type(model).from_config(config)
    source = {variable.path: variable for variable in model.weights}
    for variable in plain.weights:
        variable.assign(source[variable.path])
    set_structured_masks(plain, structured_masks(model))
    return plain


# File stems of the saved masks and logits, per kind.
MASK_FILE_STEMS = {"head": "head", "ffn_int": "ffn_intermediate", "ffn_out": "ffn_output"}


def save_learned_masks(model, folder):
    """Write `{stem}_mask.npy` (binary, `[layers, units]`) for every kind and `{stem}_logits.npy` for learned ones.

    Stems: `head`, `ffn_intermediate`, `ffn_output`. Each file is written
    atomically. Returns the file names written.
    """
    os.makedirs(folder, exist_ok=True)
    arrays = {f"{MASK_FILE_STEMS[kind]}_mask": mask for kind, mask in structured_masks(model).items()}
    arrays |= {f"{MASK_FILE_STEMS[kind]}_logits": logits for kind, logits in mask_logits(model).items()}
    for name, array in arrays.items():
        with atomic_path(os.path.join(folder, f"{name}.npy")) as tmp:
            np.save(tmp, array)
    return sorted(f"{name}.npy" for name in arrays)


def load_learned_masks(folder):
    """`{kind: binary array [layers, units]}` from the `*_mask.npy` files `save_learned_masks` wrote."""
    return {kind: np.load(os.path.join(folder, f"{stem}_mask.npy")) for kind, stem in MASK_FILE_STEMS.items()}
