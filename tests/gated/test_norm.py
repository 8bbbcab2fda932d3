"""gated.LayerNorm: Keras' LayerNormalization's function and weights, in fewer full-size operations."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from gated import LayerNorm

SHAPE = (3, 5, 16)


def _numpy_layer_norm(x, gamma, beta, eps):
    mean = x.mean(axis=-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + eps) * gamma + beta


def _randomised(layer, seed):
    """`layer`, built, with gamma and beta drawn at random (ones and zeros would hide a swapped or dropped term)."""
    if not layer.built:
        layer.build(SHAPE)
    rng = np.random.default_rng(seed)
    for weight in layer.weights:
        weight.assign(rng.normal(1.0, 0.5, weight.shape).astype("float32"))
    return layer


def test_it_computes_a_layer_norm_like_numpy_and_keras():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=SHAPE) * 3 + 5).astype("float32")
    ours = _randomised(LayerNorm(epsilon=1e-12), 0)
    theirs = keras.layers.LayerNormalization(epsilon=1e-12)
    theirs.build(SHAPE)
    theirs.set_weights(ours.get_weights())
    expected = _numpy_layer_norm(x.astype("float64"), ours.gamma.numpy(), ours.beta.numpy(), 1e-12)
    np.testing.assert_allclose(np.asarray(ours(x)), expected, atol=1e-5)
    np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(theirs(x)), atol=1e-5)


@pytest.mark.parametrize("settings", [{"axis": 1}, {"center": False}, {"scale": False}])
def test_other_settings_compute_as_keras_does(settings):
    rng = np.random.default_rng(1)
    x = rng.normal(size=SHAPE).astype("float32")
    ours = _randomised(LayerNorm(epsilon=1e-5, **settings), 1)
    theirs = keras.layers.LayerNormalization(epsilon=1e-5, **settings)
    theirs.build(SHAPE)
    theirs.set_weights(ours.get_weights())
    np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(theirs(x)), atol=1e-5)


def test_a_saved_model_reloads_it_with_its_weights(tmp_path):
    rng = np.random.default_rng(2)
    inputs = keras.Input(SHAPE[1:])
    model = keras.Model(inputs, LayerNorm(epsilon=1e-6, name="norm")(inputs))
    _randomised(model.get_layer("norm"), 2)
    model.save(tmp_path / "norm.keras")
    loaded = keras.saving.load_model(tmp_path / "norm.keras")
    assert type(loaded.get_layer("norm")) is LayerNorm
    assert loaded.get_layer("norm").epsilon == 1e-6
    x = rng.normal(size=SHAPE).astype("float32")
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))


def _full_size_ops(layer):
    """How many operations of `layer`'s TFLite conversion output a tensor of the input's full size."""
    inputs = keras.Input(SHAPE[1:], batch_size=SHAPE[0])
    model = keras.Model(inputs, _randomised(layer, 3)(inputs))  # the converter would fold ones and zeros away
    interpreter = tf.lite.Interpreter(  # without XNNPACK, which would take some operations into one node
        model_content=tf.lite.TFLiteConverter.from_keras_model(model).convert(),
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    shapes = {detail["index"]: tuple(detail["shape"]) for detail in interpreter.get_tensor_details()}
    return sum(1 for op in interpreter._get_ops_details() if any(shapes[i] == SHAPE for i in op["outputs"]))


@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated:UserWarning")
def test_its_tflite_graph_has_one_fewer_full_size_operation_than_keras():
    ours = _full_size_ops(LayerNorm(epsilon=1e-12))
    theirs = _full_size_ops(keras.layers.LayerNormalization(epsilon=1e-12))
    assert (ours, theirs) == (5, 6)
