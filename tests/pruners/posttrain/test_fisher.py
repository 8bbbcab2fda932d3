"""Gate gradients for the Fisher information: they equal finite differences of each row's (or the batch's)
loss."""

import keras
import numpy as np
import pytest

from pruners.posttrain.fisher import collect_gate_gradients, fisher_importance, gate_variables


@pytest.fixture
def sharp_model(micro_model):
    """The micro model with weights 20x their BERT-sized init, so gate gradients stand well above float32 noise."""
    for variable in micro_model.trainable_variables:
        if variable.path.endswith("kernel"):
            variable.assign(variable * 20.0)
    return micro_model


def _row_losses(model, batch, labels):
    """Each row's cross-entropy, from the model's own forward pass (numpy log-softmax)."""
    logits = model(batch, training=False).numpy().astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return -log_probs[np.arange(len(labels)), labels]


@pytest.mark.parametrize("per_row", [True, False])
def test_gate_gradients_match_finite_differences(sharp_model, micro_batch, per_row):
    """Per row: each row's own loss; per batch: the batch's mean loss."""
    labels = np.array([0, 1, 1])
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    head_grads, neuron_grads, stats = collect_gate_gradients(sharp_model, [(micro_batch, labels)], loss_fn,
                                                             per_row=per_row)
    count = 3 if per_row else 1
    assert head_grads.shape == (count, 2, 4) and neuron_grads.shape == (count, 2, 32) and stats["samples"] == 3
    heads, neurons = gate_variables(sharp_model)
    eps = 1e-2
    rng = np.random.default_rng(0)
    checks = [(heads, head_grads, layer, unit) for layer in range(2) for unit in range(4)]
    checks += [(neurons, neuron_grads, layer, int(unit)) for layer in range(2) for unit in rng.choice(32, 4)]
    for gates, grads, layer, unit in checks:
        ones = np.ones(gates[layer].shape, "float32")
        values = []
        for step in (eps, -eps):
            shifted = ones.copy()
            shifted[unit] += step
            gates[layer].assign(shifted)
            losses = _row_losses(sharp_model, micro_batch, labels)
            values.append(losses if per_row else losses.mean(keepdims=True))
        gates[layer].assign(ones)
        numeric = (values[0] - values[1]) / (2 * eps)
        np.testing.assert_allclose(grads[:, layer, unit], numeric, rtol=2e-2, atol=2e-4, err_msg=f"{layer} {unit}")
    assert np.abs(head_grads).max() > 1e-2  # the comparison above is not between two zeros
    if per_row:  # the rows' gradients differ: they are not one batch gradient repeated
        assert np.abs(head_grads[0] - head_grads[1]).max() > 1e-3


def test_the_gradient_pass_returns_the_dense_models_logits_on_every_row(sharp_model, micro_batch):
    """Its forward pass is the dense model's, with the gates at 1: the bias correction uses its logits."""
    labels = np.array([0, 1, 1])
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    batches = [(micro_batch, labels), ({key: value[1:] for key, value in micro_batch.items()}, labels[1:])]
    *_, logits = collect_gate_gradients(sharp_model, batches, loss_fn, return_logits=True)
    expected = np.concatenate([sharp_model(batch, training=False).numpy() for batch, _ in batches])
    assert logits.shape == (5, 2) and np.abs(expected).max() > 1e-2
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-6)


def test_the_gradient_pass_is_traced_once_for_batches_of_every_size_and_length(micro_model, micro_batch):
    keras_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    traces = []

    def loss_fn(labels, logits):  # its Python body runs once per trace
        traces.append(logits.shape)
        return keras_loss(labels, logits)

    batches = [(micro_batch, np.array([0, 1, 1])),
               ({key: value[:2, :6] for key, value in micro_batch.items()}, np.array([1, 0])),
               ({key: value[:1, :5] for key, value in micro_batch.items()}, np.array([1]))]
    head_grads, _, stats = collect_gate_gradients(micro_model, batches, loss_fn, per_row=True)
    assert len(traces) == 1 and stats["samples"] == 6 and head_grads.shape == (6, 2, 4)


def test_fisher_importance_sums_squared_batch_gradients():
    grads = np.array([[[1.0, -2.0]], [[3.0, 0.5]]])  # 2 batches, 1 layer, 2 units
    np.testing.assert_allclose(fisher_importance(grads), [[10.0, 4.25]])


def test_no_batches_is_a_clear_error(micro_model):
    with pytest.raises(ValueError, match="no sample batches"):
        collect_gate_gradients(micro_model, [], keras.losses.MeanSquaredError())
