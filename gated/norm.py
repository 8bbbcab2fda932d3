"""LayerNorm written in the fewest full-size operations, for the exported formats' sake.

Keras' `LayerNormalization` computes `x * inv + (beta - mean * inv)` with `inv = rsqrt(var + eps) * gamma`, so
`inv`, `mean * inv` and both sums are tensors of the input's full size: TensorFlow's converter emits six
full-size elementwise operations for it. `LayerNorm` computes the same function as
`(x - mean) * rsqrt(var + eps) * gamma + beta`: five (centre, square, scale, times gamma, plus beta). In a
TFLite model the LayerNorms and residual adds stay in float even when the matrix products are int8, and no
head or neuron pruning removes them, so each pass saved counts most in the smallest, int8 models
(`bench/fused_qkv.py` times them).
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="gated_bert")
class LayerNorm(keras.layers.LayerNormalization):
    """`keras.layers.LayerNormalization` with the same weights and config, computed with one fewer full-size
    operation over the last axis (with both `gamma` and `beta`); any other setting computes as Keras does."""

    def call(self, inputs):
        rank = len(inputs.shape)
        if self.rms_scaling or not (self.center and self.scale) or list(self.axis) not in ([-1], [rank - 1]):
            return super().call(inputs)
        x = ops.cast(inputs, "float32")
        centred = x - ops.mean(x, axis=-1, keepdims=True)
        variance = ops.mean(ops.square(centred), axis=-1, keepdims=True)
        outputs = centred * ops.rsqrt(variance + self.epsilon) * self.gamma + self.beta
        return ops.cast(outputs, self.compute_dtype)
