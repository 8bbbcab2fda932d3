"""What one fused query-key-value projection buys: the compact models of bench/compaction_speedup.py (the fine-tuned
MiniLM SST-2 model, dense and pruned by Fisher at 0.7, 0.5 and 0.3 MACs kept) in both layouts of
`gated.compact_model` (`fused_qkv=True`, export.py's, and `False`, three projections), timed against each other in
every format on 2 CPU threads, batch 32 x 128 tokens.

Run bench/compaction_speedup.py with WORK set first: this bench reads the mask folders it pruned there.

    WORK=/tmp/compaction python bench/compaction_speedup.py
    WORK=/tmp/compaction python bench/fused_qkv.py        # ~17 min on 2 cores

Per model and format: ms per batch in each layout (the median of ROUNDS rounds, every contender timed in each
round, the two layouts of one model and format back to back) and the fused layout's speed-up (the median of each
round's ratio); then, per layout, each pruned model's speed-up over dense in the same format as a share of its MAC
ratio, the figure issue 16's target reads (>= 0.85). Both layouts compute the same logits; the bench checks it.
Last, what no pruning of heads and neurons shrinks: each block's two residual adds and two LayerNorms over
32 x 128 x 384 floats (gated.LayerNorm, as the export has them; Keras' LayerNormalization beside it), timed alone
in TFLite (they stay float in the int8 model), times the number of blocks, and
the share of the dense int8 model's time they take; with it, the best share of the MAC ratio the int8 model could
reach if everything else shrank with the MACs.
"""

import json
import os
import sys
import tempfile
import time

import numpy as np
from compaction_speedup import (
    CHECKPOINT,
    CONSTRAINTS,
    ROUNDS,
    SEQ_LEN,
    THREADS,
    pin_threads,
    speedup,
    time_contenders,
    timing_batches,
)

LAYOUTS = ("unfused", "fused")


def mask_folders(work):
    """`{model: mask folder or None}` from compaction_speedup's WORK folder, dense first."""
    folders = {"dense": None}
    for constraint in CONSTRAINTS:
        found = [root for root, _, names in os.walk(os.path.join(work, f"prune_{constraint}")) if "masks.json" in names]
        if len(found) != 1:
            sys.exit(f"no prune.py mask folder for {constraint} under {work}: run bench/compaction_speedup.py with "
                     f"WORK={work} first")
        folders[constraint] = found[0]
    return folders


def masked_checkpoint(masks_dir):
    """The fine-tuned checkpoint with `masks_dir`'s masks (and bias correction) on it; None: the dense model."""
    from experiment.checkpoints import find_checkpoint, load_checkpoint, put_masks
    from gated_bert.mask_folders import read_mask_folder

    model = load_checkpoint(find_checkpoint(CHECKPOINT)[0])
    if masks_dir:
        folder = read_mask_folder(masks_dir)
        put_masks(model, folder.masks, masks_dir, folder.logit_bias)
    return model


def compact_pair(masks_dir):
    """The checkpoint with `masks_dir`'s masks, compacted in both layouts: `{layout: compact model}`."""
    from gated import compact_model

    model = masked_checkpoint(masks_dir)
    return {layout: compact_model(model, fused_qkv=layout == "fused") for layout in LAYOUTS}


def block_macs(model):
    """The MACs of each block of a compact model at SEQ_LEN tokens."""
    from efficiency.mac import unit_macs
    from gated import compact_shape

    heads, widths = compact_shape(model)
    attention = model.get_layer("block_0").attention  # every block keeps the model's widths
    costs = unit_macs(attention.d_model, attention.head_dim, SEQ_LEN)
    return [h * costs["head"] + w * costs["neuron"] for h, w in zip(heads, widths, strict=True)]


def write_formats(model, folder, formats):
    from deploy import formats as writers

    os.makedirs(folder)
    for fmt in ["saved_model", *formats]:  # the TFLite formats convert the SavedModel
        writers.write(fmt, model, folder)


def work_folder():
    """compaction_speedup's WORK folder, from the environment."""
    work = os.environ.get("WORK")
    if not work:
        sys.exit("set WORK to bench/compaction_speedup.py's WORK folder (it holds the pruned mask folders)")
    return work


def main():
    pin_threads()
    from deploy import FORMATS, load_runner, onnx_available
    from deploy.formats import FILES
    from gated import compact_shape

    work = work_folder()
    formats = [fmt for fmt in FORMATS if fmt != "onnx" or onnx_available()]
    batches = {"batch 32 x 128": timing_batches()["batch 32 x 128"]}
    out = tempfile.mkdtemp(prefix="bench_fused_qkv_")
    runners, macs = {}, {}
    for name, masks_dir in mask_folders(work).items():
        pair = compact_pair(masks_dir)
        heads, widths = compact_shape(pair["fused"])
        first = {layout: model(batches["batch 32 x 128"][0]) for layout, model in pair.items()}
        gap = float(np.max(np.abs(np.asarray(first["fused"]) - np.asarray(first["unfused"]))))
        macs[name] = sum(block_macs(pair["fused"]))
        for layout, model in pair.items():
            folder = os.path.join(out, f"{name}_{layout}")
            write_formats(model, folder, formats)
            for fmt in formats:
                runners[name, layout, fmt] = load_runner(fmt, os.path.join(folder, FILES[fmt]), THREADS)
        print(f"{name}: heads {heads}, FFN widths {widths}; written in both layouts; max |fused - unfused| logit "
              f"{gap:.2e}", flush=True)
    keyed = {((name, layout), fmt): runner for (name, layout, fmt), runner in runners.items()}
    samples = time_contenders(keyed, batches)
    report(samples, formats, macs)
    fixed_costs(samples, macs, len(heads))
    with open(os.path.join(out, "samples.json"), "w") as handle:
        json.dump({" | ".join(map(str, [*key[0], key[1]])): values for key, values in samples.items()}, handle)


def residual_norms_ms(norm, d_model=384, rounds=15):
    """ms of one block's two residual adds and two LayerNorms (`norm(epsilon=...)`, a layer class) on
    `(32, 128, d_model)` in float TFLite: the median of `rounds` invocations on 2 threads, the inputs set once."""
    import keras
    import tensorflow as tf

    x, y = keras.Input((128, d_model), batch_size=32), keras.Input((128, d_model), batch_size=32)
    first, second = norm(epsilon=1e-12), norm(epsilon=1e-12)
    model = keras.Model([x, y], second(first(x + y) + y))
    rng = np.random.default_rng(0)
    for weight in [*first.weights, *second.weights]:  # not ones and zeros, which the converter would fold away
        weight.assign(rng.normal(1.0, 0.1, weight.shape).astype(np.float32))
    interpreter = tf.lite.Interpreter(model_content=tf.lite.TFLiteConverter.from_keras_model(model).convert(),
                                      num_threads=THREADS)
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], rng.standard_normal((32, 128, d_model)).astype(np.float32))
    interpreter.invoke()  # warms up
    times = []
    for _ in range(rounds):
        tick = time.perf_counter()
        interpreter.invoke()
        times.append(1000 * (time.perf_counter() - tick))
    return float(np.median(times))


def fixed_costs(samples, macs, blocks):
    import keras

    from gated import LayerNorm

    dense_int8 = np.median(samples[(("dense", "fused"), "tflite_int8"), "batch 32 x 128"])
    fixed = blocks * residual_norms_ms(LayerNorm)
    theirs = blocks * residual_norms_ms(keras.layers.LayerNormalization)
    print(f"\nresidual adds and LayerNorms ({blocks} blocks, float TFLite, 32 x 128): {fixed:.1f} ms with "
          f"gated.LayerNorm ({theirs:.1f} ms with Keras' LayerNormalization), {fixed / dense_int8:.2f} of the dense "
          f"int8 model's {dense_int8:.1f} ms")
    for model in list(macs)[1:]:
        kept = macs[model] / macs["dense"]
        bound = dense_int8 / (fixed + kept * (dense_int8 - fixed)) * kept
        print(f"  {model}: int8 share of the MAC ratio if all else shrank with the MACs: at most {bound:.2f}")


def report(samples, formats, macs):
    name = "batch 32 x 128"
    models = list(macs)
    print(f"\nms per batch 32 x 128, median of {ROUNDS} rounds, {THREADS} threads: unfused, fused, fused speed-up")
    for model in models:
        for fmt in formats:
            a, b = (np.median(samples[((model, layout), fmt), name]) for layout in LAYOUTS)
            gain = speedup(samples, ((model, "unfused"), fmt), ((model, "fused"), fmt))
            print(f"  {model!s:5} {fmt:11s}: {a:7.1f} {b:7.1f}  {gain:.2f}x", flush=True)
    print("\nspeed-up over dense in the same format and layout at batch 32 x 128, as a share of the MAC ratio "
          "(issue 16's target: >= 0.85):")
    for model in models[1:]:
        ratio = macs["dense"] / macs[model]
        for fmt in formats:
            shares = [speedup(samples, (("dense", layout), fmt), ((model, layout), fmt)) / ratio for layout in LAYOUTS]
            print(f"  {model} {fmt:11s} (MAC ratio {ratio:.2f}x): unfused {shares[0]:.2f}, fused {shares[1]:.2f}")


if __name__ == "__main__":
    main()
