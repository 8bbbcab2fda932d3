"""Gated layers, the gated encoder and helpers for their masks and gates."""

from gated.attention import GatedMultiHeadAttention
from gated.dense import GatedDense
from gated.encoder import INPUT_NAMES, EncoderBlock, EncoderEmbeddings, build_gated_encoder
from gated.feed_forward import GatedFeedForward
from gated.gumbel_gate import MASK_KINDS, GumbelGate, expand_mask_kinds
from gated.masks import (
    collect_gated_layers,
    effective_kernel_masks,
    get_head_gates,
    get_neuron_gates,
    get_output_gates,
    get_weight_masks,
    learned_gates,
    load_learned_masks,
    mask_logits,
    save_learned_masks,
    set_head_gates,
    set_neuron_gates,
    set_output_gates,
    set_structured_masks,
    set_weight_masks,
    sparsity_stats,
    structured_masks,
    without_learned_masks,
)
from gated.model import GatedModel
from gated.presets import PRESETS

__all__ = [
    "INPUT_NAMES",
    "MASK_KINDS",
    "PRESETS",
    "EncoderBlock",
    "EncoderEmbeddings",
    "GatedDense",
    "GatedFeedForward",
    "GatedModel",
    "GatedMultiHeadAttention",
    "GumbelGate",
    "build_gated_encoder",
    "collect_gated_layers",
    "effective_kernel_masks",
    "expand_mask_kinds",
    "get_head_gates",
    "get_neuron_gates",
    "get_output_gates",
    "get_weight_masks",
    "learned_gates",
    "load_learned_masks",
    "mask_logits",
    "save_learned_masks",
    "set_head_gates",
    "set_neuron_gates",
    "set_output_gates",
    "set_structured_masks",
    "set_weight_masks",
    "sparsity_stats",
    "structured_masks",
    "without_learned_masks",
]
