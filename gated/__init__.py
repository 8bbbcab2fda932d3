"""Gated layers, the gated encoder and helpers for their masks and gates."""

from gated.attention import GatedMultiHeadAttention
from gated.dense import GatedDense
from gated.encoder import INPUT_NAMES, EncoderBlock, EncoderEmbeddings, build_gated_encoder
from gated.feed_forward import GatedFeedForward
from gated.masks import (
    collect_gated_layers,
    effective_kernel_masks,
    get_head_gates,
    get_neuron_gates,
    get_weight_masks,
    set_head_gates,
    set_neuron_gates,
    set_weight_masks,
    sparsity_stats,
)
from gated.model import GatedModel
from gated.presets import PRESETS

__all__ = [
    "INPUT_NAMES",
    "PRESETS",
    "EncoderBlock",
    "EncoderEmbeddings",
    "GatedDense",
    "GatedFeedForward",
    "GatedModel",
    "GatedMultiHeadAttention",
    "build_gated_encoder",
    "collect_gated_layers",
    "effective_kernel_masks",
    "get_head_gates",
    "get_neuron_gates",
    "get_weight_masks",
    "set_head_gates",
    "set_neuron_gates",
    "set_weight_masks",
    "sparsity_stats",
]
