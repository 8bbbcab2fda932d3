"""Physically remove pruned heads and neurons: a smaller model that computes the same outputs."""

import numpy as np

from gated.attention import GatedMultiHeadAttention
from gated.feed_forward import GatedFeedForward
from gated.masks import collect_gated_layers, learned_gates, without_learned_masks


def _kept(gate):
    return np.flatnonzero(gate.numpy() != 0)


def _shrunk_config(model):
    """The functional config with each block's heads and FFN width cut to its non-zero gates."""
    attentions = collect_gated_layers(model, GatedMultiHeadAttention)
    ffns = collect_gated_layers(model, GatedFeedForward)
    config = model.get_config()
    for layer in config["layers"]:
        if layer["class_name"] != "EncoderBlock":
            continue
        name, block = layer["config"]["name"], layer["config"]
        attention, ffn = attentions[f"{name}/attention"], ffns[f"{name}/ffn"]
        block["num_heads"] = len(_kept(attention.head_gate))
        block["dff"] = 0 if ffn.neuron_gate is None else len(_kept(ffn.neuron_gate))
        block["head_dim"] = attention.head_dim
        block["learn_masks"] = []
    return config


def _copy_sliced(target, source, columns=None, rows=None):
    """Assign `target`'s kernel, kernel mask and bias from `source`'s, keeping the given columns / rows."""
    for name in ("kernel", "kernel_mask"):
        if getattr(source, name) is None:  # a model without kernel masks
            continue
        value = getattr(source, name).numpy()
        value = value if columns is None else value[:, columns]
        value = value if rows is None else value[rows, :]
        getattr(target, name).assign(value)
    if source.bias is not None:
        target.bias.assign(source.bias.numpy() if columns is None else source.bias.numpy()[columns])
    if source.unit_gate is not None:
        target.unit_gate.assign(source.unit_gate.numpy() if columns is None else source.unit_gate.numpy()[columns])


def _slice_attention(small, big):
    heads = _kept(big.head_gate)
    columns = (heads[:, None] * big.head_dim + np.arange(big.head_dim)[None, :]).ravel()  # (kept * Dh,)
    if len(heads):
        for name in ("query", "key", "value"):
            _copy_sliced(getattr(small, name), getattr(big, name), columns=columns)
    _copy_sliced(small.output_dense, big.output_dense, rows=columns)
    small.head_gate.assign(big.head_gate.numpy()[heads])


def _slice_ffn(small, big):
    neurons = np.arange(0) if big.neuron_gate is None else _kept(big.neuron_gate)
    if len(neurons):
        _copy_sliced(small.intermediate, big.intermediate, columns=neurons)
    _copy_sliced(small.output_dense, big.output_dense, rows=neurons)


def slice_pruned(model):
    """A copy of `model` without the heads and FFN neurons whose gates are zero.

    The gates of the units that stay are copied too (real-valued gates, such
    as rescaled masks, keep scaling their units), so the copy computes the
    same outputs as `model` with fewer weights and fewer MACs. Blocks may end
    up with different head counts and FFN widths, or none at all. Learned
    Gumbel masks are baked into the gates first (`without_learned_masks`).
    """
    if learned_gates(model):
        model = without_learned_masks(model)
    small = type(model).from_config(_shrunk_config(model))
    source = {variable.path: variable for variable in model.weights}
    for variable in small.weights:
        if tuple(variable.shape) == tuple(source[variable.path].shape):
            variable.assign(source[variable.path])
    big_attention = collect_gated_layers(model, GatedMultiHeadAttention)
    for path, layer in collect_gated_layers(small, GatedMultiHeadAttention).items():
        _slice_attention(layer, big_attention[path])
    big_ffn = collect_gated_layers(model, GatedFeedForward)
    for path, layer in collect_gated_layers(small, GatedFeedForward).items():
        _slice_ffn(layer, big_ffn[path])
    return small
