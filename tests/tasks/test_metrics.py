import numpy as np
import pytest
from scipy import stats

from tasks import TASKS, compute_loss, compute_metrics, dataset_labels, score_model
from tasks.metrics import f1, matthews_corr


def test_accuracy_and_f1_for_mrpc():
    logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    labels = np.array([1, 1, 0, 0])
    scores = compute_metrics(TASKS["mrpc"], logits, labels)
    assert scores == {"accuracy": 0.5, "f1": pytest.approx(0.5)}  # tp=1 fp=1 fn=1


def test_matthews_for_cola():
    pred, labels = np.array([1, 1, 0, 0, 1]), np.array([1, 0, 0, 0, 1])
    tp, tn, fp, fn = 2, 2, 1, 0
    expected = (tp * tn - fp * fn) / np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert matthews_corr(pred, labels) == pytest.approx(expected)
    assert matthews_corr(np.ones(4), np.array([1, 0, 1, 0])) == 0.0  # constant prediction
    assert f1(np.zeros(3), np.zeros(3)) == 0.0


def test_pearson_spearman_for_stsb():
    rng = np.random.default_rng(0)
    labels = rng.uniform(0, 5, 50)
    outputs = (labels + rng.normal(0, 1, 50))[:, None]
    scores = compute_metrics(TASKS["stsb"], outputs, labels)
    assert scores["pearson"] == pytest.approx(stats.pearsonr(outputs[:, 0], labels)[0])
    assert scores["spearman"] == pytest.approx(stats.spearmanr(outputs[:, 0], labels)[0])
    assert compute_metrics(TASKS["stsb"], np.ones((50, 1)), labels)["pearson"] == 0.0


def test_losses():
    logits = np.array([[2.0, 0.0], [0.0, 1.0]])
    labels = np.array([0, 0])
    expected = -np.mean([np.log(np.exp(2) / (np.exp(2) + 1)), np.log(1 / (1 + np.e))])
    assert compute_loss(TASKS["sst2"], logits, labels) == pytest.approx(expected)
    assert compute_loss(TASKS["stsb"], np.array([[1.0], [3.0]]), np.array([2.0, 2.0])) == pytest.approx(1.0)


def test_score_model_scores_every_batch_in_order_with_the_task_metrics():
    class Fixed:
        """Stands in for a model: predicts the same logits whatever the input."""

        def predict(self, dataset, verbose=0):
            return np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 3.0]])

    dataset = [({"input_ids": np.zeros((2, 3))}, np.array([0, 0])), ({"input_ids": np.zeros((1, 3))}, np.array([1]))]
    np.testing.assert_array_equal(dataset_labels(dataset), [0, 0, 1])
    scores = score_model(Fixed(), dataset, TASKS["sst2"])
    expected_loss = -np.mean([np.log(np.exp(2) / (np.exp(2) + 1)), np.log(1 / (1 + np.e)),
                              np.log(np.exp(3) / (np.exp(1) + np.exp(3)))])
    assert scores == {"dev_loss": pytest.approx(expected_loss), "dev_accuracy": pytest.approx(2 / 3)}
    assert set(score_model(Fixed(), dataset, TASKS["sst2"], prefix="")) == {"loss", "accuracy"}
