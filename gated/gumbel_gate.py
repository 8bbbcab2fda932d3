"""`GumbelGate`: learnable binary gates, relaxed (Gumbel-Sigmoid) while training."""

import keras
from keras import ops

# Uniform noise is drawn from [_EPS, 1 - _EPS] so that the logistic noise stays finite.
_EPS = 1e-6


@keras.saving.register_keras_serializable(package="gated_bert")
class GumbelGate(keras.layers.Layer):
    """`units` learnable gates, each with a trainable logit.

    In training, `gates(training=True)` draws one relaxed-Bernoulli
    (Gumbel-Sigmoid) sample per gate, `sigmoid((logits + L) / temperature)`
    with `L = log(u) - log(1 - u)` logistic noise, `u ~ U(0, 1)`; gradients
    reach the logits through the sample. Otherwise it returns the
    deterministic binary gate `sigmoid(logits) > 0.5`, i.e. `logits > 0`, so
    evaluation and export see the binary model. The temperature is a
    non-trainable variable that an annealing callback assigns.

    The gate has no inputs: its owner builds it and calls `gates(training)`.

    Logits start uniform in `initial_logit ± initial_spread`. The spread
    breaks the symmetry between gates: regularisers push every logit the
    same way, and with identical logits all gates would cross zero at the
    same step, so a sparsity target could only be met all-or-nothing.

    Args:
        units: number of gates.
        initial_logit: centre of the starting logits (3.0: keep-probability 0.95).
        initial_spread: half-width of the starting logits' uniform spread.
        seed: seed of the starting logits and the logistic noise (None: from Keras' global seed).
        **kwargs: base `keras.layers.Layer` arguments.
    """

    def __init__(self, units, initial_logit=3.0, initial_spread=1.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, int) or units <= 0:
            raise ValueError(f"units must be a positive integer, got units={units!r}")
        self.units = units
        self.initial_logit = float(initial_logit)
        if initial_spread < 0:
            raise ValueError(f"initial_spread must be >= 0, got initial_spread={initial_spread}")
        self.initial_spread = float(initial_spread)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape=None):
        low, high = self.initial_logit - self.initial_spread, self.initial_logit + self.initial_spread
        self.logits = self.add_weight(
            name="logits", shape=(self.units,), initializer=keras.initializers.RandomUniform(low, high, self.seed)
        )
        self.temperature = self.add_weight(name="temperature", shape=(), initializer="ones", trainable=False)

    def keep_probability(self):
        """`sigmoid(logits)`, the probability that each gate is on: `[units]`."""
        return ops.sigmoid(self.logits)

    def binary(self):
        """The deterministic gate used in evaluation: 1.0 where `sigmoid(logits) > 0.5`, else 0.0."""
        return ops.cast(self.logits > 0, self.logits.dtype)

    def sample(self):
        """One relaxed-Bernoulli sample per gate at the current temperature: `[units]` in (0, 1)."""
        uniform = keras.random.uniform((self.units,), _EPS, 1.0 - _EPS, seed=self.seed_generator)
        noise = ops.log(uniform) - ops.log1p(-uniform)  # logistic(0, 1)
        return ops.sigmoid((self.logits + noise) / self.temperature)

    def gates(self, training=None):
        """The relaxed sample when `training`, else the binary gate."""
        return self.sample() if training else self.binary()

    def get_config(self):
        return {**super().get_config(), "units": self.units, "initial_logit": self.initial_logit,
                "initial_spread": self.initial_spread, "seed": self.seed}
