"""Optimizer, learning-rate schedule and loss for training a gated encoder."""

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


def build_optimizer(config, steps_per_epoch):
    """AdamW with warm-up and linear decay over the whole run, clipped at global norm 1."""
    total = steps_per_epoch * config.epochs
    schedule = WarmupLinearDecay(config.learning_rate, total, int(round(config.warmup_ratio * total)))
    optimizer = keras.optimizers.AdamW(
        learning_rate=schedule, weight_decay=config.weight_decay, epsilon=1e-6, global_clipnorm=1.0
    )
    optimizer.exclude_from_weight_decay(var_names=NO_DECAY)
    return optimizer


def build_loss(spec):
    """Cross-entropy on logits for classification, MSE for regression (STS-B)."""
    if spec.is_regression:
        return keras.losses.MeanSquaredError()
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

