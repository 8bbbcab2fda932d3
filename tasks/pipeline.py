"""`tf.data` pipelines that bucket by length so batches carry little padding."""

import numpy as np
import tensorflow as tf

_BOUNDARY_CANDIDATES = (8, 16, 24, 32, 40, 48, 64, 80, 96, 128, 160, 192, 256, 320, 384, 512)
_PREFETCH = 2  # batches ready ahead of the model


def without_autotune(data):
    """`data` with tf.data's autotuning off.

    With it on, every iterator starts a thread that re-tunes the pipeline at
    periods doubling from 10 ms, and under TensorFlow 2.21 deleting the
    iterator waits for that thread's current sleep to end: an epoch of
    `model.fit`, a dev pass or a `for` loop over the dataset then ends only at
    the next `10 ms * (2^k - 1)` (20.47 s, 40.95 s, 81.91 s ...): up to twice
    its time, or 60 s more once the period has reached its cap (MiniLM
    training epochs of 27 to 30 s took 40.95 s in about half of them).
    Our pipelines slice pre-tokenized arrays and have nothing worth tuning.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return data.with_options(options)


def bucket_boundaries(max_len):
    """Length boundaries for bucketing: fine where GLUE sentences are, coarse beyond."""
    return [b for b in _BOUNDARY_CANDIDATES if b < max_len]


def count_batches(lengths, batch_size, boundaries):
    """Exact batches per epoch under bucketing: each bucket flushes its remainder at the end."""
    buckets = np.searchsorted(boundaries, lengths, side="right")
    counts = np.bincount(buckets, minlength=len(boundaries) + 1)
    return int(np.sum(-(-counts // batch_size)))


def make_dataset(split, batch_size, *, shuffle, seed=None, dynamic_padding=True, max_len=128, pad_id=0,
                 epochs_drawn=None):
    """Batches of `({input_ids, token_type_ids, attention_mask}, label)` from a `TokenizedSplit`.

    With `dynamic_padding`, examples are grouped into length buckets and each
    batch is padded only to its longest member; otherwise every batch is
    padded to `max_len`. TensorFlow's autotuning is off (`without_autotune`).

    Shuffling is seeded and differs every epoch: each pass over the dataset
    (each iterator) draws the next order, the permutation of draw `d` being a
    function of `(seed, d)` alone. `epochs_drawn` (an int64 `tf.Variable`,
    else one of the dataset's own) counts the draws; a run resumed after `k`
    epochs sets it to `k` and gets the orders of the epochs it has left.
    """
    n = len(split)
    if n == 0:
        raise ValueError("cannot make a dataset from an empty split")
    flat_ids = tf.constant(split.input_ids)
    flat_types = tf.constant(split.token_type_ids)
    columns = (tf.constant(split.offsets[:-1]), tf.constant(split.lengths), tf.constant(split.labels))
    if shuffle:
        drawn = epochs_drawn if epochs_drawn is not None else tf.Variable(0, dtype=tf.int64, trainable=False)
        key = tf.constant(np.random.default_rng().integers(2**31) if seed is None else seed, tf.int64)

        def shuffled(_):  # once per pass: the columns permuted at once, not row by row
            draw = drawn.assign_add(1) - 1
            order = tf.argsort(tf.random.stateless_uniform([n], tf.stack([key, draw])))
            return tf.data.Dataset.from_tensor_slices(tuple(tf.gather(column, order) for column in columns))

        data = tf.data.Dataset.from_tensors(0).flat_map(shuffled)
    else:
        data = tf.data.Dataset.from_tensor_slices(columns)

    def to_example(start, length, label):
        ids = flat_ids[start : start + length]  # (T,)
        features = {
            "input_ids": ids,
            "token_type_ids": flat_types[start : start + length],
            "attention_mask": tf.ones_like(ids),
        }
        return features, label

    data = data.map(to_example)  # slicing: too cheap to run in parallel
    padding = ({"input_ids": pad_id, "token_type_ids": 0, "attention_mask": 0}, tf.constant(0, split.labels.dtype))
    if dynamic_padding:
        boundaries = bucket_boundaries(max_len)
        data = data.bucket_by_sequence_length(
            lambda features, label: tf.shape(features["input_ids"])[0],
            boundaries,
            [batch_size] * (len(boundaries) + 1),
            padding_values=padding,
        )
        num_batches = count_batches(split.lengths, batch_size, boundaries)
    else:
        shapes = ({key: [max_len] for key in padding[0]}, [])
        data = data.padded_batch(batch_size, padded_shapes=shapes, padding_values=padding)
        num_batches = -(-n // batch_size)
    data = data.apply(tf.data.experimental.assert_cardinality(num_batches))
    return without_autotune(data.prefetch(_PREFETCH))
