"""What the least-squares steps fit, sublayer by sublayer: the pruned model's inputs, the dense model's outputs.

Fisher's rescaling and K-prune's weight tuning both walk the encoder's
sublayers bottom to top (block 0's attention, block 0's FFN, block 1's
attention, ...) and, for each, fit the kept units' contributions on sampled
tokens so that the pruned sublayer reproduces the dense one's output.
"""

import numpy as np
import tensorflow as tf

from gated.encoder import EncoderBlock
from gated.masks import collect_gated_layers
from pruners.posttrain.probe import state_signature
from pruners.posttrain.tokens import gather_tokens, sample_token_rows


class SublayerSample:
    """Sampled tokens, and on them each sublayer's inputs in the pruned model and its output in the dense one.

    The teacher is the model before pruning (the dense model); the student
    is the copy being pruned. Both models' hidden states are kept per batch
    and advanced one sublayer at a time, so the sublayers must be asked for
    bottom to top, each once its predecessors are final. Without a teacher
    only the student's states are kept (`inputs`). The teacher's sublayer
    output, computed for `sublayer`, is kept until the teacher's state moves
    past it: its next state is that output's LayerNorm, so the dense model's
    sublayer runs once, not twice.

    Args:
        student: the model being pruned (its sublayers below the one asked
            for are final).
        teacher: the model before pruning, only read; None when no fitting
            data will be asked for.
        batches: a list of `(inputs, labels)` sample batches.
        max_tokens: how many non-padding tokens to sample; None takes all.
        seed: seed of the token sample.
    """

    def __init__(self, student, teacher, batches, max_tokens, seed):
        models = {"student": student, "teacher": teacher} if teacher is not None else {"student": student}
        self.blocks = {which: list(collect_gated_layers(m, EncoderBlock).values()) for which, m in models.items()}
        self.masks = [inputs["attention_mask"] for inputs, _ in batches]
        self.states = {which: [m.get_layer("embeddings")(inputs["input_ids"], inputs["token_type_ids"])
                               for inputs, _ in batches] for which, m in models.items()}
        self.position = 0  # the sublayer whose inputs `states` hold
        self.teacher_output = None  # (sublayer, its output per batch) once `sublayer` has computed it
        total = sum(int(np.sum(mask)) for mask in self.masks)
        self.rows = sample_token_rows(batches, total if max_tokens is None else max_tokens, seed)
        self.tokens = sum(len(rows) for rows in self.rows)

    def _run(self, which, index, function, values=None):
        """`function(block, attention, x, mask)` compiled, on every batch's `values` (default: its state) for
        sublayer `index` (`attention`: whether it is the block's attention sublayer, else its FFN)."""
        block, attention = self.blocks[which][index // 2], index % 2 == 0
        values = self.states[which] if values is None else values
        x, mask = values[0], tf.convert_to_tensor(self.masks[0])
        # Any batch size and length: one trace for all the batches, whatever their padding.
        compiled = tf.function(lambda x, mask: function(block, attention, x, mask),
                               input_signature=state_signature(x, mask))
        return [compiled(x, mask) for x, mask in zip(values, self.masks, strict=True)]

    def _advance(self, index):
        if index < self.position:
            raise ValueError(f"sublayer {index} was asked for after sublayer {self.position}: go bottom to top")
        for which in self.states:
            for below in range(self.position, index):
                if which == "teacher" and self.teacher_output and self.teacher_output[0] == below:
                    self.states[which] = self._run(which, below, _norm, self.teacher_output[1])
                else:
                    self.states[which] = self._run(which, below, _next_state)
        if index > self.position:
            self.teacher_output = None
        self.position = index

    def inputs(self, index):
        """Per batch, the student's hidden state entering sublayer `index`, `(B, T, D)`."""
        self._advance(index)
        return self.states["student"]

    def sublayer(self, index):
        """`(unit outputs before their gates (N, units, R), student input (N, D), teacher output (N, D))`:
        sublayer `index`'s fitting data on the sampled tokens (outputs before the LayerNorm)."""
        if "teacher" not in self.states:
            raise ValueError("this SublayerSample has no teacher: pass one to get fitting data")
        self._advance(index)
        units = self._run("student", index, _unit_outputs)
        target = self._run("teacher", index, _sublayer_output)
        self.teacher_output = (index, target)
        return tuple(gather_tokens(values, self.rows) for values in (units, self.states["student"], target))


def _unit_outputs(block, attention, x, mask):
    """The sublayer's unit outputs before their gates: `(B, T, H, Dh)` contexts or `(B, T, F, 1)` activations."""
    return block.attention.head_contexts(x, mask) if attention else block.ffn.intermediate.ungated(x)[..., None]


def _sublayer_output(block, attention, x, mask):
    """The sublayer's output before its LayerNorm: `x + MHA(x)` or `x + FFN(x)`."""
    return block.attention_residual(x, mask) if attention else block.ffn_residual(x)


def _norm(block, attention, x, mask):
    """The sublayer's LayerNorm of `x`, its output before it."""
    return (block.attention_norm if attention else block.ffn_norm)(x)


def _next_state(block, attention, x, mask):
    """`x` through the sublayer and its LayerNorm."""
    return _norm(block, attention, _sublayer_output(block, attention, x, mask), mask)
