"""Multiply-accumulate (MAC) counts of the encoder's attention heads and FFN neurons.

Counted per sequence of `seq_len` tokens (one example; multiply by the batch
size for a batch), for the prunable parts of each encoder block only:

    one attention head:  4 * T * D * Dh    q, k, v and output projections
                       + 2 * T * T * Dh    scores (q k^T) and context (probs v)
    one FFN neuron:      2 * T * D         its intermediate column and output row

with `T = seq_len`, `D = d_model` and `Dh` the head width. Excluded, because
pruning heads and neurons does not change them: the embeddings, LayerNorms,
softmax, GELU, bias additions, the pooler and the classifier. A block's MACs
are therefore linear in its kept heads and neurons, and a block with no heads
(or no neurons) has no attention (or FFN) MACs at all.
"""

import numpy as np


def head_macs(d_model, head_dim, seq_len):
    """MACs of one attention head over a sequence of `seq_len` tokens."""
    return 4 * seq_len * d_model * head_dim + 2 * seq_len * seq_len * head_dim


def neuron_macs(d_model, seq_len):
    """MACs of one FFN neuron over a sequence of `seq_len` tokens."""
    return 2 * seq_len * d_model


def unit_macs(d_model, head_dim, seq_len):
    """`{"head": MACs of one head, "neuron": MACs of one neuron}` at `seq_len` tokens (`mac_shape`'s keywords)."""
    return {"head": head_macs(d_model, head_dim, seq_len), "neuron": neuron_macs(d_model, seq_len)}


def count_macs(head_mask, neuron_mask, *, d_model, head_dim, seq_len):
    """MACs of the heads and neurons a mask keeps (any non-zero entry counts as kept).

    Args:
        head_mask: `[layers, heads]`.
        neuron_mask: `[layers, dff]`.
        d_model, head_dim, seq_len: the shape the counts are taken at.

    Returns:
        `{"head": int, "neuron": int, "total": int}`: the MACs of the kept heads, of the kept neurons, and both.
    """
    costs = unit_macs(d_model, head_dim, seq_len)
    heads = int(np.count_nonzero(head_mask)) * costs["head"]
    neurons = int(np.count_nonzero(neuron_mask)) * costs["neuron"]
    return {"head": heads, "neuron": neurons, "total": heads + neurons}


def mac_shape(config):
    """The shape a config's model is counted at: `{d_model, head_dim, seq_len=max_len}` (keywords of `count_macs`)."""
    return {"d_model": config.d_model, "head_dim": config.d_model // config.num_heads, "seq_len": config.max_len}


def macs_kept(model, seq_len):
    """Fraction of a gated encoder's block MACs (its heads and neurons, at `seq_len` tokens) that its gates and
    learned binary masks keep (`gated.structured_masks`)."""
    from gated.attention import GatedMultiHeadAttention
    from gated.masks import collect_gated_layers, structured_masks

    masks = structured_masks(model)
    attention = next(iter(collect_gated_layers(model, GatedMultiHeadAttention).values()))
    shape = {"d_model": attention.d_model, "head_dim": attention.head_dim, "seq_len": seq_len}
    kept = count_macs(masks["head"], masks["neuron"], **shape)["total"]
    return kept / count_macs(np.ones(masks["head"].shape), np.ones(masks["neuron"].shape), **shape)["total"]
