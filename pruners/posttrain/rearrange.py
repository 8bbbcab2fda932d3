"""Mask rearrangement: per layer, which units to keep given how many (Kwon et al., NeurIPS 2022).

The search ranks units by their own Fisher importance and ignores how units
of one layer interact. Within a layer, the loss increase from pruning the set
`P` is estimated with the layer's block of the empirical Fisher information,
from the sample's gate gradients `G` (`[n, units]`: one per row, or one per
batch):

    cost(P) = mean_b (sum_{i in P} G[b, i])^2  =  1_P^T (G^T G / n) 1_P

Rearrangement keeps the layer's count and lowers that cost by exchanges that
start from the search's mask: the kept units are visited once, least
important first; each joins the pruned set, and the one member whose removal
leaves the lowest cost goes back (often the newcomer: then nothing changes).
The result is never worse than the search's mask.

Why one conservative pass, and not the best set the cost allows: the block is
estimated from a sample. From batch gradients (2,048 rows in batches of 32:
64) it has rank 64 for an FFN layer of 1,536 neurons; per-row gradients give
it rank up to 2,048, still an estimate. A free optimisation of
`cost(P)` (a greedy construction from scratch, then swaps until none helps)
finds sets whose summed gradient is nearly orthogonal to those 64 samples:
near-zero cost on the sample, but not on the data. On a fine-tuned MiniLM
that moved SST-2 dev accuracy by -2.5 to +0.4 points depending on the sample
seed. Exchanges anchored in the importance order change few units, each only
where the sample shows a real interaction.
"""

import numpy as np


def fisher_cost(grads, pruned):
    """`mean_b (sum_{i in pruned} grads[b, i])^2` for a boolean `pruned` over the layer's units."""
    return float(np.mean(np.square(grads[:, pruned].sum(axis=1))))


def _exchange_pass(grads, pruned):
    """One pass of exchanges over the kept units, least important (diagonal Fisher) first.

    Works on the layer's Fisher block `F = G^T G / n`, formed once: adding unit `u` to a set `S` raises the cost
    by `2 sum_{j in S} F[u, j] + F[u, u]`, and removing `c` lowers it by `2 sum_{j in S} F[c, j] - F[c, c]`, so
    keeping `sum_{j in S} F[:, j]` up to date makes each exchange cost `O(units)` whatever the sample size.
    """
    fisher = grads.T @ grads / len(grads)  # (U, U)
    own = np.diag(fisher).copy()
    members = list(np.flatnonzero(pruned))
    linked = fisher[:, members].sum(axis=1)  # (U,) each unit's Fisher summed over the pruned set
    cost = float(linked[members].sum())
    for unit in np.flatnonzero(~pruned)[np.argsort(own[~pruned], kind="stable")]:
        cost += 2.0 * linked[unit] + own[unit]
        linked += fisher[:, unit]
        candidates = np.array([*members, int(unit)])
        without = cost - 2.0 * linked[candidates] + own[candidates]  # (P + 1,) cost without each
        drop = int(np.argmin(without))
        if without[-1] <= without[drop]:  # a tie keeps the set as it was
            drop = len(candidates) - 1
        linked -= fisher[:, candidates[drop]]
        cost = float(without[drop])
        members = [*candidates[:drop], *candidates[drop + 1:]]
    result = np.zeros(len(pruned), dtype=bool)
    result[members] = True
    return result


def rearrange_layer(mask, grads):
    """A mask keeping as many units as `mask` (`[units]`, non-zero = kept) with a Fisher cost no higher.

    Args:
        mask: the layer's mask from the search.
        grads: the layer's gate gradients, `[n, units]` (per row or per batch).

    Returns:
        `(new mask [units] 0/1 float32, cost before, cost after)`.
    """
    grads = np.asarray(grads, dtype=np.float64)
    start = np.asarray(mask) == 0
    before = fisher_cost(grads, start)
    if start.sum() in (0, len(start)):
        return (~start).astype(np.float32), before, before
    pruned = _exchange_pass(grads, start)
    after = fisher_cost(grads, pruned)
    if after > before:  # rounding; the search's mask stands
        pruned, after = start, before
    return (~pruned).astype(np.float32), before, after


def rearrange(mask, grads):
    """`rearrange_layer` for every layer: `mask [L, U]`, `grads [n, L, U]` -> `(mask, costs)`.

    `costs` is a list of `(before, after)` per layer.
    """
    rows, costs = [], []
    for layer in range(mask.shape[0]):
        row, before, after = rearrange_layer(mask[layer], grads[:, layer, :])
        rows.append(row)
        costs.append((before, after))
    return np.stack(rows), costs
