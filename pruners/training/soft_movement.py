"""Soft movement pruning (Sanh et al. 2020): learned importance scores, a threshold, and an L1 regulariser on the
scores that decides how sparse the model gets.

Every prunable weight (or, with a structured granularity, every head or FFN neuron) has a score `S`. Its mask
is `1[sigmoid(S) > threshold]`: the kernel masks for weights, the head and neuron gates for units. The scores
learn through the masks as if the threshold were the identity (straight-through): a score's gradient is the
loss's gradient with respect to its mask entry, `dL/dM = dL/dW' * W` for a weight (`W' = W * M`), which is
movement. The regulariser `lambda * mean(sigmoid(S))` pulls every score down; `lambda` rises linearly from 0
over the warm-up steps. Masks may revive: a score that climbs back over the threshold switches its weight on.
The final sparsity is whatever the regulariser reaches, counted from the masks.
"""

import math

import keras
import numpy as np
from keras import ops

from gated.masks import collect_gated_layers
from gated_bert.vocabulary import GRANULARITIES
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
        regularization: the final `lambda` of `lambda * mean(sigmoid(S))`.
        warmup_steps: steps over which `lambda` rises linearly from 0 (0: full from the start).
        scores_lr: Adam learning rate of the scores.
        granularity: `weight`, or `neuron`, `head` or `both` (units through their gates).
    """

    term_names = ("score_regularization",)

    def __init__(self, threshold=0.5, regularization=100.0, warmup_steps=0, scores_lr=0.01, granularity="weight"):
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got threshold={threshold}")
        if regularization < 0:
            raise ValueError(f"regularization must be >= 0, got regularization={regularization}")
        if granularity not in GRANULARITIES:
            raise ValueError(f"unknown granularity {granularity!r}; choose one of: {', '.join(GRANULARITIES)}")
        self.threshold = float(threshold)
        self.regularization = float(regularization)
        self.warmup_steps = int(warmup_steps)
        self.scores_lr = float(scores_lr)
        self.granularity = granularity
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
            self.totals = {name: keras.Variable(0.0, trainable=False) for name in self.term_names}
            self.steps = keras.Variable(0, dtype="int64", trainable=False)
            self.model = model
        model.set_mask_learner(self)

    def detach(self):
        if self.model is not None:
            self.model.set_mask_learner(None)

    # -- Inside the train step ---------------------------------------------------------
    def current_regularization(self):
        """`lambda` at the scores optimizer's step, ramped linearly over `warmup_steps`."""
        if not self.warmup_steps:
            return ops.convert_to_tensor(self.regularization)
        progress = ops.cast(self.optimizer.iterations, "float32") / self.warmup_steps
        return self.regularization * ops.minimum(progress, 1.0)

    def penalty(self):
        """`(lambda * mean sigmoid(S) over every score, {term: value})`."""
        count = sum(int(np.prod(score.shape)) for score in self.scores.values())
        mean = ops.sum(ops.stack([ops.sum(ops.sigmoid(score)) for score in self.scores.values()])) / count
        term = self.current_regularization() * mean
        return term, {"score_regularization": term}

    def watched(self):
        """The mask variables the train step must differentiate although they are not trainable."""
        return list(self.targets.values())

    def trainable_variables(self, model):
        return [*model.trainable_variables, *self.targets.values(), *self.scores.values()]

    def apply_gradients(self, model_optimizer, variables, gradients):
        """Backbone to `model_optimizer`; each score gets its mask's gradient (straight-through) plus the
        regulariser's; then every mask follows its score."""
        by_id = dict(zip((id(v) for v in variables), gradients, strict=True))
        mask_ids = {id(mask) for mask in self.targets.values()}
        score_ids = {id(score) for score in self.scores.values()}
        model_optimizer.apply_gradients([(g, v) for v, g in zip(variables, gradients, strict=True)
                                         if id(v) not in mask_ids | score_ids])
        pairs = []
        for name, score in self.scores.items():
            through_mask, own = by_id[id(self.targets[name])], by_id[id(score)]
            pairs.append((ops.convert_to_tensor(through_mask) + ops.convert_to_tensor(own), score))
        self.optimizer.apply_gradients(pairs)
        self.update_masks()

    def update_masks(self):
        for name, score in self.scores.items():
            self.targets[name].assign(ops.cast(ops.sigmoid(score) > self.threshold, "float32"))

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
        assign_variables_state(self._state_variables(), arrays)

    def _state_variables(self):
        return {"scores": self.scores, "optimizer": self.optimizer.variables}

    def get_config(self):
        return {"threshold": self.threshold, "regularization": self.regularization,
                "warmup_steps": self.warmup_steps, "scores_lr": self.scores_lr, "granularity": self.granularity,
                "initial_score": self.initial_score}
