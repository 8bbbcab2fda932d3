"""Predictions from an export folder: its own tokenizer, rows batched by length, any of its formats."""

import dataclasses
import json
import logging
import os

import numpy as np

from deploy.card import CARD_FORMAT, CARD_JSON
from deploy.formats import FILES, FLOAT_FORMATS, load_runner
from gated_bert.progress import track

log = logging.getLogger(__name__)


class ExportFolderError(ValueError):
    """The folder is not an export folder, or lacks the format asked for; the message says what to do."""


@dataclasses.dataclass
class Predictions:
    """Per row: `labels` (class names; regression: the scores), `scores` (the predicted class's probability;
    regression: the score) and the raw `logits` `(rows, num_labels)`."""

    labels: list
    scores: np.ndarray
    logits: np.ndarray


def read_card(model_dir):
    """The folder's `card.json` (`deploy.card`), or `ExportFolderError`."""
    path = os.path.join(model_dir, CARD_JSON)
    if not os.path.isfile(path):
        raise ExportFolderError(f"{model_dir} has no {CARD_JSON}: it is not an export folder; write one with "
                                "python export.py --ckpt_dir ... --output_dir ...")
    with open(path, encoding="utf-8") as handle:
        card = json.load(handle)
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise ExportFolderError(f"{path} is not a gated-bert export card (its format is not {CARD_FORMAT!r})")
    return card


def check_pairs(model_dir, card, pairs_given):
    """`ValueError` when the texts come with pairs and the model reads single texts, or the other way round
    (from the card's `text_pairs`; a card written before it existed is not checked)."""
    reads_pairs = card.get("text_pairs")
    if reads_pairs is None or reads_pairs == pairs_given:
        return
    if reads_pairs:
        raise ValueError(f"{model_dir} reads text pairs (task {card['task']}); give each text its pair: text_pairs, "
                         "--text_pair or --pair_column")
    raise ValueError(f"{model_dir} reads single texts (task {card['task']}); give no pairs: drop text_pairs, "
                     "--text_pair or --pair_column")


def pick_format(model_dir, card, fmt=None):
    """`fmt` if the folder has it; else the float format the card timed fastest at batch 32 (else keras)."""
    present = [name for name in card["formats"] if os.path.exists(os.path.join(model_dir, FILES[name]))]
    if fmt is not None:
        if fmt not in present:
            raise ExportFolderError(f"{model_dir} has no {fmt} model; it has {', '.join(present) or 'none'} "
                                    "(export it with --formats including it)")
        return fmt
    floats = [name for name in present if name in FLOAT_FORMATS]
    if not floats:
        raise ExportFolderError(f"{model_dir} holds no float model; pass --format with one of {', '.join(present)}")
    timed = [name for name in floats if card["formats"][name].get("latency_ms", {}).get("batch_32")]
    if timed:
        return min(timed, key=lambda name: card["formats"][name]["latency_ms"]["batch_32"])
    return "keras" if "keras" in floats else floats[0]


def predict(model_dir, texts, text_pairs=None, batch_size=32, fmt=None, threads=None):
    """Predict `texts` (and `text_pairs`) with the export folder `model_dir`; returns `Predictions` in input order.

    Rows are tokenized with the folder's tokenizer (truncated to the model's `max_len`), sorted by length and
    batched `batch_size` at a time, each batch padded to its longest row. `fmt` picks the format (default: the
    fastest float one on the card).
    """
    from transformers import AutoTokenizer

    card = read_card(model_dir)
    check_pairs(model_dir, card, text_pairs is not None)
    texts = list(texts)
    if text_pairs is not None and len(text_pairs) != len(texts):
        raise ValueError(f"text_pairs has {len(text_pairs)} rows but texts has {len(texts)}; give one pair per text")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got batch_size={batch_size}")
    fmt = pick_format(model_dir, card, fmt)
    runner = load_runner(fmt, os.path.join(model_dir, FILES[fmt]), threads)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    encoded = tokenizer(texts, text_pairs, truncation=True, max_length=card["max_len"], return_token_type_ids=True)
    order = np.argsort([len(ids) for ids in encoded["input_ids"]], kind="stable")
    batches = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
    logits = np.zeros((len(texts), len(card["labels"] or [None])), dtype=np.float32)
    for rows in track(batches, f"predict ({fmt})", unit="batch", logger=log):
        logits[rows] = runner(_padded(encoded, rows, tokenizer.pad_token_id or 0))
    return _predictions(card, logits)


def _padded(encoded, rows, pad_id):
    """The batch of `rows`, padded to its longest: `{input_ids, attention_mask, token_type_ids}` int32."""
    length = max(len(encoded["input_ids"][row]) for row in rows)
    batch = {name: np.zeros((len(rows), length), np.int32) for name in ("attention_mask", "token_type_ids")}
    batch["input_ids"] = np.full((len(rows), length), pad_id, np.int32)
    for position, row in enumerate(rows):
        ids = encoded["input_ids"][row]
        batch["input_ids"][position, :len(ids)] = ids
        batch["attention_mask"][position, :len(ids)] = 1
        if "token_type_ids" in encoded:
            batch["token_type_ids"][position, :len(ids)] = encoded["token_type_ids"][row]
    return batch


def _predictions(card, logits):
    if card["task_type"] == "regression":
        scores = logits[:, 0]
        return Predictions([float(score) for score in scores], scores, logits)
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    probabilities = shifted / shifted.sum(-1, keepdims=True)
    classes = np.argmax(logits, -1)
    return Predictions([card["labels"][c] for c in classes], probabilities[np.arange(len(classes)), classes], logits)
