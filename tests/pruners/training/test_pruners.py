"""Pruners on micro models: movement from the train step's gradients, SPT's rewards and exploration."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from callbacks import PruningCallback
from gated import get_weight_masks
from pruners import (
    MagnitudePruner,
    MovementPruner,
    PolynomialSchedule,
    SptPruner,
    follow_magnitudes,
    initial_rewards,
    magnitude,
    masks_for_sparsity,
    movement,
    movement_update,
    scaled_spt_epsilon,
)

NEVER = PolynomialSchedule(0.0, 0.5, begin_step=10_000, end_step=20_000)  # trains without pruning


def _data(micro_batch, repeats=4):
    x = {key: np.tile(value, (repeats, 1)) for key, value in micro_batch.items()}
    return x, np.tile(np.array([0, 1, 1]), repeats)


def _compile(model, learning_rate=1e-2):
    model.compile(keras.optimizers.SGD(learning_rate), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_movement_ranks_by_accumulated_movement_not_magnitude():
    weights = {"w": np.array([[2.0, 0.1, -1.0, 0.5]])}
    scores = {"w": np.zeros((1, 4))}
    # The large weights shrink towards zero, the small ones grow away from it.
    for gradient in (np.array([[0.5, -0.3, -0.4, -0.2]]), np.array([[0.4, -0.2, -0.5, -0.1]])):
        scores = {"w": movement_update(scores["w"], weights["w"], gradient)}
    np.testing.assert_allclose(scores["w"], [[-1.8, 0.05, -0.9, 0.15]])
    by_movement = masks_for_sparsity(movement(weights, scores), {"w": np.ones((1, 4))}, 0.5)
    by_magnitude = masks_for_sparsity(magnitude(weights), {"w": np.ones((1, 4))}, 0.5)
    np.testing.assert_array_equal(by_movement["w"], [[0, 1, 0, 1]])
    np.testing.assert_array_equal(by_magnitude["w"], [[1, 0, 1, 0]])


def test_movement_scores_come_from_the_train_steps_gradients(micro_model, micro_batch):
    x, y = _data(micro_batch, repeats=1)
    _compile(micro_model, learning_rate=0.0)  # weights stay put, so two steps double one step's movement
    pruner = MovementPruner()
    micro_model.fit(x, y, batch_size=3, epochs=2, verbose=0, callbacks=[PruningCallback(pruner, NEVER)])
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    layer = micro_model.get_layer("block_1").ffn.intermediate
    with tf.GradientTape() as tape:
        loss = loss_fn(y, micro_model(x, training=True))
    gradient = tape.gradient(loss, layer.kernel)
    expected = -2 * layer.kernel.numpy() * gradient.numpy()
    scores = pruner.scores(pruner.kernels())["block_1/ffn/intermediate"]
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-9)
    assert np.abs(expected).max() > 0


@pytest.mark.parametrize("pruner_class", [MovementPruner, SptPruner])
def test_training_a_hooked_pruner_without_its_callback_fails_loudly(micro_model, micro_batch, pruner_class):
    x, y = _data(micro_batch)
    _compile(micro_model)
    pruner = pruner_class()
    micro_model.fit(x, y, batch_size=3, verbose=0, callbacks=[PruningCallback(pruner, NEVER)])
    with pytest.raises(RuntimeError, match=f"the {pruner.method} pruner .* PruningCallback"):
        micro_model.fit(x, y, batch_size=3, verbose=0)
    pruner.detach()
    micro_model.fit(x, y, batch_size=3, verbose=0)  # detached: plain training again


def test_hooked_pruners_need_a_gated_model(micro_model):
    plain = keras.Model(micro_model.inputs, micro_model.outputs)
    with pytest.raises(TypeError, match=r"needs a GatedModel \(build_gated_encoder\), got Functional"):
        MovementPruner().attach(plain)
    with pytest.raises(RuntimeError, match="not attached"):
        MagnitudePruner().prune(0.5)
    with pytest.raises(ValueError, match="unknown pruning scope 'rows'"):
        MagnitudePruner(scope="rows")


def _spt_after_one_step(model, micro_batch, **kwargs):
    x, y = _data(micro_batch, repeats=1)
    _compile(model)
    pruner = SptPruner(**kwargs)
    model.fit(x, y, batch_size=3, verbose=0, callbacks=[PruningCallback(pruner, NEVER)])
    pruner.start()
    return pruner


def test_spt_reward_update_on_a_constructed_probe(micro_model, micro_batch, monkeypatch):
    pruner = _spt_after_one_step(micro_model, micro_batch, epsilon=0.05, alpha=0.25)
    pruner.rewards = {path: np.full(w.shape, 0.6) for path, w in pruner.kernels().items()}
    probes = []

    def probe_loss(inputs, labels, removed=None):
        probes.append(removed)
        return 1.0 if removed is None else 1.5  # every probe raises the loss by 0.5

    monkeypatch.setattr(pruner, "probe_loss", probe_loss)
    pruner.explore({path: np.ones(w.shape) for path, w in pruner.kernels().items()})
    removed = probes[1]
    for path, rewards in pruner.rewards.items():
        np.testing.assert_allclose(rewards[removed[path]], 0.75 * 0.6 + 0.25 * 0.5)
        np.testing.assert_allclose(rewards[~removed[path]], 0.6)
    assert pruner.last_exploration["mean_reward_sample"] == pytest.approx(0.5)


def test_spt_without_exploration_prunes_by_the_current_magnitudes(micro_model, micro_batch):
    pruner = _spt_after_one_step(micro_model, micro_batch, epsilon=0.0)
    initial = pruner.kernels()
    pruner.prune(0.5)
    reference = masks_for_sparsity(magnitude(initial), {p: np.ones(w.shape) for p, w in initial.items()}, 0.5)
    masks = get_weight_masks(micro_model)
    assert all(np.array_equal(masks[p], reference[p]) for p in masks)
    # The rewards move with the weights: the next event ranks by the new magnitudes, not the first event's.
    rng = np.random.default_rng(1)
    for layer in micro_model._flatten_layers():
        if hasattr(layer, "kernel_mask"):
            layer.kernel.assign(rng.normal(size=layer.kernel.shape))
    pruner.prune(0.8)
    now = masks_for_sparsity(magnitude(pruner.kernels()), reference, 0.8)
    frozen = masks_for_sparsity(initial_rewards(initial), reference, 0.8)
    masks = get_weight_masks(micro_model)
    assert all(np.array_equal(masks[p], now[p]) for p in masks)
    assert not all(np.array_equal(masks[p], frozen[p]) for p in masks)


def test_spt_rewards_keep_what_exploration_learned_as_the_weights_move():
    before = {"w": np.array([0.5, 1.0, 0.2])}
    explored = {"w": np.array([0.1, 1.0, 0.2])}  # the first weight's probe said it matters little
    now = {"w": np.array([0.7, 0.9, 0.4])}
    np.testing.assert_allclose(follow_magnitudes(explored, before, now)["w"], [0.3, 0.9, 0.4])
    assert follow_magnitudes(None, None, now)["w"] is now["w"]


@pytest.mark.parametrize("per_layer", [False, True])
def test_spt_explores_a_fraction_globally_or_per_layer(micro_model, micro_batch, monkeypatch, per_layer):
    pruner = _spt_after_one_step(micro_model, micro_batch, epsilon=0.1, explore_per_layer=per_layer)
    pruner.rewards = initial_rewards(pruner.kernels())
    masks = {path: np.ones(w.shape) for path, w in pruner.kernels().items()}
    first = sorted(masks)[0]
    masks[first][:, ::2] = 0  # half of one layer already pruned: only live weights are sampled
    probes = []
    real_probe = pruner.probe_loss

    def recording_probe(inputs, labels, removed=None):
        probes.append(removed)
        return real_probe(inputs, labels, removed)

    monkeypatch.setattr(pruner, "probe_loss", recording_probe)
    pruner.explore(masks)
    removed = probes[1:]
    for probe in removed:
        for path, drop in probe.items():
            assert not np.any(drop & (masks[path] == 0))
    if per_layer:
        assert [list(probe) for probe in removed] == [[path] for path in sorted(masks)]
        for probe in removed:
            ((path, drop),) = probe.items()
            assert drop.sum() == np.ceil(0.1 * masks[path].sum())
    else:
        (probe,) = removed
        assert set(probe) == set(masks)
        assert sum(drop.sum() for drop in probe.values()) == np.ceil(0.1 * sum(m.sum() for m in masks.values()))
    assert pruner.last_exploration["probes"] == len(removed)


def _spt_masks(micro_batch, seed):
    from conftest import MICRO
    from gated import build_gated_encoder

    keras.utils.set_random_seed(0)
    model = build_gated_encoder(**MICRO, num_labels=2)
    pruner = _spt_after_one_step(model, micro_batch, epsilon=0.2, seed=seed)
    pruner.prune(0.5)
    pruner.prune(0.7)
    return get_weight_masks(model)


def test_spt_is_reproducible_with_a_fixed_seed(micro_batch):
    first, again, other = (_spt_masks(micro_batch, seed) for seed in (3, 3, 4))
    assert all(np.array_equal(first[p], again[p]) for p in first)
    assert not all(np.array_equal(first[p], other[p]) for p in first)


def test_spt_epsilon_is_scaled_down_only_above_the_tiny_preset():
    assert scaled_spt_epsilon(0.0025, 1_048_576) == 0.0025  # tiny
    assert scaled_spt_epsilon(0.0025, 1_000) == 0.0025
    assert scaled_spt_epsilon(0.0025, 4 * 1_048_576) == pytest.approx(0.0025 / 4)


def test_spt_epsilon_for_the_base_preset_matches_the_readme():
    import re

    from conftest import REPO

    figure = re.search(r"for base,\s+0\.0025 becomes ([0-9.]*[0-9])", (REPO / "README.md").read_text()).group(1)
    base = 12 * (4 * 768**2 + 2 * 768 * 3072)
    assert f"{scaled_spt_epsilon(0.0025, base):.{len(figure) - 2}f}" == figure  # as rounded in the README
