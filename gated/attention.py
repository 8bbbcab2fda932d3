"""Multi-head self-attention with gated projections and per-head gates."""

import math

import keras
from keras import ops

from gated.dense import GatedDense
from gated.gumbel_gate import GumbelGate

# Added to the attention logits of padding positions; large enough that
# softmax gives them exactly zero weight in float32.
_MASK_PENALTY = -1e9


@keras.saving.register_keras_serializable(package="gated_bert")
class GatedMultiHeadAttention(keras.layers.Layer):
    """Self-attention whose q/k/v/output projections are `GatedDense` layers.

    A non-trainable head gate `[num_heads]` (ones at start) scales each head's
    context before the output projection, so a zero gate removes the head.
    With `learn_head_mask`, a `GumbelGate` (`head_mask`) multiplies it too:
    a relaxed sample in training, the binary mask otherwise.

    Args:
        num_heads: number of attention heads; must divide the model width
            unless `head_dim` is given. 0 (with `head_dim`) is an attention
            layer whose heads were all pruned: it returns the output bias.
        dropout_rate: dropout on the attention probabilities.
        kernel_initializer: initializer for the four projection kernels.
        learn_head_mask: add a learnable Gumbel-Sigmoid mask over the heads.
        head_dim: width of each head (default `d_model // num_heads`); set it
            when heads were sliced away, so `num_heads * head_dim < d_model`.
        kernel_masks: give the four projections per-weight kernel masks
            (`GatedDense(use_kernel_mask=...)`; needed by weight-level pruning only).
        gates: create the head gate; False is a plain attention layer
            whose gates were folded into its weights (`gated.compact_model`).
        fused_qkv: one `qkv` projection `(D, 3 * H * Dh)` (the query, key and value
            kernels side by side) in place of three; an inference layout for plain
            layers (`gates=False`, `kernel_masks=False`), set by `gated.compact_model`:
            the input is read once and one larger matmul runs (TFLite's int8 kernels
            quantise each projection's input anew).
        **kwargs: base `keras.layers.Layer` arguments.
    """

    def __init__(self, num_heads, dropout_rate=0.0, kernel_initializer="glorot_uniform", learn_head_mask=False,
                 head_dim=None, kernel_masks=True, gates=True, fused_qkv=False, **kwargs):
        super().__init__(**kwargs)
        if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 0:
            raise ValueError(f"num_heads must be a non-negative integer, got num_heads={num_heads!r}")
        if head_dim is not None and (isinstance(head_dim, bool) or not isinstance(head_dim, int) or head_dim <= 0):
            raise ValueError(f"head_dim must be a positive integer or None, got head_dim={head_dim!r}")
        if num_heads == 0 and head_dim is None:
            raise ValueError("num_heads=0 needs an explicit head_dim (the width the pruned heads had)")
        if learn_head_mask and not gates:
            raise ValueError("learn_head_mask=True needs gates=True: a learned mask scales the head gate")
        if fused_qkv and (gates or kernel_masks):
            raise ValueError(f"fused_qkv=True is for plain layers: it needs gates=False and kernel_masks=False, got "
                             f"gates={gates!r}, kernel_masks={kernel_masks!r}")
        if not 0.0 <= dropout_rate < 1.0:
            raise ValueError(f"dropout_rate must be in [0, 1), got dropout_rate={dropout_rate!r}")
        self.num_heads = num_heads
        self.dropout_rate = dropout_rate
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.learn_head_mask = learn_head_mask
        self.fixed_head_dim = head_dim
        self.kernel_masks = kernel_masks
        self.gates = gates
        self.fused_qkv = fused_qkv
        self.dropout = keras.layers.Dropout(dropout_rate)

    def build(self, input_shape):
        d_model = input_shape[-1]
        if self.fixed_head_dim is None and d_model % self.num_heads:
            raise ValueError(
                f"num_heads must divide d_model, got num_heads={self.num_heads}, d_model={d_model}"
            )
        self.d_model = d_model
        self.head_dim = self.fixed_head_dim or d_model // self.num_heads
        inner = self.num_heads * self.head_dim
        init = self.kernel_initializer

        def projection(name, units, in_dim):
            layer = GatedDense(units, kernel_initializer=init, use_kernel_mask=self.kernel_masks, name=name)
            layer.build((*input_shape[:-1], in_dim))
            return layer

        self.query = self.key = self.value = self.qkv = None
        if self.num_heads and self.fused_qkv:
            self.qkv = projection("qkv", 3 * inner, d_model)
        elif self.num_heads:
            self.query = projection("query", inner, d_model)
            self.key = projection("key", inner, d_model)
            self.value = projection("value", inner, d_model)
        self.output_dense = projection("output", d_model, inner)
        self.head_gate = None
        if self.gates:
            self.head_gate = self.add_weight(
                name="head_gate", shape=(self.num_heads,), initializer="ones", trainable=False
            )
        self.head_mask = None
        if self.learn_head_mask:
            self.head_mask = GumbelGate(self.num_heads, name="head_mask")
            self.head_mask.build()

    def project(self, dense, inputs):
        """`inputs` `(B, T, D)` through one of the query, key and value projections, split per head: `(B, H, T, Dh)`."""
        x = dense(inputs)
        batch, length = ops.shape(x)[0], ops.shape(x)[1]
        x = ops.reshape(x, (batch, length, self.num_heads, self.head_dim))
        return ops.transpose(x, (0, 2, 1, 3))

    def attend(self, queries, keys, values, attention_mask=None, training=None):
        """Each head's context `(B, Tq, H, Dh)` for projected queries `(B, H, Tq, Dh)` over the projected keys and
        values `(B, H, T, Dh)`; `attention_mask` `(B, T)` marks the keys to attend to."""
        scores = ops.matmul(queries, ops.transpose(keys, (0, 1, 3, 2)))  # (B, H, Tq, T)
        scores = scores / math.sqrt(self.head_dim)
        if attention_mask is not None:
            # expand_dims, not [:, None, None, :]: TFLite's builtin strided slice has no new axes
            keep = ops.cast(ops.expand_dims(ops.expand_dims(attention_mask, 1), 1), scores.dtype)  # (B, 1, 1, T)
            scores = scores + (1.0 - keep) * _MASK_PENALTY
        probs = self.dropout(ops.softmax(scores, axis=-1), training=training)
        return ops.transpose(ops.matmul(probs, values), (0, 2, 1, 3))

    def head_contexts(self, inputs, attention_mask=None, training=None):
        """Each head's context before its gate and the output projection: `(B, T, H, Dh)`."""
        if self.qkv is not None:
            x = self.qkv(inputs)  # (B, T, 3 * H * Dh): queries, keys, values side by side
            x = ops.reshape(x, (ops.shape(x)[0], ops.shape(x)[1], 3 * self.num_heads, self.head_dim))
            queries, keys, values = ops.split(ops.transpose(x, (0, 2, 1, 3)), 3, axis=1)  # (B, H, T, Dh) each
            return self.attend(queries, keys, values, attention_mask, training)
        return self.attend(self.project(self.query, inputs), self.project(self.key, inputs),
                           self.project(self.value, inputs), attention_mask, training)

    def call(self, inputs, attention_mask=None, training=None):
        if not self.num_heads:
            return self.output_dense.bias_only(inputs)  # every head pruned: the output bias alone
        context = self.head_contexts(inputs, attention_mask, training)  # (B, T, H, Dh)
        if self.head_gate is not None:
            gate = self.head_gate
            if self.head_mask is not None:
                gate = gate * self.head_mask.gates(training)
            context = context * ops.cast(gate[None, None, :, None], context.dtype)
        # -1, not the length read from `context`: tf2onnx turns a transpose that moves a size-1 axis (one head)
        # into a reshape and then reads the length from the wrong tensor
        context = ops.reshape(context, (ops.shape(context)[0], -1, self.num_heads * self.head_dim))  # (B, T, H*Dh)
        return self.output_dense(context)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "dropout_rate": self.dropout_rate,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "learn_head_mask": self.learn_head_mask,
            "head_dim": self.fixed_head_dim,
            "kernel_masks": self.kernel_masks,
            "gates": self.gates,
            "fused_qkv": self.fused_qkv,
        }
