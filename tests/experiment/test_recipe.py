"""The training recipe: warm-up then linear decay of the learning rate, and layer-wise rate decay."""

import keras
import numpy as np
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


def test_layer_rate_factor_decays_from_the_head_down():
    from experiment.recipe import layer_rate_factor

    factors = {path: layer_rate_factor(path, num_layers=3, decay=0.5) for path in (
        "classifier/kernel", "pooler/bias", "block_2/ffn/output/kernel", "block_0/attention/query/kernel",
        "block_1/ffn_norm/gamma", "embeddings/token/embeddings")}
    assert factors == {"classifier/kernel": 1.0, "pooler/bias": 1.0, "block_2/ffn/output/kernel": 0.5,
                       "block_1/ffn_norm/gamma": 0.25, "block_0/attention/query/kernel": 0.125,
                       "embeddings/token/embeddings": 0.0625}
    assert layer_rate_factor("block_11/attention/key/bias", num_layers=12, decay=0.8) == pytest.approx(0.8)


def _steps(optimizer, variables, start, grads, steps=2):
    """The change of every variable after `steps` optimizer steps on `grads` from `start` (float32 differences of
    values near 1: compared to 5e-7)."""
    for variable, value in zip(variables, start, strict=True):
        variable.assign(value)
    for _ in range(steps):
        optimizer.apply(grads, variables)
    return [keras.ops.convert_to_numpy(v) - value for v, value in zip(variables, start, strict=True)]


def test_layerwise_adamw_scales_each_layers_step_and_decays_at_the_base_rate(micro_model):
    from experiment.recipe import LayerwiseAdamW, layer_rate_factor

    variables = micro_model.trainable_variables
    start = [keras.ops.convert_to_numpy(v).copy() for v in variables]
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=v.shape).astype("float32") for v in variables]
    settings = {"learning_rate": 1e-2, "epsilon": 1e-6}
    plain = _steps(keras.optimizers.AdamW(weight_decay=0.0, **settings), variables, start, grads)
    layerwise = _steps(LayerwiseAdamW(2, 0.5, weight_decay=0.0, **settings), variables, start, grads)
    factors = [layer_rate_factor(v.path, 2, 0.5) for v in variables]
    assert sorted(set(factors)) == [0.125, 0.25, 0.5, 1.0]  # embeddings, block 0, block 1, head
    for variable, factor, reference, delta in zip(variables, factors, plain, layerwise, strict=True):
        np.testing.assert_allclose(delta, factor * reference, rtol=1e-5, atol=5e-7, err_msg=variable.path)

    # Zero gradients leave only the decoupled weight decay: every variable shrinks by lr x decay, whatever its layer.
    zeros = [np.zeros(v.shape, "float32") for v in variables]
    decayed = _steps(LayerwiseAdamW(2, 0.5, weight_decay=0.1, **settings), variables, start, zeros, steps=1)
    for variable, value, delta in zip(variables, start, decayed, strict=True):
        np.testing.assert_allclose(delta, -1e-2 * 0.1 * value, rtol=1e-5, atol=5e-7, err_msg=variable.path)
