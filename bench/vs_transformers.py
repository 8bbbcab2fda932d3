"""Training throughput on the real MiniLM shape: our encoder (TensorFlow/Keras) vs Hugging Face transformers
(PyTorch CPU), in one process, on 2 threads each.

Both load all-MiniLM-L6-v2 (6 x 384, 12 heads, FFN 1,536) with a fresh 2-label head and train on the same first
SST-2 rows in the same batches of 32, each padded to its longest row, in the same order: forward, backward,
AdamW step (lr 5e-5, gradient clipping at 1.0), dropout 0.1; ours reads them through `tf.data` with autotuning
off, as our own pipeline does (`tasks.pipeline.without_autotune`). The contenders take turns, one epoch each, for
several rounds; the median examples/s is reported. A third line runs our own pipeline (length-bucketed
batches of 32 from the same rows, `tasks.pipeline.make_dataset`). Target: ours / transformers >= 1.5.

Needs the bench extra (pip install -e '.[bench]': torch CPU and transformers' PyTorch models).

    python bench/vs_transformers.py   # ~5 min on 2 cores; BENCH_ROWS=1024, BENCH_ROUNDS=3
"""

import os
import statistics
import time

import numpy as np

from common import minilm_or_exit

ROWS = int(os.environ.get("BENCH_ROWS", 1024))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 3))
BATCH = 32
THREADS = 2
LEARNING_RATE = 5e-5


def padded_batches(split):
    """The split's rows in order, in batches of `BATCH`, each padded to its longest row: numpy dicts + labels."""
    batches = []
    for start in range(0, len(split), BATCH):
        rows = range(start, min(start + BATCH, len(split)))
        width = int(max(split.lengths[row] for row in rows))
        arrays = {key: np.zeros((len(rows), width), np.int64) for key in ("input_ids", "token_type_ids",
                                                                          "attention_mask")}
        for i, row in enumerate(rows):
            lo, hi = split.offsets[row], split.offsets[row + 1]
            arrays["input_ids"][i, :hi - lo] = split.input_ids[lo:hi]
            arrays["token_type_ids"][i, :hi - lo] = split.token_type_ids[lo:hi]
            arrays["attention_mask"][i, :hi - lo] = 1
        batches.append((arrays, split.labels[start:start + len(rows)].astype(np.int64)))
    return batches


def keras_contender(minilm, dataset, steps):
    """Our encoder compiled with the fine-tuning recipe, and a function that trains one epoch of `dataset`."""
    from experiment.config import GatedBertConfig
    from experiment.recipe import build_loss, build_optimizer
    from gated import load_pretrained
    from tasks import TASKS

    model = load_pretrained(minilm, num_labels=2, dropout_rate=0.1)
    config = GatedBertConfig(epochs=ROUNDS + 1, learning_rate=LEARNING_RATE, warmup_ratio=0.0)
    model.compile(optimizer=build_optimizer(config, steps), loss=build_loss(TASKS["sst2"]))
    model.fit(dataset.take(3), epochs=1, verbose=0)  # traces the train step for the first shapes
    return lambda: model.fit(dataset, epochs=1, verbose=0)


def torch_contender(minilm, batches):
    """transformers' BertForSequenceClassification and a function that trains one epoch of `batches`."""
    import torch
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(minilm, num_labels=2, hidden_dropout_prob=0.1,
                                                          attention_probs_dropout_prob=0.1)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.01, eps=1e-6)
    tensors = [({key: torch.from_numpy(value) for key, value in inputs.items()}, torch.from_numpy(labels))
               for inputs, labels in batches]

    def epoch():
        for inputs, labels in tensors:
            loss = model(**inputs, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()

    for inputs, labels in tensors[:3]:  # warm-up, as for the Keras contender
        model(**inputs, labels=labels).loss.backward()
        optimizer.zero_grad()
    return epoch


def main():
    import tensorflow as tf
    import torch

    tf.config.threading.set_intra_op_parallelism_threads(THREADS)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    torch.set_num_threads(THREADS)
    torch.set_num_interop_threads(1)

    from tasks import TASKS, load_split, load_tokenizer
    from tasks.pipeline import make_dataset, without_autotune

    minilm = minilm_or_exit()
    from common import glue_inputs_or_exit

    glue, _ = glue_inputs_or_exit()
    cache = os.path.join("/tmp", "gated_bert_bench_cache")
    split = load_split(TASKS["sst2"], "train", load_tokenizer(minilm), data_dir=glue, max_len=128, cache_dir=cache,
                       limit=ROWS)
    batches = padded_batches(split)
    same = without_autotune(tf.data.Dataset.from_generator(
        lambda: ((inputs, labels) for inputs, labels in batches),
        output_signature=({key: tf.TensorSpec((None, None), tf.int64) for key in batches[0][0]},
                          tf.TensorSpec((None,), tf.int64))).apply(
        tf.data.experimental.assert_cardinality(len(batches))).cache())  # as make_dataset's (see without_autotune)
    bucketed = make_dataset(split, BATCH, shuffle=True, seed=0, max_len=128).cache()
    for _ in same:  # fill the caches outside the timing
        pass
    for _ in bucketed:
        pass
    contenders = {"ours": keras_contender(minilm, same, len(batches)),
                  "transformers": torch_contender(minilm, batches),
                  "ours_bucketed": keras_contender(minilm, bucketed, int(bucketed.cardinality()))}
    rates = {name: [] for name in contenders}
    for _ in range(ROUNDS):
        for name, epoch in contenders.items():
            start = time.perf_counter()
            epoch()
            rates[name].append(len(split) / (time.perf_counter() - start))
    median = {name: statistics.median(values) for name, values in rates.items()}
    tokens = int(sum(inputs["input_ids"].size for inputs, _ in batches))
    print(f"MiniLM 6x384 (22.7M parameters), SST-2 first {len(split)} rows, batch {BATCH} padded to its longest "
          f"row ({tokens} padded tokens per epoch), {THREADS} threads, median of {ROUNDS} alternating rounds "
          f"(torch {torch.__version__}, tensorflow {tf.__version__})")
    for name, label in (("ours", "ours (same batches)"), ("transformers", "transformers + PyTorch"),
                        ("ours_bucketed", "ours (own bucketed pipeline)")):
        print(f"{label}: {median[name]:.1f} train examples/s (rounds: "
              f"{', '.join(f'{rate:.1f}' for rate in rates[name])})")
    for name in ("ours", "ours_bucketed"):
        ratio = median[name] / median["transformers"]
        print(f"{name} / transformers: {ratio:.2f}x (target >= 1.5: {'PASS' if ratio >= 1.5 else 'FAIL'})")


if __name__ == "__main__":
    main()
