"""Knowledge-preserving retraining-free pruning, K-prune (Park, Choi and Kang, ICLR 2024).

The sublayers are pruned one at a time, bottom to top (block 0's attention,
block 0's FFN, block 1's attention, ...). At each step, on the partially
pruned model:

1. Knowledge measurement. Every unit (head or neuron) of the target
   sublayer and of the sublayers above it gets the knowledge its removal
   would lose, with the first-order term left out (it vanishes at the dense
   model):
   - predictive: the second-order (Gauss-Newton) estimate of
     `T^2 KL(softmax(z_dense / T) || softmax(z / T))` when the unit's gate
     goes from 1 to 0, which is `1/2 Var_{c ~ softmax(z/T)}(dz_c/dm)`
     averaged over the sample rows (`dz/dm`: the logits' derivative with
     respect to the unit's gate, per row). For regression the knowledge is
     `(z - z_dense)^2` and the estimate `(dz/dm)^2`.
   - representational: the squared error of the sublayer output (before
     its LayerNorm) when the unit alone is removed, `||contribution||^2`
     averaged over the non-padding tokens and the `D` output features (a
     mean squared error, the scale `lam_rep`'s default is set for); exact
     for one unit where the sublayer still computes the dense output.
   A unit's importance is `lam_pred * predictive + lam_rep * representational`,
   divided by its MACs, and multiplied by `mu / head_dim` for heads (`mu` on
   the reference implementation's scale, which measures heads per context
   dimension; by default `mu = head_dim`: importance per MAC alone).
   For two classes (and regression) one backward pass per batch gives every
   row's derivatives; with more classes, one per class.
2. Knowledge-preserving mask search. Over all remaining units, the most
   important per MAC are kept while they fit in what is left of the budget;
   only the target sublayer's part of that mask is applied.
3. Knowledge-preserving weight tuning (`tuning=True`). The kept units'
   output-projection weights and the projection's bias are refitted by least
   squares (`pruners.posttrain.lstsq.NormalEquations`, LSMR on SciPy or CuPy) so that the
   pruned sublayer reproduces the dense model's sublayer output on the
   sample's tokens, given the inputs that the already pruned (and tuned)
   sublayers below produce. Until a sublayer loses a unit, nothing changes
   and there is nothing to tune.

What the target sublayer keeps is charged to the budget before the next step.

The model given is not changed: the pruning happens on a copy, which `kprune`
returns with the masks on its gates and the tuned weights.
"""

import dataclasses
import logging
import time

import numpy as np
import tensorflow as tf

from gated.masks import copy_model
from gated_bert.progress import track
from pruners.posttrain.lstsq import NormalEquations, resolve_backend
from pruners.posttrain.probe import GateProbe
from pruners.posttrain.sublayers import SublayerSample

log = logging.getLogger(__name__)
KINDS = ("head", "neuron")


def _head_kernel(block):
    """The attention output projection's effective kernel as `(H, Dh, D)`."""
    attention, dense = block.attention, block.attention.output_dense
    return tf.reshape(dense.masked_kernel, (attention.num_heads, attention.head_dim, -1))


def _neuron_kernel(block):
    """The FFN output projection's effective kernel `(F, D)`, the output gate included."""
    dense = block.ffn.output_dense
    return dense.masked_kernel * dense.unit_gate[None, :]


class KnowledgeProbe(GateProbe):
    """`GateProbe` that measures the knowledge of each unit.

    `measure(x, mask, start)` returns, per sublayer from `start` up (block 0
    heads, block 0 neurons, block 1 heads, ...), the predictive term summed
    over the batch's rows and the representational term (per output
    feature) summed over its non-padding tokens, before any weighting; divide
    by rows and tokens for the means. `x` is the hidden state entering
    sublayer `start` (`state` computes it; K-prune keeps it per batch, since
    the sublayers below are fixed). One trace per `start` serves every batch
    shape.

    Args:
        model: a gated encoder without learned masks.
        temperature: the softmax temperature `T` of the predictive term.
        regression: the model outputs one score (squared error replaces KL).
    """

    def __init__(self, model, temperature=2.0, regression=False):
        super().__init__(model, "K-prune")
        self.temperature, self.regression = float(temperature), regression

    def measure(self, x, mask, start=0):
        """Per sublayer from `start` up, each unit's predictive and representational knowledge summed over the
        batch's rows and tokens (see the class docstring)."""
        mask = tf.convert_to_tensor(mask)
        return self.compiled(("measure", start), lambda x, mask: self._measure(x, mask, start), x, mask)(x, mask)

    def _measure(self, x, mask, start):
        tokens = tf.cast(mask, tf.float32)  # (B, T)
        scales = self.ones(tf.shape(x)[0], start)
        representational = []

        def on_sublayer(index, block, outputs):
            if index % 2 == 0:  # ||context @ the head's kernel rows||^2 = context^T (W W^T) context
                kernel = _head_kernel(block)  # (H, Dh, D)
                gram = tf.einsum("hrd,hsd->hrs", kernel, kernel)
                energy = tf.reduce_sum(tf.einsum("bthr,hrs->bths", outputs, gram) * outputs, -1)
            else:  # a neuron's contribution is activation * kernel row
                energy = tf.square(outputs) * tf.reduce_sum(tf.square(_neuron_kernel(block)), -1)
            representational.append(tf.einsum("btu,bt->u", energy, tokens) / float(block.attention.d_model))

        classes = self.classifier.units
        with tf.GradientTape(persistent=not self.regression and classes > 2) as tape:
            tape.watch(scales)
            logits = self.forward(x, mask, start, scales, on_sublayer)  # (B, C)
            if self.regression:
                outputs = [logits[:, 0]]
            elif classes == 2:  # two classes: the variance needs only the logits' difference
                outputs = [logits[:, 0] - logits[:, 1]]
            else:
                outputs = [logits[:, c] for c in range(classes)]
            totals = [tf.reduce_sum(output) for output in outputs]
        # Row b's derivative of its own output k with respect to gate u (rows do not interact): (K, B, units).
        jacobians = [tf.stack(grads) for grads in zip(*(tape.gradient(total, scales) for total in totals),
                                                         strict=True)]
        del tape
        if self.regression:
            predictive = [tf.reduce_sum(tf.square(j[0]), 0) for j in jacobians]
        elif classes == 2:  # Var of a two-valued variable: p0 p1 (dz0 - dz1)^2
            probs = tf.nn.softmax(logits / self.temperature)
            weight = 0.5 * probs[:, 0] * probs[:, 1]  # (B,)
            predictive = [tf.einsum("b,bu->u", weight, tf.square(j[0])) for j in jacobians]
        else:
            probs = tf.transpose(tf.nn.softmax(logits / self.temperature))[:, :, None]  # (C, B, 1)
            predictive = [0.5 * tf.reduce_sum(tf.reduce_sum(probs * tf.square(j), 0)
                                              - tf.square(tf.reduce_sum(probs * j, 0)), 0) for j in jacobians]
        return predictive, representational, logits


def measure_knowledge(probe, batches, desc="knowledge", start=0, states=None, return_logits=False):
    """`(predictive, representational)`: per sublayer from `start` up, the mean predictive (per row) and
    representational (per non-padding token and output feature) knowledge of each unit, as float64 numpy arrays.

    `states`: per batch, the hidden state entering sublayer `start` (by default computed from the batch). `desc`
    names the measurement in its progress lines. `return_logits`: also the model's logits on every row,
    `[rows, num_labels]`, from the same forward pass.
    """
    predictive = representational = None
    rows = tokens = 0
    logits = []
    for position, (inputs, _) in enumerate(track(batches, desc, unit="batch", logger=log)):
        x = probe.state(inputs, start) if states is None else states[position]
        pred, rep, batch_logits = probe.measure(x, inputs["attention_mask"], start)
        pred, rep = [p.numpy().astype(np.float64) for p in pred], [r.numpy().astype(np.float64) for r in rep]
        logits.append(batch_logits.numpy())
        predictive = pred if predictive is None else [a + b for a, b in zip(predictive, pred, strict=True)]
        representational = rep if representational is None else [a + b for a, b in
                                                                  zip(representational, rep, strict=True)]
        rows += int(inputs["input_ids"].shape[0])
        tokens += int(np.sum(inputs["attention_mask"]))
    if not rows:
        raise ValueError("no sample batches to measure knowledge on; check num_tokens and the data")
    knowledge = [p / rows for p in predictive], [r / tokens for r in representational]
    return (*knowledge, np.concatenate(logits)) if return_logits else knowledge


def importance_scores(predictive, representational, head_cost, neuron_cost, lam_pred=1.0, lam_rep=2.5e-4,
                      mu=None, head_dim=1):
    """Per sublayer, each unit's `(lam_pred * pred + lam_rep * rep) / cost`, times `mu / head_dim` for heads.

    `mu` is on the reference implementation's scale: it measures a head's knowledge per output dimension of
    its context (a mask on each of the `head_dim` dimensions, averaged), a `head_dim`-th of the whole head's
    knowledge that is measured here. With `mu = head_dim` (the default; 64 on BERT-base, the reference's
    default) heads and neurons compete on importance per MAC alone.
    """
    head_weight = 1.0 if mu is None else mu / head_dim
    scores = []
    for index, (pred, rep) in enumerate(zip(predictive, representational, strict=True)):
        knowledge = lam_pred * pred + lam_rep * rep
        scores.append(head_weight * knowledge / head_cost if index % 2 == 0 else knowledge / neuron_cost)
    return scores


def select_units(scores, costs, candidates, budget):
    """Keep the highest-scoring candidate units, in score order, while each still fits in the budget.

    Args:
        scores: per sublayer, a vector of unit scores (importance per MAC).
        costs: per sublayer, the MACs of one of its units.
        candidates: per sublayer, a boolean vector of units that may be kept.
        budget: MACs available to all the given sublayers.

    Returns:
        Per sublayer, a 0/1 float32 mask. Every candidate left out cost more
        than the budget left when its turn came, so more than what is left
        at the end.
    """
    flat_scores = np.concatenate([np.where(c, s, -np.inf) for s, c in zip(scores, candidates, strict=True)])
    flat_costs = np.concatenate([np.full(len(s), float(cost)) for s, cost in zip(scores, costs, strict=True)])
    keep = np.zeros(len(flat_scores), bool)
    left = float(budget)
    for unit in np.argsort(-flat_scores, kind="stable"):
        if np.isneginf(flat_scores[unit]):
            break
        if flat_costs[unit] <= left:
            keep[unit] = True
            left -= flat_costs[unit]
    bounds = np.cumsum([0] + [len(s) for s in scores])
    return [keep[lo:hi].astype(np.float32) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]


def tune_weights(unit_outputs, residual, target, kernel, bias, backend="auto"):
    """Least-squares output-projection weights for the kept units of one sublayer.

    Finds `(W, b)` minimising `mean ||X @ W + b + residual - target||^2`
    from its normal equations (`NormalEquations`: formed in float64 chunks
    of tokens, `P + 1` rows instead of `N`, as the reference implementation
    solves it), with LSMR for all `D` output columns at once on unit-norm
    columns; the errors before and after come from the same equations.

    Args:
        unit_outputs: `X`, `(N, P)`: the kept units' outputs on `N` tokens
            (a head contributes its `Dh` context columns, a neuron one).
        residual: `(N, D)` the sublayer's input (its residual branch).
        target: `(N, D)` the dense model's sublayer output before LayerNorm.
        kernel: `(P, D)` the kept units' current output weights.
        bias: `(D,)` the current output bias.
        backend: least-squares backend (`auto`, `scipy`, `cupy`).

    Returns:
        `(kernel, bias, report)`: the tuned weights (the current ones when
        tuning does not lower the error) and `{mse_before, mse_after,
        iterations, backend, tuned}`.
    """
    rhs = tf.cast(target, tf.float64) - tf.cast(residual, tf.float64)  # (N, D)
    backend = resolve_backend(backend, unit_outputs, rhs)
    equations = NormalEquations(unit_outputs, rhs, backend)
    current = np.concatenate([np.asarray(kernel, np.float64), np.asarray(bias, np.float64)[None, :]])
    before = equations.error(current)
    weights, info = equations.solve()
    after = equations.error(weights) if np.all(np.isfinite(weights)) else np.inf
    tuned = after < before
    weights = weights if tuned else current
    report = {"mse_before": before, "mse_after": min(after, before), "iterations": info["iterations"],
              "backend": info["backend"], "tuned": bool(tuned)}
    return weights[:-1], weights[-1], report


def _tune_sublayer(sample, block, index, kept, backend):
    """Tune the output weights of sublayer `index`'s kept units in place; returns the tuning report."""
    units, residual, target = sample.sublayer(index)  # (N, units, R), (N, D), (N, D)
    outputs = tf.reshape(tf.gather(units, kept, axis=1), (tf.shape(units)[0], -1))  # (N, kept * R)
    if index % 2 == 0:
        dense, width = block.attention.output_dense, block.attention.head_dim
        rows = (kept[:, None] * width + np.arange(width)[None, :]).ravel()
        gate = np.ones(dense.units, np.float32)
    else:
        dense, rows = block.ffn.output_dense, kept
        gate = dense.unit_gate.numpy()
    kernel = dense.masked_kernel.numpy()
    bias = dense.bias.numpy()
    new_kernel, new_bias, report = tune_weights(outputs, residual, target, kernel[rows] * gate, bias * gate, backend)
    if report["tuned"]:
        open_columns = gate != 0  # a closed output gate silences its column whatever the weights
        kernel[np.ix_(rows, open_columns)] = new_kernel[:, open_columns] / gate[open_columns]
        bias[open_columns] = new_bias[open_columns] / gate[open_columns]
        dense.kernel.assign(kernel)
        if dense.kernel_mask is not None:
            mask = dense.kernel_mask.numpy()
            mask[rows] = 1.0  # the tuned rows are dense
            dense.kernel_mask.assign(mask)
        dense.bias.assign(bias)
    return {**report, "tokens": sample.tokens}


def _gate(block, kind):
    return block.attention.head_gate if kind == "head" else block.ffn.neuron_gate


@dataclasses.dataclass
class KPruneResult:
    """What `kprune` returns.

    Args:
        head_mask: `[L, H]` 0/1 float32.
        neuron_mask: `[L, F]` 0/1 float32.
        model: the pruned copy of the model: the masks on its gates and, with
            tuning, its output projections refitted.
        steps: one report per sublayer (units kept, budget left, tuning errors, seconds).
        seconds: spent measuring, searching and tuning.
        dense_logits: the dense model's logits on every sample row, `[rows, num_labels]` (from the first
            measurement, before any unit is removed: the bias correction's reference).
    """

    head_mask: np.ndarray
    neuron_mask: np.ndarray
    model: object
    steps: list
    seconds: dict
    dense_logits: np.ndarray


def _starting_units(blocks, sublayers):
    """Per sublayer, the units that may be kept: those whose gate is 1 (the gates must be 0/1)."""
    gates = [_gate(blocks[layer], kind).numpy() for layer, kind in sublayers]
    if not all(np.all((gate == 0) | (gate == 1)) for gate in gates):
        raise ValueError("K-prune starts from 0/1 head and neuron gates; this model has scaled gates (rescaled "
                         "masks?): prune the checkpoint they were made from")
    return [gate != 0 for gate in gates]


def kprune(model, batches, *, budget, head_cost, neuron_cost, lam_pred=1.0, lam_rep=2.5e-4, mu=None,
           temperature=2.0, regression=False, tuning=False, backend="auto", max_tokens=None, seed=0):
    """K-prune under a MAC budget (see the module docstring): a pruned copy of `model`, which stays as it is.

    Args:
        model: a gated encoder without learned masks, the dense teacher.
            Units whose gates are already 0 stay pruned; the others must
            have gate 1.
        batches: a list of `(inputs, labels)` sample batches (labels unused).
        budget: MACs the kept heads and neurons may cost in all.
        head_cost, neuron_cost: MACs of one head and one neuron.
        lam_pred, lam_rep, temperature: the knowledge weights and the
            softmax temperature.
        mu: the head multiplier on the reference implementation's scale
            (`importance_scores`); None: the head width, so that heads and
            neurons compete on importance per MAC alone.
        regression: the model outputs one score.
        tuning: refit each pruned sublayer's output weights by least squares.
        backend: least-squares backend (`auto`, `scipy`, `cupy`).
        max_tokens: tokens each least-squares problem fits (a random subset
            of the sample's non-padding tokens); None fits all of them.
        seed: seed of the token sample.

    Returns:
        A `KPruneResult`: the masks, the pruned copy, the per-sublayer reports and the seconds spent.
    """
    student = copy_model(model)  # pruned (and tuned) one sublayer at a time; `model` stays the dense teacher
    probe = KnowledgeProbe(student, temperature, regression)
    blocks = probe.blocks
    sublayers = [(index // 2, KINDS[index % 2]) for index in range(2 * len(blocks))]
    costs = [head_cost if kind == "head" else neuron_cost for _, kind in sublayers]
    alive = _starting_units(blocks, sublayers)
    seconds = {"measure": 0.0, "search": 0.0, "tuning": 0.0}
    # Each sublayer's inputs, advanced one sublayer per step: the sublayers below the target are final, so the
    # measurement runs from the target up (and, with tuning, the dense model's outputs to fit).
    sample = SublayerSample(student, model if tuning else None, batches, max_tokens, seed)
    head_dim = blocks[0].attention.head_dim
    steps, left, removed = [], float(budget), False
    for index, (layer, kind) in enumerate(sublayers):
        started = tick = time.perf_counter()
        predictive, representational, logits = measure_knowledge(
            probe, batches, f"kprune {index + 1}/{len(sublayers)} (layer {layer} {kind}): knowledge", start=index,
            states=sample.inputs(index), return_logits=True)
        if index == 0:  # before any unit is removed: the dense model's
            dense_logits = logits
        seconds["measure"] += time.perf_counter() - tick
        tick = time.perf_counter()
        scores = importance_scores(predictive, representational, head_cost, neuron_cost, lam_pred, lam_rep, mu,
                                   head_dim)
        mask = select_units(scores, costs[index:], alive[index:], left)[0]
        _gate(blocks[layer], kind).assign(mask)
        left -= np.count_nonzero(mask) * costs[index]
        seconds["search"] += time.perf_counter() - tick
        step = {"layer": layer, "kind": kind, "kept": int(np.count_nonzero(mask)), "units": len(mask),
                "budget_left": left}
        removed = removed or bool(np.any(alive[index] & (mask == 0)))
        if tuning and step["kept"] and removed:  # before the first removal the sublayer is still the dense one
            tick = time.perf_counter()
            step["tuning"] = _tune_sublayer(sample, blocks[layer], index, np.flatnonzero(mask), backend)
            seconds["tuning"] += time.perf_counter() - tick
        steps.append({**step, "seconds": time.perf_counter() - started})
        tuned = step.get("tuning")
        log.info("kprune %d/%d: layer %d %s kept %d/%d%s", index + 1, len(sublayers), layer, kind, step["kept"],
                 len(mask), "" if not tuned else f"; tuning mse {tuned['mse_before']:.4g} -> {tuned['mse_after']:.4g}"
                 f" ({tuned['iterations']} LSMR iterations)")
    heads = np.stack([block.attention.head_gate.numpy() for block in blocks])
    neurons = np.stack([block.ffn.neuron_gate.numpy() for block in blocks])
    return KPruneResult(heads, neurons, student, steps, seconds, dense_logits)
