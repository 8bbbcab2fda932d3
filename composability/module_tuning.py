"""Module-level fine-tuning: each pruned unit, its mask enforced, trained to reproduce the dense module's output
on that module's inputs, captured from the dense model on training rows (mean squared error).

Inputs and targets are captured one layer at a time (the dense model's own activations, so a unit never sees
another unit's error), and every unit of that layer is trained before the next layer is captured: memory holds
one layer's activations. A unit trains in a standalone copy of its module (a `GatedMultiHeadAttention` for the
attention module, the `GatedDense` for a linear one) with the dense weights around it frozen; the kernel mask
multiplies the kernel in the forward pass, so a pruned weight gets a zero gradient and Adam leaves it at exactly
zero.
"""

import dataclasses
import time
import types

import keras
import numpy as np
import tensorflow as tf

from composability.units import SUBLAYERS, put_unit, sublayers
from gated.attention import GatedMultiHeadAttention
from gated.dense import GatedDense


@dataclasses.dataclass
class TuningRecipe:
    """How units are trained: Adam at `learning_rate` for `steps` batches of `batch_size` rows (cycled in
    order), losses reported every `log_every` steps."""

    steps: int = 200
    learning_rate: float = 5e-4
    batch_size: int = 16
    log_every: int = 20


def row_batches(split, rows, batch_size):
    """`[(input_ids, token_type_ids, attention_mask)]` of `rows` of a `TokenizedSplit`, `batch_size` rows a batch,
    each padded (with 0) to its longest row."""
    batches = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        lengths = split.lengths[chunk]
        ids = np.zeros((len(chunk), lengths.max()), np.int32)
        types_ = np.zeros_like(ids)
        for position, row in enumerate(chunk):
            begin, end = split.offsets[row], split.offsets[row + 1]
            ids[position, :end - begin] = split.input_ids[begin:end]
            types_[position, :end - begin] = split.token_type_ids[begin:end]
        batches.append((ids, types_, (np.arange(ids.shape[1]) < lengths[:, None]).astype(np.int32)))
    return batches


def embed(model, batches):
    """The embeddings' output `(B, T, D)` per batch: the first block's inputs."""
    embeddings = model.get_layer("embeddings")
    return [embeddings(ids, types_, training=False) for ids, types_, _ in batches]


def block_activations(block, x, mask):
    """The dense block's activations on `x` `(B, T, D)`: every module's input and output, and the block's output."""
    attention = block.attention
    contexts = attention.head_contexts(x, mask, training=False)  # (B, T, H, Dh)
    contexts = contexts * tf.cast(attention.head_gate[None, None, :, None], contexts.dtype)
    contexts = tf.reshape(contexts, (tf.shape(x)[0], tf.shape(x)[1], -1))  # (B, T, H*Dh)
    attended = attention.output_dense(contexts)
    ffn_in = block.attention_norm(x + attended)
    hidden = block.ffn.intermediate(ffn_in)  # (B, T, dff)
    ffn = block.ffn.output_dense(hidden)
    return {"x": x, "contexts": contexts, "attended": attended, "ffn_in": ffn_in, "hidden": hidden, "ffn": ffn,
            "out": block.ffn_norm(ffn_in + ffn)}


# Per module: its input and its target among `block_activations`.
MODULE_DATA = {"attention": ("x", "attended"), "attention_output": ("contexts", "attended"),
               "ffn_intermediate": ("ffn_in", "hidden"), "ffn_output": ("hidden", "ffn")}


def module_examples(activations, masks, module):
    """`[(inputs, target, token mask)]` per batch for `module`: whole sequences for attention, the real tokens
    (flattened) for a linear module."""
    source, target = MODULE_DATA[module]
    examples = []
    for acts, mask in zip(activations, masks, strict=True):
        mask = tf.convert_to_tensor(mask)  # (B, T)
        if module == "attention":
            examples.append(((acts[source], mask), acts[target], tf.cast(mask, tf.float32)))
        else:
            keep = tf.cast(mask, tf.bool)
            tokens = tf.boolean_mask(acts[target], keep)
            examples.append((tf.boolean_mask(acts[source], keep), tokens, tf.ones(tf.shape(tokens)[:1])))
    return examples


def _copy_dense(layer, name):
    copy = GatedDense.from_config({**layer.get_config(), "use_kernel_mask": True, "name": name})
    copy.build((None, int(layer.kernel.shape[0])))
    copy.kernel.assign(layer.kernel)
    copy.bias.assign(layer.bias)
    if layer.kernel_mask is not None:
        copy.kernel_mask.assign(layer.kernel_mask)
    if layer.unit_gate is not None:
        copy.unit_gate.assign(layer.unit_gate)
    return copy


def standalone_module(block, module):
    """`(holder, forward)`: a copy of `block`'s `module` with kernel masks (`holder` has the block's attribute
    layout, for `put_unit`) and its forward pass `forward(inputs) -> output`."""
    if module == "attention":
        source = block.attention
        config = {**source.get_config(), "kernel_masks": True, "dropout_rate": 0.0, "learn_head_mask": False}
        attention = GatedMultiHeadAttention.from_config(config)
        attention.build((None, None, source.d_model))
        for name in ("query", "key", "value", "output_dense"):
            target, origin = getattr(attention, name), getattr(source, name)
            target.kernel.assign(origin.kernel)
            target.bias.assign(origin.bias)
            if origin.kernel_mask is not None:
                target.kernel_mask.assign(origin.kernel_mask)
        attention.head_gate.assign(source.head_gate)
        return types.SimpleNamespace(attention=attention), \
            lambda inputs: attention(inputs[0], attention_mask=inputs[1], training=False)
    ((name, (owner, attribute)),) = SUBLAYERS[module].items()
    dense = _copy_dense(getattr(getattr(block, owner), attribute), name)
    holder = types.SimpleNamespace(**{owner: types.SimpleNamespace(**{attribute: dense})})
    return holder, lambda inputs: dense(inputs)


def masked_mse(output, target, weight):
    """Mean squared error over the real tokens (`weight` 1) and the features."""
    squared = tf.reduce_mean(tf.square(output - target), axis=-1) * weight
    return tf.reduce_sum(squared) / tf.maximum(tf.reduce_sum(weight), 1.0)


class UnitTrainer:
    """Trains one unit in its standalone module (`standalone_module`, the unit's arrays put on it)."""

    def __init__(self, block, unit, arrays, recipe, source):
        self.unit, self.recipe = unit, recipe
        self.holder, self.forward = standalone_module(block, unit["module"])
        put_unit(self.holder, unit, arrays, source)
        self.layers = sublayers(self.holder, unit["module"])
        self.variables = [v for layer in self.layers.values() for v in (layer.kernel, layer.bias)]
        self.optimizer = keras.optimizers.Adam(recipe.learning_rate)
        self.optimizer.build(self.variables)
        self._step = self._loss = None

    def _train_step(self, inputs, target, weight):
        with tf.GradientTape() as tape:
            loss = masked_mse(self.forward(inputs), target, weight)
        self.optimizer.apply_gradients(zip(tape.gradient(loss, self.variables), self.variables, strict=True))
        return loss

    def _eval_loss(self, inputs, target, weight):
        return masked_mse(self.forward(inputs), target, weight)

    def _compile(self, example):
        """Trace the step and the loss once for `example`'s ranks and feature widths (batch and sequence lengths
        vary)."""
        def spec(tensor, keep_last):
            shape = [None] * (tensor.shape.rank - 1) + [tensor.shape[-1] if keep_last else None]
            return tf.TensorSpec(shape, tensor.dtype)

        inputs, target, weight = example
        inputs_spec = (spec(inputs[0], True), spec(inputs[1], False)) if isinstance(inputs, tuple) \
            else spec(inputs, True)
        signature = (inputs_spec, spec(target, True), spec(weight, False))
        self._step = tf.function(self._train_step, input_signature=signature)
        self._loss = tf.function(self._eval_loss, input_signature=signature)

    def heldout_loss(self, examples):
        """Token-weighted mean loss over `examples`."""
        losses = [(float(self._loss(*example)), float(tf.reduce_sum(example[2]))) for example in examples]
        return sum(loss * count for loss, count in losses) / max(sum(count for _, count in losses), 1.0)

    def train(self, examples, heldout):
        """Run the recipe; returns the stats rows `{unit, step, train_loss, heldout_loss, seconds}` (step 0: before
        training, its train loss measured the same way as the held-out one)."""
        self._compile(examples[0])
        start = time.perf_counter()
        rows = [self._row(0, self.heldout_loss(examples), heldout, start)]
        losses = []
        for step in range(1, self.recipe.steps + 1):
            losses.append(float(self._step(*examples[(step - 1) % len(examples)])))
            if step % self.recipe.log_every == 0 or step == self.recipe.steps:
                rows.append(self._row(step, float(np.mean(losses)), heldout, start))
                losses = []
        return rows

    def _row(self, step, train_loss, heldout, start):
        return {"unit": self.unit["id"], "step": step, "train_loss": train_loss,
                "heldout_loss": self.heldout_loss(heldout) if heldout else float("nan"),
                "seconds": time.perf_counter() - start}

    def arrays(self, gates):
        """The unit's arrays after training (its gates unchanged)."""
        arrays = {}
        for name, layer in self.layers.items():
            arrays |= {f"{name}/kernel": layer.kernel.numpy(), f"{name}/bias": layer.bias.numpy(),
                       f"{name}/kernel_mask": layer.kernel_mask.numpy()}
        return {**arrays, **gates}
