"""Multi-head self-attention with gated projections and per-head gates."""

import math

import keras
from keras import ops

from gated.dense import GatedDense
from gated.gumbel import GumbelGate

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
        num_heads: number of attention heads; must divide the model width.
        dropout_rate: dropout on the attention probabilities.
        kernel_initializer: initializer for the four projection kernels.
        learn_head_mask: add a learnable Gumbel-Sigmoid mask over the heads.
        **kwargs: base `keras.layers.Layer` arguments.
    """

    def __init__(self, num_heads, dropout_rate=0.0, kernel_initializer="glorot_uniform", learn_head_mask=False,
                 **kwargs):
        super().__init__(**kwargs)
        if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads <= 0:
            raise ValueError(f"num_heads must be a positive integer, got num_heads={num_heads!r}")
        if not 0.0 <= dropout_rate < 1.0:
            raise ValueError(f"dropout_rate must be in [0, 1), got dropout_rate={dropout_rate!r}")
        self.num_heads = num_heads
        self.dropout_rate = dropout_rate
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.learn_head_mask = learn_head_mask
        self.dropout = keras.layers.Dropout(dropout_rate)

    def build(self, input_shape):
        d_model = input_shape[-1]
        if d_model % self.num_heads:
            raise ValueError(
                f"num_heads must divide d_model, got num_heads={self.num_heads}, d_model={d_model}"
            )
        self.d_model = d_model
        self.head_dim = d_model // self.num_heads
        init = self.kernel_initializer

        def projection(name):
            layer = GatedDense(d_model, kernel_initializer=init, name=name)
            layer.build(input_shape)
            return layer

        self.query = projection("query")
        self.key = projection("key")
        self.value = projection("value")
        self.output_dense = projection("output")
        self.head_gate = self.add_weight(
            name="head_gate", shape=(self.num_heads,), initializer="ones", trainable=False
        )
        self.head_mask = None
        if self.learn_head_mask:
            self.head_mask = GumbelGate(self.num_heads, name="head_mask")
            self.head_mask.build()

    def _split_heads(self, x):
        batch, length = ops.shape(x)[0], ops.shape(x)[1]
        x = ops.reshape(x, (batch, length, self.num_heads, self.head_dim))
        return ops.transpose(x, (0, 2, 1, 3))  # (B, H, T, Dh)

    def call(self, inputs, attention_mask=None, training=None):
        q = self._split_heads(self.query(inputs))  # (B, H, T, Dh)
        k = self._split_heads(self.key(inputs))
        v = self._split_heads(self.value(inputs))
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2)))  # (B, H, T, T)
        scores = scores / math.sqrt(self.head_dim)
        if attention_mask is not None:
            keep = ops.cast(attention_mask[:, None, None, :], scores.dtype)  # (B, 1, 1, T)
            scores = scores + (1.0 - keep) * _MASK_PENALTY
        probs = self.dropout(ops.softmax(scores, axis=-1), training=training)
        context = ops.matmul(probs, v)  # (B, H, T, Dh)
        gate = self.head_gate
        if self.head_mask is not None:
            gate = gate * self.head_mask.gates(training)
        context = context * ops.cast(gate[None, :, None, None], context.dtype)
        context = ops.transpose(context, (0, 2, 1, 3))  # (B, T, H, Dh)
        batch, length = ops.shape(context)[0], ops.shape(context)[1]
        context = ops.reshape(context, (batch, length, self.d_model))
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
        }
