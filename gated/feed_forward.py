"""Position-wise feed-forward block with per-neuron and per-output-unit gates."""

import keras

from gated.dense import GatedDense
from gated.gumbel_gate import GumbelGate


@keras.saving.register_keras_serializable(package="gated_bert")
class GatedFeedForward(keras.layers.Layer):
    """`GatedDense(dff, gelu)` with a per-neuron gate, then `GatedDense(d_model)` with a per-unit gate.

    The neuron gate `[dff]` is the intermediate layer's unit gate: a zero gate
    silences that neuron, the same as zeroing its row of the output kernel.
    The output gate `[d_model]` is the output layer's unit gate: a zero gate
    silences that unit of the block's output (its kernel column and bias).
    With `learn_neuron_mask` / `learn_output_mask`, a `GumbelGate`
    (`neuron_mask` / `output_mask`) multiplies the neurons / the block's
    output too: a relaxed sample in training, the binary mask otherwise.

    Args:
        dff: width of the intermediate (hidden) layer; 0 is a block whose
            neurons were all pruned: it returns the output bias.
        activation: activation of the intermediate layer.
        kernel_initializer: initializer for both kernels.
        learn_neuron_mask: add a learnable Gumbel-Sigmoid mask over the `dff` neurons.
        learn_output_mask: add a learnable Gumbel-Sigmoid mask over the block's output units.
        kernel_masks: give both kernels per-weight kernel masks (weight-level pruning only).
        gates: create the neuron and output gates; False is a plain FFN whose
            gates were folded into its weights (`gated.compact_model`).
        **kwargs: base `keras.layers.Layer` arguments.
    """

    def __init__(self, dff, activation="gelu", kernel_initializer="glorot_uniform", learn_neuron_mask=False,
                 learn_output_mask=False, kernel_masks=True, gates=True, **kwargs):
        super().__init__(**kwargs)
        if isinstance(dff, bool) or not isinstance(dff, int) or dff < 0:
            raise ValueError(f"dff must be a non-negative integer, got dff={dff!r}")
        if (learn_neuron_mask or learn_output_mask) and not gates:
            raise ValueError("learned neuron or output masks need gates=True: a learned mask scales a gate")
        self.dff = dff
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.learn_neuron_mask = learn_neuron_mask
        self.learn_output_mask = learn_output_mask
        self.kernel_masks = kernel_masks
        self.gates = gates

    def build(self, input_shape):
        d_model = input_shape[-1]
        init = self.kernel_initializer
        self.intermediate = None
        if self.dff:
            self.intermediate = GatedDense(
                self.dff, activation=self.activation, use_unit_gate=self.gates, use_kernel_mask=self.kernel_masks,
                kernel_initializer=init, name="intermediate",
            )
            self.intermediate.build(input_shape)
        self.output_dense = GatedDense(d_model, use_unit_gate=self.gates, use_kernel_mask=self.kernel_masks,
                                       kernel_initializer=init, name="output")
        self.output_dense.build((*input_shape[:-1], self.dff))
        self.neuron_mask = GumbelGate(self.dff, name="neuron_mask") if self.learn_neuron_mask else None
        self.output_mask = GumbelGate(d_model, name="output_mask") if self.learn_output_mask else None
        for mask in (self.neuron_mask, self.output_mask):
            if mask is not None:
                mask.build()

    @property
    def neuron_gate(self):
        """The per-neuron gate variable `[dff]` (None when `dff` is 0)."""
        return None if self.intermediate is None else self.intermediate.unit_gate

    @property
    def output_gate(self):
        """The per-output-unit gate variable `[d_model]`."""
        return self.output_dense.unit_gate

    def call(self, inputs, training=None):
        # Learned masks scale the static unit gates (vectors), not the activations.
        units = None if self.output_mask is None else self.output_mask.gates(training)
        if self.intermediate is None:  # every neuron pruned: the output is the bias alone
            return self.output_dense.bias_only(inputs, unit_scale=units)  # (B, T, D)
        neurons = None if self.neuron_mask is None else self.neuron_mask.gates(training)
        hidden = self.intermediate(inputs, unit_scale=neurons)  # (B, T, dff)
        return self.output_dense(hidden, unit_scale=units)  # (B, T, D)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "dff": self.dff,
            "activation": keras.activations.serialize(self.activation),
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "learn_neuron_mask": self.learn_neuron_mask,
            "learn_output_mask": self.learn_output_mask,
            "kernel_masks": self.kernel_masks,
            "gates": self.gates,
        }
