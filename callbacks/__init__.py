"""Thin Keras callbacks: they decide when, and delegate what to the packages."""

from callbacks.checkpoints import BestAndLastCheckpoint, save_model_atomic
from callbacks.dev_evaluator import DevEvaluator
from callbacks.distillation import DistillationCallback
from callbacks.finite_guard import FiniteGuard, NonFiniteError
from callbacks.graceful_stop import GracefulStop, deferred_signals
from callbacks.gumbel_masks import GumbelMaskCallback
from callbacks.progress import ProgressFile
from callbacks.pruning import PruningCallback
from callbacks.results_logger import ResultsLogger
from callbacks.resume_state import ResumeError, ResumeState, read_state
from callbacks.soft_movement import SoftMovementCallback
from callbacks.tracking import WandbLogger, start_wandb_run, tensorboard_callback, wandb_group

__all__ = ["BestAndLastCheckpoint", "DevEvaluator", "DistillationCallback", "FiniteGuard", "GracefulStop",
           "GumbelMaskCallback", "NonFiniteError", "ProgressFile", "PruningCallback", "ResultsLogger", "ResumeError",
           "ResumeState", "SoftMovementCallback", "WandbLogger", "deferred_signals", "read_state",
           "save_model_atomic", "start_wandb_run", "tensorboard_callback", "wandb_group"]
