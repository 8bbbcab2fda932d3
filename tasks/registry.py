"""What each GLUE task is: where its text and labels live, and how it is scored."""

import os
from dataclasses import dataclass

HUB_DATASET = "nyu-mll/glue"


@dataclass(frozen=True)
class TaskSpec:
    """One GLUE task.

    Args:
        name: our name (`sst2`), also the hub config name.
        dir_name: folder in the original GLUE layout (`SST-2`).
        text_columns: TSV header names of the one or two texts (column
            indices for a headerless file).
        label_column: TSV header name (or index) of the label.
        label_names: label strings in class-id order (the hub's order);
            `None` for regression.
        metrics: metric names; the first is the one that picks the best epoch.
        hub_text_columns: the hub dataset's text column names.
        has_header: whether the TSV starts with a header row.
        num_columns: fields per row of a headerless TSV.
        dev_file: file name of the dev split.
        hub_dev_split: the hub's name for the dev split.
        files: `(train file, dev file)` of a task read from your own files (`tasks.custom`); None for GLUE.
    """

    name: str
    dir_name: str
    text_columns: tuple
    label_column: object
    label_names: tuple | None
    metrics: tuple
    hub_text_columns: tuple
    has_header: bool = True
    num_columns: int | None = None
    dev_file: str = "dev.tsv"
    hub_dev_split: str = "validation"
    files: tuple | None = None

    @property
    def is_regression(self):
        return self.label_names is None

    @property
    def num_labels(self):
        return 1 if self.is_regression else len(self.label_names)

    @property
    def is_pair(self):
        return len(self.text_columns) == 2

    @property
    def primary_metric(self):
        return self.metrics[0]

    def split_file(self, data_dir, split):
        """Path of `split` (`train` or `dev`) under a GLUE directory (a custom task: its own file)."""
        if self.files:
            return self.files[("train", "dev").index(split)]
        filename = {"train": "train.tsv", "dev": self.dev_file}[split]
        return os.path.join(data_dir, self.dir_name, filename)

    def local_files(self, data_dir):
        return [self.split_file(data_dir, "train"), self.split_file(data_dir, "dev")]


_BINARY = ("0", "1")
_ENTAILMENT = ("entailment", "not_entailment")
_PAIR = ("sentence1", "sentence2")

TASKS = {
    spec.name: spec
    for spec in (
        TaskSpec("sst2", "SST-2", ("sentence",), "label", _BINARY, ("accuracy",), ("sentence",)),
        TaskSpec(
            "mnli", "MNLI", _PAIR, "gold_label", ("entailment", "neutral", "contradiction"),
            ("accuracy",), ("premise", "hypothesis"),
            dev_file="dev_matched.tsv", hub_dev_split="validation_matched",
        ),
        TaskSpec("qnli", "QNLI", ("question", "sentence"), "label", _ENTAILMENT, ("accuracy",),
                 ("question", "sentence")),
        TaskSpec("qqp", "QQP", ("question1", "question2"), "is_duplicate", _BINARY, ("accuracy", "f1"),
                 ("question1", "question2")),
        TaskSpec("rte", "RTE", _PAIR, "label", _ENTAILMENT, ("accuracy",), _PAIR),
        TaskSpec("wnli", "WNLI", _PAIR, "label", _BINARY, ("accuracy",), _PAIR),
        TaskSpec("mrpc", "MRPC", ("#1 String", "#2 String"), "Quality", _BINARY, ("accuracy", "f1"), _PAIR),
        TaskSpec("cola", "CoLA", (3,), 1, _BINARY, ("matthews_corr", "accuracy"), ("sentence",),
                 has_header=False, num_columns=4),
        TaskSpec("stsb", "STS-B", _PAIR, "score", None, ("pearson", "spearman"), _PAIR),
    )
}


def get_task(name):
    """The `TaskSpec` called `name`; the error lists the known tasks."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}")
    return TASKS[name]
