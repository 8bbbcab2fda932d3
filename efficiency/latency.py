"""A latency model of the encoder blocks, fitted to lookup tables measured by `generate_lut.py`.

A lookup table (LUT) is kept per unit kind: the `head` LUT holds the measured
latency of one attention layer for every head count, the `neuron` LUT that of
one FFN for a grid of neuron counts, at one batch size and sequence length on
one device. Per kind, the model is

    latency(n) = 0                          when n == 0 (the sublayer is skipped)
                 intercept + slope * n      otherwise

fitted by least squares to the LUT's non-zero counts (both coefficients
clipped at zero, so the estimate never falls as units are added). A model's
latency is the sum over its blocks of the attention and FFN estimates.
"""

import os

import numpy as np

from gated_bert.files import read_json_object, write_json_atomic

# The unit kinds a LUT counts (gated_bert.vocabulary.UNIT_KINDS): heads time an attention layer, neurons an FFN.
LUT_KINDS = ("head", "neuron")
# What LUTs written before the unit kinds were unified call them.
LUT_KIND_ALIASES = {"mha": "head", "ffn": "neuron"}
# Shape keys a LUT records; prune.py checks them against the checkpoint's.
LUT_SHAPE_KEYS = ("d_model", "num_heads", "head_dim", "dff")


class LutError(ValueError):
    """A lookup table is missing, malformed or was measured for another shape."""


def lut_file_name(kind):
    return f"{kind}_lut.json"


def read_lut(path, kind, shape=None):
    """Load and check a LUT written by `generate_lut.py`.

    Args:
        path: the JSON file.
        kind: `head` or `neuron`.
        shape: optional `{d_model, num_heads, head_dim, dff}` the LUT must match.

    Returns the LUT with its `kind` in today's names (`mha`/`ffn` LUTs are read as `head`/`neuron`).
    """
    lut = read_json_object(path, f"{kind} LUT", LutError, "; generate it with python -m efficiency.generate_lut")
    found = LUT_KIND_ALIASES.get(lut.get("kind"), lut.get("kind"))
    if found != kind:
        raise LutError(f"{path} is not a {kind} LUT (kind={lut.get('kind')!r}); pass the {lut_file_name(kind)} "
                       "that generate_lut wrote")
    lut = {**lut, "kind": kind}
    counts, latency = lut.get("counts"), lut.get("latency_ms")
    if not isinstance(counts, list) or not isinstance(latency, list) or len(counts) < 2 or len(counts) != len(latency):
        raise LutError(f"{kind} LUT {path} needs matching 'counts' and 'latency_ms' lists of 2 or more entries")
    for key, values, kinds, what in (("counts", counts, int, "whole numbers"),
                                     ("latency_ms", latency, (int, float), "numbers")):
        bad = [value for value in values if isinstance(value, bool) or not isinstance(value, kinds)]
        if bad:
            raise LutError(f"{kind} LUT {path}: '{key}' must hold {what}, got {bad[0]!r}; regenerate it with "
                           "python -m efficiency.generate_lut")
    if shape is not None and not isinstance(lut.get("shape"), dict):
        raise LutError(f"{kind} LUT {path} has no 'shape' (the model shape it was measured for: "
                       f"{', '.join(LUT_SHAPE_KEYS)}); regenerate it with python -m efficiency.generate_lut")
    if shape is not None:
        wrong = {key: (lut["shape"].get(key), shape[key]) for key in LUT_SHAPE_KEYS
                 if lut["shape"].get(key) != shape[key]}
        if wrong:
            details = ", ".join(f"{key}: LUT {have}, model {want}" for key, (have, want) in wrong.items())
            raise LutError(f"{kind} LUT {path} was measured for another shape ({details}); regenerate it with "
                           "python -m efficiency.generate_lut for this model's shape")
    return lut


def write_lut(folder, kind, counts, latency_ms, shape, batch_size, seq_len, device):
    """Write `{folder}/{kind}_lut.json` atomically; returns its path."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, lut_file_name(kind))
    write_json_atomic(path, {"kind": kind, "shape": shape, "batch_size": batch_size, "seq_len": seq_len,
                             "device": device, "counts": [int(c) for c in counts],
                             "latency_ms": [float(t) for t in latency_ms]})
    return path


def fit_lut(counts, latency_ms):
    """`(intercept, slope)` of `intercept + slope * n` fitted to the entries with `n > 0`, clipped at zero."""
    counts, latency_ms = np.asarray(counts, dtype=np.float64), np.asarray(latency_ms, dtype=np.float64)
    keep = counts > 0
    design = np.stack([np.ones(keep.sum()), counts[keep]], axis=1)  # (n, 2)
    (intercept, slope), *_ = np.linalg.lstsq(design, latency_ms[keep], rcond=None)
    slope = max(float(slope), 0.0)
    # Refit the intercept for the clipped slope: the mean residual.
    intercept = max(float(np.mean(latency_ms[keep] - slope * counts[keep])), 0.0)
    return intercept, slope


class LatencyModel:
    """Estimated block latencies (ms) from kept head and neuron counts.

    Args:
        head: `(intercept, slope)` of one attention layer, per kept head.
        neuron: `(intercept, slope)` of one FFN, per kept neuron.
    """

    def __init__(self, head, neuron):
        self.fits = {"head": tuple(float(v) for v in head), "neuron": tuple(float(v) for v in neuron)}

    @classmethod
    def from_luts(cls, head_lut, neuron_lut):
        return cls(fit_lut(head_lut["counts"], head_lut["latency_ms"]),
                   fit_lut(neuron_lut["counts"], neuron_lut["latency_ms"]))

    def sublayer(self, kind, counts):
        """Estimated latency of the sublayer holding `kind`'s units, for each entry of `counts` (kept per layer)."""
        intercept, slope = self.fits[kind]
        counts = np.asarray(counts, dtype=np.float64)
        return np.where(counts > 0, intercept + slope * counts, 0.0)

    def estimate(self, head_mask, neuron_mask):
        """Estimated latency (ms) of all blocks kept by the masks (`[L, H]`, `[L, F]`; non-zero = kept)."""
        heads = np.count_nonzero(head_mask, axis=1)
        neurons = np.count_nonzero(neuron_mask, axis=1)
        return float(self.sublayer("head", heads).sum() + self.sublayer("neuron", neurons).sum())

    def get_config(self):
        return {kind: list(fit) for kind, fit in self.fits.items()}
