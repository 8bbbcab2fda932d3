import keras
import numpy as np

from gated import GatedFeedForward

X = np.random.default_rng(0).normal(size=(2, 3, 8)).astype("float32")


def _ffn(seed=4):
    keras.utils.set_random_seed(seed)
    layer = GatedFeedForward(12)
    layer.build(X.shape)
    return layer


def test_zero_neuron_gate_equals_neuron_weights_zeroed():
    gated = _ffn()
    gate = np.ones(12, dtype="float32")
    gate[[2, 7, 11]] = 0
    gated.neuron_gate.assign(gate)

    zeroed = _ffn()
    kernel = zeroed.output_dense.kernel.numpy()
    kernel[[2, 7, 11], :] = 0
    zeroed.output_dense.kernel.assign(kernel)
    np.testing.assert_allclose(gated(X).numpy(), zeroed(X).numpy(), rtol=1e-6, atol=1e-6)
    assert not np.allclose(gated(X).numpy(), _ffn()(X).numpy())


def test_neuron_gate_is_the_intermediate_unit_gate():
    layer = _ffn()
    assert layer.neuron_gate is layer.intermediate.unit_gate
    assert tuple(layer.neuron_gate.shape) == (12,)
    assert layer.neuron_gate.trainable is False
