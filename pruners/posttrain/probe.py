"""The encoder's forward pass with a per-row scale on every head and neuron gate.

Fisher's importance and K-prune's knowledge need, for every sample row, the
derivative of something the row's logits give (its loss, its logits) with
respect to each unit's gate. Rows do not interact, so multiplying a
sublayer's gates by a `(B, units)` tensor of ones and differentiating the sum
over the batch with respect to that tensor gives every row's own derivative
in one backward pass.
"""

import tensorflow as tf

from gated.encoder import EncoderBlock
from gated.masks import collect_gated_layers, learned_gates


class GateProbe:
    """The model's logits from its embeddings or from any sublayer's input, with optional per-row gate scales.

    Sublayers are numbered bottom to top: block 0's attention, block 0's
    FFN, block 1's attention, ... The compiled functions (`compiled`) take
    any batch size and length, so one trace serves every batch shape.

    Args:
        model: a gated encoder without learned (Gumbel) masks.
        method: the method's name, for the error on learned masks.
    """

    def __init__(self, model, method="this criterion"):
        if learned_gates(model):
            raise ValueError(f"{method} needs a model without learned Gumbel masks; bake them into the gates "
                             "first (experiment.checkpoints.load_checkpoint or gated.without_learned_masks)")
        self.blocks = list(collect_gated_layers(model, EncoderBlock).values())
        self.embeddings = model.get_layer("embeddings")
        layers = {layer.name: layer for layer in model.layers}
        self.pooler, self.classifier = layers.get("pooler"), layers["classifier"]  # a model may have no pooler
        self._compiled = {}

    @property
    def sublayers(self):
        return 2 * len(self.blocks)

    def ones(self, rows, start=0):
        """One `(rows, units)` tensor of ones per sublayer from `start` up: scales that change nothing."""
        scales = []
        for block in self.blocks:
            scales += [tf.ones((rows, block.attention.num_heads)), tf.ones((rows, block.ffn.dff))]
        return scales[start:]

    def embed(self, inputs):
        return self.embeddings(inputs["input_ids"], inputs["token_type_ids"], training=False)

    def logits(self, inputs, scales=None, on_sublayer=None):
        """The model's logits from its inputs; see `forward`."""
        return self.forward(self.embed(inputs), inputs["attention_mask"], 0, scales, on_sublayer)

    def forward(self, x, mask, start, scales=None, on_sublayer=None, stop=None):
        """The logits from `x`, the hidden state entering sublayer `start` (or, with `stop`, the state entering
        sublayer `stop`).

        `scales` (one `(B, units)` tensor per sublayer from `start` up)
        multiply the gates per row. `on_sublayer(index, block, gated_outputs)`
        sees every sublayer's unit outputs after their gates: `(B, T, H, Dh)`
        contexts or `(B, T, F)` activations.
        """
        for index in range(start, self.sublayers if stop is None else stop):
            block = self.blocks[index // 2]
            scale = None if scales is None else scales[index - start]
            if index % 2 == 0:
                attention = block.attention
                outputs = attention.head_contexts(x, mask)  # (B, T, H, Dh)
                gate = attention.head_gate[None, :] if scale is None else attention.head_gate[None, :] * scale
                outputs = outputs * gate[:, None, :, None]
                shape = tf.shape(outputs)
                update = attention.output_dense(tf.reshape(outputs, (shape[0], shape[1], -1)))
                norm = block.attention_norm
            else:
                ffn = block.ffn
                outputs = ffn.intermediate.ungated(x)  # (B, T, F)
                gate = ffn.neuron_gate[None, :] if scale is None else ffn.neuron_gate[None, :] * scale
                outputs = outputs * gate[:, None, :]
                update, norm = ffn.output_dense(outputs), block.ffn_norm
            if on_sublayer:
                on_sublayer(index, block, outputs)
            x = norm(x + update)
        if stop is not None:
            return x
        pooled = x[:, 0, :] if self.pooler is None else self.pooler(x[:, 0, :])  # (B, D)
        return self.classifier(pooled)

    def compiled(self, name, function, x, mask):
        """`function(x, mask)` as a `tf.function` for any batch size and length, traced once per `name`."""
        if name not in self._compiled:
            signature = [tf.TensorSpec([None, None, x.shape[-1]], x.dtype), tf.TensorSpec([None, None], mask.dtype)]
            self._compiled[name] = tf.function(function, input_signature=signature)
        return self._compiled[name]

    def state(self, inputs, start):
        """The hidden state entering sublayer `start` for a batch of model inputs."""
        x, mask = self.embed(inputs), tf.convert_to_tensor(inputs["attention_mask"])
        if start == 0:
            return x
        return self.compiled(("state", start), lambda x, mask: self.forward(x, mask, 0, stop=start), x, mask)(x, mask)
