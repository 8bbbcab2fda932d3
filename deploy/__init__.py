"""Deployment: a pruned gated encoder exported as a compact inference model (Keras, SavedModel, TFLite, ONNX),
checked against the model it came from, with its card."""

from deploy.export import DevRows, ExportError, export_model
from deploy.formats import FILES, FORMATS, FormatUnavailableError, load_runner, onnx_available
from deploy.predict import ExportFolderError, Predictions, predict

__all__ = ["FILES", "FORMATS", "DevRows", "ExportError", "ExportFolderError", "FormatUnavailableError", "Predictions",
           "export_model", "load_runner", "onnx_available", "predict"]
