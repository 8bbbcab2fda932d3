"""Fold every gate and mask into the weights and cut the removed units out: a plain inference model.

`compact_model` is what an engineer deploys: `slice_pruned`'s smaller model, whose remaining gates and masks are
then folded into the weights. Head gates scale the rows of the attention's output projection, neuron gates the
rows of the FFN's output kernel, output gates its columns and bias, kernel masks their kernels. Each block keeps
its own head count and FFN width; a block with no heads (or no neurons) left adds only its output bias to the
residual.
"""

import numpy as np

from gated.attention import GatedMultiHeadAttention
from gated.encoder import EncoderBlock
from gated.feed_forward import GatedFeedForward
from gated.masks import collect_gated_layers
from gated.slicing import slice_pruned


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


def compact_model(model, fused_qkv=True):
    """A plain copy of `model` (a gated encoder) that computes the same logits with only the units it uses.

    The pruned units are cut out first (`slice_pruned`, which bakes learned masks in and keeps the remaining
    gates); then every gate and kernel mask left is multiplied into the weights (`folded_weights`), so the copy
    has no gate, mask or mask-logit variable (`build_gated_encoder(gates=False, kernel_masks=False)`, one head
    count and FFN width per block). A mask folder's logit bias goes on `model` first (`add_logit_bias`).
    With `fused_qkv` each block's query, key and value kernels become one `qkv` kernel, side by side
    (`GatedMultiHeadAttention(fused_qkv=True)`): the same function in fewer, larger matmuls.
    `model` is left as it is.
    """
    sliced = slice_pruned(model)
    values = folded_weights(sliced)
    config = sliced.get_config()
    for layer in config["layers"]:
        if layer["class_name"] == "EncoderBlock":
            layer["config"].update(kernel_masks=False, gates=False, fused_qkv=fused_qkv)
    compact = type(sliced).from_config(config)
    if fused_qkv:
        _fuse_qkv(sliced, compact, values)
    for variable in compact.weights:
        variable.assign(values[variable.path])
    return compact


def _fuse_qkv(sliced, compact, values):
    """Put each block's query, key and value weights of `values` side by side under `compact`'s `qkv` paths."""
    blocks = [collect_gated_layers(model, EncoderBlock).values() for model in (sliced, compact)]
    for source, block in zip(*blocks, strict=True):
        if block.attention.qkv is None:  # every head pruned
            continue
        projections = (source.attention.query, source.attention.key, source.attention.value)
        for name in ("kernel", "bias"):
            parts = [values[getattr(dense, name).path] for dense in projections]
            values[getattr(block.attention.qkv, name).path] = np.concatenate(parts, axis=-1)


def compact_shape(model):
    """`(heads per block, FFN width per block)` of a gated encoder: the units that are really there."""
    blocks = collect_gated_layers(model, EncoderBlock).values()
    return [block.attention.num_heads for block in blocks], [block.ffn.dff for block in blocks]
