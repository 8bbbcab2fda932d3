"""Mask rescaling: least-squares scales for the kept units of each sublayer (Kwon et al., NeurIPS 2022).

Bottom to top, for every block's attention and then its FFN, the kept
units' gates become the scales `s` minimising, on sampled tokens,

    || student(x_s; s) - teacher(x_t) ||^2,   student(x; s) = x + bias + sum_k s_k * contribution_k(x)

where `teacher(x_t)` is the dense model's sublayer output before its
LayerNorm (residual included), and `x_s` the input of the partially pruned
and already rescaled model, so each solve also absorbs the error that the
layers below left. The problem is linear in `s` and solved with LSMR
(`pruners.posttrain.lstsq.solve_lstsq`). A scale set is kept only when it lowers the
sublayer's error; when a solve fails or a scale leaves `[-max_scale,
max_scale]`, rescaling stops and that sublayer and those above keep their
0/1 masks.
"""

import logging

import numpy as np
import tensorflow as tf

from gated.encoder import EncoderBlock
from gated.masks import collect_gated_layers, copy_model
from gated_bert.progress import track
from pruners.posttrain.lstsq import UnitContributions, solve_lstsq
from pruners.posttrain.sublayers import SublayerSample

log = logging.getLogger(__name__)


class _Sublayer:
    """One sublayer solve's fixed parts: the kept units, their output weights `(K, R, D)` and the bias."""

    def __init__(self, kept, weight, bias):
        self.kept, self.weight, self.bias = kept, weight, bias


def _attention_sublayer(block, kept):
    attention = block.attention
    dense = attention.output_dense
    kernel = dense.masked_kernel.numpy().reshape(attention.num_heads, attention.head_dim, -1)
    return _Sublayer(kept, kernel[kept], dense.bias.numpy())


def _ffn_sublayer(block, kept):
    dense = block.ffn.output_dense
    gate = dense.unit_gate.numpy()  # (D,) the FFN output gate scales kernel columns and bias alike
    kernel = dense.masked_kernel.numpy() * gate[None, :]
    return _Sublayer(kept, kernel[kept][:, None, :], dense.bias.numpy() * gate)


def _solve(sublayer, unit_inputs, base, target, backend, max_scale):
    """Scales for the kept units and the mean squared errors before (scales 1) and after.

    Returns `(scales or None, before, after, info)`; None means the solve is unusable.
    """
    design = UnitContributions(unit_inputs, tf.constant(sublayer.weight, unit_inputs.dtype))
    rhs = target - base - sublayer.bias  # (N, D)
    expected = rhs.numpy().astype(np.float64)

    def error(scales):
        return float(np.mean(np.square(design.apply(scales) - expected)))

    before = error(np.ones(design.shape[1]))
    scales, info = solve_lstsq(design, rhs, backend=backend)
    if not np.all(np.isfinite(scales)) or np.max(np.abs(scales)) > max_scale:
        return None, before, before, info
    return scales, before, error(scales), info


def rescale(model, head_mask, neuron_mask, batches, *, backend="auto", max_tokens=8192, max_scale=10.0, seed=0):
    """Least-squares scales for the kept heads and neurons of every block.

    Args:
        model: the dense gated encoder, the teacher (its current gates are
            the dense ones); it is left as it is: the kept units are scaled
            on a copy.
        head_mask, neuron_mask: `[L, H]`, `[L, F]` binary masks to rescale.
        batches: a list of `(inputs, labels)` sample batches.
        backend: least-squares backend (`auto`, `scipy`, `cupy`).
        max_tokens: sampled tokens in each least-squares problem.
        max_scale: largest `|scale|` accepted.
        seed: seed of the token sample.

    Returns:
        `(head_mask, neuron_mask, report)`: real-valued masks (the scales on
        kept units, 0 elsewhere) and, per sublayer, `{layer, kind, kept,
        mse_before, mse_after, status, iterations}`.
    """
    student = copy_model(model)  # takes each sublayer's rescaled masks in turn, bottom to top
    blocks = list(collect_gated_layers(student, EncoderBlock).values())
    sample = SublayerSample(student, model, batches, max_tokens, seed)
    masks = [np.asarray(head_mask, np.float32).copy(), np.asarray(neuron_mask, np.float32).copy()]
    solver = _Solver(backend, max_scale)
    for index in track(range(2 * len(blocks)), "rescale", unit="sublayer", logger=log):
        layer, attention = index // 2, index % 2 == 0
        block, row = blocks[layer], masks[0 if attention else 1][layer]
        # Unit outputs (contexts or activations) and input in the rescaled student; the teacher's output.
        units, base, target = sample.sublayer(index)
        sublayer = (_attention_sublayer if attention else _ffn_sublayer)(block, np.flatnonzero(row))
        if solver.solve(sublayer, tf.gather(units, sublayer.kept, axis=1), base, target, row, layer,
                        "head" if attention else "neuron"):
            break
        (block.attention.head_gate if attention else block.ffn.neuron_gate).assign(row)
    solver.mark_stopped(len(blocks))
    return masks[0], masks[1], solver.report


class _Solver:
    """Solves sublayers in order, writing their scales into the mask rows, and records each one in `report`."""

    def __init__(self, backend, max_scale):
        self.backend, self.max_scale = backend, max_scale
        self.report = []

    def solve(self, sublayer, unit_inputs, base, target, mask_row, layer, kind):
        """Scales for one sublayer, written into `mask_row` when they lower its error; True when rescaling must stop."""
        entry = {"layer": layer, "kind": kind, "kept": int(len(sublayer.kept))}
        if not len(sublayer.kept):
            self.report.append({**entry, "status": "empty"})
            return False
        scales, before, after, info = _solve(sublayer, unit_inputs, base, target, self.backend, self.max_scale)
        entry |= {"mse_before": before, "mse_after": after, "iterations": info["iterations"],
                  "backend": info["backend"]}
        if scales is None:
            self.report.append({**entry, "status": "failed: a scale is not finite or exceeds max_scale; stopping"})
            log.info("layer %d %s: rescaling stopped (a scale left [-%g, %g])", layer, kind, self.max_scale,
                     self.max_scale)
            return True
        if after >= before:
            self.report.append({**entry, "mse_after": before, "status": "kept 0/1 (no improvement)"})
        else:
            mask_row[sublayer.kept] = scales
            self.report.append({**entry, "status": "rescaled"})
        log.info("layer %d %s: reconstruction MSE %.4g -> %.4g (%d kept, %d LSMR iterations)", layer, kind, before,
                 self.report[-1]["mse_after"], len(sublayer.kept), info["iterations"])
        return False

    def mark_stopped(self, num_layers):
        """Record the sublayers left unsolved after a stop."""
        order = [(layer, kind) for layer in range(num_layers) for kind in ("head", "neuron")]
        for layer, kind in order[len(self.report):]:
            self.report.append({"layer": layer, "kind": kind, "status": "stopped"})
