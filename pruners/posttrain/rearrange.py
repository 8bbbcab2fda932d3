"""Mask rearrangement: per layer, which units to keep given how many (Kwon et al., NeurIPS 2022).

The search ranks units by their own Fisher importance and ignores how units
of one layer interact. Within a layer, the loss increase from pruning the set
`P` is estimated with the layer's block of the empirical Fisher information,
from the per-batch gate gradients `G` (`[batches, units]`):

    cost(P) = mean_b (sum_{i in P} G[b, i])^2  =  1_P^T (G^T G / batches) 1_P

Rearrangement keeps the layer's count and looks for a pruned set with a lower
cost: a greedy construction (add the unit that raises the cost least), then
swaps of one pruned and one kept unit while a swap lowers the cost. The
result is never worse than the mask it starts from.
"""

import numpy as np


def fisher_cost(grads, pruned):
    """`mean_b (sum_{i in pruned} grads[b, i])^2` for a boolean `pruned` over the layer's units."""
    return float(np.mean(np.square(grads[:, pruned].sum(axis=1))))


def _greedy_pruned(grads, count):
    """Pruned set of `count` units built one at a time, each time adding the unit that raises the cost least."""
    batches, units = grads.shape
    pruned = np.zeros(units, dtype=bool)
    running = np.zeros(batches)  # (B,) sum of the pruned units' gradients
    own = np.mean(np.square(grads), axis=0)  # (U,) diagonal of the Fisher block
    for _ in range(count):
        increase = 2.0 * (running @ grads) / batches + own  # (U,)
        increase[pruned] = np.inf
        unit = int(np.argmin(increase))
        pruned[unit] = True
        running += grads[:, unit]
    return pruned


def _improve_by_swaps(grads, pruned, max_swaps):
    """Apply the best cost-lowering swap (one pruned unit back, one kept unit out) until none lowers the cost."""
    batches = grads.shape[0]
    fisher = grads.T @ grads / batches  # (U, U)
    own = np.diag(fisher)
    pruned = pruned.copy()
    for _ in range(max_swaps):
        out, kept = np.flatnonzero(pruned), np.flatnonzero(~pruned)
        if not len(out) or not len(kept):
            break
        pull = fisher[:, pruned].sum(axis=1)  # (U,) = F 1_P
        # Cost change of swapping pruned unit i for kept unit j: F_ii + F_jj - 2 F_ij - 2 (F1_P)_i + 2 (F1_P)_j
        change = (own[out][:, None] + own[kept][None, :] - 2.0 * fisher[np.ix_(out, kept)]
                  - 2.0 * pull[out][:, None] + 2.0 * pull[kept][None, :])  # (|P|, |K|)
        i, j = np.unravel_index(int(np.argmin(change)), change.shape)
        if change[i, j] >= -1e-12 * max(float(np.abs(own).max()), 1e-30):
            break
        pruned[out[i]], pruned[kept[j]] = False, True
    return pruned


def rearrange_layer(mask, grads, max_swaps=None):
    """A mask keeping as many units as `mask` (`[units]`, non-zero = kept) with a Fisher cost no higher.

    Args:
        mask: the layer's mask from the search.
        grads: the layer's per-batch gate gradients, `[batches, units]`.
        max_swaps: cap on improving swaps (default: the number of units, at most 256).

    Returns:
        `(new mask [units] 0/1 float32, cost before, cost after)`.
    """
    grads = np.asarray(grads, dtype=np.float64)
    start = np.asarray(mask) == 0
    count = int(start.sum())
    if count in (0, len(start)):
        cost = fisher_cost(grads, start)
        return (~start).astype(np.float32), cost, cost
    greedy = _greedy_pruned(grads, count)
    pruned = greedy if fisher_cost(grads, greedy) < fisher_cost(grads, start) else start
    pruned = _improve_by_swaps(grads, pruned, min(len(start), 256) if max_swaps is None else max_swaps)
    before, after = fisher_cost(grads, start), fisher_cost(grads, pruned)
    if after > before:  # rounding in the swap step; the search's mask stands
        pruned, after = start, before
    return (~pruned).astype(np.float32), before, after


def rearrange(mask, grads, max_swaps=None):
    """`rearrange_layer` for every layer: `mask [L, U]`, `grads [batches, L, U]` -> `(mask, costs)`.

    `costs` is a list of `(before, after)` per layer.
    """
    rows, costs = [], []
    for layer in range(mask.shape[0]):
        row, before, after = rearrange_layer(mask[layer], grads[:, layer, :], max_swaps)
        rows.append(row)
        costs.append((before, after))
    return np.stack(rows), costs
