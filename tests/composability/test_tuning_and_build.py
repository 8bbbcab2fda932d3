"""Module-level fine-tuning (the loss falls, pruned weights stay exactly zero) and composition (untuned units give
the dense model pruned with the same masks; tuned units put their own weights in)."""

import keras
import numpy as np
import pytest

from composability.configs import ComposeError, make_configurations, write_configurations
from composability.module_tuning import TuningRecipe, UnitTrainer, block_activations, embed, module_examples
from composability.pipeline import compose, prune_units, tune_units
from composability.scheme import make_scheme, units_of
from composability.units import SUBLAYERS, load_unit, prune_unit, read_index, save_unit
from conftest import MICRO, micro_sample_batches
from gated import build_gated_encoder, set_head_gates, set_neuron_gates, sparsity_stats

SOURCE = {"path": "micro", "weights_sha256": "0" * 64}


def _rows(seed, count):
    return [(x["input_ids"], x["token_type_ids"], x["attention_mask"]) for x, _ in
            micro_sample_batches(seed, count=count, size=4, length=6)]


def _scheme(tmp_path, attention, linear, method="l1"):
    conf = tmp_path / "conf.json"
    write_configurations(conf, make_configurations(attention, linear, len(attention), [0, 1]))
    return make_scheme(conf, linear_method=method)


@pytest.mark.parametrize("module, method", [("attention", "l1_heads"), ("ffn_intermediate", "l1"),
                                            ("ffn_output", "l1"), ("attention_output", "l1")])
def test_module_fine_tuning_lowers_the_loss_and_keeps_pruned_weights_at_zero(micro_model, module, method):
    block = micro_model.get_layer("block_0")
    unit = {"id": "u", "layer": 0, "module": module, "method": method, "rate": 0.5}
    arrays = prune_unit(block, unit)
    train, heldout = _rows(0, 4), _rows(1, 2)
    examples = [module_examples([block_activations(block, x, m)], [m], module)[0]
                for x, (_, _, m) in zip(embed(micro_model, train), train, strict=True)]
    held = [module_examples([block_activations(block, x, m)], [m], module)[0]
            for x, (_, _, m) in zip(embed(micro_model, heldout), heldout, strict=True)]
    trainer = UnitTrainer(block, unit, arrays, TuningRecipe(steps=60, learning_rate=3e-3, log_every=20), "u.npz")
    rows = trainer.train(examples, held)
    assert [row["step"] for row in rows] == [0, 20, 40, 60]
    assert rows[-1]["train_loss"] < 0.9 * rows[0]["train_loss"]
    assert rows[-1]["heldout_loss"] < rows[0]["heldout_loss"]
    tuned = trainer.arrays({})
    for name in SUBLAYERS[module]:
        mask = tuned[f"{name}/kernel_mask"]
        np.testing.assert_array_equal(mask, arrays[f"{name}/kernel_mask"])
        assert np.all(tuned[f"{name}/kernel"][mask == 0] == 0.0)  # exactly zero, never re-multiplied
        assert not np.allclose(tuned[f"{name}/kernel"][mask == 1], arrays[f"{name}/kernel"][mask == 1])


def _pruned_reference(dense, arrays_by_unit, units):
    """The dense model pruned with the units' masks by hand: kernels times masks, gates set (its own kernel masks
    left at ones)."""
    reference = build_gated_encoder(**MICRO, num_labels=2)
    reference.set_weights(dense.get_weights())
    for uid, unit in units.items():
        block = reference.get_layer(f"block_{unit['layer']}")
        arrays = arrays_by_unit[uid]
        for name, (owner, attribute) in SUBLAYERS[unit["module"]].items():
            layer = getattr(getattr(block, owner), attribute)
            layer.kernel.assign(layer.kernel.numpy() * arrays[f"{name}/kernel_mask"])
        if "head_gate" in arrays:
            set_head_gates(reference, {block.attention.path: arrays["head_gate"]})
        if "neuron_gate" in arrays:
            set_neuron_gates(reference, {block.ffn.path: arrays["neuron_gate"]})
    return reference


@pytest.mark.parametrize("method", ["l1", "l1_neurons"])
def test_composing_untuned_units_equals_the_dense_model_pruned_with_the_same_masks(tmp_path, micro_model, method):
    scheme = _scheme(tmp_path, [0.25, 0.5], [0.5, 0.3], method)
    prune_units(micro_model, scheme, tmp_path / "modules", SOURCE)
    index = read_index(tmp_path / "modules", scheme, SOURCE)
    inputs = micro_sample_batches(3, count=1)[0][0]
    for configuration in (0, 1):
        units = units_of(scheme, configuration)
        assert len(units) == 8
        arrays = {uid: load_unit(tmp_path / "modules", unit, index) for uid, unit in units.items()}
        composed = compose(micro_model, scheme, configuration, tmp_path / "modules", SOURCE)
        reference = _pruned_reference(micro_model, arrays, units)
        np.testing.assert_allclose(composed(inputs), reference(inputs), atol=1e-6)
        direct = compose(micro_model, scheme, configuration)  # pruned in memory: the baseline's start
        np.testing.assert_allclose(direct(inputs), composed(inputs), atol=1e-6)
    assert sparsity_stats(compose(micro_model, scheme, 0))["global_sparsity"] > 0.3  # and pruning did prune


def test_composing_tuned_units_puts_each_units_weights_in_its_module(tmp_path, micro_model):
    scheme = _scheme(tmp_path, [0.5], [0.5])
    prune_units(micro_model, scheme, tmp_path / "modules", SOURCE)
    stats = tune_units(micro_model, tmp_path / "modules", SOURCE, tmp_path / "tuned", tmp_path / "stats.csv",
                       _rows(0, 3), _rows(1, 1), TuningRecipe(steps=4, log_every=2))
    assert len({row["unit"] for row in stats}) == 8 and (tmp_path / "stats.csv").read_text().count("\n") == 8 * 3 + 1
    composed = compose(micro_model, scheme, 0, tmp_path / "tuned", SOURCE)
    index = read_index(tmp_path / "tuned", scheme, SOURCE)
    for unit in units_of(scheme, 0).values():
        arrays = load_unit(tmp_path / "tuned", unit, index)
        block = composed.get_layer(f"block_{unit['layer']}")
        for name, (owner, attribute) in SUBLAYERS[unit["module"]].items():
            layer = getattr(getattr(block, owner), attribute)
            for part in ("kernel", "bias", "kernel_mask"):
                np.testing.assert_array_equal(getattr(layer, part).numpy(), arrays[f"{name}/{part}"])
        untuned = load_unit(tmp_path / "modules", unit, read_index(tmp_path / "modules", scheme))
        assert not np.array_equal(arrays[f"{next(iter(SUBLAYERS[unit['module']]))}/kernel"],
                                  untuned[f"{next(iter(SUBLAYERS[unit['module']]))}/kernel"])


def test_a_unit_file_for_another_shape_is_refused(tmp_path, micro_model):
    scheme = _scheme(tmp_path, [0.5], [0.5])
    prune_units(micro_model, scheme, tmp_path / "modules", SOURCE)
    keras.utils.set_random_seed(1)
    wide = build_gated_encoder(**{**MICRO, "dff": 48}, num_labels=2)
    unit = units_of(scheme)["layer0.ffn_intermediate.l1.r0.5"]
    (tmp_path / "other").mkdir()
    save_unit(tmp_path / "other", unit, prune_unit(wide.get_layer("block_0"), unit))
    (tmp_path / "modules" / "layer0.ffn_intermediate.l1.r0.5.npz").write_bytes(
        (tmp_path / "other" / "layer0.ffn_intermediate.l1.r0.5.npz").read_bytes())
    with pytest.raises(ComposeError, match="is not the file .*units.json lists"):
        compose(micro_model, scheme, 0, tmp_path / "modules", SOURCE)
    index = read_index(tmp_path / "modules", scheme)
    index["units"][unit["id"]]["sha256"] = None  # load it anyway: its shape is what must be refused
    from composability.units import put_unit

    arrays = load_unit(tmp_path / "modules", unit)
    with pytest.raises(ComposeError, match=r"intermediate/kernel of shape \(16, 48\), but layer 0's "
                                           r"ffn_intermediate needs \(16, 32\)"):
        put_unit(compose(micro_model, scheme, 0).get_layer("block_0"), unit, arrays, "the file")


def test_units_from_another_checkpoint_or_scheme_are_refused(tmp_path, micro_model):
    scheme = _scheme(tmp_path, [0.5], [0.5])
    prune_units(micro_model, scheme, tmp_path / "modules", SOURCE)
    with pytest.raises(ComposeError, match="were pruned from micro, not from other"):
        compose(micro_model, scheme, 0, tmp_path / "modules", {"path": "other", "weights_sha256": "1" * 64})
    (tmp_path / "b").mkdir()
    second = _scheme(tmp_path / "b", [0.25], [0.5])
    with pytest.raises(ComposeError, match="made from another scheme"):
        compose(micro_model, second, 0, tmp_path / "modules", SOURCE)


def test_a_failed_prune_leaves_no_folder(tmp_path, micro_model):
    conf = tmp_path / "conf.json"
    write_configurations(conf, make_configurations([0.5], [0.5], 1, [0, 5]))
    with pytest.raises(ComposeError, match=r"prune block\(s\) \[5\], but the checkpoint has blocks 0 to 1"):
        prune_units(micro_model, make_scheme(conf), tmp_path / "modules", SOURCE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conf.json"]
