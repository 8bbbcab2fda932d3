"""K-prune: knowledge measurement, mask search and weight tuning, against hand computations."""

import keras
import numpy as np
import pytest

from conftest import MICRO, micro_sample_batches
from efficiency import count_macs, head_macs, neuron_macs
from gated import build_gated_encoder
from pruners.posttrain.kprune import (
    KnowledgeProbe,
    importance_scores,
    kprune,
    measure_knowledge,
    select_units,
    tune_weights,
)
from pruners.posttrain.sublayers import SublayerSample

SHAPE = {"d_model": MICRO["d_model"], "head_dim": MICRO["d_model"] // MICRO["num_heads"], "seq_len": MICRO["max_len"]}
HEAD_COST, NEURON_COST = head_macs(**SHAPE), neuron_macs(MICRO["d_model"], MICRO["max_len"])


def _model(num_labels=2):
    """A micro encoder with its sublayers' output projections and classifier scaled up, so that (as in a
    trained model, unlike at initialisation) each unit moves the logits, and the logits are O(1)."""
    keras.utils.set_random_seed(0)
    model = build_gated_encoder(**MICRO, num_labels=num_labels)
    for dense, factor in [(model.get_layer("classifier"), 50.0)] + [
            (layer, 20.0) for block in _blocks(model) for layer in (block.attention.output_dense,
                                                                     block.ffn.output_dense)]:
        dense.kernel.assign(dense.kernel * factor)
    return model


def _blocks(model):
    return [model.get_layer(f"block_{i}") for i in range(MICRO["num_layers"])]


def _gates(model, sublayer):
    block = _blocks(model)[sublayer // 2]
    return block.attention.head_gate if sublayer % 2 == 0 else block.ffn.neuron_gate


def _logits_with_gate(model, batches, sublayer, unit, value):
    gate = _gates(model, sublayer)
    saved = gate.numpy()
    changed = saved.copy()
    changed[unit] = value
    gate.assign(changed)
    logits = np.concatenate([model(inputs).numpy() for inputs, _ in batches]).astype(np.float64)
    gate.assign(saved)
    return logits


def test_the_probe_computes_the_models_logits():
    model, batches = _model(), micro_sample_batches(0, count=2)
    probe = KnowledgeProbe(model)
    for inputs, _ in batches:
        np.testing.assert_allclose(probe.logits(inputs).numpy(), model(inputs).numpy(), atol=1e-5)


@pytest.mark.parametrize("pooler,pooling", [("relu", "cls"), (None, "cls"), (None, "mean"), ("tanh", "mean")])
def test_the_probe_follows_the_models_head(pooler, pooling):
    keras.utils.set_random_seed(0)
    model = build_gated_encoder(**MICRO, num_labels=2, pooler=pooler, pooling=pooling)
    for inputs, _ in micro_sample_batches(0, count=1):
        np.testing.assert_allclose(KnowledgeProbe(model).logits(inputs).numpy(), model(inputs).numpy(), atol=1e-5)


def test_measuring_from_a_sublayer_up_gives_the_same_knowledge_for_those_sublayers():
    model, batches = _model(), micro_sample_batches(4, count=2)
    full = measure_knowledge(KnowledgeProbe(model), batches)
    upper = measure_knowledge(KnowledgeProbe(model), batches, start=2)
    # K-prune's way: from the states the sample keeps per batch (here: nothing pruned, the model's own).
    states = SublayerSample(model, None, batches, None, 0).inputs(2)
    kept = measure_knowledge(KnowledgeProbe(model), batches, start=2, states=states)
    for whole, part, from_states in zip(full, upper, kept, strict=True):
        assert len(part) == len(from_states) == len(whole) - 2
        for a, b, c in zip(whole[2:], part, from_states, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5)
            np.testing.assert_allclose(a, c, rtol=1e-5)


def _rebatch(batches, sizes, order):
    """The rows of `batches` in `order`, in batches of `sizes` rows, each cut to its longest row."""
    rows = [{key: np.asarray(inputs[key])[b] for key in inputs} for inputs, _ in batches
            for b in range(len(inputs["input_ids"]))]
    rows = [rows[i] for i in order]
    out, start = [], 0
    for size in sizes:
        chunk = rows[start:start + size]
        width = max(int(row["attention_mask"].sum()) for row in chunk)
        out.append(({key: np.stack([row[key][:width] for row in chunk]) for key in chunk[0]},
                    np.zeros(len(chunk), "int64")))
        start += size
    return out


def test_knowledge_does_not_depend_on_how_the_rows_are_batched():
    """prune.py batches K-prune's rows by length, 128 at a time: the knowledge is per row, so only speed and
    memory change."""
    model, batches = _model(), micro_sample_batches(5, count=3)  # 12 rows of width 6, two of them padded
    probe = KnowledgeProbe(model)
    given = measure_knowledge(probe, batches)
    padded = [0, 1, 4, 5, 8, 9]  # rows 0 and 1 of each batch: together, a batch of width 4
    order = padded + list(np.random.default_rng(0).permutation([i for i in range(12) if i not in padded]))
    regrouped = _rebatch(batches, [6, 2, 4], order)
    assert [inputs["input_ids"].shape for inputs, _ in regrouped] == [(6, 4), (2, 6), (4, 6)]
    regrouped = measure_knowledge(probe, regrouped)
    for a_terms, b_terms in zip(given, regrouped, strict=True):
        for a, b in zip(a_terms, b_terms, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("num_labels", [3, 2, 1])
def test_predictive_knowledge_equals_the_hand_computed_second_order_kl(num_labels):
    """`1/2 Var_{c ~ softmax(z/T)} dz_c/dm` per row (squared `dz/dm` for regression), from finite differences."""
    model, batches, temperature, eps = _model(num_labels), micro_sample_batches(1, count=2), 2.0, 1e-2
    predictive, _ = measure_knowledge(KnowledgeProbe(model, temperature, regression=num_labels == 1), batches)
    logits = np.concatenate([model(inputs).numpy() for inputs, _ in batches]).astype(np.float64)
    probs = np.exp(logits / temperature) / np.exp(logits / temperature).sum(axis=1, keepdims=True)
    for sublayer, units in ((0, range(4)), (1, range(0, 32, 5)), (2, range(4)), (3, range(0, 32, 7))):
        for unit in units:
            # Central differences of every row's logits in the unit's gate (rows do not interact).
            jac = (_logits_with_gate(model, batches, sublayer, unit, 1 + eps)
                   - _logits_with_gate(model, batches, sublayer, unit, 1 - eps)) / (2 * eps)  # (rows, C)
            if num_labels == 1:
                expected = np.mean(jac[:, 0] ** 2)
            else:
                expected = np.mean(0.5 * ((probs * jac**2).sum(1) - (probs * jac).sum(1) ** 2))
            assert predictive[sublayer][unit] == pytest.approx(expected, rel=2e-2, abs=1e-9), (sublayer, unit)
    assert min(p.max() for p in predictive) > 1e-6  # the check above is not comparing zeros


def test_representational_knowledge_equals_the_sublayer_error_of_removing_one_unit():
    model, batches = _model(), micro_sample_batches(2, count=2)
    _, representational = measure_knowledge(KnowledgeProbe(model), batches)
    block0, block1 = _blocks(model)
    embeddings = model.get_layer("embeddings")

    def error(sublayer_output, gate, unit):
        """Mean over non-padding tokens and output features of `(output(unit removed) - output)^2`."""
        errors = []
        for inputs, _ in batches:
            dense = sublayer_output(inputs).numpy()
            saved = gate.numpy()
            gate.assign(np.where(np.arange(len(saved)) == unit, 0.0, saved).astype(np.float32))
            removed = sublayer_output(inputs).numpy()
            gate.assign(saved)
            errors.append(((removed - dense) ** 2)[inputs["attention_mask"] == 1])
        return float(np.mean(np.concatenate(errors)))

    def attention_0(inputs):
        return block0.attention_residual(embeddings(inputs["input_ids"], inputs["token_type_ids"]),
                                         inputs["attention_mask"])

    def attention_1(inputs):  # the last block: the probe carries only [CLS] to the logits, not to this term
        x = block0(embeddings(inputs["input_ids"], inputs["token_type_ids"]), inputs["attention_mask"])
        return block1.attention_residual(x, inputs["attention_mask"])

    def ffn_1(inputs):
        return block1.ffn_residual(block1.attention_norm(attention_1(inputs)))

    for head in range(4):
        assert representational[0][head] == pytest.approx(error(attention_0, block0.attention.head_gate, head),
                                                          rel=1e-4)
        assert representational[2][head] == pytest.approx(error(attention_1, block1.attention.head_gate, head),
                                                          rel=1e-4)
    for neuron in range(0, 32, 3):
        assert representational[3][neuron] == pytest.approx(error(ffn_1, block1.ffn.neuron_gate, neuron), rel=1e-4)
    assert min(r.min() for r in representational) > 0


def test_importance_weighs_the_two_terms_divides_by_cost_and_multiplies_heads_by_mu_per_head_dimension():
    predictive = [np.array([1.0, 2.0]), np.array([3.0])]
    representational = [np.array([100.0, 0.0]), np.array([40.0])]
    heads, neurons = importance_scores(predictive, representational, head_cost=10.0, neuron_cost=2.0, lam_pred=0.5,
                                       lam_rep=0.25, mu=4.0, head_dim=8)
    np.testing.assert_allclose(heads, [0.5 * (0.5 + 25) / 10, 0.5 * 1.0 / 10])
    np.testing.assert_allclose(neurons, [(1.5 + 10) / 2])
    # No mu: importance per MAC, heads and neurons alike.
    heads, _ = importance_scores(predictive, representational, head_cost=10.0, neuron_cost=2.0, lam_pred=0.5,
                                 lam_rep=0.25, head_dim=8)
    np.testing.assert_allclose(heads, [(0.5 + 25) / 10, 1.0 / 10])


def test_select_units_keeps_the_best_per_mac_that_fit_and_never_exceeds_the_budget():
    # Equal costs: exactly the top-k scores.
    scores = [np.array([0.1, 0.9, 0.5]), np.array([0.7, 0.2])]
    masks = select_units(scores, [1.0, 1.0], [np.ones(3, bool), np.ones(2, bool)], budget=3)
    assert [m.tolist() for m in masks] == [[0, 1, 1], [1, 0]]
    rng = np.random.default_rng(0)
    for _ in range(20):
        scores = [rng.random(4), rng.random(30), rng.random(4), rng.random(30)]
        costs = [37.0, 3.0, 37.0, 3.0]
        candidates = [rng.random(len(s)) < 0.8 for s in scores]
        budget = rng.uniform(0, 200)
        masks = select_units(scores, costs, candidates, budget)
        spent = sum(m.sum() * c for m, c in zip(masks, costs, strict=True))
        assert spent <= budget
        for mask, candidate, cost in zip(masks, candidates, costs, strict=True):
            assert not np.any(mask[~candidate])  # non-candidates are never kept
            if np.any(candidate & (mask == 0)):
                assert cost > budget - spent  # whatever was left out no longer fits


def test_tuning_equals_the_closed_form_least_squares_solution():
    rng = np.random.default_rng(0)
    outputs, residual = rng.normal(size=(300, 6)), rng.normal(size=(300, 5))
    true_kernel, true_bias = rng.normal(size=(6, 5)), rng.normal(size=5)
    target = residual + outputs @ true_kernel + true_bias + 0.1 * rng.normal(size=(300, 5))
    kernel, bias, report = tune_weights(outputs, residual, target, np.zeros((6, 5)), np.zeros(5), backend="scipy")
    design = np.hstack([outputs, np.ones((300, 1))])
    closed = np.linalg.lstsq(design, target - residual, rcond=None)[0]
    np.testing.assert_allclose(kernel, closed[:-1], atol=1e-6)
    np.testing.assert_allclose(bias, closed[-1], atol=1e-6)
    assert report["tuned"] and report["mse_after"] < report["mse_before"]
    assert report["mse_after"] == pytest.approx(np.mean((design @ closed - (target - residual)) ** 2), rel=1e-8)


def test_kprune_meets_the_budget_and_tuning_lowers_each_sublayers_error():
    dense, batches = _model(), micro_sample_batches(3)
    dense.get_layer("block_1").attention.head_gate.assign(np.array([1, 1, 0, 1], np.float32))  # already pruned
    given = [variable.numpy() for variable in dense.weights]
    full = count_macs(np.ones((2, 4)), np.ones((2, 32)), **SHAPE)["total"]
    result = kprune(dense, batches, budget=0.45 * full, head_cost=HEAD_COST, neuron_cost=NEURON_COST, tuning=True,
                    backend="scipy", max_tokens=10**6)
    heads, neurons, steps, seconds, model = result.head_mask, result.neuron_mask, result.steps, result.seconds, \
        result.model
    for before, variable in zip(given, dense.weights, strict=True):  # the model given is left as it was
        np.testing.assert_array_equal(variable.numpy(), before, err_msg=variable.path)
    assert count_macs(heads, neurons, **SHAPE)["total"] <= 0.45 * full
    assert heads[1, 2] == 0  # a unit that was off stays off
    assert [(s["layer"], s["kind"]) for s in steps] == [(0, "head"), (0, "neuron"), (1, "head"), (1, "neuron")]
    np.testing.assert_array_equal(heads, np.stack([b.attention.head_gate.numpy() for b in _blocks(model)]))
    tuned = [s["tuning"] for s in steps if "tuning" in s]
    assert tuned and all(t["mse_after"] < t["mse_before"] for t in tuned)
    assert seconds["measure"] > 0 and seconds["tuning"] > 0
    # The dense logits (the bias correction's reference) are the given model's own, with its gate already off.
    expected = np.concatenate([dense(inputs, training=False).numpy() for inputs, _ in batches])
    np.testing.assert_allclose(result.dense_logits, expected, rtol=1e-5, atol=1e-6)
    # The tuning errors measured again through the models. Once step i is done, sublayers 0..i are final,
    # so the pruned model's sublayer i output, against the dense model's, is what step i fitted.
    untuned = keras.models.clone_model(dense)
    untuned.set_weights(dense.get_weights())
    untuned.get_layer("block_0").attention.head_gate.assign(heads[0])
    outputs = {name: _sublayer_outputs(m, batches) for name, m in (("dense", dense), ("pruned", model),
                                                                     ("untuned", untuned))}
    assert steps[0]["tuning"]["mse_before"] == pytest.approx(_mse(outputs["untuned"][0], outputs["dense"][0]),
                                                             rel=1e-4)
    for index, step in enumerate(steps):
        if "tuning" in step:
            assert step["tuning"]["mse_after"] == pytest.approx(
                _mse(outputs["pruned"][index], outputs["dense"][index]), rel=1e-3), index


def _sublayer_outputs(model, batches):
    """Per sublayer, every non-padding token's output before the LayerNorm, `(tokens, D)`."""
    outputs = [[] for _ in range(2 * MICRO["num_layers"])]
    for inputs, _ in batches:
        mask, keep = inputs["attention_mask"], inputs["attention_mask"] == 1
        x = model.get_layer("embeddings")(inputs["input_ids"], inputs["token_type_ids"])
        for layer, block in enumerate(_blocks(model)):
            attended = block.attention_residual(x, mask)
            x = block.attention_norm(attended)
            fed = block.ffn_residual(x)
            x = block.ffn_norm(fed)
            outputs[2 * layer].append(attended.numpy()[keep])
            outputs[2 * layer + 1].append(fed.numpy()[keep])
    return [np.concatenate(values) for values in outputs]


def _mse(a, b):
    return float(np.mean((a - b) ** 2))


def test_kprune_refuses_models_with_learned_masks_or_scaled_gates():
    keras.utils.set_random_seed(0)
    model = build_gated_encoder(**MICRO, num_labels=2, learn_masks=("head",))
    with pytest.raises(ValueError, match="without learned Gumbel masks"):
        kprune(model, micro_sample_batches(0, count=2), budget=1e9, head_cost=HEAD_COST, neuron_cost=NEURON_COST)
    model = _model()
    model.get_layer("block_0").attention.head_gate.assign(np.array([1, 0.5, 1, 1], np.float32))
    with pytest.raises(ValueError, match="starts from 0/1 head and neuron gates"):
        kprune(model, micro_sample_batches(0, count=2), budget=1e9, head_cost=HEAD_COST, neuron_cost=NEURON_COST)


def test_sublayer_sample_goes_bottom_to_top_only():
    sample = SublayerSample(_model(), _model(), micro_sample_batches(0, count=1), None, 0)
    units, base, target = sample.sublayer(1)
    assert units.shape == (sample.tokens, MICRO["dff"], 1) and base.shape == target.shape == (sample.tokens, 16)
    np.testing.assert_allclose(target, base + _model().get_layer("block_0").ffn(base[None])[0], atol=1e-5)
    with pytest.raises(ValueError, match="sublayer 0 was asked for after sublayer 1: go bottom to top"):
        sample.sublayer(0)
    with pytest.raises(ValueError, match="has no teacher"):
        SublayerSample(_model(), None, micro_sample_batches(0, count=1), None, 0).sublayer(0)


def test_sublayer_sample_runs_each_dense_sublayer_once_and_its_states_stay_exact():
    sample = SublayerSample(_model(), _model(), micro_sample_batches(0, count=2), None, 0)
    calls, run = [], sample._run
    sample._run = lambda which, index, function, values=None: (
        calls.append((which, index, function.__name__)) or run(which, index, function, values))
    sublayers = 2 * MICRO["num_layers"]
    for index in range(sublayers):
        sample.sublayer(index)
    # The dense sublayer's output, computed as the target, is only normalised to move on (never run again).
    expected = [(index, name) for index in range(sublayers) for name in ("_sublayer_output", "_norm")][:-1]
    assert [(index, name) for which, index, name in calls if which == "teacher"] == expected
    # Its states are the dense model's, as the student's path (each sublayer run through) gives them.
    reference = SublayerSample(_model(), None, micro_sample_batches(0, count=2), None, 0).inputs(sublayers - 1)
    for state, expected_state in zip(sample.states["teacher"], reference, strict=True):
        np.testing.assert_allclose(state, expected_state, atol=1e-6)
