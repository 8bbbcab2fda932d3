import keras
import numpy as np
import pytest

from gated import GatedMultiHeadAttention


def _layer(x, num_heads=4, seed=3):
    keras.utils.set_random_seed(seed)
    layer = GatedMultiHeadAttention(num_heads)
    layer.build(x.shape)
    # Non-zero biases so that removing a head must also remove its bias path.
    for proj in (layer.query, layer.key, layer.value):
        proj.bias.assign(np.random.default_rng(seed).normal(size=proj.bias.shape).astype("float32"))
    return layer


X = np.random.default_rng(0).normal(size=(2, 5, 16)).astype("float32")


def test_zero_head_gate_equals_head_weights_zeroed():
    gated = _layer(X)
    gated.head_gate.assign([1, 0, 1, 1])
    expected = gated(X).numpy()

    zeroed = _layer(X)
    head = slice(4, 8)  # head 1 of 4, head_dim 4: zero its value columns (and bias) and output rows
    value_kernel, value_bias = zeroed.value.kernel.numpy(), zeroed.value.bias.numpy()
    value_kernel[:, head] = 0
    value_bias[head] = 0
    zeroed.value.kernel.assign(value_kernel)
    zeroed.value.bias.assign(value_bias)
    out_kernel = zeroed.output_dense.kernel.numpy()
    out_kernel[head, :] = 0
    zeroed.output_dense.kernel.assign(out_kernel)
    np.testing.assert_allclose(zeroed(X).numpy(), expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(_layer(X)(X).numpy(), expected)  # the gate did change the output


def test_padding_positions_do_not_affect_real_tokens():
    layer = _layer(X)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    out = layer(X, attention_mask=mask).numpy()
    changed = X.copy()
    changed[0, 3:] = 100.0  # garbage in the padded positions
    out_changed = layer(changed, attention_mask=mask).numpy()
    np.testing.assert_allclose(out_changed[0, :3], out[0, :3], rtol=1e-5, atol=1e-5)
    # Unmasked, the garbage would leak in:
    assert not np.allclose(layer(changed).numpy()[0, :3], out[0, :3], atol=1e-3)


def test_projection_masks_apply_inside_attention():
    layer = _layer(X)
    base = layer(X).numpy()
    layer.output_dense.kernel_mask.assign(np.zeros((16, 16), dtype="float32"))
    out = layer(X).numpy()
    np.testing.assert_allclose(out, np.broadcast_to(layer.output_dense.bias.numpy(), out.shape), atol=1e-6)
    assert not np.allclose(base, out)


def test_num_heads_must_divide_d_model():
    layer = GatedMultiHeadAttention(3)
    with pytest.raises(ValueError, match="num_heads=3, d_model=16"):
        layer.build((None, None, 16))
