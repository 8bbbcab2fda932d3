import numpy as np
import pytest
from scipy import stats

from experiment.recipe import WarmupLinearDecay
from tasks import TASKS, compute_loss, compute_metrics
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


def test_warmup_then_linear_decay():
    schedule = WarmupLinearDecay(1e-3, total_steps=100, warmup_steps=10)
    values = [float(schedule(step)) for step in (0, 5, 10, 55, 100, 150)]
    assert values == pytest.approx([0.0, 5e-4, 1e-3, 5e-4, 0.0, 0.0])
    assert WarmupLinearDecay.from_config(schedule.get_config()).get_config() == schedule.get_config()
    assert float(WarmupLinearDecay(1.0, 10, 0)(0)) == 1.0
    with pytest.raises(ValueError, match="warmup_steps=20, total_steps=10"):
        WarmupLinearDecay(1.0, 10, 20)
