"""The exported formats: how each is written from a compact model and how it is run.

Every format takes the same three int32 inputs, `input_ids`, `attention_mask` and `token_type_ids`, each
`(batch, length)` with any batch and length, and returns the logits `(batch, num_labels)`. A runner is a
callable `{name: array} -> numpy logits`, so parity checks, scoring and timing treat the formats alike.
"""

import importlib.util
import os
import warnings

import numpy as np

# Format -> its file (or folder) in an export folder, in the order they are written (TFLite converts the
# SavedModel).
FILES = {"keras": "model.keras", "saved_model": "saved_model", "tflite": "model.tflite",
         "tflite_int8": "model_int8.tflite", "onnx": "model.onnx"}
FORMATS = tuple(FILES)
FLOAT_FORMATS = ("keras", "saved_model", "tflite", "onnx")
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
ONNX_OPSET = 17


class FormatUnavailableError(RuntimeError):
    """A format needs packages that are not installed; the message says which and how to install them."""


def onnx_available():
    return all(importlib.util.find_spec(name) is not None for name in ("tf2onnx", "onnxruntime"))


def check_available(formats):
    """Raise `FormatUnavailableError` for a requested format whose packages are missing."""
    if "onnx" in formats and not onnx_available():
        raise FormatUnavailableError("the onnx format needs tf2onnx and onnxruntime: pip install 'gated-bert[onnx]' "
                                     "(or leave onnx out of --formats)")


def _input_signature():
    import tensorflow as tf

    return [tf.TensorSpec((None, None), tf.int32, name=name) for name in INPUTS]


def _serving_function(model):
    """`f(input_ids, attention_mask, token_type_ids) -> {"logits": ...}` calling `model` in inference mode."""

    def serve(input_ids, attention_mask, token_type_ids):
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        return {"logits": model(inputs, training=False)}

    return serve


def write(fmt, model, folder):
    """Write `model` in format `fmt` into `folder` (the SavedModel first: the TFLite formats convert it);
    returns the path written."""
    path = os.path.join(folder, FILES[fmt])
    if fmt == "keras":
        model.save(path)
    elif fmt == "saved_model":
        _write_saved_model(model, path)
    elif fmt in ("tflite", "tflite_int8"):
        _write_tflite(os.path.join(folder, FILES["saved_model"]), path, quantize=fmt == "tflite_int8")
    elif fmt == "onnx":
        _write_onnx(model, path)
    else:
        raise ValueError(f"unknown format {fmt!r}; formats: {', '.join(FORMATS)}")
    return path


def _write_saved_model(model, path):
    """A SavedModel whose `serving_default` signature runs `model`. A plain `tf.Module` holds the weights: Keras'
    `ExportArchive` tracks them in two lists and writes every weight twice."""
    import tensorflow as tf

    module = tf.Module()
    module.weights = [variable.value for variable in model.weights]  # the tf.Variables behind the Keras ones
    module.serve = tf.function(_serving_function(model), input_signature=_input_signature())
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve.get_concrete_function()})


def _write_tflite(saved_model, path, quantize):
    import tensorflow as tf

    if not os.path.isdir(saved_model):
        raise ValueError("the TFLite formats convert the SavedModel: export saved_model too")
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
    if quantize:  # dynamic range: int8 weights, float activations
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    with open(path, "wb") as handle:
        handle.write(converter.convert())


def _erfc_as_erf(ctx, node, name, args):
    """tf2onnx handler: ONNX has Erf but no Erfc (Keras' exact GELU uses it), so erfc(x) becomes 1 - erf(x)."""
    from tf2onnx import utils

    erf = ctx.make_node("Erf", [node.input[0]])
    one = ctx.make_const(utils.make_name(f"{name}_one"), np.array(1.0, dtype=np.float32))
    node.type = "Sub"
    ctx.replace_inputs(node, [one.output[0], erf.output[0]])


def _write_onnx(model, path):
    import tensorflow as tf

    check_available(("onnx",))
    import tf2onnx

    signature = _input_signature()
    function = tf.function(_serving_function(model), input_signature=signature)
    tf2onnx.convert.from_function(function, input_signature=signature, opset=ONNX_OPSET, output_path=path,
                                  custom_op_handlers={"Erfc": (_erfc_as_erf, [])})


def load_runner(fmt, path, threads=None):
    """A callable `{input name: int array (B, T)} -> numpy logits (B, labels)` running the file at `path`.

    `threads` sets TFLite's and ONNX Runtime's intra-op threads (None: their defaults); TensorFlow's are set
    for the whole process.
    """
    if fmt == "keras":
        return _keras_runner(path)
    if fmt == "saved_model":
        return _saved_model_runner(path)
    if fmt in ("tflite", "tflite_int8"):
        return _tflite_runner(path, threads)
    if fmt == "onnx":
        return _onnx_runner(path, threads)
    raise ValueError(f"unknown format {fmt!r}; formats: {', '.join(FORMATS)}")


def _feed(batch):
    return {name: np.asarray(batch[name], dtype=np.int32) for name in INPUTS}


def _keras_runner(path):
    import keras
    import tensorflow as tf

    import gated  # noqa: F401  (registers the layers for deserialisation)

    model = keras.saving.load_model(path, compile=False)
    call = tf.function(lambda inputs: model(inputs, training=False), reduce_retracing=True)
    return lambda batch: call(_feed(batch)).numpy()


def _saved_model_runner(path):
    import tensorflow as tf

    serve = tf.saved_model.load(path).signatures["serving_default"]
    return lambda batch: serve(**{name: tf.constant(value) for name, value in _feed(batch).items()})["logits"].numpy()


def _tflite_interpreter(path, threads):
    """LiteRT's interpreter when `ai-edge-litert` is installed, else TensorFlow's (deprecated, still shipped)."""
    if importlib.util.find_spec("ai_edge_litert") is not None:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter(model_path=path, num_threads=threads)
    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated", category=UserWarning)
        return tf.lite.Interpreter(model_path=path, num_threads=threads)


def _tflite_runner(path, threads):
    interpreter = _tflite_interpreter(path, threads)
    runner = interpreter.get_signature_runner("serving_default")  # resizes its inputs to each batch's shape
    return lambda batch: np.asarray(runner(**_feed(batch))["logits"])


def _onnx_runner(path, threads):
    check_available(("onnx",))
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return lambda batch: session.run(None, _feed(batch))[0]
