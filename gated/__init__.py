"""Gated layers, the gated encoder and helpers for their masks and gates.

`PRESETS`, `UNIT_KINDS` and `expand_unit_kinds` are the suite's names (`gated_bert.vocabulary`), re-exported here.
"""

from gated.attention import GatedMultiHeadAttention
from gated.compact import compact_model, compact_shape, folded_weights
from gated.dense import GatedDense
from gated.encoder import (
    INPUT_NAMES,
    EncoderBlock,
    EncoderEmbeddings,
    MeanPooling,
    build_gated_encoder,
    last_hidden_state_model,
    pooling_of,
)
from gated.feed_forward import GatedFeedForward
from gated.gumbel_gate import GumbelGate
from gated.masks import (
    add_logit_bias,
    collect_gated_layers,
    copy_model,
    count_parameters,
    effective_kernel_masks,
    get_head_gates,
    get_neuron_gates,
    get_output_gates,
    get_weight_masks,
    learned_gates,
    load_learned_masks,
    mask_logits,
    mask_variables,
    masks_applied,
    non_finite_weights,
    rebuilt_with,
    save_learned_masks,
    set_head_gates,
    set_neuron_gates,
    set_output_gates,
    set_structured_masks,
    set_weight_masks,
    sparsity_stats,
    structured_gates,
    structured_masks,
    unit_layout,
    without_learned_masks,
)
from gated.model import GatedModel
from gated.norm import LayerNorm
from gated.pretrained import load_pretrained, save_pretrained
from gated_bert.vocabulary import PRESETS, UNIT_KINDS, expand_unit_kinds

__all__ = [
    "INPUT_NAMES",
    "PRESETS",
    "UNIT_KINDS",
    "add_logit_bias",
    "EncoderBlock",
    "EncoderEmbeddings",
    "GatedDense",
    "GatedFeedForward",
    "GatedModel",
    "GatedMultiHeadAttention",
    "GumbelGate",
    "LayerNorm",
    "MeanPooling",
    "build_gated_encoder",
    "collect_gated_layers",
    "compact_model",
    "compact_shape",
    "copy_model",
    "count_parameters",
    "effective_kernel_masks",
    "expand_unit_kinds",
    "folded_weights",
    "get_head_gates",
    "get_neuron_gates",
    "get_output_gates",
    "get_weight_masks",
    "last_hidden_state_model",
    "learned_gates",
    "load_pretrained",
    "load_learned_masks",
    "mask_logits",
    "mask_variables",
    "masks_applied",
    "non_finite_weights",
    "pooling_of",
    "rebuilt_with",
    "save_learned_masks",
    "save_pretrained",
    "set_head_gates",
    "set_neuron_gates",
    "set_output_gates",
    "set_structured_masks",
    "set_weight_masks",
    "sparsity_stats",
    "structured_gates",
    "structured_masks",
    "unit_layout",
    "without_learned_masks",
]
