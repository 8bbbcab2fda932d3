"""Tokenize GLUE splits with a transformers tokenizer, cached on disk."""

import contextlib
import hashlib
import json
import logging
import os
from dataclasses import dataclass

import numpy as np

from gated_bert.files import atomic_path
from gated_bert.progress import Progress
from tasks.custom import read_custom_file
from tasks.loaders import load_hub_split, read_glue_tsv
from tasks.registry import HUB_DATASET

log = logging.getLogger(__name__)
# Bump when the cached array layout changes, so old caches are ignored.
CACHE_FORMAT = 1


@dataclass
class TokenizedSplit:
    """A split as flat token arrays plus row offsets (row i is `offsets[i]:offsets[i+1]`)."""

    input_ids: np.ndarray  # (total_tokens,) int32
    token_type_ids: np.ndarray  # (total_tokens,) int32
    offsets: np.ndarray  # (N + 1,) int64
    labels: np.ndarray  # (N,)
    from_cache: bool = False

    def __len__(self):
        return len(self.labels)

    @property
    def lengths(self):
        return np.diff(self.offsets)

    def take(self, rows):
        """A split of the given rows, in the given order."""
        rows = np.asarray(rows, dtype=np.int64)
        pieces = [np.arange(self.offsets[row], self.offsets[row + 1]) for row in rows]
        tokens = np.concatenate(pieces) if pieces else np.zeros(0, np.int64)
        offsets = np.concatenate([[0], np.cumsum(self.lengths[rows])]).astype(np.int64)
        return TokenizedSplit(self.input_ids[tokens], self.token_type_ids[tokens], offsets, self.labels[rows])


# What a tokenizer folder must hold, one group of files at least: the fast tokenizer's own file, a WordPiece
# vocabulary (BERT), a BPE vocabulary with its merges (RoBERTa), or a SentencePiece model.
TOKENIZER_FILES = (("tokenizer.json",), ("vocab.txt",), ("vocab.json", "merges.txt"), ("spiece.model",),
                   ("sentencepiece.bpe.model",))


def check_tokenizer_folder(folder):
    """`OSError` naming what a local tokenizer folder lacks: the folder itself, any tokenizer file, or a
    non-empty one."""
    if not os.path.isdir(folder):
        raise OSError(f"tokenizer folder not found: {folder}; point TOKENIZER or --tokenizer at a folder holding "
                      "vocab.txt (and tokenizer_config.json) or tokenizer.json")
    present = [group for group in TOKENIZER_FILES if all(os.path.isfile(os.path.join(folder, name)) for name in group)]
    if not present:
        wanted = "; or ".join(" with ".join(group) for group in TOKENIZER_FILES)
        found = sorted(os.listdir(folder))
        raise OSError(f"tokenizer folder {folder} lacks the tokenizer files: it needs {wanted} (it holds "
                      f"{found or 'nothing'})")
    if all(os.path.getsize(os.path.join(folder, name)) == 0 for group in present for name in group):
        names = ", ".join(name for group in present for name in group)
        raise OSError(f"tokenizer folder {folder}: {names} is empty; copy the tokenizer files again")


def load_tokenizer(name_or_path):
    """Load a fast tokenizer from a hub name or a local directory (`check_tokenizer_folder` first: a path, one
    that exists or is written as a path, must be a complete tokenizer folder)."""
    from transformers import AutoTokenizer

    name = os.fspath(name_or_path)
    if os.path.exists(name) or os.path.isabs(name) or name.startswith(("./", "../", "~")):
        check_tokenizer_folder(os.path.expanduser(name))
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError) as error:
        raise OSError(
            f"could not load tokenizer {name_or_path!r}: {error}. Offline? Point TOKENIZER or --tokenizer "
            "at a local directory holding vocab.txt and tokenizer_config.json."
        ) from error
    if len(tokenizer) == 0:
        raise OSError(f"tokenizer {name_or_path!r} has no tokens; its vocabulary file is empty")
    return tokenizer


def tokenizer_identity(tokenizer):
    """What makes two tokenizers produce the same ids, for the cache key."""
    source = tokenizer.name_or_path
    if os.path.isdir(source):
        source = os.path.abspath(source)
    return {"source": source, "class": type(tokenizer).__name__, "size": len(tokenizer)}


def _source_fingerprint(spec, split, data_dir):
    if not (data_dir or spec.files):
        return {"hub": HUB_DATASET, "config": spec.name, "split": split}
    path = os.path.abspath(spec.split_file(data_dir, split))
    stat = os.stat(path)
    return {"path": path, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def cache_path(cache_dir, spec, split, data_dir, tokenizer, max_len, limit):
    """Cache file for this exact task, split, data file, tokenizer, `max_len` and row limit."""
    key = {
        "format": CACHE_FORMAT,
        "task": spec.name,
        "split": split,
        "data": _source_fingerprint(spec, split, data_dir),
        "tokenizer": tokenizer_identity(tokenizer),
        "max_len": max_len,
        "limit": limit,
        "labels": spec.label_names,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return os.path.join(os.path.expanduser(cache_dir), f"{spec.name}_{split}_{max_len}_{digest}.npz")


def tokenize_examples(examples, tokenizer, max_len, chunk_size=4096):
    """Tokenize raw examples (pairs get `token_type_ids` 0/1) into a `TokenizedSplit`.

    Splits are tokenized in chunks; those of more than one chunk report their progress (rate and ETA).
    """
    ids, types = [], []
    with Progress(len(examples), "tokenization", unit="row", logger=log) if len(examples) > chunk_size \
            else contextlib.nullcontext() as progress:
        for start in range(0, len(examples), chunk_size):
            stop = min(start + chunk_size, len(examples))
            text_b = examples.text_b[start:stop] if examples.text_b is not None else None
            encoded = tokenizer(examples.text_a[start:stop], text_b, truncation=True, max_length=max_len,
                                return_token_type_ids=True)
            ids.extend(encoded["input_ids"])
            types.extend(encoded["token_type_ids"])
            if progress:
                progress.update(stop - start)
    lengths = np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(ids))
    offsets = np.concatenate([[0], np.cumsum(lengths)])

    def flat(rows):
        return np.fromiter((t for row in rows for t in row), dtype=np.int32, count=offsets[-1])

    return TokenizedSplit(flat(ids), flat(types), offsets, examples.labels)


def _save(path, split):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_path(path) as tmp:  # readers never see a half-written cache
        np.savez(tmp, input_ids=split.input_ids, token_type_ids=split.token_type_ids,
                 offsets=split.offsets, labels=split.labels)


def read_task_examples(spec, path, limit=None):
    """The `Examples` of `path`, a file in the format of the task's split files: a GLUE task's TSV (its header,
    columns and labels), or a custom task's CSV, TSV or JSON lines with its columns."""
    return read_custom_file(spec, path, limit) if spec.files else read_glue_tsv(path, spec, limit)


def read_task_file(spec, path, tokenizer, max_len):
    """Tokenized rows of `path` (`read_task_examples`), not cached."""
    return tokenize_examples(read_task_examples(spec, path), tokenizer, max_len)


def load_split(spec, split, tokenizer, *, data_dir, max_len, cache_dir, limit=None):
    """Tokenized `split` (`train`/`dev`) of a task, from the cache when possible.

    Data comes from a custom task's own files, else `data_dir` in the GLUE TSV
    layout, or from the hub when `data_dir` is empty.
    """
    path = cache_path(cache_dir, spec, split, data_dir, tokenizer, max_len, limit)
    if os.path.exists(path):
        with np.load(path) as arrays:
            log.info("%s %s: %d rows from the tokenization cache %s", spec.name, split, len(arrays["labels"]), path)
            return TokenizedSplit(**{key: arrays[key] for key in arrays.files}, from_cache=True)
    if spec.files or data_dir:
        examples = read_task_examples(spec, spec.split_file(data_dir, split), limit)
    else:
        examples = load_hub_split(spec, split, limit)
    log.info("%s %s: tokenizing %d rows", spec.name, split, len(examples))
    tokenized = tokenize_examples(examples, tokenizer, max_len)
    _save(path, tokenized)
    return tokenized
