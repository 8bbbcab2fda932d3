"""Read GLUE examples from the original TSV layout or from the hub."""

from dataclasses import dataclass

import numpy as np

from tasks.registry import HUB_DATASET


class GlueFormatError(ValueError):
    """A GLUE TSV row or header does not match the task's layout."""


class DataUnavailableError(RuntimeError):
    """Neither a local GLUE directory nor the hub could provide the data."""


@dataclass
class Examples:
    """Raw texts and labels of one split (`text_b` is None for single-sentence tasks)."""

    text_a: list
    text_b: list | None
    labels: np.ndarray  # (N,) int64 class ids, or float32 scores for regression

    def __len__(self):
        return len(self.text_a)


def text_lines(path):
    """The file's lines decoded as UTF-8, line ends kept; a byte that is not UTF-8, or a NUL (a binary file), is a
    `GlueFormatError` naming the file, the line and the byte's offset in the file."""
    offset = 0
    with open(path, "rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            nul = raw.find(b"\x00")  # valid UTF-8, but no text file holds one
            if nul >= 0:
                raise GlueFormatError(f"{path}:{lineno}: byte {offset + nul} is a NUL: a binary file, not text")
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise GlueFormatError(f"{path}:{lineno}: byte {offset + error.start} (0x{raw[error.start]:02x}) is "
                                      "not UTF-8 text; is this a text file? Save it as UTF-8") from None
            offset += len(raw)


def _column_indices(spec, header, path):
    wanted = (*spec.text_columns, spec.label_column)
    if not spec.has_header:
        return wanted
    missing = [name for name in wanted if name not in header]
    if missing:
        raise GlueFormatError(
            f"{path}:1: header lacks the {spec.name} columns {missing}; found {header}. "
            f"Is this the original GLUE {spec.dir_name} file?"
        )
    return tuple(header.index(name) for name in wanted)


def _parse_label(spec, raw, where):
    if spec.is_regression:
        try:
            return float(raw)
        except ValueError:
            raise GlueFormatError(f"{where}: score {raw!r} is not a number") from None
    if raw not in spec.label_names:
        raise GlueFormatError(f"{where}: unknown {spec.name} label {raw!r}; expected one of {list(spec.label_names)}")
    return spec.label_names.index(raw)


def read_glue_tsv(path, spec, limit=None):
    """Parse one GLUE TSV strictly: every row must have the expected number of fields.

    Texts may contain quote characters, so fields are split on tabs with no
    quoting rules at all. A malformed row raises `GlueFormatError` naming the
    file and line; so does a byte that is not UTF-8; a file without rows is an error too. `limit` keeps only
    the first rows.
    """
    texts, labels = [[] for _ in spec.text_columns], []
    lines = enumerate(text_lines(path), start=1)
    header = None
    if spec.has_header:
        first = next(lines, None)
        if first is None:
            raise GlueFormatError(f"{path}: empty file; expected a header row")
        header = first[1].rstrip("\r\n").split("\t")
    width = len(header) if header else spec.num_columns
    *text_idx, label_idx = _column_indices(spec, header, path)
    for lineno, line in lines:
        if limit is not None and len(labels) >= limit:
            break
        line = line.rstrip("\r\n")
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) != width:
            raise GlueFormatError(f"{path}:{lineno}: expected {width} tab-separated fields, got {len(fields)}")
        for column, index in zip(texts, text_idx, strict=True):
            column.append(fields[index])
        labels.append(_parse_label(spec, fields[label_idx], f"{path}:{lineno}"))
    if not labels and limit != 0:
        raise GlueFormatError(f"{path}: no rows{' after the header' if header else ''}; it needs at least one "
                              f"{spec.name} example")
    dtype = np.float32 if spec.is_regression else np.int64
    return Examples(texts[0], texts[1] if spec.is_pair else None, np.asarray(labels, dtype=dtype))


def load_hub_split(spec, split, limit=None):
    """Load a split through `datasets` from the hub (or its local cache)."""
    hub_split = {"train": "train", "dev": spec.hub_dev_split}[split]
    if limit is not None:
        hub_split = f"{hub_split}[:{limit}]"
    try:
        import datasets

        data = datasets.load_dataset(HUB_DATASET, spec.name, split=hub_split)
    except Exception as error:  # network, auth and cache errors come in many types
        raise DataUnavailableError(
            f"could not load GLUE {spec.name} ({split}) from the hub: {type(error).__name__}: {error}. "
            f"Offline? Point at a local GLUE directory with GLUE_DIR=/path/to/glue or --data_dir "
            f"/path/to/glue (it must hold {spec.dir_name}/train.tsv and {spec.dir_name}/{spec.dev_file})."
        ) from error
    text_b = list(data[spec.hub_text_columns[1]]) if spec.is_pair else None
    dtype = np.float32 if spec.is_regression else np.int64
    return Examples(list(data[spec.hub_text_columns[0]]), text_b, np.asarray(data["label"], dtype=dtype))
