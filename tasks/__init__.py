"""GLUE tasks: registry, loaders, tokenization cache, tf.data pipeline, metrics and scoring a model on a split.

Importing the package needs numpy only (`tasks.pipeline` brings TensorFlow when it is imported)."""

from tasks.loaders import DataUnavailableError, Examples, GlueFormatError, load_hub_split, read_glue_tsv
from tasks.metrics import compute_loss, compute_metrics
from tasks.registry import TASKS, TaskSpec, get_task
from tasks.scoring import dataset_labels, score_model
from tasks.tokenization import TokenizedSplit, load_split, load_tokenizer, read_task_file, tokenize_examples

__all__ = [
    "TASKS",
    "DataUnavailableError",
    "Examples",
    "GlueFormatError",
    "TaskSpec",
    "TokenizedSplit",
    "compute_loss",
    "compute_metrics",
    "dataset_labels",
    "get_task",
    "load_hub_split",
    "load_split",
    "load_tokenizer",
    "read_glue_tsv",
    "read_task_file",
    "score_model",
    "tokenize_examples",
]
