"""The Lagrangian controller that learned masks (gumbel, soft movement) use to reach a target sparsity.

The term is `l1 * (s - t) + l2 * (s - t)**2`, `s` the sparsity the masks reach and `t` the target. The
multipliers `l1`, `l2` are trained by gradient *ascent*, so they grow for as long as `s` misses `t`. `s` is the
sparsity of the *binary* masks (what evaluation uses) with the gradient of an expected sparsity
(straight-through): an expected sparsity alone is met by every keep-probability sitting at `1 - t` while the
binary masks are all on or all off. While a target ramps up the binary masks lag behind it, so `l1` keeps
growing the same way and, left alone, carries `s` far past `t`; `l1` therefore restarts from 0 whenever
`s - t` changes sign (anti-windup), and `l2` is kept.
"""

import keras
from keras import ops


def lagrangian_term(sparsity, target, lambda1, lambda2):
    """`lambda1 * (s - t) + lambda2 * (s - t)**2` for a sparsity `s` and a target `t`."""
    gap = sparsity - target
    return lambda1 * gap + lambda2 * gap * gap


def straight_through(value, gradient_of):
    """`value` in the forward pass, the gradient of `gradient_of` in the backward pass."""
    return gradient_of + ops.stop_gradient(value - gradient_of)


def multiplier_variables(name):
    """`(multipliers [l1, l2], the last gap)`: the variables of one controller, both starting at 0."""
    return (keras.Variable([0.0, 0.0], name=f"lagrange_{name}"),
            keras.Variable(0.0, trainable=False, name=f"gap_{name}"))


def controller_term(sparsity, target, multipliers, previous_gap):
    """One controller's Lagrangian (`multipliers` `[l1, l2]`), `l1` first restarted from 0 if `s - t` has
    changed sign since `previous_gap`, which then records this step's gap."""
    gap = ops.stop_gradient(sparsity - target)
    crossed = ops.cast(gap * previous_gap < 0.0, "float32")
    multipliers.assign(multipliers * ops.stack([1.0 - crossed, 1.0]))
    previous_gap.assign(gap)
    return lagrangian_term(sparsity, target, multipliers[0], multipliers[1])


def ramped(target, step, warmup_steps):
    """`target` at `step`: risen linearly from 0 over `warmup_steps` (0: the full target from the start)."""
    if not warmup_steps:
        return target
    return target * ops.minimum(ops.cast(step, "float32") / warmup_steps, 1.0)
