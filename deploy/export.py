"""Export a (pruned) gated encoder as a compact inference model in every serving format, each checked on dev rows.

`export_model` folds the gates and masks into a compact model (`gated.compact_model`), writes each format, runs
each one on the dev rows against the masked gated model it came from, and writes the model card. The folder is
built beside its destination and moved there only when every format passed its check, so a failed export leaves
nothing behind.
"""

import dataclasses
import datetime
import logging
import os
import time

import numpy as np

from deploy.card import write_card
from deploy.formats import FILES, FLOAT_FORMATS, FORMATS, check_available, load_runner, write
from gated_bert.files import staged_folder

log = logging.getLogger(__name__)

FLOAT_TOLERANCE = 1e-4  # max |logit difference| of a float format against the gated model
INT8_AGREEMENT = 0.99  # share of rows whose int8 prediction is the gated model's (regression: Pearson r)
LATENCY_BATCHES = (1, 32)


class ExportError(RuntimeError):
    """An exported format failed its parity check; the message names the format, the figure and the limit."""


@dataclasses.dataclass
class DevRows:
    """The rows every format is checked and scored on: deterministic `(features, labels)` batches and the task."""

    batches: list
    spec: object


def export_model(model, folder, dev, *, formats=FORMATS, tokenizer=None, about=None,
                 overwrite=False, latency_runs=5, seq_len=128, threads=None, int8_agreement=INT8_AGREEMENT):
    """Write `model` (a gated encoder with its masks on its gates) into `folder` as a compact model in `formats`.

    Args:
        model: the gated encoder, its gates (and kernel masks) as they should be exported, a mask folder's logit
            bias already on its classifier (`gated.add_logit_bias`).
        folder: the export folder; refused when it exists, unless `overwrite`.
        dev: `DevRows` to check each format against `model` on and to score it with.
        formats: any of `deploy.formats.FORMATS`; the TFLite formats bring the SavedModel they convert.
        tokenizer: a Hugging Face tokenizer to save beside the model (predict's).
        about: free-form facts for the card (source checkpoint, masks, method).
        latency_runs: timed runs per format and batch size (0: no timing).
        seq_len: tokens per row of the timed batches and of the MAC counts (at most what the position table
            holds).
        threads: TFLite and ONNX Runtime threads (None: their defaults).
        int8_agreement: the least share of dev rows on which the int8 model must predict what the gated model
            does (regression: Pearson r of their scores); 0 checks nothing.

    Returns:
        The card (`card.json`'s content).
    """
    from gated import compact_model

    if os.path.exists(folder) and not overwrite:
        raise FileExistsError(f"{folder} exists; choose another --output_dir or pass --overwrite to replace it")
    if not 0 <= int8_agreement <= 1:
        raise ValueError(f"int8_agreement is a share of rows in [0, 1], got {int8_agreement}")
    formats = _with_prerequisites(formats)
    check_available(formats)
    reference = np.concatenate([np.asarray(model(features, training=False)) for features, _ in dev.batches])
    compact = compact_model(model)
    embeddings = compact.get_layer("embeddings")
    seq_len = min(seq_len, embeddings.max_len - embeddings.position_offset)  # what its position table holds
    results = {}
    with staged_folder(folder) as tmp:
        for fmt in formats:
            tick = time.perf_counter()
            path = write(fmt, compact, tmp)
            runner = load_runner(fmt, path, threads)
            results[fmt] = {"file": FILES[fmt], "bytes": _size(path),
                            **_checked(fmt, runner, dev, reference, int8_agreement),
                            "latency_ms": _latency(runner, compact, latency_runs, seq_len)}
            log.info("export: %s written and checked in %.1f s (%s)", fmt, time.perf_counter() - tick,
                     _summary(results[fmt], dev.spec))
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        card = write_card(tmp, model, compact, dev.spec, results, {
            **(about or {}), "created": datetime.datetime.now().isoformat(timespec="seconds"),
            "threads": threads, "latency_seq_len": seq_len, "dev_rows": len(reference)}, seq_len)
    return card


def _with_prerequisites(formats):
    unknown = [fmt for fmt in formats if fmt not in FORMATS]
    if unknown:
        raise ValueError(f"unknown format {', '.join(unknown)}; formats: {', '.join(FORMATS)}")
    wanted = set(formats)
    if wanted & {"tflite", "tflite_int8"}:
        wanted.add("saved_model")  # what the TFLite converter reads
    return [fmt for fmt in FORMATS if fmt in wanted]


def _checked(fmt, runner, dev, reference, int8_agreement):
    """Run `fmt` over the dev rows; its dev metrics and parity figures, or `ExportError` when it fails the check."""
    from tasks.metrics import compute_metrics

    outputs = np.concatenate([runner(features) for features, _ in dev.batches]).astype(np.float64)
    labels = np.concatenate([np.asarray(label) for _, label in dev.batches])
    scores = {f"dev_{name}": value for name, value in compute_metrics(dev.spec, outputs, labels).items()}
    difference = float(np.max(np.abs(outputs - reference)))
    if fmt in FLOAT_FORMATS:
        if not difference <= FLOAT_TOLERANCE:  # `not <=`: a NaN fails too
            raise ExportError(f"{fmt}: its logits differ from the gated model's by up to {difference:.3g} on the dev "
                              f"rows, more than {FLOAT_TOLERANCE:g}; the export is not written")
        return {"dev": scores, "max_abs_logit_diff": difference}
    agreement = _agreement(dev.spec, outputs, reference)
    if not agreement >= int8_agreement:
        what = "Pearson r of its scores with" if dev.spec.is_regression else "share of predictions equal to"
        raise ExportError(f"{fmt}: {what} the gated model's is {agreement:.4f} on the dev rows, below "
                          f"{int8_agreement:g}; the export is not written (leave {fmt} out of --formats to export the "
                          "float formats alone, or accept less with --int8_agreement)")
    return {"dev": scores, "max_abs_logit_diff": difference, "agreement": agreement,
            "agreement_required": int8_agreement}


def _agreement(spec, outputs, reference):
    if spec.is_regression:
        return float(np.corrcoef(outputs[:, 0], reference[:, 0])[0, 1])
    return float(np.mean(np.argmax(outputs, -1) == np.argmax(reference, -1)))


def _latency(runner, model, runs, seq_len):
    """Median milliseconds per batch of `seq_len`-token rows (random ids, no padding), per batch size."""
    if not runs:
        return {}
    vocab = model.get_layer("embeddings").vocab_size
    rng = np.random.default_rng(0)
    timings = {}
    for size in LATENCY_BATCHES:
        ids = rng.integers(1, vocab, size=(size, seq_len)).astype(np.int32)
        batch = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        runner(batch)  # warm-up: traces, allocations
        seconds = []
        for _ in range(runs):
            tick = time.perf_counter()
            runner(batch)
            seconds.append(time.perf_counter() - tick)
        timings[f"batch_{size}"] = 1000 * float(np.median(seconds))
    return timings


def _size(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)


def _summary(result, spec):
    metric = f"dev_{spec.primary_metric}"
    return f"{metric} {result['dev'][metric]:.4f}, max |logit diff| {result['max_abs_logit_diff']:.2g}"
