"""Position-wise feed-forward block with per-neuron gates."""

import keras

from gated.dense import GatedDense


@keras.saving.register_keras_serializable(package="gated_bert")
class GatedFeedForward(keras.layers.Layer):
    """`GatedDense(dff, gelu)` with a per-neuron gate, then `GatedDense(d_model)`.

    The neuron gate `[dff]` is the intermediate layer's unit gate: a zero gate
    silences that neuron, the same as zeroing its row of the output kernel.

    Args:
        dff: width of the intermediate (hidden) layer.
        activation: activation of the intermediate layer.
        kernel_initializer: initializer for both kernels.
        **kwargs: base `keras.layers.Layer` arguments.
    """

    def __init__(self, dff, activation="gelu", kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        if isinstance(dff, bool) or not isinstance(dff, int) or dff <= 0:
            raise ValueError(f"dff must be a positive integer, got dff={dff!r}")
        self.dff = dff
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        d_model = input_shape[-1]
        init = self.kernel_initializer
        self.intermediate = GatedDense(
            self.dff, activation=self.activation, use_unit_gate=True,
            kernel_initializer=init, name="intermediate",
        )
        self.intermediate.build(input_shape)
        self.output_dense = GatedDense(d_model, kernel_initializer=init, name="output")
        self.output_dense.build((*input_shape[:-1], self.dff))

    @property
    def neuron_gate(self):
        """The per-neuron gate variable `[dff]`."""
        return self.intermediate.unit_gate

    def call(self, inputs):
        return self.output_dense(self.intermediate(inputs))  # (B, T, D)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "dff": self.dff,
            "activation": keras.activations.serialize(self.activation),
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        }
