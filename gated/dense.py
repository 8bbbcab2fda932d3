"""`GatedDense`: a dense layer whose kernel is multiplied by a gate mask."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="gated_bert")
class GatedDense(keras.layers.Layer):
    """Dense layer computing `activation(x @ (kernel * kernel_mask) + bias)`.

    The mask is a non-trainable variable of the kernel's shape, all ones at
    start, so an untouched `GatedDense` equals `keras.layers.Dense`. Because
    the mask multiplies the kernel inside the forward pass, a zeroed entry
    removes that weight's contribution and its gradient. Without
    `use_kernel_mask` there is no mask (`kernel_mask` is None): the layer
    holds one float per parameter, for models that no weight-level pruner
    touches.

    Args:
        units: width of the output.
        activation: activation name or callable, applied after the bias.
        use_bias: whether to add a bias vector.
        use_unit_gate: add a non-trainable per-output-unit gate `[units]` that
            multiplies the activated output; a zero gate removes the unit
            (structured pruning).
        use_kernel_mask: add the per-weight kernel mask (unstructured pruning).
        kernel_initializer: initializer for the kernel.
        bias_initializer: initializer for the bias.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).
    """

    def __init__(
        self,
        units,
        activation=None,
        use_bias=True,
        use_unit_gate=False,
        use_kernel_mask=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, int) or units <= 0:
            raise ValueError(f"units must be a positive integer, got units={units!r}")
        self.units = units
        self.activation = keras.activations.get(activation)
        self.use_bias = use_bias
        self.use_unit_gate = use_unit_gate
        self.use_kernel_mask = use_kernel_mask
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.input_spec = keras.layers.InputSpec(min_ndim=2)

    def build(self, input_shape):
        in_dim = input_shape[-1]
        if in_dim is None:
            raise ValueError(
                f"GatedDense needs a known last input dimension, got input_shape={input_shape}"
            )
        shape = (in_dim, self.units)
        self.kernel = self.add_weight(name="kernel", shape=shape, initializer=self.kernel_initializer)
        self.kernel_mask = None
        if self.use_kernel_mask:
            self.kernel_mask = self.add_weight(
                name="kernel_mask", shape=shape, initializer="ones", trainable=False
            )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias", shape=(self.units,), initializer=self.bias_initializer
            )
        self.unit_gate = None
        if self.use_unit_gate:
            self.unit_gate = self.add_weight(
                name="unit_gate", shape=(self.units,), initializer="ones", trainable=False
            )
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: in_dim})

    @property
    def masked_kernel(self):
        """`kernel * kernel_mask` (the kernel itself without a mask): the weights that act."""
        return self.kernel if self.kernel_mask is None else self.kernel * self.kernel_mask

    def ungated(self, inputs):
        """`activation(x @ (kernel * kernel_mask) + bias)`: the output before the unit gate."""
        outputs = ops.matmul(inputs, self.masked_kernel)
        if self.bias is not None:
            outputs = outputs + self.bias
        return self.activation(outputs)

    def call(self, inputs, unit_scale=None):
        """`unit_scale` (`[units]`, optional; needs `use_unit_gate`) multiplies the unit gate first,
        so an extra per-unit gate costs one multiply of the output, not two."""
        outputs = self.ungated(inputs)
        if self.unit_gate is not None:
            gate = self.unit_gate if unit_scale is None else self.unit_gate * unit_scale
            outputs = outputs * gate
        return outputs

    def bias_only(self, like, unit_scale=None):
        """The output when no input is left (every head or neuron before it pruned): the bias, activated and
        gated, at `like`'s shape `(..., units)`. No zero-width matmul: ONNX Runtime rejects those."""
        outputs = ops.zeros_like(like)
        if self.bias is not None:
            outputs = outputs + self.bias
        outputs = self.activation(outputs)
        if self.unit_gate is not None:
            outputs = outputs * (self.unit_gate if unit_scale is None else self.unit_gate * unit_scale)
        return outputs

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "use_unit_gate": self.use_unit_gate,
            "use_kernel_mask": self.use_kernel_mask,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }
