"""Fold every gate and mask into the weights and cut the removed units out: a plain inference model.

`compact_model` is what an engineer deploys. Where `slice_pruned` keeps the gates (so the small model can still
be pruned or rescaled), the compact model has none: head gates scale the rows of the attention's output
projection, neuron gates the rows of the FFN's output kernel, output gates its columns and bias, kernel masks
their kernels, and learned Gumbel masks are baked into the gates first. Each block keeps its own head count and
FFN width; a block with no heads (or no neurons) left adds only its output bias to the residual.
"""

import numpy as np

from gated.attention import GatedMultiHeadAttention
from gated.encoder import EncoderBlock
from gated.feed_forward import GatedFeedForward
from gated.masks import collect_gated_layers, learned_gates, without_learned_masks


def folded_weights(model):
    """`{variable path: numpy}` of `model`'s weights with every kernel mask and gate multiplied in.

    The gate and mask variables keep their own values; a model whose weights are set to these, with its gates
    and masks at one (or absent), computes what `model` does.
    """
    values = {variable.path: variable.numpy() for variable in model.weights}
    for dense in collect_gated_layers(model).values():
        if dense.kernel_mask is not None:
            values[dense.kernel.path] = values[dense.kernel.path] * values[dense.kernel_mask.path]
    for attention in collect_gated_layers(model, GatedMultiHeadAttention).values():
        if attention.head_gate is not None:
            rows = np.repeat(attention.head_gate.numpy(), attention.head_dim)  # (H * Dh,)
            values[attention.output_dense.kernel.path] = values[attention.output_dense.kernel.path] * rows[:, None]
    for ffn in collect_gated_layers(model, GatedFeedForward).values():
        output = ffn.output_dense
        if ffn.neuron_gate is not None:
            values[output.kernel.path] = values[output.kernel.path] * ffn.neuron_gate.numpy()[:, None]
        if ffn.output_gate is not None:
            columns = ffn.output_gate.numpy()  # (D,)
            values[output.kernel.path] = values[output.kernel.path] * columns[None, :]
            values[output.bias.path] = values[output.bias.path] * columns
    return values


def compact_model(model, logit_bias=None):
    """A plain copy of `model` (a gated encoder) that computes the same logits with only the units it uses.

    Heads and neurons whose gate is zero are removed; real-valued gates (rescaled masks) and kernel masks are
    multiplied into the weights that remain, so the copy has no gate, mask or mask-logit variable
    (`build_gated_encoder(gates=False, kernel_masks=False)`, one head count and FFN width per block).
    `logit_bias` (`[num_labels]`, a mask folder's bias correction) is added to the classifier's bias.
    `model` is left as it is.
    """
    if learned_gates(model):
        model = without_learned_masks(model)
    values = folded_weights(model)
    if logit_bias is not None:
        bias = model.get_layer("classifier").bias
        shift = np.asarray(logit_bias, dtype=np.float32)
        if shift.shape != tuple(bias.shape):
            raise ValueError(f"a logit bias of shape {shift.shape} does not fit the classifier's bias "
                             f"{tuple(bias.shape)}")
        values[bias.path] = values[bias.path] + shift
    config = model.get_config()
    blocks = {block.name: block for block in collect_gated_layers(model, EncoderBlock).values()}
    for layer in config["layers"]:
        if layer["class_name"] != "EncoderBlock":
            continue
        block = blocks[layer["config"]["name"]]
        heads, neurons = _kept(block.attention.head_gate, block.num_heads), _kept(block.ffn.neuron_gate, block.dff)
        _cut_attention(values, block.attention, heads)
        _cut_ffn(values, block.ffn, neurons)
        layer["config"].update(num_heads=len(heads), dff=len(neurons), head_dim=block.attention.head_dim,
                               learn_masks=[], kernel_masks=False, gates=False)
    compact = type(model).from_config(config)
    for variable in compact.weights:
        value = values[variable.path]
        if tuple(variable.shape) != value.shape:  # a bug, not a user error: the config and the cuts disagree
            raise RuntimeError(f"compact_model: {variable.path} needs {tuple(variable.shape)}, got {value.shape}")
        variable.assign(value)
    return compact


def compact_shape(model):
    """`(heads per block, FFN width per block)` of a gated encoder: the units that are really there."""
    blocks = collect_gated_layers(model, EncoderBlock).values()
    return [block.attention.num_heads for block in blocks], [block.ffn.dff for block in blocks]


def _kept(gate, units):
    """Indices of the units whose gate is non-zero (all `units` when the layer has no gate)."""
    return np.arange(units) if gate is None else np.flatnonzero(gate.numpy() != 0)


def _cut_attention(values, attention, heads):
    """Keep `heads`' columns of the query, key and value projections and their rows of the output projection."""
    columns = (heads[:, None] * attention.head_dim + np.arange(attention.head_dim)[None, :]).ravel()  # (kept*Dh,)
    for dense in (attention.query, attention.key, attention.value):
        if dense is not None:  # None: a block whose heads were all sliced away already
            values[dense.kernel.path] = values[dense.kernel.path][:, columns]
            values[dense.bias.path] = values[dense.bias.path][columns]
    output = attention.output_dense.kernel.path
    values[output] = values[output][columns]


def _cut_ffn(values, ffn, neurons):
    """Keep `neurons`' columns of the intermediate layer and their rows of the FFN's output kernel."""
    if ffn.intermediate is not None:
        values[ffn.intermediate.kernel.path] = values[ffn.intermediate.kernel.path][:, neurons]
        values[ffn.intermediate.bias.path] = values[ffn.intermediate.bias.path][neurons]
    output = ffn.output_dense.kernel.path
    values[output] = values[output][neurons]
