"""Optimizer, learning-rate schedule and loss for training a gated encoder."""

import re

import keras
from keras import ops

# Variables whose names contain these are not weight-decayed (BERT practice).
NO_DECAY = ["bias", "gamma", "beta"]


@keras.saving.register_keras_serializable(package="gated_bert")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to `peak` over `warmup_steps`, then linear decay to 0 at `total_steps`.

    Args:
        peak: learning rate reached at the end of warm-up.
        total_steps: step at which the rate reaches zero.
        warmup_steps: length of the warm-up.
    """

    def __init__(self, peak, total_steps, warmup_steps):
        if total_steps <= 0 or not 0 <= warmup_steps <= total_steps:
            raise ValueError(
                f"need 0 <= warmup_steps <= total_steps and total_steps > 0, "
                f"got warmup_steps={warmup_steps}, total_steps={total_steps}"
            )
        self.peak = peak
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warmup = step / self.warmup_steps if self.warmup_steps else 1.0
        decay = (self.total_steps - step) / max(self.total_steps - self.warmup_steps, 1)
        return self.peak * ops.clip(ops.minimum(warmup, decay), 0.0, 1.0)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps}


def layer_rate_factor(path, num_layers, decay):
    """The share of the learning rate a variable trains at under layer-wise decay `decay`.

    The head (pooler, classifier) trains at the full rate, block `i` (0 the lowest) at `decay ** (num_layers - i)`,
    the embeddings at `decay ** (num_layers + 1)`: each layer `decay` times the one above it.
    """
    block = re.match(r"block_(\d+)/", path)
    if block:
        return decay ** (num_layers - int(block.group(1)))
    if path.startswith("embeddings/"):
        return decay ** (num_layers + 1)
    return 1.0


@keras.saving.register_keras_serializable(package="gated_bert")
class LayerwiseAdamW(keras.optimizers.AdamW):
    """AdamW whose step for each variable is scaled by its `layer_rate_factor` (layer-wise learning-rate decay, as
    ELECTRA fine-tunes). The decoupled weight decay stays at the base rate for every variable.

    Args:
        num_layers: encoder blocks of the model it trains.
        layer_decay: the factor between one layer's rate and the rate of the layer above, in (0, 1].
        **kwargs: `keras.optimizers.AdamW`'s.
    """

    def __init__(self, num_layers, layer_decay, **kwargs):
        super().__init__(**kwargs)
        self.num_layers = num_layers
        self.layer_decay = layer_decay

    def build(self, variables):
        super().build(variables)
        self._rate_factors = [layer_rate_factor(v.path, self.num_layers, self.layer_decay) for v in variables]

    def update_step(self, gradient, variable, learning_rate):
        factor = self._rate_factors[self._get_variable_index(variable)]
        super().update_step(gradient, variable, ops.multiply(learning_rate, factor))

    def get_config(self):
        return {**super().get_config(), "num_layers": self.num_layers, "layer_decay": self.layer_decay}


def build_optimizer(config, steps_per_epoch):
    """AdamW with warm-up and linear decay over the whole run, clipped at global norm 1; with
    `config.layer_lr_decay` < 1, each layer's rate decays from the head down (`LayerwiseAdamW`)."""
    total = steps_per_epoch * config.epochs
    schedule = WarmupLinearDecay(config.learning_rate, total, int(round(config.warmup_ratio * total)))
    settings = {"learning_rate": schedule, "weight_decay": config.weight_decay, "epsilon": 1e-6,
                "global_clipnorm": 1.0}
    optimizer = (LayerwiseAdamW(config.num_layers, config.layer_lr_decay, **settings) if config.layer_lr_decay < 1
                 else keras.optimizers.AdamW(**settings))
    optimizer.exclude_from_weight_decay(var_names=NO_DECAY)
    return optimizer


def build_loss(spec):
    """Cross-entropy on logits for classification, MSE for regression (STS-B)."""
    if spec.is_regression:
        return keras.losses.MeanSquaredError()
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

