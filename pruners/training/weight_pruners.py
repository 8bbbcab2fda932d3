"""Pruners: a criterion, its training-time state and the mask maths, applied to a gated model.

A pruner removes single weights (granularity `weight`, through the kernel masks) or whole units (`neuron`,
`head` or `both`, through the head and neuron gates: `pruners.training.units`). It is told *what* sparsity to
reach (`prune(target)`: a fraction of the prunable weights, or of the blocks' MACs for units); the
`PruningCallback` decides *when*. Pruners that learn from training
(movement, SPT) register a hook in the `GatedModel`'s train step, which sees
each batch and its gradients; the hook refuses to run unless the callback
has started the pruner, so training such a model without the callback fails
loudly instead of silently not pruning.
"""

import numpy as np
import tensorflow as tf

from efficiency.mac import macs_kept, unit_macs
from gated.attention import GatedMultiHeadAttention
from gated.masks import (
    collect_gated_layers,
    effective_kernel_masks,
    set_structured_masks,
    set_weight_masks,
    structured_gates,
    unit_layout,
)
from gated.model import HOOK_NOT_READY
from gated_bert.vocabulary import GRANULARITIES, PRESETS
from pruners.training import importance, units
from pruners.training.masking import SCOPES, flatten, masks_for_sparsity, unflatten

MISSING_CALLBACK = HOOK_NOT_READY + (
    "the {method} pruner of this model was not started: pass a PruningCallback(pruner, schedule) to fit as a callback,"
    " or call pruner.detach() to train without pruning"
)


def _tiny_prunable_weights():
    shape = PRESETS["tiny"]
    return shape["num_layers"] * (4 * shape["d_model"] ** 2 + 2 * shape["d_model"] * shape["dff"])


TINY_PRUNABLE_WEIGHTS = _tiny_prunable_weights()


def scaled_spt_epsilon(epsilon, prunable_weights):
    """SPT's exploration fraction for a model size: the tiny preset (and anything smaller) uses
    `epsilon` as is; larger models probe the same number of weights per event as the tiny preset,
    so a probe disturbs a larger model no more than it disturbs the tiny one."""
    return epsilon * min(1.0, TINY_PRUNABLE_WEIGHTS / prunable_weights)


def movement_frequency(num_layers, base_frequency=400):
    """Steps between movement-pruning events: 400 for the 12-layer base preset, in proportion to depth
    for other sizes (67 for tiny, 200 for small, 800 for large)."""
    return max(1, round(base_frequency * num_layers / 12))


class Pruner:
    """Prunes a model's `GatedDense` kernels, or its heads and FFN neurons, to a target by a criterion's scores.

    Args:
        scope: `global` (one ranking over all kernels) or `layer` (every
            kernel pruned to the target on its own); units always rank globally.
        granularity: `weight` (kernel masks; the target is a fraction of the
            prunable weights), or `neuron`, `head` or `both` (gates; the
            target is a fraction of the blocks' MACs, `efficiency.mac`, and a
            unit's score is the mean of its weights' scores).
        seq_len: the sequence length unit MACs are counted at.
    """

    method = "none"
    # How a run's config schedules this pruner: `levels` walks `sparsity_steps` (one event per level),
    # `ramp` follows the `movement_schedule` polynomial, an event every `pruning_frequency_steps`.
    schedule_kind = "levels"

    def __init__(self, scope="global", granularity="weight", seq_len=128):
        if scope not in SCOPES:
            raise ValueError(f"unknown pruning scope {scope!r}; choose one of: {', '.join(SCOPES)}")
        if granularity not in GRANULARITIES:
            raise ValueError(f"unknown pruning granularity {granularity!r}; choose one of: {', '.join(GRANULARITIES)}")
        if granularity != "weight" and scope != "global":
            raise ValueError(f"{granularity} granularity ranks units across all blocks; use scope='global', got "
                             f"scope={scope!r}")
        self.scope = scope
        self.granularity = granularity
        self.kinds = GRANULARITIES[granularity]
        self.seq_len = seq_len
        self.model = None

    @classmethod
    def from_run_config(cls, config, prunable_weights):
        """The pruner a run's `GatedBertConfig` asks for (`prunable_weights`: the model's prunable kernel weights)."""
        return cls(config.pruning_scope, config.pruning_granularity, config.max_len)

    def attach(self, model):
        """Bind the pruner to `model` (the callback does this in `set_model`)."""
        layers = collect_gated_layers(model)
        if not layers:
            raise ValueError(f"model {model.name!r} has no GatedDense layers to prune")
        unmasked = [path for path, layer in layers.items() if layer.kernel_mask is None]
        if unmasked and self.granularity == "weight":
            raise ValueError(f"{self.method} pruning masks single weights, but {unmasked[0]} (and "
                             f"{len(unmasked) - 1} more) has no kernel mask; build the model with kernel_masks=True")
        self.model = model

    @property
    def structured(self):
        return self.granularity != "weight"

    def unit_costs(self):
        """`{kind: MACs of one unit}` at `seq_len` tokens."""
        attention = next(iter(collect_gated_layers(self._bound(), GatedMultiHeadAttention).values()))
        return unit_macs(attention.d_model, attention.head_dim, self.seq_len)

    def macs_kept(self):
        """Fraction of the blocks' MACs (heads and neurons) the model's gates keep."""
        return macs_kept(self._bound(), self.seq_len)

    def detach(self):
        self.model = None

    def start(self):
        """Reset training-time state; called when training begins."""

    def stop(self):
        """Called when training ends."""

    def kernels(self):
        return {path: layer.kernel.numpy() for path, layer in collect_gated_layers(self._bound()).items()}

    def scores(self, weights):
        raise NotImplementedError

    def update(self, weights, masks):
        """Learn from the model as it is at a pruning event, before the ranking (SPT explores here)."""

    def unit_scores(self, weights):
        """`{kind: [layers, units]}`: the mean of the criterion's scores over each unit's weights."""
        return units.unit_scores(self.scores(weights), unit_layout(self._bound(), self.kinds))

    def update_units(self, weights, alive):
        """Learn from the model as it is at a unit pruning event, before the ranking (SPT explores here)."""

    def prune(self, target):
        """Remove weights until `target` of the prunable kernel weights are masked, or units until `target` of the
        blocks' MACs are gone (never reviving any)."""
        if self.structured:
            self._prune_units(target)
            return
        weights = self.kernels()
        masks = effective_kernel_masks(self._bound())
        self.update(weights, masks)
        set_weight_masks(self.model, masks_for_sparsity(self.scores(weights), masks, target, self.scope))

    def _prune_units(self, target):
        gates = structured_gates(self._bound(), self.kinds)
        alive = {kind: gate != 0 for kind, gate in gates.items()}
        weights = self.kernels()
        self.update_units(weights, alive)
        costs = self.unit_costs()
        dense = sum(costs[kind] * gate.size for kind, gate in structured_gates(self.model, ("head", "neuron")).items())
        keep = units.units_to_keep(self.unit_scores(weights), alive, costs, target * dense)
        set_structured_masks(self.model, {kind: gates[kind] * keep[kind] for kind in self.kinds})

    def get_config(self):
        return {"method": self.method, "scope": self.scope, "granularity": self.granularity, "seq_len": self.seq_len}

    def resume_state(self):
        """`(arrays, values)`: the training-time state a resumed run needs (`{name: np.ndarray}`, JSON-able);
        none for a criterion computed from the weights alone."""
        return {}, {}

    def restore_state(self, arrays, values):
        """Put back what `resume_state` gave (after `start`, which resets it)."""

    def _bound(self):
        if self.model is None:
            raise RuntimeError(f"the {self.method} pruner is not attached to a model; call attach(model) first")
        return self.model


class MagnitudePruner(Pruner):
    """Prunes the smallest `|W|` first."""

    method = "magnitude"

    def scores(self, weights):
        return importance.magnitude(weights)


class _HookedPruner(Pruner):
    """A pruner whose state is built by a hook in the `GatedModel` train step."""

    def attach(self, model):
        if model is self.model:
            return
        self.detach()
        if not hasattr(model, "add_train_step_hook"):
            raise TypeError(
                f"{self.method} pruning reads the train step and needs a GatedModel (build_gated_encoder), "
                f"got {type(model).__name__}"
            )
        super().attach(model)
        self._armed = tf.Variable(False, trainable=False)
        self._create_state(model)
        model.add_train_step_hook(self._hook)

    def detach(self):
        if self.model is not None:
            self.model.remove_train_step_hook(self._hook)
        super().detach()

    def start(self):
        self._bound()
        self._armed.assign(True)

    def stop(self):
        if self.model is not None:
            self._armed.assign(False)

    def _hook(self, inputs, labels, variables, gradients):
        check = tf.debugging.Assert(self._armed, [MISSING_CALLBACK.format(method=self.method)])
        with tf.control_dependencies([check]):
            self._observe(inputs, labels, variables, gradients)

    def _create_state(self, model):
        raise NotImplementedError

    def _observe(self, inputs, labels, variables, gradients):
        raise NotImplementedError


class MovementPruner(_HookedPruner):
    """Hard movement pruning: keeps the weights with the highest accumulated `-W * dL/dW`.

    The scores accumulate in every training step from the gradients the
    train step already computed (no second backward pass), and restart from
    zero when training starts.
    """

    method = "movement"
    schedule_kind = "ramp"

    def _create_state(self, model):
        layers = collect_gated_layers(model)
        self._movement = {path: tf.Variable(tf.zeros(layer.kernel.shape), trainable=False)
                          for path, layer in layers.items()}
        self._kernel_ids = {id(layer.kernel): path for path, layer in layers.items()}

    def start(self):
        super().start()
        for variable in self._movement.values():
            variable.assign(tf.zeros_like(variable))

    def _observe(self, inputs, labels, variables, gradients):
        for variable, gradient in zip(variables, gradients, strict=True):
            path = self._kernel_ids.get(id(variable))
            if path is not None:
                score = self._movement[path]
                score.assign(importance.movement_update(score, tf.convert_to_tensor(variable), gradient))

    def scores(self, weights):
        return importance.movement(weights, {path: v.numpy() for path, v in self._movement.items()})

    def resume_state(self):
        return {path: variable.numpy() for path, variable in self._movement.items()}, {}

    def restore_state(self, arrays, values):
        for path, variable in self._movement.items():
            variable.assign(arrays[path])


class SptPruner(_HookedPruner):
    """SPT: pruning by rewards estimated with epsilon-exploration.

    Every prunable weight carries a reward `R`, initialised at the first
    pruning event to its normalised magnitude `m = |W| / max|W|` (over the
    scope). At every later event the reward first moves with the weight:
    `R += m_now - m_before` (`importance.follow_magnitudes`), so a reward is
    the current magnitude plus what exploration has learned about the weight.
    Then the pruner explores: it samples a fraction `epsilon`
    of the live weights (over all layers at once, or in each layer on its own
    when `explore_per_layer`), masks the sample, and measures the increase
    `r` of the model's training objective (`GatedModel.objective`: the task
    loss, or the distillation loss when a teacher is attached) on the latest
    training batch (inference mode). Every weight
    in that sample gets `R = (1 - alpha) * R + alpha * r`. Then the live
    weights with the lowest `R` are pruned to reach the target.

    Args:
        epsilon: fraction of live weights probed per event (per layer when
            `explore_per_layer`); 0 turns exploration off.
        alpha: weight of a new reward sample.
        explore_per_layer: one probe per layer instead of one global probe.
        seed: seed of the exploration's sampling.
        scope: `global` or `layer` ranking and normalisation.
        granularity, seq_len: as for `Pruner`. With units, every head and
            neuron carries a reward (its weights' mean normalised magnitude to
            start with), a probe switches a sample of live units off through
            their gates, and `explore_per_layer` probes each kind on its own.
    """

    method = "spt"

    def __init__(self, epsilon=0.0025, alpha=0.125, explore_per_layer=False, seed=0, scope="global",
                 granularity="weight", seq_len=128):
        super().__init__(scope, granularity, seq_len)
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got epsilon={epsilon}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got alpha={alpha}")
        self.epsilon = epsilon
        self.alpha = alpha
        self.explore_per_layer = explore_per_layer
        self.seed = seed
        self.rewards = None
        self.magnitudes = None  # the normalised magnitudes at the last event
        self.last_exploration = {}
        self._rng = np.random.default_rng(seed)

    @classmethod
    def from_run_config(cls, config, prunable_weights):
        epsilon = scaled_spt_epsilon(config.spt_epsilon, prunable_weights)
        return cls(epsilon, config.spt_reward_alpha, config.spt_explore_per_layer, config.seed, config.pruning_scope,
                   config.pruning_granularity, config.max_len)

    def _create_state(self, model):
        def slot(spec):
            return tf.Variable(tf.zeros([0] * len(spec.shape), spec.dtype), shape=tf.TensorShape(None),
                               trainable=False)

        self._batch_inputs = tf.nest.map_structure(slot, model.input)
        self._batch_labels = tf.Variable(tf.zeros([0]), shape=tf.TensorShape(None), trainable=False)

    def start(self):
        super().start()
        self.rewards = self.magnitudes = None
        self._rng = np.random.default_rng(self.seed)

    def _observe(self, inputs, labels, variables, gradients):
        tf.nest.map_structure(lambda slot, value: slot.assign(value), self._batch_inputs, inputs)
        self._batch_labels.assign(tf.cast(labels, tf.float32))

    def latest_batch(self):
        """The last training batch the train step saw, as `(inputs, labels)`."""
        labels = self._batch_labels.numpy()
        if labels.size == 0:
            raise RuntimeError("SPT probes the latest training batch: prune only after a training step")
        return tf.nest.map_structure(lambda slot: slot.numpy(), self._batch_inputs), labels

    def probe_loss(self, inputs, labels, removed=None):
        """The training objective on a batch in inference mode, with the weights in `removed` (`{path: bool array}`)
        masked."""
        layers = collect_gated_layers(self._bound())
        saved = {path: layers[path].kernel_mask.numpy() for path in removed or {}}
        try:
            for path, drop in (removed or {}).items():
                layers[path].kernel_mask.assign(saved[path] * ~drop)
            return float(self.model.objective(inputs, labels))
        finally:
            for path, mask in saved.items():
                layers[path].kernel_mask.assign(mask)

    def probe_units_loss(self, inputs, labels, removed=None):
        """The training objective on a batch in inference mode, with the units in `removed`
        (`{kind: bool [layers, units]}`) off."""
        saved = structured_gates(self._bound(), self.kinds)
        try:
            if removed:
                set_structured_masks(self.model, {kind: saved[kind] * ~drop for kind, drop in removed.items()})
            return float(self.model.objective(inputs, labels))
        finally:
            set_structured_masks(self.model, saved)

    def explore(self, masks, of_units=False):
        """Probe random live weights (or, with `of_units`, live units: `masks` is then `{kind: [layers, units]}`) and
        blend the loss increases into their rewards."""
        probe = self.probe_units_loss if of_units else self.probe_loss
        if self.epsilon == 0:
            self.last_exploration = {"probes": 0, "probed_weights": 0, "mean_reward_sample": None}
            return
        inputs, labels = self.latest_batch()
        paths = sorted(masks)
        groups = [[path] for path in paths] if self.explore_per_layer else [paths]
        base = probe(inputs, labels)
        probed_total, samples = 0, []
        for group in groups:
            live = np.flatnonzero(flatten(masks, group))
            count = importance.exploration_count(live.size, self.epsilon)
            if count == 0:
                continue
            chosen = np.zeros(sum(masks[path].size for path in group), dtype=bool)
            chosen[self._rng.choice(live, size=count, replace=False)] = True
            removed = unflatten(chosen, masks, group)
            sample = probe(inputs, labels, removed) - base
            for path, drop in removed.items():
                self.rewards[path] = importance.blend_rewards(self.rewards[path], drop, sample, self.alpha)
            probed_total += count
            samples.append(sample)
        self.last_exploration = {"probes": len(samples), "probed_weights": probed_total,
                                 "mean_reward_sample": float(np.mean(samples)) if samples else None}

    def update(self, weights, masks):
        magnitudes = importance.initial_rewards(weights, self.scope)
        self.rewards = importance.follow_magnitudes(self.rewards, self.magnitudes, magnitudes)
        self.magnitudes = magnitudes
        self.explore(masks)

    def update_units(self, weights, alive):
        mean_magnitudes = units.unit_scores(importance.magnitude(weights), unit_layout(self._bound(), self.kinds))
        magnitudes = importance.initial_rewards(mean_magnitudes)
        self.rewards = importance.follow_magnitudes(self.rewards, self.magnitudes, magnitudes)
        self.magnitudes = magnitudes
        self.explore({kind: mask.astype(np.float32) for kind, mask in alive.items()}, of_units=True)

    def scores(self, weights):
        return importance.reward(weights, self.rewards)

    def unit_scores(self, weights):
        return dict(self.rewards)

    def resume_state(self):
        arrays = {f"{name}/{path}": value for name in ("rewards", "magnitudes")
                  for path, value in (getattr(self, name) or {}).items()}
        return arrays, {"rng": self._rng.bit_generator.state, "has_rewards": self.rewards is not None,
                        "last_exploration": self.last_exploration}

    def restore_state(self, arrays, values):
        for name in ("rewards", "magnitudes"):
            setattr(self, name, {key.removeprefix(f"{name}/"): value for key, value in arrays.items()
                                 if key.startswith(f"{name}/")} if values["has_rewards"] else None)
        self._rng = np.random.default_rng(self.seed)
        self._rng.bit_generator.state = values["rng"]
        self.last_exploration = values["last_exploration"]

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon, "alpha": self.alpha,
                "explore_per_layer": self.explore_per_layer, "seed": self.seed}


PRUNERS = {cls.method: cls for cls in (MagnitudePruner, MovementPruner, SptPruner)}
