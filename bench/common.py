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


def minilm_or_exit():
    """The real pretrained checkpoint: MINILM_DIR, else ../shared/data/models/all-MiniLM-L6-v2 beside the repo."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    folder = os.environ.get("MINILM_DIR") or os.path.join(root, "..", "shared", "data", "models", "all-MiniLM-L6-v2")
    if not os.path.isfile(os.path.join(folder, "model.safetensors")):
        sys.exit(f"all-MiniLM-L6-v2 not found in {folder}; set MINILM_DIR to its Hugging Face folder")
    return os.path.abspath(folder)


def load_sst2_train(limit):
    """The first `limit` SST-2 training rows, tokenized with the BERT uncased vocabulary."""
    import tempfile

    from tasks import TASKS, load_split, load_tokenizer

    glue, tokenizer_dir = glue_inputs_or_exit()
    tokenizer = load_tokenizer(tokenizer_dir)
    cache = os.environ.get("CACHE_DIR") or os.path.join(tempfile.gettempdir(), "gated_bert_bench_cache")
    return load_split(TASKS["sst2"], "train", tokenizer, data_dir=glue, max_len=128, cache_dir=cache, limit=limit)


def cached_batches(dataset):
    """`dataset`'s batches held in memory (filled here, outside any timing).

    On 2 cores the bucketing pipeline and the model compete for CPU, and the
    pipeline alone caps training near 620 examples/s, which hides differences
    between models. Every epoch of the cached dataset replays the first
    epoch's batches in the same order.
    """
    cached = dataset.cache()
    for _ in cached:
        pass
    return cached


def compile_for_training(model, steps_per_epoch, epochs=10):
    """The training recipe's optimizer and loss, identical for every model compared."""
    from experiment.config import GatedBertConfig
    from experiment.recipe import build_loss, build_optimizer
    from tasks import TASKS

    config = GatedBertConfig(epochs=epochs, learning_rate=1e-3)
    model.compile(optimizer=build_optimizer(config, steps_per_epoch), loss=build_loss(TASKS["sst2"]))
    return model


def examples_per_second(contenders, num_examples, rounds=3):
    """Median training examples/s of each `name -> (model, dataset[, callbacks])`, one epoch at a time.

    Each model first trains a few batches (tracing is not timed); then the
    contenders take turns, so drift in machine load hits them alike.
    """
    import statistics

    for model, dataset, *callbacks in contenders.values():
        model.fit(dataset.take(20), epochs=1, verbose=0, callbacks=[*callbacks[0]] if callbacks else None)
    rates = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, (model, dataset, *callbacks) in contenders.items():
            start = time.perf_counter()
            model.fit(dataset, epochs=1, verbose=0, callbacks=[*callbacks[0]] if callbacks else None)
            rates[name].append(num_examples / (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in rates.items()}


def median_epoch_rate(model, dataset, num_examples, epochs=3, callbacks=()):
    """Median training examples/s of one model over `epochs` epochs, after an untimed warm-up
    on a few batches that traces the train step."""
    import statistics

    model.fit(dataset.take(20), epochs=1, verbose=0, callbacks=list(callbacks))
    rates = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.fit(dataset, epochs=1, verbose=0, callbacks=list(callbacks))
        rates.append(num_examples / (time.perf_counter() - start))
    return statistics.median(rates)


def print_comparison(rates, labels, target, what):
    """Print each contender's examples/s and the first-to-second ratio against `target`."""
    (first, second) = rates
    for name in rates:
        print(f"{labels[name]}: {rates[name]:.0f} train examples/s")
    ratio = rates[first] / rates[second]
    verdict = "PASS" if ratio >= target else "FAIL"
    print(f"{what}: {ratio:.3f} (target >= {target}: {verdict})")
    return ratio


def sst2_checkpoint(argv):
    """The checkpoint folder to prune: `argv[1]` when given, else the tiny preset trained now with the
    from-scratch SST-2 recipe of `bench/sst2_accuracy.py` (about 4 minutes on 2 cores)."""
    import glob
    import tempfile

    if len(argv) > 1:
        return argv[1]
    from experiment.config import GatedBertConfig
    from experiment.train import configure_tensorflow, run
    from sst2_accuracy import RECIPE

    glue, tokenizer = glue_inputs_or_exit()
    out = tempfile.mkdtemp(prefix="bench_prune_ckpt_")
    config = GatedBertConfig(**RECIPE, data_dir=glue, tokenizer=tokenizer, output_dir=out, verbose=0)
    configure_tensorflow(config)
    print(f"training the tiny preset on SST-2 ({RECIPE['epochs']} epochs) for a checkpoint in {out}", flush=True)
    run(config)
    (folder,) = glob.glob(os.path.join(out, "checkpoints_*"))
    return folder


def prune_metrics(checkpoint, output_dir, *flags):
    """Run prune.py on `checkpoint` with GLUE_DIR/TOKENIZER set; returns its metrics.json as a dict."""
    import glob
    import json

    from experiment import prune

    glue, tokenizer = glue_inputs_or_exit()
    status = prune.main(["--ckpt_dir", checkpoint, "--output_dir", output_dir, *flags],
                        {**os.environ, "GLUE_DIR": glue, "TOKENIZER": tokenizer})
    if status:
        sys.exit(f"prune.py exited with {status}")
    (path,) = glob.glob(os.path.join(output_dir, "*", "*", "*", "*", "*", "metrics.json"))
    with open(path) as handle:
        return json.load(handle)
