"""Soft movement pruning (Sanh et al. 2020): learned importance scores, a threshold, and an L1 regulariser on the
scores that decides how sparse the model gets.

Every prunable weight (or, with a structured granularity, every head or FFN neuron) has a score `S`. Its mask
is `1[sigmoid(S) > threshold]`: the kernel masks for weights, the head and neuron gates for units. The scores
learn through the masks as if the threshold were the identity (straight-through): a score's gradient is the
loss's gradient with respect to its mask entry, `dL/dM = dL/dW' * W` for a weight (`W' = W * M`), which is
movement. The regulariser `lambda * mean(sigmoid(S))` pulls every score down; `lambda` rises linearly from 0
over the warm-up steps. Masks may revive: a score that climbs back over the threshold switches its weight on.
The final sparsity is whatever the regulariser reaches, counted from the masks.

With a target (`target_sparsity=t`) the fixed `lambda` gives way to a Lagrangian controller
(`pruners.training.lagrangian`) on the sparsity `s` the masks reach: the fraction of the prunable weights
(weight granularity) or of the blocks' MACs that the removed heads and neurons cost (`unit_costs`, structured
granularities), with the gradient of `sum(cost * (1 - sigmoid(S)))`, so a head is pushed in proportion to its
MACs. `lambda` then follows how far `s` is from the target, which rises linearly from 0 over the warm-up steps.
Without a target, `lambda` and how long the run is decide the sparsity (measured on the SST-2 MiniLM at lambda
5, 2 epochs: 0.50-0.52 of the MACs kept on 8,000 rows, 0.31 on 20,000, and 0.35-0.48 with distillation), which
is no way to compare methods at one budget. The controller swings the masks around the target (on MiniLM they
ended at 0.53 of the MACs for a 0.5 target), so a run can also freeze them (`freeze_step`): from then on the
masks stay as they are while the weights train on, and with a target they are first set to it, removing the
lowest-scoring entries first until their cost reaches it.
"""

import math

import keras
import numpy as np
from keras import ops

from gated.masks import collect_gated_layers, structured_gates
from gated_bert.vocabulary import GRANULARITIES
from pruners.training.lagrangian import controller_term, multiplier_variables, ramped, straight_through
from pruners.training.state import assign_variables_state, variables_state


def mask_targets(model, granularity):
    """`{name: mask variable}` the scores drive: every `GatedDense` kernel mask (`weight`), or the head and
    neuron gates of the granularity's kinds (`block_0/attention/head_gate`, ...)."""
    from gated.attention import GatedMultiHeadAttention
    from gated.feed_forward import GatedFeedForward

    if granularity == "weight":
        targets = {path: layer.kernel_mask for path, layer in collect_gated_layers(model).items()}
        missing = [path for path, mask in targets.items() if mask is None]
        if missing:
            raise ValueError(f"soft movement over weights needs kernel masks, but {missing[0]} has none; build the "
                             "model with kernel_masks=True")
        return targets
    kinds = GRANULARITIES[granularity]
    targets = {}
    if "head" in kinds:
        targets.update({f"{path}/head_gate": layer.head_gate
                        for path, layer in collect_gated_layers(model, GatedMultiHeadAttention).items()})
    if "neuron" in kinds:
        targets.update({f"{path}/neuron_gate": layer.neuron_gate
                        for path, layer in collect_gated_layers(model, GatedFeedForward).items()})
    return targets


class SoftMovementLearner:
    """Trains soft-movement scores through a `GatedModel`'s train step (`attach`) and keeps the masks on them.

    Args:
        threshold: a mask keeps its weight while `sigmoid(S) > threshold`.
        regularization: the final `lambda` of `lambda * mean(sigmoid(S))` (unused with `target_sparsity`).
        warmup_steps: steps over which `lambda` (or, with a target, the target) rises linearly from 0 (0: full
            from the start).
        scores_lr: Adam learning rate of the scores.
        granularity: `weight`, or `neuron`, `head` or `both` (units through their gates).
        target_sparsity: the fraction to remove, reached by a Lagrangian controller: of the prunable weights
            (`weight`) or of the blocks' MACs (structured; needs `unit_costs`). None: the fixed `lambda`.
        unit_costs: `{"head": MACs, "neuron": MACs}` of one unit (`efficiency.mac.unit_macs`).
        multiplier_lr: gradient-ascent rate of the Lagrange multipliers.
        freeze_step: the scores optimizer's step at which the masks stop moving (`freeze`); None: never.
    """

    term_names = ("score_regularization",)

    def __init__(self, threshold=0.5, regularization=100.0, warmup_steps=0, scores_lr=0.01, granularity="weight",
                 target_sparsity=None, unit_costs=None, multiplier_lr=0.1, freeze_step=None):
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got threshold={threshold}")
        if regularization < 0:
            raise ValueError(f"regularization must be >= 0, got regularization={regularization}")
        if granularity not in GRANULARITIES:
            raise ValueError(f"unknown granularity {granularity!r}; choose one of: {', '.join(GRANULARITIES)}")
        if target_sparsity is not None and not 0.0 <= target_sparsity < 1.0:
            raise ValueError(f"target_sparsity must be in [0, 1), got target_sparsity={target_sparsity}")
        if target_sparsity is not None and granularity != "weight" and unit_costs is None:
            raise ValueError(f"a target over {granularity} units is a fraction of the blocks' MACs: give unit_costs "
                             "(efficiency.mac.unit_macs)")
        self.threshold = float(threshold)
        self.regularization = float(regularization)
        self.warmup_steps = int(warmup_steps)
        self.scores_lr = float(scores_lr)
        self.granularity = granularity
        self.target_sparsity = None if target_sparsity is None else float(target_sparsity)
        self.unit_costs = None if unit_costs is None else {kind: float(unit_costs[kind]) for kind in ("head", "neuron")}
        self.multiplier_lr = float(multiplier_lr)
        self.freeze_step = None if freeze_step is None else int(freeze_step)
        self.model = None

    @property
    def initial_score(self):
        """Every score starts one logit above the threshold: all kept, a few steps of pressure from pruned."""
        return math.log(self.threshold / (1.0 - self.threshold)) + 1.0

    def attach(self, model):
        """Bind to `model` (a `GatedModel`): create the scores (first time) and register with its train step."""
        if not hasattr(model, "set_mask_learner"):
            raise TypeError(f"soft movement needs a GatedModel (build_gated_encoder), got {type(model).__name__}")
        if self.model is not model:
            self.targets = mask_targets(model, self.granularity)
            self.scores = {name: keras.Variable(np.full(tuple(mask.shape), self.initial_score, "float32"),
                                                name=f"score_{name.replace('/', '_')}")
                           for name, mask in self.targets.items()}
            self.optimizer = keras.optimizers.Adam(self.scores_lr, name="scores_adam")
            self.optimizer.build(list(self.scores.values()))
            self.costs = None if self.target_sparsity is None else self._costs(model)
            self.multipliers, self.gap, self.multiplier_optimizer = None, None, None
            if self.costs:
                self.multipliers, self.gap = multiplier_variables("scores")
                self.multiplier_optimizer = keras.optimizers.SGD(self.multiplier_lr, name="scores_multipliers_sgd")
                self.multiplier_optimizer.build([self.multipliers])
            self.totals = {name: keras.Variable(0.0, trainable=False) for name in self.term_names}
            self.steps = keras.Variable(0, dtype="int64", trainable=False)
            self.frozen = keras.Variable(0.0, trainable=False, name="masks_frozen")
            self.model = model
        model.set_mask_learner(self)

    def _costs(self, model):
        """`{target: what removing each of its entries costs, as a fraction}`: `1 / count` per weight, or a
        unit's MACs over the blocks' MACs (every head and neuron, of the kinds scored or not)."""
        if self.granularity == "weight":
            count = sum(int(np.prod(mask.shape)) for mask in self.targets.values())
            return {name: 1.0 / count for name in self.targets}
        units = {kind: np.size(gates) for kind, gates in structured_gates(model, ("head", "neuron")).items()}
        total = sum(self.unit_costs[kind] * count for kind, count in units.items())
        return {name: self.unit_costs["head" if name.endswith("head_gate") else "neuron"] / total
                for name in self.targets}

    def detach(self):
        if self.model is not None:
            self.model.set_mask_learner(None)

    # -- Inside the train step ---------------------------------------------------------
    def current_regularization(self):
        """`lambda` at the scores optimizer's step, ramped linearly over `warmup_steps` (fixed-lambda mode)."""
        return ramped(self.regularization, self.optimizer.iterations, self.warmup_steps)

    def current_target(self):
        """The target sparsity at the scores optimizer's step, ramped linearly over `warmup_steps`."""
        return ramped(self.target_sparsity, self.optimizer.iterations, self.warmup_steps)

    def penalty(self):
        """`(regulariser, {term: value})`: `lambda * mean sigmoid(S)` over every score, or with a target the
        Lagrangian of the masks' sparsity."""
        if self.costs is None:
            count = sum(int(np.prod(score.shape)) for score in self.scores.values())
            mean = ops.sum(ops.stack([ops.sum(ops.sigmoid(score)) for score in self.scores.values()])) / count
            term = self.current_regularization() * mean
        else:
            term = controller_term(self.controlled_sparsity(), self.current_target(), self.multipliers, self.gap)
        term = term * (1.0 - self.frozen)
        return term, {"score_regularization": term}

    def controlled_sparsity(self):
        """What the masks remove (the cost-weighted share of zeros) as the value, with the gradient of what
        `1 - sigmoid(S)` would remove (straight-through)."""
        removed = [ops.sum(self.costs[name] * (1.0 - ops.sigmoid(score))) for name, score in self.scores.items()]
        binary = [ops.sum(self.costs[name] * (1.0 - mask)) for name, mask in self.targets.items()]
        return straight_through(ops.sum(ops.stack(binary)), ops.sum(ops.stack(removed)))

    def watched(self):
        """The mask variables the train step must differentiate although they are not trainable."""
        return list(self.targets.values())

    def trainable_variables(self, model):
        multipliers = [self.multipliers] if self.costs else []
        return [*model.trainable_variables, *self.targets.values(), *self.scores.values(), *multipliers]

    def apply_gradients(self, model_optimizer, variables, gradients):
        """Backbone to `model_optimizer`; each score gets its mask's gradient (straight-through) plus the
        regulariser's; the multipliers (with a target) are raised by ascent; then every mask follows its score."""
        by_id = dict(zip((id(v) for v in variables), gradients, strict=True))
        own_ids = {id(v) for v in [*self.targets.values(), *self.scores.values(), self.multipliers]}
        model_optimizer.apply_gradients([(g, v) for v, g in zip(variables, gradients, strict=True)
                                         if id(v) not in own_ids])
        pairs = []
        for name, score in self.scores.items():
            through_mask, own = by_id[id(self.targets[name])], by_id[id(score)]
            pairs.append((ops.convert_to_tensor(through_mask) + ops.convert_to_tensor(own), score))
        self.optimizer.apply_gradients(pairs)
        if self.costs:
            self.multiplier_optimizer.apply_gradients([(-by_id[id(self.multipliers)], self.multipliers)])
        self.update_masks()

    def update_masks(self):
        """Every mask to `sigmoid(S) > threshold`, unless frozen."""
        for name, score in self.scores.items():
            mask = self.targets[name]
            mask.assign(ops.where(self.frozen > 0.0, mask, ops.cast(ops.sigmoid(score) > self.threshold, "float32")))

    # -- Freezing the masks --------------------------------------------------------------
    def due_to_freeze(self):
        """Whether `freeze_step` has come and the masks still move."""
        return (self.freeze_step is not None and not float(self.frozen.numpy())
                and int(self.optimizer.iterations.numpy()) >= self.freeze_step)

    def freeze(self):
        """Stop the masks from moving. With a target they are first set to it: the entries with the lowest scores
        are removed until what they cost reaches the target (so the masks keep at most `1 - target`)."""
        if self.costs is not None:
            names = list(self.scores)
            scores = np.concatenate([self.scores[name].numpy().ravel() for name in names])
            costs = np.concatenate([np.full(np.size(self.scores[name]), self.costs[name]) for name in names])
            order = np.argsort(scores, kind="stable")
            removed = np.cumsum(costs[order])
            count = 0 if self.target_sparsity <= 0 else int(np.searchsorted(removed, self.target_sparsity - 1e-9)) + 1
            keep = np.ones_like(scores, dtype="float32")
            keep[order[:count]] = 0.0
            start = 0
            for name in names:
                size = np.size(self.scores[name])
                self.targets[name].assign(keep[start:start + size].reshape(self.targets[name].shape))
                start += size
        self.frozen.assign(1.0)

    def record(self, task_loss, terms):
        for name in self.term_names:
            self.totals[name].assign_add(ops.cast(terms[name], "float32"))
        self.steps.assign_add(1)

    # -- Between steps -----------------------------------------------------------------
    def means(self):
        steps = int(self.steps.numpy())
        return {name: float(v.numpy()) / steps if steps else float("nan") for name, v in self.totals.items()}

    def reset_totals(self):
        for variable in self.totals.values():
            variable.assign(0.0)
        self.steps.assign(0)

    def resume_state(self):
        """`(arrays, values)`: the scores and their optimizer, for a resumed run."""
        return variables_state(self._state_variables()), {}

    def restore_state(self, arrays, values):
        groups = self._state_variables()
        if not any(key.startswith("frozen/") for key in arrays):
            del groups["frozen"]  # saved before masks could freeze: they move
        assign_variables_state(groups, arrays)

    def lagrange_multipliers(self):
        """`(l1, l2)` with a target, else None."""
        return None if self.costs is None else tuple(float(v) for v in self.multipliers.numpy())

    def _state_variables(self):
        controller = {"multipliers": [self.multipliers, self.gap],
                      "multiplier_optimizer": self.multiplier_optimizer.variables} if self.costs else {}
        return {"scores": self.scores, "optimizer": self.optimizer.variables, "frozen": [self.frozen], **controller}

    def get_config(self):
        return {"threshold": self.threshold, "regularization": self.regularization,
                "warmup_steps": self.warmup_steps, "scores_lr": self.scores_lr, "granularity": self.granularity,
                "initial_score": self.initial_score, "target_sparsity": self.target_sparsity,
                "unit_costs": self.unit_costs, "multiplier_lr": self.multiplier_lr, "freeze_step": self.freeze_step}
