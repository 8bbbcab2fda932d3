"""Global mask search: how many heads and neurons to keep, and which, under a MAC or latency budget.

Both searches keep the most important units of each kind (importance is
the diagonal Fisher, higher kept) and choose the split between heads and
neurons that maximises the kept importance within the budget.
"""

import numpy as np


def _ranked(importance):
    """Flat indices from most to least important, and the cumulative importance of the top k (k = 0..n)."""
    flat = np.asarray(importance, dtype=np.float64).ravel()
    order = np.argsort(-flat, kind="stable")
    return order, np.concatenate([[0.0], np.cumsum(flat[order])])


def _top_mask(shape, order, count):
    mask = np.zeros(int(np.prod(shape)), dtype=np.float32)
    mask[order[:count]] = 1.0
    return mask.reshape(shape)


def search_mac(head_importance, neuron_importance, head_cost, neuron_cost, budget):
    """Binary masks maximising kept importance with `heads * head_cost + neurons * neuron_cost <= budget`.

    Every head costs the same and every neuron costs the same (see
    `efficiency.mac`), so for a given number of heads the best choice is the
    most important heads plus as many of the most important neurons as the
    rest of the budget pays for; trying every head count makes the split
    optimal.

    Args:
        head_importance: `[L, H]`, non-negative.
        neuron_importance: `[L, F]`, non-negative.
        head_cost, neuron_cost: MACs of one head and one neuron.
        budget: MACs allowed for all kept heads and neurons.

    Returns:
        `(head_mask [L, H], neuron_mask [L, F])` of 0/1 float32.
    """
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got budget={budget}")
    head_order, head_gain = _ranked(head_importance)
    neuron_order, neuron_gain = _ranked(neuron_importance)
    heads = np.arange(len(head_order) + 1)
    left = budget - heads * head_cost
    heads, left = heads[left >= 0], left[left >= 0]
    neurons = np.minimum(len(neuron_order), np.floor(left / neuron_cost).astype(np.int64))
    best = int(np.argmax(head_gain[heads] + neuron_gain[neurons]))
    return (_top_mask(np.shape(head_importance), head_order, heads[best]),
            _top_mask(np.shape(neuron_importance), neuron_order, neurons[best]))


def _prefix_layer_counts(order, units_per_layer, num_layers):
    """`counts[k, l]`: how many of the top k units lie in layer l (k = 0..n)."""
    onehot = np.zeros((len(order) + 1, num_layers), dtype=np.int64)
    onehot[np.arange(1, len(order) + 1), order // units_per_layer] = 1
    return np.cumsum(onehot, axis=0)


def search_latency(head_importance, neuron_importance, latency, budget):
    """Binary masks maximising kept importance with estimated latency `<= budget`.

    `latency` is an `efficiency.latency.LatencyModel`: a block's attention
    (FFN) latency depends on how many heads (neurons) it keeps, and is zero
    when it keeps none. Its estimate grows with the count, so for every
    number of top heads the search keeps the largest number of top neurons
    that fits (a binary search), and returns the best split.

    Returns:
        `(head_mask [L, H], neuron_mask [L, F])` of 0/1 float32.
    """
    num_layers, num_heads = np.shape(head_importance)
    dff = np.shape(neuron_importance)[1]
    head_order, head_gain = _ranked(head_importance)
    neuron_order, neuron_gain = _ranked(neuron_importance)
    head_cost = latency.sublayer("head", _prefix_layer_counts(head_order, num_heads, num_layers)).sum(axis=1)  # (nh+1,)
    neuron_cost = latency.sublayer("neuron", _prefix_layer_counts(neuron_order, dff, num_layers)).sum(axis=1)
    neuron_cost = np.maximum.accumulate(neuron_cost)  # guards against a non-monotone model
    best, choice = -np.inf, None
    for heads in range(len(head_order) + 1):
        left = budget - head_cost[heads]
        if left < 0:
            continue
        neurons = int(np.searchsorted(neuron_cost, left, side="right")) - 1
        if head_gain[heads] + neuron_gain[neurons] > best:
            best, choice = head_gain[heads] + neuron_gain[neurons], (heads, neurons)
    if choice is None:
        raise ValueError(f"latency budget {budget:.4g} ms is below the cheapest mask's estimate")
    return (_top_mask(np.shape(head_importance), head_order, choice[0]),
            _top_mask(np.shape(neuron_importance), neuron_order, choice[1]))
