"""The gated BERT/BART-style encoder: embeddings, post-LN blocks, task head."""

import keras
from keras import ops

from gated.activations import hidden_activation
from gated.attention import GatedMultiHeadAttention
from gated.feed_forward import GatedFeedForward
from gated.model import GatedModel
from gated.norm import LayerNorm
from gated_bert.vocabulary import POOLINGS, expand_unit_kinds

INPUT_NAMES = ("input_ids", "token_type_ids", "attention_mask")
# The dense layer between [CLS] and the classifier, by its activation; None: there is none.
POOLERS = ("tanh", "relu", None)


def bert_initializer():
    """BERT's weight initializer: truncated normal with stddev 0.02."""
    return keras.initializers.TruncatedNormal(stddev=0.02)


@keras.saving.register_keras_serializable(package="gated_bert")
class EncoderEmbeddings(keras.layers.Layer):
    """Token + learned position + segment embeddings, then LayerNorm and dropout.

    Args:
        vocab_size: number of token ids.
        max_len: number of learned position rows; a sequence may hold up to
            `max_len - position_offset` tokens.
        d_model: embedding width.
        type_vocab_size: number of segment ids (2 for sentence pairs); 0 for
            models without segment embeddings (DistilBERT), which ignore
            `token_type_ids`.
        dropout_rate: dropout after the LayerNorm.
        position_offset: position row of the first token (RoBERTa: its
            `padding_idx + 1`, i.e. 2; BERT: 0).
        layer_norm_eps: epsilon of the LayerNorm.
        **kwargs: base `keras.layers.Layer` arguments.
    """

    def __init__(self, vocab_size, max_len, d_model, type_vocab_size=2, dropout_rate=0.0, position_offset=0,
                 layer_norm_eps=1e-12, **kwargs):
        super().__init__(**kwargs)
        for name, value in (("vocab_size", vocab_size), ("max_len", max_len), ("d_model", d_model)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {name}={value!r}")
        if not 0 <= position_offset < max_len:
            raise ValueError(f"position_offset must be in [0, max_len), got position_offset={position_offset}, "
                             f"max_len={max_len}")
        self.vocab_size = vocab_size
        self.max_len = max_len
        self.d_model = d_model
        self.type_vocab_size = type_vocab_size
        self.dropout_rate = dropout_rate
        self.position_offset = position_offset
        self.layer_norm_eps = layer_norm_eps

        def embedding(rows, name):
            return keras.layers.Embedding(rows, d_model, embeddings_initializer=bert_initializer(), name=name)

        self.token_embedding = embedding(vocab_size, "token")
        self.position_embedding = embedding(max_len, "position")
        self.segment_embedding = embedding(type_vocab_size, "segment") if type_vocab_size else None
        self.norm = LayerNorm(epsilon=layer_norm_eps, name="norm")
        self.dropout = keras.layers.Dropout(dropout_rate)

    def build(self, input_shape):
        for embedding in (self.token_embedding, self.position_embedding, self.segment_embedding):
            if embedding is not None:
                embedding.build(input_shape)
        self.norm.build((*input_shape, self.d_model))

    def call(self, input_ids, token_type_ids, training=None):
        positions = self.position_offset + ops.expand_dims(ops.arange(ops.shape(input_ids)[1]), 0)  # (1, T)
        x = self.token_embedding(input_ids) + self.position_embedding(positions)  # (B, T, D)
        if self.segment_embedding is not None:
            x = x + self.segment_embedding(token_type_ids)
        return self.dropout(self.norm(x), training=training)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.d_model)

    def get_config(self):
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "max_len": self.max_len,
            "d_model": self.d_model,
            "type_vocab_size": self.type_vocab_size,
            "dropout_rate": self.dropout_rate,
            "position_offset": self.position_offset,
            "layer_norm_eps": self.layer_norm_eps,
        }


@keras.saving.register_keras_serializable(package="gated_bert")
class EncoderBlock(keras.layers.Layer):
    """Post-LN transformer block: `LN(x + MHA(x))`, then `LN(x + FFN(x))`.

    Args:
        num_heads: attention heads.
        dff: feed-forward width.
        dropout_rate: dropout on attention probabilities and both residual branches.
        learn_masks: unit kinds to learn masks for with Gumbel-Sigmoid gates: any
            of `head`, `neuron`, `ffn_out` (`gated_bert.vocabulary.UNIT_KINDS`), or
            `all`; the earlier name `ffn_int` still means `neuron`.
        head_dim: width of each head (default `d_model // num_heads`); set by
            physically pruned models, whose blocks keep fewer heads.
        hidden_act: the FFN activation, a Hugging Face `hidden_act` name
            (`gated.activations.HIDDEN_ACTS`: gelu, gelu_new, relu, ...).
        layer_norm_eps: epsilon of both LayerNorms.
        kernel_masks: give every `GatedDense` a per-weight kernel mask (weight-level pruning only).
        gates: create the head, neuron and output gates; False is a plain
            block whose gates were folded into its weights (`gated.compact_model`).
        fused_qkv: one query-key-value projection (`GatedMultiHeadAttention(fused_qkv=True)`; plain blocks only).
        **kwargs: base `keras.layers.Layer` arguments.
    """

    def __init__(self, num_heads, dff, dropout_rate=0.0, learn_masks=(), head_dim=None, hidden_act="gelu",
                 layer_norm_eps=1e-12, kernel_masks=True, gates=True, fused_qkv=False, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.dff = dff
        self.dropout_rate = dropout_rate
        self.learn_masks = expand_unit_kinds(learn_masks)
        self.head_dim = head_dim
        self.hidden_act = hidden_act
        self.layer_norm_eps = layer_norm_eps
        self.kernel_masks = kernel_masks
        self.gates = gates
        self.fused_qkv = fused_qkv
        init = bert_initializer()
        self.attention = GatedMultiHeadAttention(num_heads, dropout_rate, kernel_initializer=init,
                                                 learn_head_mask="head" in self.learn_masks, head_dim=head_dim,
                                                 kernel_masks=kernel_masks, gates=gates, fused_qkv=fused_qkv,
                                                 name="attention")
        self.attention_norm = LayerNorm(epsilon=layer_norm_eps, name="attention_norm")
        self.ffn = GatedFeedForward(dff, activation=hidden_activation(hidden_act), kernel_initializer=init,
                                    learn_neuron_mask="neuron" in self.learn_masks,
                                    learn_output_mask="ffn_out" in self.learn_masks, kernel_masks=kernel_masks,
                                    gates=gates, name="ffn")
        self.ffn_norm = LayerNorm(epsilon=layer_norm_eps, name="ffn_norm")
        self.dropout = keras.layers.Dropout(dropout_rate)

    def build(self, input_shape):
        for layer in (self.attention, self.attention_norm, self.ffn, self.ffn_norm):
            layer.build(input_shape)

    def attention_residual(self, inputs, attention_mask=None, training=None):
        """`x + MHA(x)`: the attention sublayer's output before its LayerNorm."""
        attended = self.attention(inputs, attention_mask=attention_mask, training=training)
        return inputs + self.dropout(attended, training=training)

    def ffn_residual(self, x, training=None):
        """`x + FFN(x)`: the feed-forward sublayer's output before its LayerNorm."""
        return x + self.dropout(self.ffn(x, training=training), training=training)

    def call(self, inputs, attention_mask=None, training=None):
        x = self.attention_norm(self.attention_residual(inputs, attention_mask, training))
        return self.ffn_norm(self.ffn_residual(x, training))  # (B, T, D)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "dff": self.dff,
            "dropout_rate": self.dropout_rate,
            "learn_masks": list(self.learn_masks),
            "head_dim": self.head_dim,
            "hidden_act": self.hidden_act,
            "layer_norm_eps": self.layer_norm_eps,
            "kernel_masks": self.kernel_masks,
            "gates": self.gates,
            "fused_qkv": self.fused_qkv,
        }


def build_gated_encoder(
    *,
    vocab_size,
    max_len,
    num_layers,
    d_model,
    num_heads,
    dff,
    num_labels,
    dropout_rate=0.0,
    type_vocab_size=2,
    learn_masks=(),
    head_dim=None,
    hidden_act="gelu",
    layer_norm_eps=1e-12,
    num_positions=None,
    position_offset=0,
    pooler="tanh",
    pooling="cls",
    kernel_masks=True,
    gates=True,
    name="gated_bert",
):
    """Build the gated encoder with a `[CLS]` head as a functional `GatedModel`.

    Inputs are a dict of `input_ids`, `token_type_ids` and `attention_mask`,
    each `(batch, length)` int32 with any length up to `max_len`. The output
    is `(batch, num_labels)` logits, or `(batch, 1)` scores when
    `num_labels == 1` (regression). `learn_masks` adds learnable
    Gumbel-Sigmoid masks of those kinds to every block (see `EncoderBlock`).
    `num_heads` and `dff` may be lists, one value per block, for physically
    pruned models; those need `head_dim`.

    The BERT-family options: `hidden_act` (gelu, gelu_new, relu),
    `layer_norm_eps`, `num_positions` position rows (default
    `max_len + position_offset`) with the first token at row
    `position_offset` (RoBERTa: 2), `type_vocab_size` 0 for no segment
    embeddings, and `pooler`, the activation of the dense layer between
    `[CLS]` and the classifier (`tanh`: BERT's pooler and RoBERTa's head;
    `relu`: DistilBERT's pre-classifier; None: the classifier reads `[CLS]`).
    `pooling` is what the head reads: `cls`, the `[CLS]` row, or `mean`, the
    mean of the real tokens' rows (`MeanPooling`; the pooler then applies to
    that mean).
    `kernel_masks=False` leaves out the per-weight kernel masks (structured
    gates stay): the model then holds one float per parameter, as a model that
    no weight-level pruner touches should. `gates=False` leaves out the head,
    neuron and output gates too: a plain inference model (`gated.compact_model`).
    """
    if num_layers <= 0:
        raise ValueError(f"num_layers must be positive, got num_layers={num_layers}")
    if pooler not in POOLERS:
        raise ValueError(f"pooler must be one of {POOLERS}, got pooler={pooler!r}")
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got pooling={pooling!r}")
    heads, widths = _per_layer("num_heads", num_heads, num_layers), _per_layer("dff", dff, num_layers)
    if head_dim is None and any(h and d_model % h for h in heads):
        raise ValueError(
            f"num_heads must divide d_model, got num_heads={num_heads}, d_model={d_model}"
        )
    num_positions = max_len + position_offset if num_positions is None else num_positions
    if num_positions < max_len + position_offset:
        raise ValueError(f"num_positions={num_positions} cannot hold max_len={max_len} tokens from "
                         f"position_offset={position_offset}; lower max_len to {num_positions - position_offset}")
    inputs = {key: keras.Input(shape=(None,), dtype="int32", name=key) for key in INPUT_NAMES}
    x = EncoderEmbeddings(
        vocab_size, num_positions, d_model, type_vocab_size, dropout_rate, position_offset, layer_norm_eps,
        name="embeddings",
    )(inputs["input_ids"], inputs["token_type_ids"])
    for index in range(num_layers):
        block = EncoderBlock(heads[index], widths[index], dropout_rate, learn_masks, head_dim=head_dim,
                             hidden_act=hidden_act, layer_norm_eps=layer_norm_eps, kernel_masks=kernel_masks,
                             gates=gates, name=f"block_{index}")
        x = block(x, attention_mask=inputs["attention_mask"])
    if pooling == "mean":
        pooled = MeanPooling(name="mean_pooling")(x, inputs["attention_mask"])  # (B, D)
    else:
        pooled = x[:, 0, :]  # (B, D): [CLS]
    if pooler is not None:
        pooled = keras.layers.Dense(d_model, activation=pooler, kernel_initializer=bert_initializer(),
                                    name="pooler")(pooled)
    pooled = keras.layers.Dropout(dropout_rate)(pooled)
    logits = keras.layers.Dense(num_labels, kernel_initializer=bert_initializer(), name="classifier")(pooled)
    return GatedModel(inputs, logits, name=name)


@keras.saving.register_keras_serializable(package="gated_bert")
class MeanPooling(keras.layers.Layer):
    """The mean of the hidden states of the tokens that `attention_mask` marks real: `(B, T, D)` to `(B, D)`."""

    def call(self, x, attention_mask):
        weights = ops.expand_dims(ops.cast(attention_mask, x.dtype), -1)  # (B, T, 1)
        return ops.sum(x * weights, axis=1) / ops.maximum(ops.sum(weights, axis=1), 1.0)


def mean_pooling_layer(model):
    """`model`'s `MeanPooling` layer, or None when its head reads `[CLS]`."""
    return next((layer for layer in model.layers if isinstance(layer, MeanPooling)), None)


def pooling_of(model):
    """`"mean"` when `model`'s head reads the mean of the token states (`MeanPooling`), else `"cls"`."""
    return "cls" if mean_pooling_layer(model) is None else "mean"


def encoder_blocks(model):
    """`model`'s encoder blocks, first to last."""
    return [layer for layer in model.layers if isinstance(layer, EncoderBlock)]


def last_hidden_state_model(model):
    """A model sharing `model`'s layers whose output is the last block's hidden state `(B, T, D)`."""
    return keras.Model(model.inputs, encoder_blocks(model)[-1].output, name=f"{model.name}_hidden")


def block_states_model(model):
    """A model sharing `model`'s layers whose outputs are every block's hidden state `(B, T, D)`, then the logits."""
    return keras.Model(model.inputs, [*(block.output for block in encoder_blocks(model)), model.output],
                       name=f"{model.name}_with_states")


def _per_layer(name, value, num_layers):
    """`value` as a list of one int per block (an int is repeated)."""
    if isinstance(value, int):
        return [value] * num_layers
    values = list(value)
    if len(values) != num_layers:
        raise ValueError(f"{name} needs one value per block ({num_layers}), got {name}={values}")
    if any(isinstance(v, bool) or not isinstance(v, int) for v in values):
        raise ValueError(f"{name} must hold integers, got {name}={values}")
    return values
