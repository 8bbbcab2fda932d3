"""Mask maths: importance scores plus a target sparsity give a binary mask.

Everything is numpy on `{path: array}` dicts. Masks only ever lose weights:
a weight already pruned stays pruned whatever its score, and a target below
the current sparsity changes nothing. Ties are broken by position (the
earlier weight, in path order then row-major order, is pruned first), so the
same scores always give the same mask.
"""

import numpy as np

from gated_bert.vocabulary import SCOPES


def _prune_lowest(scores, alive, zeros_wanted):
    """Return a copy of the flat boolean `alive` with the lowest-scoring live entries removed
    until `zeros_wanted` entries are dead (never reviving one)."""
    alive = alive.copy()
    extra = zeros_wanted - (alive.size - np.count_nonzero(alive))
    if extra <= 0:
        return alive
    live = np.flatnonzero(alive)
    live_scores = scores[live]
    if not np.all(np.isfinite(live_scores)):
        raise ValueError("importance scores of live weights must be finite (got NaN or inf)")
    if extra >= live.size:
        alive[:] = False
        return alive
    threshold = np.partition(live_scores, extra - 1)[extra - 1]
    below = live[live_scores < threshold]
    ties = live[live_scores == threshold][: extra - below.size]
    alive[below] = False
    alive[ties] = False
    return alive


def flatten(arrays, paths):
    """One flat array of `arrays[path]` for `paths`, in that order (nonzero -> True for masks)."""
    return np.concatenate([np.ravel(arrays[path]) != 0 for path in paths])


def unflatten(flat, like, paths):
    """Split a flat array (as `flatten` makes) back into `{path: array shaped like like[path]}`."""
    pieces = np.split(flat, np.cumsum([np.size(like[path]) for path in paths])[:-1])
    return {path: piece.reshape(np.shape(like[path])) for path, piece in zip(paths, pieces, strict=True)}


def masks_for_sparsity(scores, masks, sparsity, scope="global"):
    """New 0/1 masks holding `round(sparsity * n)` zeros, the lowest scores pruned first.

    Args:
        scores: `{path: array}` importance per weight (higher is kept).
        masks: `{path: array}` current masks of the same shapes (0 = pruned).
        sparsity: target fraction of zeros in [0, 1].
        scope: `global` counts `n` over all layers together and compares
            scores across layers; `layer` gives every layer the same sparsity.

    Returns:
        `{path: float32 array}` for the paths of `masks`.
    """
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got sparsity={sparsity}")
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; choose one of: {', '.join(SCOPES)}")
    if set(scores) != set(masks):
        raise KeyError(f"scores and masks must cover the same layers, got {sorted(scores)} and {sorted(masks)}")
    paths = sorted(masks)
    for path in paths:
        if np.shape(scores[path]) != np.shape(masks[path]):
            raise ValueError(f"scores for {path} have shape {np.shape(scores[path])}, "
                             f"its mask {np.shape(masks[path])}")
    if scope == "layer":
        return {path: _layer_mask(scores[path], masks[path], sparsity) for path in paths}
    flat_scores = np.concatenate([np.ravel(scores[path]) for path in paths])
    flat_alive = flatten(masks, paths)
    alive = _prune_lowest(flat_scores, flat_alive, int(round(sparsity * flat_alive.size)))
    return {path: piece.astype(np.float32) for path, piece in unflatten(alive, masks, paths).items()}


def _layer_mask(scores, mask, sparsity):
    alive = _prune_lowest(np.ravel(scores), np.ravel(mask) != 0, int(round(sparsity * np.size(mask))))
    return alive.reshape(np.shape(mask)).astype(np.float32)
