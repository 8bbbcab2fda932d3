"""Structured pruning while training: a per-weight criterion summed up to attention heads and FFN neurons, and
the units to remove for a MAC target.

Plain numpy. Unit scores and masks are `{kind: array [layers, units]}` for the kinds `head` and `neuron`. A unit's
score is the mean of its weights' scores, so heads and neurons (which hold different numbers of weights) rank on
one scale, and a mean per weight is a mean per MAC of the projections. As with weights, a removed unit stays
removed and ties go to the earlier unit (kind order, then layer, then unit).
"""

import numpy as np


def head_scores(query, key, value, output, head_dim):
    """Each head's mean score over its weights: its columns of the query, key and value kernels `(D, H*Dh)` and its
    rows of the output projection `(H*Dh, D)`. Returns `(H,)`."""
    d_model, inner = np.shape(query)
    heads = inner // head_dim
    columns = sum(np.reshape(kernel, (d_model, heads, head_dim)).sum(axis=(0, 2)) for kernel in (query, key, value))
    rows = np.reshape(output, (heads, head_dim, -1)).sum(axis=(1, 2))
    return (columns + rows) / (3 * d_model * head_dim + head_dim * np.shape(output)[1])


def neuron_scores(intermediate, output):
    """Each FFN neuron's mean score over its intermediate kernel column `(D, dff)` and output kernel row
    `(dff, D)`. Returns `(dff,)`."""
    return (np.sum(intermediate, axis=0) + np.sum(output, axis=1)) / (np.shape(intermediate)[0] + np.shape(output)[1])


def unit_scores(weight_scores, layout):
    """`{kind: [layers, units]}` unit scores from per-weight scores `{kernel path: array}`.

    `layout` is `gated.unit_layout(model)`: per kind, one entry per block (`(query, key, value, output paths,
    head_dim)` for heads, `(intermediate, output paths)` for neurons).
    """
    scores = {}
    if "head" in layout:
        scores["head"] = np.stack([head_scores(*(weight_scores[path] for path in paths), head_dim)
                                   for *paths, head_dim in layout["head"]])
    if "neuron" in layout:
        scores["neuron"] = np.stack([neuron_scores(*(weight_scores[path] for path in paths))
                                     for paths in layout["neuron"]])
    return scores


def units_to_keep(scores, alive, costs, remove_macs):
    """Boolean `{kind: [layers, units]}`: `alive` less the lowest-scoring live units, removed one at a time (all
    kinds in one ranking) until the removed units, dead ones included, cost at least `remove_macs`.

    Args:
        scores: `{kind: [layers, units]}`, higher is kept.
        alive: `{kind: bool [layers, units]}`, the units still in the model (never revived).
        costs: `{kind: MACs of one unit}`.
        remove_macs: the MACs to remove in all, counted over every unit (dead or alive) of the kinds.
    """
    kinds = sorted(alive, key=["head", "neuron"].index)
    removed = sum(costs[kind] * np.count_nonzero(~alive[kind]) for kind in kinds)
    flat_scores = np.concatenate([np.ravel(scores[kind]) for kind in kinds])
    flat_alive = np.concatenate([np.ravel(alive[kind]) for kind in kinds])
    if not np.all(np.isfinite(flat_scores[flat_alive])):
        raise ValueError("importance scores of live units must be finite (got NaN or inf)")
    flat_costs = np.concatenate([np.full(np.size(alive[kind]), costs[kind], dtype=np.float64) for kind in kinds])
    live = np.flatnonzero(flat_alive)
    order = live[np.argsort(flat_scores[live], kind="stable")]  # stable: ties go to the earlier unit
    # Remove while the MACs removed so far fall short (a relative tolerance keeps float targets exact).
    short = np.cumsum(flat_costs[order]) - flat_costs[order] < (remove_macs - removed) * (1 - 1e-12)
    flat_alive = flat_alive.copy()
    flat_alive[order[short]] = False
    pieces = np.split(flat_alive, np.cumsum([np.size(alive[kind]) for kind in kinds])[:-1])
    return {kind: piece.reshape(np.shape(alive[kind])) for kind, piece in zip(kinds, pieces, strict=True)}
