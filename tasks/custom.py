"""Your own classification or regression task from CSV, TSV or JSON-lines files.

A custom task is a `TaskSpec` named `custom` whose splits are two files: the training file and the validation
file. Its labels are read from the training file (`infer_labels`) and their order is recorded in the run's
config, so a checkpoint keeps its class ids whatever file it is scored on later. Bad rows raise
`GlueFormatError` with `file:line`, as the GLUE reader does.
"""

import csv
import json
import os

import numpy as np

from tasks.loaders import Examples, GlueFormatError, text_lines
from tasks.registry import TaskSpec

CUSTOM = "custom"
FORMATS = {".csv": "csv", ".tsv": "tsv", ".json": "jsonl", ".jsonl": "jsonl"}
TASK_TYPES = ("auto", "classification", "regression")


def file_format(path):
    """`csv`, `tsv` or `jsonl` from the file name; the error lists the extensions understood."""
    kind = FORMATS.get(os.path.splitext(path)[1].lower())
    if kind is None:
        raise GlueFormatError(f"{path}: unknown file type; name it .csv, .tsv, .json or .jsonl (JSON lines)")
    return kind


def _table_rows(path):
    """`(line number, {column: text})` for every data row of a CSV, TSV or JSON-lines file."""
    kind = file_format(path)
    lines = text_lines(path)
    if kind == "jsonl":
        for lineno, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as error:
                raise GlueFormatError(f"{path}:{lineno}: not a JSON object: {error}") from None
            if not isinstance(row, dict):
                raise GlueFormatError(f"{path}:{lineno}: expected a JSON object per line, got "
                                      f"{type(row).__name__}")
            yield lineno, {key: "" if value is None else str(value) for key, value in row.items()}
        return
    # TSV: tabs only, no quoting (texts hold quote characters, as in GLUE); CSV: the standard dialect.
    reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE) if kind == "tsv" else csv.reader(lines)
    header = next(reader, None)
    if header is None:
        raise GlueFormatError(f"{path}: empty file; expected a header row naming the columns")
    for fields in reader:
        if not fields:
            continue
        if len(fields) != len(header):
            raise GlueFormatError(f"{path}:{reader.line_num}: expected {len(header)} fields (the header's), got "
                                  f"{len(fields)}")
        yield reader.line_num, dict(zip(header, fields, strict=True))


COLUMN_FLAGS = "--text_column, --text_pair_column and --label_column"


def read_columns(path, columns, limit=None, flags=COLUMN_FLAGS):
    """`(texts per column, line numbers)` of the first `limit` rows; a missing column is a `file:line` error that
    says to set `flags` to the file's names."""
    values, lines = [[] for _ in columns], []
    for lineno, row in _table_rows(path):
        if limit is not None and len(lines) >= limit:
            break
        missing = [name for name in columns if name not in row]
        if missing:
            raise GlueFormatError(f"{path}:{lineno}: no column {missing} (columns here: {sorted(row)}); set "
                                  f"{flags} to this file's names")
        for column, name in zip(values, columns, strict=True):
            column.append(row[name])
        lines.append(lineno)
    if not lines:
        raise GlueFormatError(f"{path}: no data rows")
    return values, lines


def _is_float(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def _is_int(text):
    try:
        int(text)
    except ValueError:
        return False
    return True


def _scores(path, labels, lines):
    """Regression labels as float32; a label that is not a number is a `file:line` error."""
    for label, lineno in zip(labels, lines, strict=True):
        if not _is_float(label):
            raise GlueFormatError(f"{path}:{lineno}: regression label {label!r} is not a number")
    return np.asarray([float(label) for label in labels], np.float32)


def infer_labels(path, label_column, task_type="auto"):
    """The task's label names in class-id order (sorted: numerically when they are integers), or None for
    regression: `task_type` regression, or `auto` with float labels that are not all integers."""
    if task_type not in TASK_TYPES:
        raise ValueError(f"task_type must be one of {TASK_TYPES}, got {task_type!r}")
    (labels,), lines = read_columns(path, [label_column])
    if task_type == "regression" or (task_type == "auto" and all(map(_is_float, labels))
                                     and not all(map(_is_int, labels))):
        _scores(path, labels, lines)
        return None
    names = sorted(set(labels), key=int) if all(map(_is_int, labels)) else sorted(set(labels))
    if len(names) < 2:
        raise GlueFormatError(f"{path}: column {label_column!r} holds one label only ({names}); a classifier "
                              "needs two or more (or use --task_type regression)")
    return tuple(names)


def custom_task(train_file, validation_file, text_column, label_column, label_names, text_pair_column=""):
    """The `TaskSpec` of a custom task; `label_names` None makes it a regression."""
    texts = (text_column, text_pair_column) if text_pair_column else (text_column,)
    if label_names is None:
        metrics = ("pearson", "spearman")
    else:
        metrics = ("accuracy", "f1") if len(label_names) == 2 else ("accuracy",)
    return TaskSpec(CUSTOM, CUSTOM, texts, label_column, None if label_names is None else tuple(label_names),
                    metrics, texts, files=(train_file, validation_file))


def read_custom_split(spec, split, limit=None):
    """The `Examples` of `split` (`train` or `dev`) of a custom task, labels mapped to the spec's class ids."""
    return read_custom_file(spec, spec.split_file("", split), limit)


def read_custom_file(spec, path, limit=None):
    """The `Examples` of any file with a custom task's columns, labels mapped to the spec's class ids."""
    (*texts, labels), lines = read_columns(path, [*spec.text_columns, spec.label_column], limit)
    if spec.is_regression:
        return Examples(texts[0], texts[1] if spec.is_pair else None, _scores(path, labels, lines))
    ids = {name: index for index, name in enumerate(spec.label_names)}
    for label, lineno in zip(labels, lines, strict=True):
        if label not in ids:
            raise GlueFormatError(f"{path}:{lineno}: label {label!r} is not one of the training labels "
                                  f"{list(spec.label_names)}")
    return Examples(texts[0], texts[1] if spec.is_pair else None,
                    np.asarray([ids[label] for label in labels], np.int64))
