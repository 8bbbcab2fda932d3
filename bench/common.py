"""Shared pieces of the benchmarks: a plain Keras twin of the gated encoder, data, timing."""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402

from gated.encoder import INPUT_NAMES, bert_initializer  # noqa: E402


def build_plain_encoder(*, vocab_size, max_len, num_layers, d_model, num_heads, dff, num_labels, dropout_rate=0.0):
    """The gated encoder's exact shape, from stock `keras.layers` only (no masks, no gates)."""
    inputs = {key: keras.Input(shape=(None,), dtype="int32", name=key) for key in INPUT_NAMES}
    positions = keras.layers.Lambda(lambda ids: keras.ops.arange(keras.ops.shape(ids)[1])[None, :])(
        inputs["input_ids"]
    )
    x = (
        keras.layers.Embedding(vocab_size, d_model, embeddings_initializer=bert_initializer())(inputs["input_ids"])
        + keras.layers.Embedding(max_len, d_model, embeddings_initializer=bert_initializer())(positions)
        + keras.layers.Embedding(2, d_model, embeddings_initializer=bert_initializer())(inputs["token_type_ids"])
    )
    x = keras.layers.Dropout(dropout_rate)(keras.layers.LayerNormalization(epsilon=1e-12)(x))
    mask = keras.ops.cast(inputs["attention_mask"][:, None, :], "bool")  # (B, 1, T)
    for _ in range(num_layers):
        attention = keras.layers.MultiHeadAttention(
            num_heads, d_model // num_heads, dropout=dropout_rate, kernel_initializer=bert_initializer()
        )
        attended = keras.layers.Dropout(dropout_rate)(attention(x, x, attention_mask=mask))
        x = keras.layers.LayerNormalization(epsilon=1e-12)(x + attended)
        hidden = keras.layers.Dense(dff, activation="gelu", kernel_initializer=bert_initializer())(x)
        out = keras.layers.Dense(d_model, kernel_initializer=bert_initializer())(hidden)
        x = keras.layers.LayerNormalization(epsilon=1e-12)(x + keras.layers.Dropout(dropout_rate)(out))
    pooled = keras.layers.Dense(d_model, activation="tanh", kernel_initializer=bert_initializer())(x[:, 0, :])
    logits = keras.layers.Dense(num_labels, kernel_initializer=bert_initializer())(
        keras.layers.Dropout(dropout_rate)(pooled)
    )
    return keras.Model(inputs, logits, name="plain_encoder")


def glue_inputs_or_exit():
    """GLUE_DIR and TOKENIZER from the environment, defaulting to ../shared beside the repo."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    glue = os.environ.get("GLUE_DIR") or os.path.join(root, "..", "shared", "data", "glue")
    tokenizer = os.environ.get("TOKENIZER") or os.path.join(root, "..", "shared", "data", "tokenizers",
                                                            "bert-base-uncased")
    if not os.path.isdir(os.path.join(glue, "SST-2")):
        sys.exit(f"SST-2 not found under {glue}; set GLUE_DIR to a GLUE directory")
    return glue, tokenizer


class EpochTimer(keras.callbacks.Callback):
    """Records each epoch's wall-clock seconds."""

    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)
