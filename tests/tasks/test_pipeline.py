import numpy as np
import pytest
import tensorflow as tf

from tasks import TokenizedSplit
from tasks.pipeline import bucket_boundaries, count_batches, make_dataset, without_autotune


def synthetic_split(n=300, seed=0, max_len=64):
    """Rows whose ids encode (row index, position) so every token can be traced back."""
    rng = np.random.default_rng(seed)
    lengths = np.minimum(rng.geometric(1 / 14, size=n) + 2, max_len)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    ids = np.concatenate([np.full(length, row + 1) for row, length in enumerate(lengths)]).astype("int32")
    types = np.concatenate([(np.arange(length) >= length // 2) for length in lengths]).astype("int32")
    return TokenizedSplit(ids, types, offsets, np.arange(n, dtype="int64"))


def collect(dataset):
    return [(features, labels) for features, labels in dataset.as_numpy_iterator()]


def test_every_example_appears_once_intact():
    split = synthetic_split()
    batches = collect(make_dataset(split, 32, shuffle=True, seed=1, max_len=64))
    seen = np.concatenate([labels for _, labels in batches])
    assert sorted(seen.tolist()) == list(range(len(split)))
    for features, labels in batches:
        for row, label in enumerate(labels):
            length = split.lengths[label]
            assert np.all(features["input_ids"][row, :length] == label + 1)
            assert np.all(features["input_ids"][row, length:] == 0)
            assert features["attention_mask"][row].sum() == length
            expected_types = split.token_type_ids[split.offsets[label]:split.offsets[label + 1]]
            np.testing.assert_array_equal(features["token_type_ids"][row, :length], expected_types)


def test_bucketing_pads_far_less_than_max_len():
    split = synthetic_split()
    bucketed = collect(make_dataset(split, 32, shuffle=True, seed=1, max_len=128))
    padded = collect(make_dataset(split, 32, shuffle=True, seed=1, max_len=128, dynamic_padding=False))
    real = split.lengths.sum()
    bucketed_cells = sum(f["input_ids"].size for f, _ in bucketed)
    assert all(f["input_ids"].shape[1] == 128 for f, _ in padded)
    assert bucketed_cells < 1.5 * real  # little padding left
    assert sum(f["input_ids"].size for f, _ in padded) > 4 * bucketed_cells


def test_batch_count_is_exact_and_declared():
    split = synthetic_split()
    dataset = make_dataset(split, 16, shuffle=True, seed=3, max_len=64)
    batches = collect(dataset)
    assert int(dataset.cardinality()) == len(batches)
    assert count_batches(split.lengths, 16, bucket_boundaries(64)) == len(batches)
    assert all(len(labels) <= 16 for _, labels in batches)


def test_shuffling_is_seeded_and_changes_each_epoch():
    split = synthetic_split()

    def order(seed):
        dataset = make_dataset(split, 32, shuffle=True, seed=seed, max_len=64)
        return [np.concatenate([y for _, y in collect(dataset)]) for _ in range(2)]

    first, again = order(7), order(7)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], first[1])
    assert not np.array_equal(first[0], order(8)[0])


def test_unshuffled_dataset_is_deterministic():
    split = synthetic_split()
    a = np.concatenate([y for _, y in collect(make_dataset(split, 32, shuffle=False, max_len=64))])
    b = np.concatenate([y for _, y in collect(make_dataset(split, 32, shuffle=False, max_len=64))])
    np.testing.assert_array_equal(a, b)


def test_empty_split_is_rejected():
    empty = TokenizedSplit(np.zeros(0, "int32"), np.zeros(0, "int32"), np.zeros(1, "int64"), np.zeros(0, "int64"))
    with pytest.raises(ValueError, match="empty split"):
        make_dataset(empty, 8, shuffle=False)


@pytest.mark.parametrize("dynamic_padding", [True, False])
def test_datasets_run_without_autotuning_also_after_more_stages(dynamic_padding):
    # Autotuning's thread makes deleting an iterator wait up to the epoch's own length (see without_autotune).
    dataset = make_dataset(synthetic_split(), 32, shuffle=True, seed=1, dynamic_padding=dynamic_padding)
    assert dataset.options().autotune.enabled is False
    assert dataset.cache().take(2).options().autotune.enabled is False
    plain = tf.data.Dataset.range(3)
    assert plain.options().autotune.enabled is not False  # TensorFlow's default: on
    assert without_autotune(plain).options().autotune.enabled is False
