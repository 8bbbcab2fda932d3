"""Structured pruning while training: unit scores, the MAC-target ranking and the structured pruners."""

import math

import keras
import numpy as np
import pytest

from callbacks import PruningCallback
from conftest import MICRO
from efficiency.mac import head_macs, neuron_macs
from gated import build_gated_encoder, get_head_gates, get_neuron_gates, structured_gates
from pruners import MagnitudePruner, MovementPruner, SptPruner, StepListSchedule
from pruners.training.units import head_scores, neuron_scores, units_to_keep

D, H, DFF, L, T = MICRO["d_model"], MICRO["num_heads"], MICRO["dff"], MICRO["num_layers"], 16
DH = D // H
COSTS = {"head": head_macs(D, DH, T), "neuron": neuron_macs(D, T)}
DENSE = L * (H * COSTS["head"] + DFF * COSTS["neuron"])


def test_head_and_neuron_scores_are_the_mean_over_their_weights():
    rng = np.random.default_rng(0)
    q, k, v = (rng.normal(size=(6, 4)) for _ in range(3))
    out = rng.normal(size=(4, 6))
    for head in range(2):  # head_dim 2: head h owns columns 2h, 2h+1 of q/k/v and rows 2h, 2h+1 of out
        owned = [q[:, 2 * head:2 * head + 2], k[:, 2 * head:2 * head + 2], v[:, 2 * head:2 * head + 2],
                 out[2 * head:2 * head + 2, :]]
        expected = sum(block.sum() for block in owned) / sum(block.size for block in owned)
        assert head_scores(q, k, v, out, 2)[head] == pytest.approx(expected)
    inter, down = rng.normal(size=(6, 5)), rng.normal(size=(5, 6))
    for neuron in range(5):
        expected = (inter[:, neuron].sum() + down[neuron].sum()) / 12
        assert neuron_scores(inter, down)[neuron] == pytest.approx(expected)


def test_units_to_keep_removes_the_cheapest_ranked_units_until_the_macs_are_reached():
    scores = {"head": np.array([[0.5, 0.1]]), "neuron": np.array([[0.3, 0.2, 0.4, 0.05]])}
    alive = {"head": np.array([[True, True]]), "neuron": np.array([[True, True, True, False]])}
    costs = {"head": 10, "neuron": 3}
    # Already removed: one neuron (3). Ranking of live units: head 1 (0.1), neuron 1 (0.2), neuron 0 (0.3), ...
    keep = units_to_keep(scores, alive, costs, 14)  # 3 + 10 = 13 < 14, so neuron 1 goes too: 16
    np.testing.assert_array_equal(keep["head"], [[True, False]])
    np.testing.assert_array_equal(keep["neuron"], [[True, False, True, False]])
    keep = units_to_keep(scores, alive, costs, 13)  # exactly reached by the head
    np.testing.assert_array_equal(keep["neuron"], [[True, True, True, False]])
    assert not keep["head"][0, 1]
    nothing = units_to_keep(scores, alive, costs, 2)  # already past: nothing more, nothing revived
    np.testing.assert_array_equal(nothing["neuron"], alive["neuron"])
    tie = units_to_keep({"neuron": np.array([[1.0, 1.0, 1.0]])}, {"neuron": np.ones((1, 3), bool)}, {"neuron": 1}, 2)
    np.testing.assert_array_equal(tie["neuron"], [[False, False, True]])  # ties: the earlier unit goes first


def _micro_run(pruner, levels, epochs=3, seed=0):
    """Train a micro encoder (no kernel masks) while `pruner` walks `levels`, one event per epoch end; the gates
    after every event."""
    keras.utils.set_random_seed(seed)
    model = build_gated_encoder(**MICRO, num_labels=2, kernel_masks=False)
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, MICRO["vocab_size"], size=(32, 8)).astype("int32")
    x = {"input_ids": ids, "token_type_ids": np.zeros_like(ids), "attention_mask": np.ones_like(ids)}
    y = (ids[:, 1] % 2).astype("int64")
    seen = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(structured_gates(model, ("head", "neuron")))

    # Batch 8: 4 steps an epoch, one level at each epoch end (a single level falls on the window's end).
    schedule = StepListSchedule(levels, 4 if len(levels) > 1 else 0, 4 * len(levels))
    model.fit(x, y, batch_size=8, epochs=epochs, verbose=0, callbacks=[PruningCallback(pruner, schedule), Record()])
    return model, seen


@pytest.mark.parametrize(("granularity", "kind"), [("neuron", "neuron"), ("head", "head")])
def test_one_kind_loses_exactly_the_units_the_mac_target_needs_at_every_step(granularity, kind):
    levels = [0.1, 0.25, 0.4]
    _, seen = _micro_run(MagnitudePruner(granularity=granularity, seq_len=T), levels)
    other = "head" if kind == "neuron" else "neuron"
    for gates, level in zip(seen, levels, strict=True):
        assert np.count_nonzero(gates[kind] == 0) == math.ceil(level * DENSE / COSTS[kind])
        assert np.all(gates[other] == 1)


def _reference_both(model, level, alive):
    """The units `both` keeps, computed here unit by unit: mean |W| per head and neuron, cheapest rank first."""
    ranked = []
    for block in range(L):
        attention = model.get_layer(f"block_{block}").attention
        ffn = model.get_layer(f"block_{block}").ffn
        for head in range(H):
            cols = slice(head * DH, (head + 1) * DH)
            weights = [np.abs(p.kernel.numpy()[:, cols]) for p in (attention.query, attention.key, attention.value)]
            weights.append(np.abs(attention.output_dense.kernel.numpy()[cols, :]))
            score = sum(w.sum() for w in weights) / sum(w.size for w in weights)
            ranked.append((score, 0, block, head))
        for neuron in range(DFF):
            score = (np.abs(ffn.intermediate.kernel.numpy()[:, neuron]).sum()
                     + np.abs(ffn.output_dense.kernel.numpy()[neuron]).sum()) / (2 * D)
            ranked.append((score, 1, block, neuron))
    kinds = ("head", "neuron")
    keep = {kind: alive[kind].copy() for kind in kinds}
    removed = sum(COSTS[kind] * np.count_nonzero(~alive[kind]) for kind in kinds)
    for _, kind_index, block, unit in sorted(ranked):
        kind = kinds[kind_index]
        if removed >= level * DENSE:
            break
        if keep[kind][block, unit]:
            keep[kind][block, unit] = False
            removed += COSTS[kind]
    return keep


def test_both_ranks_heads_and_neurons_together_and_never_revives_a_unit():
    pruner = MagnitudePruner(granularity="both", seq_len=T)
    model, seen = _micro_run(pruner, [0.2, 0.5], epochs=2)
    before = {kind: gate != 0 for kind, gate in seen[0].items()}
    assert all((seen[1][kind] != 0)[~before[kind]].sum() == 0 for kind in before)  # dead stays dead
    expected = _reference_both(model, 0.7, before)  # the next event, from the weights as they are now
    pruner.prune(0.7)
    gates = {"head": np.stack(list(get_head_gates(model).values())),
             "neuron": np.stack(list(get_neuron_gates(model).values()))}
    for kind in ("head", "neuron"):
        np.testing.assert_array_equal(gates[kind] != 0, expected[kind])
    assert np.count_nonzero(gates["head"] == 0) > 0 and np.count_nonzero(gates["neuron"] == 0) > 0
    assert 1 - pruner.macs_kept() >= 0.7
    assert 1 - pruner.macs_kept() - 0.7 < COSTS["head"] / DENSE  # one unit more would overshoot


def test_structured_movement_ranks_units_by_their_mean_movement():
    pruner = MovementPruner(granularity="neuron", seq_len=T)
    model, _ = _micro_run(pruner, [0.05], epochs=1)
    ffn = model.get_layer("block_0").ffn
    movement = pruner._movement
    scores = [(movement[ffn.intermediate.path].numpy()[:, n].sum() + movement[ffn.output_dense.path].numpy()[n].sum())
              / (2 * D) for n in range(DFF)]
    dead = np.flatnonzero(ffn.neuron_gate.numpy() == 0)
    live = np.flatnonzero(ffn.neuron_gate.numpy() != 0)
    assert dead.size > 0
    assert max(scores[n] for n in dead) <= min(scores[n] for n in live)


def test_structured_spt_probes_live_units_through_their_gates(monkeypatch):
    pruner = SptPruner(epsilon=0.1, granularity="both", seq_len=T, seed=1)
    model, seen = _micro_run(pruner, [0.2], epochs=1)
    alive = {kind: gate != 0 for kind, gate in seen[0].items()}
    probes, real = [], pruner.probe_units_loss

    def recording(inputs, labels, removed=None):
        probes.append(removed)
        loss = real(inputs, labels, removed)
        probes.append(structured_gates(model, ("head", "neuron")))  # restored after the probe
        return loss

    monkeypatch.setattr(pruner, "probe_units_loss", recording)
    rewards_before = {kind: value.copy() for kind, value in pruner.rewards.items()}
    magnitudes_before = {kind: value.copy() for kind, value in pruner.magnitudes.items()}
    pruner.prune(0.2)  # same target: no unit goes, but the probe runs
    removed = probes[2]
    live_count = sum(np.count_nonzero(mask) for mask in alive.values())
    assert sum(np.count_nonzero(drop) for drop in removed.values()) == math.ceil(0.1 * live_count)
    assert all(not np.any(removed[kind] & ~alive[kind]) for kind in removed)  # only live units are probed
    assert all(np.array_equal(probes[3][kind], seen[0][kind]) for kind in alive)  # gates put back
    # Between the two events the rewards moved with the weights; the probe then blended its sample into the probed
    # units alone: their reward is (1 - alpha) * followed + alpha * sample.
    sample = probes[::2]
    assert sample[0] is None and sample[1] is removed
    for kind in alive:
        followed = rewards_before[kind] + pruner.magnitudes[kind] - magnitudes_before[kind]
        np.testing.assert_allclose(pruner.rewards[kind][~removed[kind]], followed[~removed[kind]], rtol=1e-6)
        assert not np.allclose(pruner.rewards[kind][removed[kind]], followed[removed[kind]])


def test_weight_granularity_needs_kernel_masks_but_units_do_not():
    model = build_gated_encoder(**MICRO, num_labels=2, kernel_masks=False)
    with pytest.raises(ValueError, match="masks single weights.*kernel_masks=True"):
        MagnitudePruner().attach(model)
    MagnitudePruner(granularity="head").attach(model)
    with pytest.raises(ValueError, match="granularity 'rows'"):
        MagnitudePruner(granularity="rows")
    with pytest.raises(ValueError, match="use scope='global', got scope='layer'"):
        MagnitudePruner(scope="layer", granularity="both")
