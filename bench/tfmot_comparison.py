"""Magnitude pruning during training: ours vs TensorFlow Model Optimization, training step time.

Ours: the gated tiny encoder with MagnitudePruner + PruningCallback.
Theirs: a plain `tf_keras` encoder of identical shape (q/k/v/output and FFN
as `Dense` layers) whose encoder `Dense` layers are wrapped by
`tfmot.sparsity.keras.prune_low_magnitude`, trained with `UpdatePruningStep`.
Both prune the same kernels along the same cubic ramp to 90% every 100
steps (TFMOT's default frequency), on the same SST-2 rows and bucketed
batches (held in memory, so the input pipeline is not timed), with AdamW
(lr 1e-3, weight decay 0.01, global clipnorm 1). Each
side runs in its own process (theirs with TF_USE_LEGACY_KERAS=1); the
processes alternate, and each reports its median examples/s.
Target: step time ours/theirs <= 1.0.

Needs the `bench` extra: pip install -e ".[bench]" (tensorflow-model-optimization).
"""

import json
import os
import statistics
import subprocess
import sys

ROWS = int(os.environ.get("BENCH_ROWS", 6400))
BATCH = 96
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 3))  # processes per side, alternating
EPOCHS = 3  # timed epochs per process
SHAPE = {"vocab_size": 30522, "max_len": 128, "num_layers": 2, "d_model": 256, "num_heads": 4, "dff": 512}


def ramp(steps):
    """Begin, end and frequency of the shared cubic ramp to 90%: it spans the whole run and ends on a
    multiple of the frequency, where both libraries prune (TFMOT prunes only on the beat)."""
    return {"begin_step": 0, "end_step": max(100, 100 * ((EPOCHS + 1) * steps // 100)), "frequency": 100}


def dataset():
    """The SST-2 rows and their bucketed batches, held in memory so that timing sees the model only."""
    from common import cached_batches, load_sst2_train
    from tasks.pipeline import make_dataset

    split = load_sst2_train(ROWS)
    return split, cached_batches(make_dataset(split, BATCH, shuffle=True, seed=0, max_len=SHAPE["max_len"]))


def run_ours():
    import keras

    from callbacks import PruningCallback
    from common import compile_for_training, median_epoch_rate
    from gated import build_gated_encoder, sparsity_stats
    from pruners import MagnitudePruner, PolynomialSchedule

    split, data = dataset()
    steps = int(data.cardinality())
    keras.utils.set_random_seed(0)
    model = compile_for_training(build_gated_encoder(**SHAPE, num_labels=2), steps)
    callback = PruningCallback(MagnitudePruner(), PolynomialSchedule(0.0, 0.9, power=3, **ramp(steps)))
    rate = median_epoch_rate(model, data, len(split), EPOCHS, [callback])
    return {"rate": rate, "sparsity": sparsity_stats(model)["global_sparsity"],
            "trainable": sum(int(v.numpy().size) for v in model.trainable_variables)}


def build_tf_keras_encoder(tfk, tf):
    """The gated encoder's shape in `tf_keras`, with every prunable projection a top-level `Dense`."""
    d, heads = SHAPE["d_model"], SHAPE["num_heads"]
    init = tfk.initializers.TruncatedNormal(stddev=0.02)
    inputs = {name: tfk.Input((None,), dtype="int32", name=name)
              for name in ("input_ids", "token_type_ids", "attention_mask")}
    positions = tfk.layers.Lambda(lambda ids: tf.range(tf.shape(ids)[1])[None, :])(inputs["input_ids"])
    x = (tfk.layers.Embedding(SHAPE["vocab_size"], d, embeddings_initializer=init)(inputs["input_ids"])
         + tfk.layers.Embedding(SHAPE["max_len"], d, embeddings_initializer=init)(positions)
         + tfk.layers.Embedding(2, d, embeddings_initializer=init)(inputs["token_type_ids"]))
    x = tfk.layers.LayerNormalization(epsilon=1e-12)(x)
    bias = tfk.layers.Lambda(lambda m: (1.0 - tf.cast(m[:, None, None, :], tf.float32)) * -1e9)(
        inputs["attention_mask"])  # (B, 1, 1, T)

    def attend(tensors):
        q, k, v, mask_bias = tensors

        def split(t):  # (B, T, D) -> (B, H, T, D/H)
            return tf.transpose(tf.reshape(t, [tf.shape(t)[0], -1, heads, d // heads]), [0, 2, 1, 3])

        scores = tf.matmul(split(q), split(k), transpose_b=True) / (d // heads) ** 0.5 + mask_bias
        context = tf.matmul(tf.nn.softmax(scores, axis=-1), split(v))  # (B, H, T, D/H)
        return tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [tf.shape(q)[0], -1, d])

    for index in range(SHAPE["num_layers"]):
        def dense(units, name, activation=None, index=index):
            return tfk.layers.Dense(units, activation=activation, kernel_initializer=init,
                                    name=f"prunable_{index}_{name}")

        q, k, v = (dense(d, name)(x) for name in ("query", "key", "value"))
        attended = dense(d, "output")(tfk.layers.Lambda(attend)([q, k, v, bias]))
        x = tfk.layers.LayerNormalization(epsilon=1e-12)(x + attended)
        hidden = dense(SHAPE["dff"], "intermediate", activation="gelu")(x)
        x = tfk.layers.LayerNormalization(epsilon=1e-12)(x + dense(d, "ffn_output")(hidden))
    cls = tfk.layers.Lambda(lambda t: t[:, 0, :])(x)
    pooled = tfk.layers.Dense(d, activation="tanh", kernel_initializer=init)(cls)
    logits = tfk.layers.Dense(2, kernel_initializer=init)(pooled)
    return tfk.Model(inputs, logits)


def run_theirs():
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras as tfk

    split, data = dataset()
    steps = int(data.cardinality())
    tf.random.set_seed(0)
    plain = build_tf_keras_encoder(tfk, tf)
    trainable = sum(int(v.numpy().size) for v in plain.trainable_variables)
    schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, 0.9, power=3, **ramp(steps))

    def wrap(layer):
        if layer.name.startswith("prunable_"):
            return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)
        return layer.__class__.from_config(layer.get_config())

    model = tfk.models.clone_model(plain, clone_function=wrap)
    optimizer = tfk.optimizers.AdamW(learning_rate=1e-3, weight_decay=0.01, epsilon=1e-6, global_clipnorm=1.0)
    model.compile(optimizer, tfk.losses.SparseCategoricalCrossentropy(from_logits=True))
    from common import median_epoch_rate

    rate = median_epoch_rate(model, data, len(split), EPOCHS, [tfmot.sparsity.keras.UpdatePruningStep()])
    kernels = [w for layer in model.layers if hasattr(layer, "pruning_vars") for w, _, _ in layer.pruning_vars]
    zeros = sum(int(tf.size(w)) - int(tf.math.count_nonzero(w)) for w in kernels)
    return {"rate": rate, "sparsity": zeros / sum(int(tf.size(w)) for w in kernels), "trainable": trainable}


def worker(side):
    result = run_ours() if side == "ours" else run_theirs()
    print("RESULT " + json.dumps(result), flush=True)


def spawn(side):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    if side == "theirs":
        env["TF_USE_LEGACY_KERAS"] = "1"
    done = subprocess.run([sys.executable, __file__, "--worker", side], env=env, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        sys.exit(f"{side} worker failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main():
    results = {"ours": [], "theirs": []}
    for _ in range(ROUNDS):
        for side in results:
            results[side].append(spawn(side))
    rate = {side: statistics.median(r["rate"] for r in runs) for side, runs in results.items()}
    for side, runs in results.items():
        print(f"{side}: examples/s per process " + ", ".join(f"{r['rate']:.0f}" for r in runs))
    ours, theirs = results["ours"][-1], results["theirs"][-1]
    print(f"tiny shape, SST-2 first {ROWS} rows, batch {BATCH}, cubic ramp to 90% every 100 steps, "
          f"{ROUNDS} processes x {EPOCHS} epochs per side")
    print(f"trainable parameters: ours {ours['trainable']}, theirs {theirs['trainable']}")
    for side, label in (("ours", "ours (GatedDense masks + PruningCallback)"),
                        ("theirs", "TFMOT prune_low_magnitude + UpdatePruningStep (tf_keras)")):
        print(f"{label}: {rate[side]:.0f} train examples/s, sparsity after the run "
              f"{results[side][-1]['sparsity']:.3f}")
    ratio = rate["theirs"] / rate["ours"]
    print(f"training step time ours/theirs: {ratio:.3f} (target <= 1.0: {'PASS' if ratio <= 1.0 else 'FAIL'})")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        worker(sys.argv[2])
    else:
        main()
