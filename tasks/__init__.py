"""GLUE tasks: registry, loaders, tokenization cache, tf.data pipeline and metrics."""

from tasks.loaders import DataUnavailableError, Examples, GlueFormatError, load_hub_split, read_glue_tsv
from tasks.metrics import compute_loss, compute_metrics
from tasks.registry import TASKS, TaskSpec, get_task
from tasks.tokenization import TokenizedSplit, load_split, load_tokenizer, tokenize_examples

__all__ = [
    "TASKS",
    "DataUnavailableError",
    "Examples",
    "GlueFormatError",
    "TaskSpec",
    "TokenizedSplit",
    "compute_loss",
    "compute_metrics",
    "get_task",
    "load_hub_split",
    "load_split",
    "load_tokenizer",
    "read_glue_tsv",
    "tokenize_examples",
]
