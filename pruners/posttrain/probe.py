"""The encoder's forward pass with a per-row scale on every head and neuron gate.

Fisher's importance and K-prune's knowledge need, for every sample row, the
derivative of something the row's logits give (its loss, its logits) with
respect to each unit's gate. Rows do not interact, so multiplying a
sublayer's gates by a `(B, units)` tensor of ones and differentiating the sum
over the batch with respect to that tensor gives every row's own derivative
in one backward pass.
"""

import tensorflow as tf

from gated.encoder import EncoderBlock, mean_pooling_layer
from gated.masks import collect_gated_layers, learned_gates


def free_shape_spec(tensor, keep_last=False):
    """`tensor`'s `TensorSpec` with every dimension free (the last kept with `keep_last`): a `tf.function` with it
    in its signature is traced once for every batch size and length."""
    shape = [None] * len(tensor.shape)
    if keep_last:
        shape[-1] = tensor.shape[-1]
    return tf.TensorSpec(shape, tf.as_dtype(tensor.dtype))


def state_signature(x, mask):
    """The signature of a compiled `function(x, mask)` on hidden states `(B, T, D)` and their attention mask."""
    return [free_shape_spec(x, keep_last=True), free_shape_spec(mask)]


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
        self.mean_pool = mean_pooling_layer(model)  # None: the head reads [CLS]
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

        When the head reads `[CLS]`, only that row of the last block's
        output reaches the logits, so the last block carries that row alone
        towards them (its attention still reads every row's keys and values);
        with `on_sublayer`, every row's unit outputs there are computed too,
        outside any gradient. A mean-pooling head reads every row.
        """
        end = self.sublayers if stop is None else stop
        # From this sublayer on, the [CLS] row alone.
        first_cls = self.sublayers - 2 if stop is None and self.mean_pool is None else end
        every = None  # with `on_sublayer`, in the last block: every row's hidden state, without gradient
        for index in range(start, end):
            block = self.blocks[index // 2]
            scale = None if scales is None else scales[index - start]
            cls_only = index >= first_cls
            if index % 2 == 0:
                attention = block.attention
                gate = attention.head_gate[None, :] if scale is None else attention.head_gate[None, :] * scale
                gate = gate[:, None, :, None]
                if cls_only:  # x still holds every row: the keys and values need them
                    keys, values = attention.project(attention.key, x), attention.project(attention.value, x)
                    if on_sublayer:
                        queries = attention.project(attention.query, tf.stop_gradient(x))
                        outputs = tf.stop_gradient(attention.attend(queries, keys, values, mask) * gate)
                        on_sublayer(index, block, outputs)
                        every = tf.stop_gradient(block.attention_norm(x + self._project_units(attention, outputs)))
                    outputs = attention.attend(attention.project(attention.query, x[:, :1]), keys, values, mask)
                    x = x[:, :1]
                else:
                    outputs = attention.head_contexts(x, mask)  # (B, T, H, Dh)
                outputs = outputs * gate
                update, norm = self._project_units(attention, outputs), block.attention_norm
            else:
                ffn = block.ffn
                gate = ffn.neuron_gate[None, :] if scale is None else ffn.neuron_gate[None, :] * scale
                if cls_only:
                    if on_sublayer:
                        rows = x if every is None else every
                        on_sublayer(index, block, tf.stop_gradient(ffn.intermediate.ungated(rows) * gate[:, None, :]))
                    x = x[:, :1]
                outputs = ffn.intermediate.ungated(x) * gate[:, None, :]  # (B, T, F)
                update, norm = ffn.output_dense(outputs), block.ffn_norm
            if on_sublayer and not cls_only:
                on_sublayer(index, block, outputs)
            x = norm(x + update)
        if stop is not None:
            return x
        pooled = x[:, 0, :] if self.mean_pool is None else self.mean_pool(x, mask)  # (B, D)
        pooled = pooled if self.pooler is None else self.pooler(pooled)
        return self.classifier(pooled)

    @staticmethod
    def _project_units(attention, contexts):
        """Gated head contexts `(B, T, H, Dh)` through the attention's output projection: `(B, T, D)`."""
        shape = tf.shape(contexts)
        return attention.output_dense(tf.reshape(contexts, (shape[0], shape[1], -1)))

    def compiled(self, name, function, x, mask):
        """`function(x, mask)` as a `tf.function` for any batch size and length, traced once per `name`."""
        if name not in self._compiled:
            self._compiled[name] = tf.function(function, input_signature=state_signature(x, mask))
        return self._compiled[name]

    def state(self, inputs, start):
        """The hidden state entering sublayer `start` for a batch of model inputs."""
        x, mask = self.embed(inputs), tf.convert_to_tensor(inputs["attention_mask"])
        if start == 0:
            return x
        return self.compiled(("state", start), lambda x, mask: self.forward(x, mask, 0, stop=start), x, mask)(x, mask)

    def predict(self, inputs):
        """The logits for a batch of model inputs through one compiled pass (no scales): it reads the gates as
        variables, so gates set after it was traced count."""
        x, mask = self.embed(inputs), tf.convert_to_tensor(inputs["attention_mask"])
        return self.compiled("logits", lambda x, mask: self.forward(x, mask, 0), x, mask)(x, mask)
