"""Token samples for the least-squares steps: which non-padding tokens to use, and gathering them."""

import numpy as np
import tensorflow as tf


def sample_token_rows(batches, max_tokens, seed):
    """Per batch, flat indices (`b * T + t`) of sampled non-padding tokens (at most `max_tokens` in all)."""
    valid = [np.flatnonzero(np.asarray(inputs["attention_mask"]).ravel()) for inputs, _ in batches]
    total = sum(len(rows) for rows in valid)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(total, size=min(max_tokens, total), replace=False))
    starts = np.cumsum([0] + [len(rows) for rows in valid])
    return [rows[chosen[(chosen >= lo) & (chosen < hi)] - lo]
            for rows, lo, hi in zip(valid, starts[:-1], starts[1:], strict=True)]


def gather_tokens(tensors, rows):
    """Stack the sampled tokens of per-batch `(B, T, ...)` tensors into `(N, ...)`."""
    flat = [tf.reshape(t, (-1, *t.shape[2:])) for t in tensors]
    return tf.concat([tf.gather(t, r) for t, r in zip(flat, rows, strict=True)], axis=0)
