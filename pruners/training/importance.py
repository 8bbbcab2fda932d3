"""Importance criteria. Each has one signature: `criterion(weights, state=None) -> scores`.

`weights` and `scores` are `{path: array}` dicts; higher scores are kept.
The update rules that build a criterion's state during training (movement's
accumulation, SPT's reward blending) live here too, as plain array maths.
"""

import math

import numpy as np


def magnitude(weights, state=None):
    """`|W|`: small weights matter least."""
    return {path: np.abs(w) for path, w in weights.items()}


def movement(weights, state):
    """Accumulated movement `S = -sum_t W_t * dL/dW_t`: weights moving away from zero score high
    (hard movement pruning, Sanh et al. 2020). `state` is `{path: S}`."""
    return _state_scores("movement", weights, state)


def movement_update(scores, weights, gradients):
    """One training step's movement: `S - W * dL/dW` (numpy arrays or tensors alike)."""
    return scores - weights * gradients


def reward(weights, state):
    """SPT: the current reward estimate of each weight. `state` is `{path: R}`."""
    return _state_scores("reward", weights, state)


def initial_rewards(weights, scope="global"):
    """SPT's starting rewards: `|W|` divided by its maximum over all layers (`global`) or per layer."""
    scores = magnitude(weights)
    if scope == "layer":
        return {path: s / max(float(s.max()), 1e-12) for path, s in scores.items()}
    top = max((float(s.max()) for s in scores.values()), default=1.0)
    return {path: s / max(top, 1e-12) for path, s in scores.items()}


def follow_magnitudes(rewards, previous, current):
    """SPT's rewards moved with the weights between two pruning events: `R + (m_now - m_before)`, `m` the
    normalised magnitudes (`initial_rewards`). The first event (`rewards` None) starts from `current`.

    Without it a reward would keep the magnitude its weight had at the first event, which on a run that starts
    pruning at once is the random initialisation: every later event would prune by it.
    """
    if rewards is None:
        return dict(current)
    return {path: rewards[path] + current[path] - previous[path] for path in current}


def blend_rewards(rewards, probed, sample, alpha):
    """`R = (1 - alpha) * R + alpha * r` for the probed weights (a boolean array), others unchanged."""
    return np.where(probed, (1.0 - alpha) * rewards + alpha * sample, rewards)


def exploration_count(active, epsilon):
    """How many of `active` live weights an exploration with fraction `epsilon` probes (at least one
    whenever `epsilon > 0` and a weight is alive)."""
    return min(active, math.ceil(epsilon * active)) if epsilon > 0 else 0


def _state_scores(name, weights, state):
    """Scores kept in `state` (one per layer of `weights`), as arrays."""
    missing = sorted(set(weights) - set(state or {}))
    if missing:
        raise ValueError(f"the {name} criterion needs a score for every layer; missing {missing}")
    return {path: np.asarray(state[path]) for path in weights}
