"""Thin Keras callbacks: they decide when, and delegate what to the packages."""

from callbacks.checkpoints import BestAndLastCheckpoint, save_model_atomic
from callbacks.dev_evaluator import DevEvaluator
from callbacks.pruning import PruningCallback
from callbacks.results_logger import ResultsLogger

__all__ = ["BestAndLastCheckpoint", "DevEvaluator", "PruningCallback", "ResultsLogger", "save_model_atomic"]
