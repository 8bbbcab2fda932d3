"""Find gated layers in a model; read and write their masks and gates; count sparsity.

Everything here is keyed by the layer's Keras path (e.g.
`block_0/attention/query`), is plain numpy on the way in and out, and knows
nothing about how masks are chosen: that is the pruners' job.
"""

import contextlib
from collections.abc import Mapping

import numpy as np

from gated.attention import GatedMultiHeadAttention
from gated.dense import GatedDense
from gated.feed_forward import GatedFeedForward
from gated.gumbel_gate import GumbelGate
from gated_bert.mask_folders import read_mask_folder, write_mask_folder
from gated_bert.vocabulary import unit_kind


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
    values = {path: getattr(layer, attr) for path, layer in layers.items()}
    return {path: None if value is None else np.array(value.numpy()) for path, value in values.items()}


def _write(model, layer_type, attr, values):
    if not isinstance(values, Mapping):
        raise TypeError(f"expected a mapping of layer path -> array, got {type(values).__name__}")
    layers = collect_gated_layers(model, layer_type)
    unknown = sorted(set(values) - set(layers))
    if unknown:
        raise KeyError(f"no {layer_type.__name__} at {unknown}; known paths: {sorted(layers)}")
    for path, value in values.items():
        variable = getattr(layers[path], attr)
        if variable is None:
            raise ValueError(f"{path} has no {attr}: the model was built without kernel masks (build it with "
                             "kernel_masks=True for weight-level pruning)")
        value = np.asarray(value, dtype=variable.dtype)
        if value.shape != tuple(variable.shape):
            raise ValueError(
                f"{attr} for {path} must have shape {tuple(variable.shape)}, got {value.shape}"
            )
        variable.assign(value)


def get_weight_masks(model):
    """`{path: kernel_mask}` for every `GatedDense` in the model (a model built without kernel masks has none)."""
    return {path: mask for path, mask in _read(model, GatedDense, "kernel_mask").items() if mask is not None}


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


# Per unit kind: the layer type that holds it, its static gate and its learnable `GumbelGate` attribute.
_KIND_ATTRIBUTES = {
    "head": (GatedMultiHeadAttention, "head_gate", "head_mask"),
    "neuron": (GatedFeedForward, "neuron_gate", "neuron_mask"),
    "ffn_out": (GatedFeedForward, "output_gate", "output_mask"),
}


def _alive(layer, kind):
    """Boolean `[units]`: the static gate is non-zero and the learned binary mask (if any) keeps the unit."""
    _, gate_name, mask_name = _KIND_ATTRIBUTES[kind]
    alive = getattr(layer, gate_name).numpy() != 0
    learned = getattr(layer, mask_name)
    return alive if learned is None else alive & (learned.logits.numpy() > 0)


def structured_masks(model):
    """`{kind: 0/1 float32 array [layers, units]}` for `head`, `neuron` and `ffn_out`.

    A unit is kept (1) when its static gate is non-zero and, where the model
    learns that kind, its learned binary mask (`sigmoid(logits) > 0.5`) keeps
    it: the masks the model evaluates with.
    """
    return {
        kind: np.stack([_alive(layer, kind) for layer in collect_gated_layers(model, layer_type).values()])
        .astype(np.float32)
        for kind, (layer_type, _, _) in _KIND_ATTRIBUTES.items()
    }


def structured_gates(model, kinds=tuple(_KIND_ATTRIBUTES)):
    """`{kind: float32 array [layers, units]}`: the static gate values (0 removes a unit, a real value scales it)."""
    gates = {}
    for kind in kinds:
        layer_type, gate_name, _ = _KIND_ATTRIBUTES[unit_kind(kind)]
        gates[unit_kind(kind)] = np.stack(list(_read(model, layer_type, gate_name).values())).astype(np.float32)
    return gates


def set_structured_masks(model, masks):
    """Assign the static gates from `{kind: array [layers, units]}` (as written by `structured_masks`).

    Every kind's shape is checked before any gate changes; a `ValueError` names the kind and both shapes.
    """
    planned = []
    for name, values in masks.items():
        kind = unit_kind(name)
        layer_type, gate_name, _ = _KIND_ATTRIBUTES[kind]
        layers = collect_gated_layers(model, layer_type)
        widths = {int(getattr(layer, gate_name).shape[0]) for layer in layers.values()}
        values = np.asarray(values)
        expected = (len(layers), *widths) if len(widths) == 1 else None  # blocks of different widths: per layer
        if values.ndim != 2 or len(values) != len(layers) or expected and values.shape != expected:
            raise ValueError(f"{kind} masks have shape {values.shape}, but the model's {kind} gates are "
                             f"{expected or f'[layers={len(layers)}, units]'}")
        planned.append((layer_type, gate_name, dict(zip(layers, values, strict=True))))
    for layer_type, gate_name, values in planned:
        _write(model, layer_type, gate_name, values)


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


def unit_layout(model, kinds=("head", "neuron")):
    """Which kernels make up each block's units, in the layer order of `structured_masks`.

    Returns `{"head": [(query, key, value, output path, head_dim) per block], "neuron": [(intermediate, output
    path) per block]}` for the `kinds` asked for (`pruners.training.units.unit_scores` reads it).
    """
    layout = {}
    if "head" in kinds:
        layout["head"] = [(layer.query.path, layer.key.path, layer.value.path, layer.output_dense.path,
                           layer.head_dim) for layer in collect_gated_layers(model, GatedMultiHeadAttention).values()]
    if "neuron" in kinds:
        layout["neuron"] = [(layer.intermediate.path, layer.output_dense.path)
                            for layer in collect_gated_layers(model, GatedFeedForward).values()]
    return layout


def effective_kernel_masks(model):
    """`{GatedDense path: 0/1 array}` of the kernel weights that still act.

    A weight is removed when its own mask entry is zero, or when a structural
    gate (static or learned binary) silences it: a removed head takes its
    q/k/v columns and output-projection rows; a removed neuron its
    intermediate column and output row; a removed FFN output unit its
    output-kernel column.
    """
    masks = {path: np.ones(tuple(layer.kernel.shape), bool) if layer.kernel_mask is None
             else layer.kernel_mask.numpy() != 0 for path, layer in collect_gated_layers(model).items()}
    for layer in collect_gated_layers(model, GatedMultiHeadAttention).values():
        alive = np.repeat(_alive(layer, "head"), layer.head_dim)  # (D,)
        for projection in (layer.query, layer.key, layer.value):
            masks[projection.path] &= alive[None, :]
        masks[layer.output_dense.path] &= alive[:, None]
    for layer in collect_gated_layers(model, GatedFeedForward).values():
        alive = _alive(layer, "neuron")  # (dff,)
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


def mask_variables(model):
    """Every variable of `model` that masks or gates weights rather than being one: kernel masks, unit and
    head gates, and the learned Gumbel masks' logits and temperature."""
    found = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, GatedDense):
            found += [layer.kernel_mask, layer.unit_gate]
        elif isinstance(layer, GatedMultiHeadAttention):
            found.append(layer.head_gate)
        elif isinstance(layer, GumbelGate):
            found += [layer.logits, layer.temperature]
    return [variable for variable in found if variable is not None]


def count_parameters(model):
    """The model's parameters: its weights, never its masks or gates (`mask_variables`)."""
    masks = {id(variable) for variable in mask_variables(model)}
    return sum(int(np.prod(variable.shape)) for variable in model.weights if id(variable) not in masks)


def non_finite_weights(model):
    """Paths of `model`'s variables that hold a NaN or an infinity (empty when every value is finite)."""
    return [variable.path for variable in model.weights
            if not np.all(np.isfinite(variable.numpy()))]


def copy_model(model):
    """An independent copy of `model`: the same class, config and weights (masks and gates included)."""
    return _rebuilt(model, model.get_config())


def without_learned_masks(model):
    """A copy of `model` with its learned masks baked into the static gates, and no mask logits left.

    The copy evaluates exactly like `model` does (binary masks): this is the
    model to export once masks are learned.
    """
    config = model.get_config()
    for layer in config["layers"]:
        if "learn_masks" in layer["config"]:
            layer["config"]["learn_masks"] = []
    plain = _rebuilt(model, config)
    set_structured_masks(plain, structured_masks(model))
    return plain


def _rebuilt(model, config, new_ok=False):
    """A model of `model`'s class built from `config`, with every weight of the same path copied from `model`
    (`new_ok`: variables `model` lacks keep their initial values: kernel masks of ones)."""
    rebuilt = type(model).from_config(config)
    source = {variable.path: variable for variable in model.weights}
    for variable in rebuilt.weights:
        if variable.path in source or not new_ok:
            variable.assign(source[variable.path])
    return rebuilt


# The config key of each layer class's dropout rate (the functional model's own `Dropout` layers: `rate`).
_DROPOUT_KEYS = {"EncoderEmbeddings": "dropout_rate", "EncoderBlock": "dropout_rate", "Dropout": "rate"}


def rebuilt_with(model, add_kernel_masks=False, dropout_rate=None):
    """A copy of `model` with per-weight kernel masks added (all ones where `model` has none, so the copy computes
    what `model` does) and/or another dropout rate; every weight, mask and gate `model` has is copied."""
    config = model.get_config()
    for layer in config["layers"]:
        options = layer["config"]
        if add_kernel_masks and layer["class_name"] == "EncoderBlock":
            options["kernel_masks"] = True
        if dropout_rate is not None and layer["class_name"] in _DROPOUT_KEYS:
            options[_DROPOUT_KEYS[layer["class_name"]]] = dropout_rate
    return _rebuilt(model, config, new_ok=True)


def add_logit_bias(model, shift):
    """Add `shift` (`[num_labels]`, a mask folder's logit bias correction) to the classifier's bias."""
    bias = model.get_layer("classifier").bias
    shift = np.asarray(shift, dtype=np.float32)
    if shift.shape != tuple(bias.shape):
        raise ValueError(f"a logit bias of shape {shift.shape} does not fit the classifier's bias "
                         f"{tuple(bias.shape)}")
    bias.assign(bias.numpy() + shift)


@contextlib.contextmanager
def masks_applied(model, masks, logit_bias=None):
    """Set the static gates from `masks` (`{kind: array [layers, units]}`), and shift the classifier's bias by
    `logit_bias` if given, while the block runs; then restore what the model had: how a candidate mask is
    scored without leaving it on the model."""
    saved = structured_gates(model, tuple(masks))
    saved_bias = None if logit_bias is None else model.get_layer("classifier").bias.numpy()
    set_structured_masks(model, masks)
    try:
        if logit_bias is not None:
            add_logit_bias(model, logit_bias)
        yield model
    finally:
        set_structured_masks(model, saved)
        if saved_bias is not None:
            model.get_layer("classifier").bias.assign(saved_bias)


def save_learned_masks(model, folder, source=None):
    """Write the masks the model evaluates with (binary, every kind) and its learned logits as a mask folder
    (`gated_bert.mask_folders`: `<kind>_mask.npy`, `<kind>_logits.npy`, `masks.json`).

    Returns the file names written.
    """
    return write_mask_folder(folder, structured_masks(model), source or {"written_by": "gated.save_learned_masks"},
                             logits=mask_logits(model))


def load_learned_masks(folder):
    """`{kind: array [layers, units]}` from a mask folder (`save_learned_masks`, prune.py, or an older one)."""
    return read_mask_folder(folder).masks
