"""Latency-constrained pruning: LUTs measured here, prune.py --metric latency, then the estimate checked.

Generates the attention and FFN LUTs of the tiny preset on this machine
(batch 32 x 128 tokens), prunes the tiny SST-2 model to 60% of its
estimated block latency, removes the pruned heads and neurons for real
(`slice_pruned`) and times dense and pruned in alternating rounds (median of 7):
  - sublayers: each kept attention layer and FFN timed alone (the LUT's protocol), summed;
  - blocks: the encoder blocks end to end (residuals and LayerNorms included, which the LUT leaves out);
  - model: the whole forward pass, dense vs sliced.
Prints estimated vs measured latency (error %), and dev accuracy dense vs pruned.

    python bench/latency_estimate.py [CHECKPOINT_DIR]   # without one, trains the tiny model first (~4 min)
"""

import os
import sys
import tempfile

from common import glue_inputs_or_exit, prune_metrics, sst2_checkpoint

CONSTRAINT = 0.6
BATCH, LENGTH = 32, 128


def timed_calls(model):
    """`{sublayers: [calls], blocks: [call], model: [call]}` on one batch of BATCH x LENGTH tokens."""
    import tensorflow as tf

    from gated import EncoderBlock, collect_gated_layers

    x = tf.random.normal((BATCH, LENGTH, model.get_layer("embeddings").d_model), seed=0)
    mask = tf.ones((BATCH, LENGTH), tf.int32)
    blocks = list(collect_gated_layers(model, EncoderBlock).values())
    sublayers = []
    for block in blocks:
        if block.attention.num_heads:
            sublayers.append((tf.function(lambda h, m, b=block: b.attention(h, attention_mask=m)), (x, mask)))
        if block.ffn.dff:
            sublayers.append((tf.function(lambda h, b=block: b.ffn(h)), (x,)))

    @tf.function
    def stack(h, m):
        for block in blocks:
            h = block(h, attention_mask=m)
        return h

    ids = tf.random.uniform((BATCH, LENGTH), 1, 1000, tf.int32, seed=0)
    inputs = {"input_ids": ids, "token_type_ids": tf.zeros_like(ids), "attention_mask": mask}
    forward = tf.function(lambda batch: model(batch, training=False))
    return {"sublayers": sublayers, "blocks": [(stack, (x, mask))], "model": [(forward, (inputs,))]}


def measured(models, rounds=7):
    """Median over `rounds` of each model's summed milliseconds per kind; the models take turns each round,
    so drift in machine load hits them alike."""
    import statistics

    from efficiency.timing import measure_ms

    calls = {name: timed_calls(model) for name, model in models.items()}
    samples = {name: {kind: [] for kind in kinds} for name, kinds in calls.items()}
    for _ in range(rounds):
        for name, kinds in calls.items():
            for kind, pairs in kinds.items():
                samples[name][kind].append(sum(measure_ms(fn, *args, repeats=5) for fn, args in pairs))
    return {name: {kind: statistics.median(values) for kind, values in kinds.items()}
            for name, kinds in samples.items()}


def main():
    from efficiency import generate_lut
    from experiment.checkpoints import find_checkpoint, load_checkpoint
    from gated import count_parameters, load_learned_masks, set_structured_masks
    from gated.slicing import slice_pruned

    checkpoint = sst2_checkpoint(sys.argv)
    glue_inputs_or_exit()
    luts = tempfile.mkdtemp(prefix="bench_luts_")
    generate_lut.main(["--model_size", "tiny", "--batch_size", str(BATCH), "--max_len", str(LENGTH), "--output_dir",
                       luts])
    out = tempfile.mkdtemp(prefix="bench_latency_")
    metrics = prune_metrics(checkpoint, out, "--constraint", str(CONSTRAINT), "--metric", "latency", "--head_lut",
                            os.path.join(luts, "head_lut.json"), "--neuron_lut", os.path.join(luts, "neuron_lut.json"))
    folder = os.path.dirname(next(os.path.join(root, name) for root, _, names in os.walk(out) for name in names
                                  if name == "metrics.json"))
    dense = load_checkpoint(find_checkpoint(checkpoint)[0])
    pruned = load_checkpoint(find_checkpoint(checkpoint)[0])
    set_structured_masks(pruned, load_learned_masks(folder))
    small = slice_pruned(pruned)
    timings = measured({"dense": dense, "pruned": small})
    latency = metrics["latency_ms"]
    estimates = {"dense": latency["dense"], "pruned": latency["estimated"]}
    kept = metrics["kept"]
    print(f"latency budget: keep {CONSTRAINT} of the estimated block latency ({latency['budget']:.2f} of "
          f"{latency['dense']:.2f} ms at batch {BATCH} x {LENGTH}); fit per head {latency['model']['head']}, "
          f"per neuron {latency['model']['neuron']}")
    print(f"kept heads {kept['heads_per_layer']}, neurons {kept['neurons_per_layer']}; MACs kept "
          f"{metrics['macs']['kept_fraction']:.3f}; parameters {count_parameters(dense)} -> {count_parameters(small)}")
    for name in ("dense", "pruned"):
        t, estimate = timings[name], estimates[name]
        print(f"{name}: estimated {estimate:.2f} ms; measured sublayers {t['sublayers']:.2f} ms "
              f"(error {100 * (estimate - t['sublayers']) / t['sublayers']:+.1f}%), blocks {t['blocks']:.2f} ms "
              f"(error {100 * (estimate - t['blocks']) / t['blocks']:+.1f}%), whole model {t['model']:.2f} ms")
    print(f"measured speed-up pruned vs dense: blocks {timings['dense']['blocks'] / timings['pruned']['blocks']:.2f}x,"
          f" whole model {timings['dense']['model'] / timings['pruned']['model']:.2f}x "
          f"(estimated {estimates['dense'] / estimates['pruned']:.2f}x for the blocks)")
    dev = {stage: scores["dev_accuracy"] for stage, scores in metrics["dev"].items()}
    print("dev accuracy at the latency budget: " + ", ".join(f"{stage} {value:.4f}" for stage, value in dev.items()))
    print(f"pruning wall time {metrics['seconds']['pruning']:.1f} s")


if __name__ == "__main__":
    main()
