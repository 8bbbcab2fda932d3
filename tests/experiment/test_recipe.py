"""The training recipe: warm-up then linear decay of the learning rate."""

import pytest

from experiment.recipe import WarmupLinearDecay


def test_warmup_then_linear_decay():
    schedule = WarmupLinearDecay(1e-3, total_steps=100, warmup_steps=10)
    values = [float(schedule(step)) for step in (0, 5, 10, 55, 100, 150)]
    assert values == pytest.approx([0.0, 5e-4, 1e-3, 5e-4, 0.0, 0.0])
    assert WarmupLinearDecay.from_config(schedule.get_config()).get_config() == schedule.get_config()
    assert float(WarmupLinearDecay(1.0, 10, 0)(0)) == 1.0
    with pytest.raises(ValueError, match="warmup_steps=20, total_steps=10"):
        WarmupLinearDecay(1.0, 10, 20)
