"""Where the dynamic-range int8 TFLite model's time goes, stage by stage: the embeddings, each encoder block, the
head. For the compact models of bench/compaction_speedup.py (the fine-tuned MiniLM SST-2 model, dense and pruned
by Fisher at 0.7, 0.5 and 0.3 MACs kept, the fused layout export.py writes).

Each model is cut after every stage (a Keras model sharing its layers, whose output is that stage's), and every
cut is converted to int8 TFLite with export.py's dynamic-range quantisation and timed on invocations alone
(batch 32 x 128, 2 threads, the inputs set once; the cuts of all models take turns over ROUNDS rounds, the
median). A stage's time is its cut's minus the cut before it. Beside each pruned block: its MACs as a fraction
of the dense block's, and its time as a fraction of the dense block's; a block whose time falls less than its
MACs is what keeps the int8 model's speed-up under its MAC ratio.

    WORK=/tmp/compaction python bench/compaction_speedup.py
    WORK=/tmp/compaction python bench/int8_breakdown.py     # ~5 min on 2 cores
"""

import statistics
import time

import numpy as np
from compaction_speedup import ROUNDS, SEQ_LEN, THREADS, pin_threads
from fused_qkv import block_macs, mask_folders, masked_checkpoint, work_folder

BATCH = 32


def cuts(model):
    """`[(stage name, Keras model whose output is that stage's)]`: the embeddings, each block, the logits."""
    import keras

    from gated import EncoderEmbeddings
    from gated.encoder import encoder_blocks

    (embeddings,) = [layer for layer in model.layers if isinstance(layer, EncoderEmbeddings)]
    stages = [("embeddings", embeddings.output)]
    stages += [(f"block {index}", block.output) for index, block in enumerate(encoder_blocks(model))]
    stages.append(("head", model.output))
    return [(name, keras.Model(model.inputs, output)) for name, output in stages]


def int8_interpreter(model, inputs):
    """`model` converted to dynamic-range int8 TFLite (TensorFlow's converter from the Keras model, not export.py's
    SavedModel path), with `inputs` set once."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    interpreter = tf.lite.Interpreter(model_content=converter.convert(), num_threads=THREADS)
    details = interpreter.get_input_details()
    for detail in details:
        interpreter.resize_tensor_input(detail["index"], (BATCH, SEQ_LEN))
    interpreter.allocate_tensors()
    for detail in details:
        name = next(key for key in inputs if key in detail["name"])
        interpreter.set_tensor(detail["index"], inputs[name])
    interpreter.invoke()  # warms up
    return interpreter


def main():
    from gated import compact_model

    pin_threads()
    work = work_folder()
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 30000, size=(BATCH, SEQ_LEN)).astype(np.int32)
    inputs = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    interpreters, macs, stages = {}, {}, []
    for model_name, masks_dir in mask_folders(work).items():
        model = compact_model(masked_checkpoint(masks_dir))
        macs[model_name] = block_macs(model)
        stages = []
        for stage, cut in cuts(model):
            interpreters[model_name, stage] = int8_interpreter(cut, inputs)
            stages.append(stage)
        print(f"{model_name}: {len(stages)} cuts converted", flush=True)
    samples = {key: [] for key in interpreters}
    for round_index in range(ROUNDS):
        for key, interpreter in interpreters.items():
            tick = time.perf_counter()
            for _ in range(3):
                interpreter.invoke()
            samples[key].append(1000 * (time.perf_counter() - tick) / 3)
        print(f"timing round {round_index + 1}/{ROUNDS} done", flush=True)
    report(samples, macs, stages)


def report(samples, macs, stages):
    models = list(macs)
    cumulative = {key: statistics.median(values) for key, values in samples.items()}
    own = {}
    for model in models:
        previous = 0.0
        for stage in stages:
            own[model, stage] = cumulative[model, stage] - previous
            previous = cumulative[model, stage]
    print(f"\nint8 TFLite, ms per batch {BATCH} x {SEQ_LEN} by stage (the median of {ROUNDS} rounds, {THREADS} "
          "threads); for pruned blocks: time / dense block's time, MACs / dense block's MACs")
    print("| stage | " + " | ".join(map(str, models)) + " |")
    print("| --- |" + " ---: |" * len(models))
    for stage in stages:
        cells = [f"{own['dense', stage]:.1f}"]
        for model in models[1:]:
            cell = f"{own[model, stage]:.1f}"
            if stage.startswith("block "):
                index = int(stage.split()[1])
                cell += (f" ({own[model, stage] / own['dense', stage]:.2f} time, "
                         f"{macs[model][index] / macs['dense'][index]:.2f} MACs)")
            cells.append(cell)
        print(f"| {stage} | " + " | ".join(cells) + " |")
    print("| whole model | " + " | ".join(f"{cumulative[model, stages[-1]]:.1f}" for model in models) + " |")
    blocks = [stage for stage in stages if stage.startswith("block ")]
    dense_blocks = sum(own["dense", stage] for stage in blocks)
    for model in models[1:]:
        kept = sum(macs[model]) / sum(macs["dense"])
        pruned_blocks = sum(own[model, stage] for stage in blocks)
        outside = cumulative["dense", stages[-1]] - dense_blocks
        print(f"{model}: blocks take {pruned_blocks / dense_blocks:.2f} of the dense blocks' time for {kept:.2f} "
              f"of their MACs; outside the blocks {outside:.1f} ms in the dense model "
              f"({outside / cumulative['dense', stages[-1]]:.2f} of it); whole-model speed-up "
              f"{cumulative['dense', stages[-1]] / cumulative[model, stages[-1]]:.2f}x, "
              f"{cumulative['dense', stages[-1]] / cumulative[model, stages[-1]] * kept:.2f} of the MAC ratio")


if __name__ == "__main__":
    main()
