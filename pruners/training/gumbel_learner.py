"""Learning Gumbel-Sigmoid masks: the mask losses and the learner that trains the logits (the temperature
follows `pruners.training.schedules.TemperatureSchedule`).

Two modes decide how sparse the learned masks get:
- fixed weight (`target_sparsity=None`): `sparsity_weight * mean keep-probability`
  is added to the task loss. It pulls the masks toward zero, but how far
  depends on the task loss; no sparsity is promised.
- target (`target_sparsity=t`): the fixed term is replaced by a Lagrangian
  controller (`pruners.training.lagrangian`), `l1 * (s - t) + l2 * (s - t)**2`:
  one per mask kind, where `s` is the fraction of the kind's units removed, or
  (`unit_costs` given) one for all kinds, where `s` is the fraction of the
  blocks' MACs that the removed heads and neurons cost. `s` is the binary
  masks' sparsity with the gradient of the expected one, from the
  keep-probabilities. The multipliers are trained by plain SGD ascent
  (`multiplier_lr`). The target rises linearly from 0 over
  `target_warmup_steps`; `l1` restarts from 0 whenever `s - t` changes sign
  (measured on MiniLM, 2 epochs, without that restart: neurons 0.66 for a 0.5
  target, `l1` still pushing).
In both modes `quantization_weight * binary entropy` of the keep-probabilities
pushes each one to 0 or 1. Keep-probabilities are `sigmoid(logits)`, the
chance that a relaxed sample exceeds 0.5. Means are taken per kind, then
averaged over kinds, so the 8 heads of a small model weigh as much as its
1,024 neurons.
"""

import keras
import numpy as np
from keras import ops

from gated.masks import learned_gates, structured_gates
from pruners.training.lagrangian import controller_term, multiplier_variables, ramped, straight_through
from pruners.training.state import assign_variables_state, variables_state

# Keep-probabilities are clipped this far from 0 and 1 inside the logarithms of the entropy.
_EPS = 1e-7


def binary_entropy(probabilities):
    """`-p log p - (1 - p) log(1 - p)` in nats, elementwise; 0 at p in {0, 1}, log 2 at p = 0.5."""
    p = ops.clip(probabilities, _EPS, 1.0 - _EPS)
    return -(p * ops.log(p) + (1.0 - p) * ops.log(1.0 - p))


def kind_means(values_per_kind):
    """The mean of each kind's values, then the mean over kinds (each kind weighs the same)."""
    return ops.mean(ops.stack([ops.mean(values) for values in values_per_kind]))


def sparsity_term(keep_probabilities, weight):
    """`weight * mean keep-probability` (`keep_probabilities`: one array per kind)."""
    return weight * kind_means(keep_probabilities)


def quantization_term(keep_probabilities, weight):
    """`weight * mean binary entropy` of the keep-probabilities (one array per kind)."""
    return weight * kind_means([binary_entropy(p) for p in keep_probabilities])


def _scalar_variable(name):
    return keras.Variable(0.0, trainable=False, name=name.replace("/", "_"))


class GumbelMaskLearner:
    """Trains a model's `GumbelGate` logits: adds the mask losses and gives the logits their own optimizer.

    `attach(model)` registers it with a `GatedModel`, whose train step then
    adds `penalty()` to the task loss and lets `apply_gradients` route the
    gradients: mask logits to an Adam optimizer at `masks_lr`, Lagrange
    multipliers to an SGD optimizer at `multiplier_lr` with the gradient
    negated (ascent), and everything else to the model's optimizer, unless `freeze`, when the
    backbone gets no gradient at all and stays bit-identical.

    The latest value of each loss term and their sums since `reset_totals`
    live in variables that the train step updates, so callbacks can log them
    without another pass.

    Args:
        sparsity_weight: weight of the mean keep-probability (fixed-weight mode).
        quantization_weight: weight of the mean binary entropy.
        target_sparsity: fraction of each kind's units to remove (of the blocks' MACs with `unit_costs`); None
            for fixed-weight mode.
        masks_lr: learning rate of the mask optimizer.
        freeze: train only the masks.
        target_warmup_steps: steps over which the target rises from 0 (0: the full target from the start).
        multiplier_lr: gradient-ascent rate of the Lagrange multipliers.
        unit_costs: `{"head": MACs, "neuron": MACs}` of one unit: the target is then a fraction of the blocks'
            MACs (heads and neurons, learned or not), reached by one controller over every learned kind. Needs
            `target_sparsity`; `ffn_out` masks have no MAC cost and cannot be learned with it.
    """

    def __init__(self, sparsity_weight=0.1, quantization_weight=0.01, target_sparsity=None, masks_lr=0.01,
                 freeze=False, target_warmup_steps=0, multiplier_lr=0.1, unit_costs=None):
        if target_sparsity is not None and not 0.0 <= target_sparsity < 1.0:
            raise ValueError(f"target_sparsity must be in [0, 1), got target_sparsity={target_sparsity}")
        if masks_lr <= 0:
            raise ValueError(f"masks_lr must be positive, got masks_lr={masks_lr}")
        if unit_costs is not None and target_sparsity is None:
            raise ValueError("unit_costs set a MAC target, but target_sparsity is None; give target_sparsity")
        if unit_costs is not None and set(unit_costs) != {"head", "neuron"}:
            raise ValueError(f"unit_costs must give the MACs of a head and of a neuron, got {sorted(unit_costs)}")
        self.sparsity_weight = sparsity_weight
        self.quantization_weight = quantization_weight
        self.target_sparsity = target_sparsity
        self.masks_lr = masks_lr
        self.freeze = freeze
        self.target_warmup_steps = target_warmup_steps
        self.multiplier_lr = multiplier_lr
        self.unit_costs = None if unit_costs is None else {kind: float(cost) for kind, cost in unit_costs.items()}
        self.model = None

    # -- Binding --------------------------------------------------------------
    def attach(self, model):
        """Bind to `model` (a `GatedModel` built with `learn_masks`) and register with its train step.

        The first attach creates the mask optimizer and the multipliers; later
        ones (a second `fit`) reuse them, so their state carries on.
        """
        if self.model is not model:
            self._build(model)
        model.set_mask_learner(self)  # also builds the model's optimizer over every trainable variable

    def detach(self):
        """Unregister from the model (its train step goes back to plain training); state is kept."""
        if self.model is not None:
            self.model.set_mask_learner(None)

    def _build(self, model):
        self.gates = learned_gates(model)
        if not self.gates:
            raise ValueError("the model learns no masks: build it with learn_masks (head, neuron, ffn_out or all)")
        self.kinds = tuple(self.gates)
        self.logits = [gate.logits for gates in self.gates.values() for gate in gates]
        self.controls = {} if self.target_sparsity is None else self._controls(model)
        pairs = {name: multiplier_variables(name) for name in self.controls}
        self.multipliers = {name: pair[0] for name, pair in pairs.items()}
        self.gaps = {name: pair[1] for name, pair in pairs.items()}
        self.mask_variables = [*self.logits, *self.multipliers.values()]  # what `freeze` still trains
        self.optimizer = keras.optimizers.Adam(self.masks_lr, name="masks_adam")
        self.optimizer.build(self.logits)
        self.multiplier_optimizer = keras.optimizers.SGD(self.multiplier_lr, name="multipliers_sgd")
        self.multiplier_optimizer.build(list(self.multipliers.values()))
        self.term_names = ("task_loss", "sparsity_loss", "quantization_loss",
                           *(f"expected_sparsity/{kind}" for kind in self.kinds))
        self.last = {name: _scalar_variable("last_" + name) for name in self.term_names}
        self.totals = {name: _scalar_variable("total_" + name) for name in self.term_names}
        self.steps = keras.Variable(0, dtype="int64", trainable=False, name="mask_steps")
        self.model = model

    def _controls(self, model):
        """`{controller: (removed when every learned unit is off, {kind: weight per unit})}`.

        A controller's sparsity is `removed - sum over kinds of (weights * keep)`. Per kind (units): removed 1,
        weights `1 / units`. For MACs: the static gates' removed heads and neurons count as removed, and a live
        learned unit weighs its MACs over the blocks' total (a unit its static gate removed weighs 0).
        """
        if self.unit_costs is None:
            counts = {kind: sum(gate.units for gate in gates) for kind, gates in self.gates.items()}
            return {kind: (1.0, {kind: ops.full((count,), 1.0 / count)}) for kind, count in counts.items()}
        costless = sorted(set(self.kinds) - set(self.unit_costs))
        if costless:
            raise ValueError(f"a MAC target counts heads and neurons only, but the model learns {costless} masks; "
                             "learn head and neuron masks only")
        static = structured_gates(model, ("head", "neuron"))
        total = sum(self.unit_costs[kind] * np.size(gates) for kind, gates in static.items())
        kept_fixed = sum(self.unit_costs[kind] * np.count_nonzero(gates) for kind, gates in static.items()
                         if kind not in self.gates)
        weights = {kind: ops.convert_to_tensor(np.ravel(static[kind] != 0) * self.unit_costs[kind] / total,
                                               "float32") for kind in self.gates}
        return {"macs": (1.0 - kept_fixed / total, weights)}

    # -- Inside the train step ---------------------------------------------------
    def keep_probabilities(self):
        """`{kind: keep-probabilities of every gate of that kind, concatenated}`."""
        return {kind: ops.concatenate([gate.keep_probability() for gate in gates])
                for kind, gates in self.gates.items()}

    def penalty(self):
        """`(total, terms)`: the loss to add to the task loss and its named parts (tensors)."""
        keep = self.keep_probabilities()
        expected = {kind: 1.0 - ops.mean(p) for kind, p in keep.items()}
        if self.target_sparsity is None:
            sparsity = sparsity_term(list(keep.values()), self.sparsity_weight)
        else:
            target = self.current_target()
            sparsity = sum(self._controller_term(name, keep, target) for name in self.controls)
        quantization = quantization_term(list(keep.values()), self.quantization_weight)
        terms = {"sparsity_loss": sparsity, "quantization_loss": quantization,
                 **{f"expected_sparsity/{kind}": value for kind, value in expected.items()}}
        return sparsity + quantization, terms

    def _controller_term(self, name, keep, target):
        """One controller's Lagrangian (`pruners.training.lagrangian.controller_term`)."""
        return controller_term(self._controlled_sparsity(name, keep), target, self.multipliers[name], self.gaps[name])

    def _controlled_sparsity(self, name, keep):
        """The binary masks' sparsity as the value, the expected sparsity's gradient (straight-through)."""
        removed, weights = self.controls[name]
        binary = {kind: ops.concatenate([gate.binary() for gate in self.gates[kind]]) for kind in weights}
        expected = removed - sum(ops.sum(weights[kind] * keep[kind]) for kind in weights)
        return straight_through(removed - sum(ops.sum(weights[kind] * binary[kind]) for kind in weights), expected)

    def current_target(self):
        """The target at the mask optimizer's step: ramped linearly from 0 over `target_warmup_steps`."""
        return ramped(self.target_sparsity, self.optimizer.iterations, self.target_warmup_steps)

    def record(self, task_loss, terms):
        """Store the step's loss terms (latest value and running sum)."""
        for name, value in {"task_loss": task_loss, **terms}.items():
            value = ops.cast(value, "float32")
            self.last[name].assign(value)
            self.totals[name].assign_add(value)
        self.steps.assign_add(1)

    def trainable_variables(self, model):
        """The variables the train step differentiates: the masks only when `freeze`."""
        if self.freeze:
            return list(self.mask_variables)
        return [*model.trainable_variables, *self.multipliers.values()]

    def apply_gradients(self, model_optimizer, variables, gradients):
        """Logits to the mask Adam, multipliers (negated: ascent) to their SGD, the rest to `model_optimizer`."""
        mask_ids = {id(variable) for variable in self.logits}
        ascent_ids = {id(variable) for variable in self.multipliers.values()}
        masks, multipliers, backbone = [], [], []
        for variable, gradient in zip(variables, gradients, strict=True):
            if id(variable) in ascent_ids:
                multipliers.append((-gradient, variable))
            elif id(variable) in mask_ids:
                masks.append((gradient, variable))
            else:
                backbone.append((gradient, variable))
        self.optimizer.apply_gradients(masks)
        if multipliers:
            self.multiplier_optimizer.apply_gradients(multipliers)
        if backbone:
            model_optimizer.apply_gradients(backbone)

    # -- Between steps (callbacks) ----------------------------------------------
    def set_temperature(self, temperature):
        """Assign `temperature` to every learned gate."""
        for gates in self.gates.values():
            for gate in gates:
                gate.temperature.assign(temperature)

    def latest(self):
        """`{term: float}` of the last train step."""
        return {name: float(variable.numpy()) for name, variable in self.last.items()}

    def means(self):
        """`{term: float}` averaged over the steps since `reset_totals` (empty before any step)."""
        steps = int(self.steps.numpy())
        return {name: float(variable.numpy()) / steps for name, variable in self.totals.items()} if steps else {}

    def reset_totals(self):
        for variable in self.totals.values():
            variable.assign(0.0)
        self.steps.assign(0)

    def lagrange_multipliers(self):
        """`{controller: (l1, l2)}` in target mode (controllers: the learned kinds, or `macs`), else empty."""
        return {name: tuple(float(v) for v in lam.numpy()) for name, lam in self.multipliers.items()}

    def _state_variables(self):
        return {"optimizer": self.optimizer.variables, "multiplier_optimizer": self.multiplier_optimizer.variables,
                "multipliers": [self.multipliers[name] for name in sorted(self.multipliers)],
                "gaps": [self.gaps[name] for name in sorted(self.gaps)]}

    def resume_state(self):
        """`(arrays, values)`: the mask optimizers' and the multipliers' state, for a resumed run."""
        return variables_state(self._state_variables()), {}

    def restore_state(self, arrays, values):
        groups = self._state_variables()
        if not any(key.startswith("gaps/") for key in arrays):
            # Saved before the anti-windup existed (per-kind controllers only): no gap seen yet, as at a start.
            del groups["gaps"]
        assign_variables_state(groups, arrays)

    def get_config(self):
        return {"sparsity_weight": self.sparsity_weight, "quantization_weight": self.quantization_weight,
                "target_sparsity": self.target_sparsity, "masks_lr": self.masks_lr, "freeze": self.freeze,
                "target_warmup_steps": self.target_warmup_steps, "multiplier_lr": self.multiplier_lr,
                "unit_costs": self.unit_costs}
