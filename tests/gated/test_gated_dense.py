import keras
import numpy as np
import pytest
import tensorflow as tf

from gated import GatedDense


def _pair(use_bias=True, activation=None):
    keras.utils.set_random_seed(1)
    gated = GatedDense(5, activation=activation, use_bias=use_bias)
    plain = keras.layers.Dense(5, activation=activation, use_bias=use_bias)
    x = np.random.default_rng(1).normal(size=(4, 3, 7)).astype("float32")
    gated.build(x.shape)
    plain.build(x.shape)
    plain.kernel.assign(gated.kernel)
    if use_bias:
        gated.bias.assign(np.linspace(-1, 1, 5).astype("float32"))
        plain.bias.assign(gated.bias)
    return gated, plain, x


@pytest.mark.parametrize("use_bias,activation", [(True, None), (False, "gelu"), (True, "relu")])
def test_ones_mask_equals_dense(use_bias, activation):
    gated, plain, x = _pair(use_bias, activation)
    np.testing.assert_allclose(gated(x), plain(x), rtol=1e-6, atol=1e-6)
    assert gated.kernel_mask.trainable is False
    assert np.all(gated.kernel_mask.numpy() == 1)


def test_zeroed_mask_removes_exactly_those_weights():
    gated, plain, x = _pair()
    mask = np.ones((7, 5), dtype="float32")
    mask[[0, 3, 6], [1, 1, 4]] = 0
    gated.kernel_mask.assign(mask)
    plain.kernel.assign(gated.kernel.numpy() * mask)
    np.testing.assert_allclose(gated(x), plain(x), rtol=1e-6, atol=1e-6)


def test_masked_weights_get_zero_gradient():
    gated, _, x = _pair()
    mask = np.ones((7, 5), dtype="float32")
    mask[2, :] = 0
    mask[5, 3] = 0
    gated.kernel_mask.assign(mask)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(gated(x) ** 2)
    grad = tape.gradient(loss, gated.kernel).numpy()
    assert np.all(grad[mask == 0] == 0)
    assert np.count_nonzero(grad[mask == 1]) == mask.sum()
    assert gated.trainable_weights == [gated.kernel, gated.bias]


def test_zero_unit_gate_silences_unit():
    keras.utils.set_random_seed(2)
    layer = GatedDense(4, activation="gelu", use_unit_gate=True)
    x = np.random.default_rng(2).normal(size=(3, 6)).astype("float32")
    before = layer(x).numpy()
    layer.unit_gate.assign([1, 0, 1, 0])
    after = layer(x).numpy()
    assert np.all(after[:, [1, 3]] == 0)
    np.testing.assert_allclose(after[:, [0, 2]], before[:, [0, 2]])



@pytest.mark.parametrize("units", [0, -3, 2.5, True])
def test_bad_units_named_in_error(units):
    with pytest.raises(ValueError, match=f"units={units!r}"):
        GatedDense(units)
