"""Measure attention and FFN latency per kept head / neuron count on this device: the latency LUTs.

    python -m efficiency.generate_lut --model_size tiny --batch_size 32 --max_len 128 --output_dir luts/tiny

writes `head_lut.json` (one gated attention layer with 1..H heads of the
model's head width) and `neuron_lut.json` (one gated FFN at a grid of widths
up to dff), which `prune.py --metric latency --head_lut ... --neuron_lut ...` reads.
"""

import argparse
import logging
import sys

from gated_bert import progress
from gated_bert.cli import add_verbose_flag, quiet_start
from gated_bert.logs import setup_console_logging
from gated_bert.vocabulary import PRESETS

log = logging.getLogger("generate_lut")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--model_size", default="tiny", choices=tuple(PRESETS), help="shape preset [tiny]")
    for name in ("d_model", "num_heads", "dff"):
        parser.add_argument(f"--{name}", type=int, help=f"override the preset's {name}")
    parser.add_argument("--batch_size", "--bs", dest="batch_size", type=int, default=32,
                        help="batch size to time at [32]")
    parser.add_argument("--max_len", "--seq_len", dest="max_len", type=int, default=128,
                        help="sequence length in tokens to time at (prune.py counts MACs at the checkpoint's "
                        "max_len) [128]")
    parser.add_argument("--ffn_points", type=int, default=32,
                        help="FFN widths timed: this many evenly spaced counts up to dff [32]")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per point (median kept) [20]")
    parser.add_argument("--output_dir", default="luts", help="folder for head_lut.json and neuron_lut.json [luts]")
    add_verbose_flag(parser)
    args = parser.parse_args(argv)
    shape = {**PRESETS[args.model_size]}
    shape.update({name: getattr(args, name) for name in ("d_model", "num_heads", "dff") if getattr(args, name)})
    for name in ("batch_size", "max_len", "ffn_points", "repeats"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name} must be positive, got {getattr(args, name)}")
    if shape["d_model"] % shape["num_heads"]:
        parser.error(f"num_heads must divide d_model, got num_heads={shape['num_heads']}, d_model={shape['d_model']}")
    return args, shape


def time_attention(heads, head_dim, inputs, mask, repeats):
    import tensorflow as tf

    from efficiency.timing import measure_ms
    from gated.attention import GatedMultiHeadAttention

    layer = GatedMultiHeadAttention(heads, head_dim=head_dim)
    layer.build(inputs.shape)
    return measure_ms(tf.function(lambda x, m: layer(x, attention_mask=m)), inputs, mask, repeats=repeats)


def time_ffn(neurons, inputs, repeats):
    import tensorflow as tf

    from efficiency.timing import measure_ms
    from gated.feed_forward import GatedFeedForward

    layer = GatedFeedForward(neurons)
    layer.build(inputs.shape)
    return measure_ms(tf.function(layer), inputs, repeats=repeats)


def main(argv=None):
    args, shape = parse_args(sys.argv[1:] if argv is None else argv)
    setup_console_logging(args.verbose)
    progress.set_verbosity(args.verbose)
    quiet_start()
    import numpy as np
    import tensorflow as tf

    from efficiency.latency import fit_lut, write_lut
    from efficiency.timing import device_name

    head_dim = shape["d_model"] // shape["num_heads"]
    lut_shape = {"d_model": shape["d_model"], "num_heads": shape["num_heads"], "head_dim": head_dim,
                 "dff": shape["dff"]}
    inputs = tf.random.normal((args.batch_size, args.max_len, shape["d_model"]), seed=0)
    mask = tf.ones((args.batch_size, args.max_len), tf.int32)
    device = device_name()
    log.info("timing on %s at batch %d x %d tokens, shape %s", device, args.batch_size, args.max_len, lut_shape)
    counts = {"head": list(range(shape["num_heads"] + 1)),
              "neuron": sorted({0, *np.linspace(0, shape["dff"], args.ffn_points + 1).round().astype(int).tolist()})}
    timers = {"head": lambda count: time_attention(count, head_dim, inputs, mask, args.repeats),
              "neuron": lambda count: time_ffn(count, inputs, args.repeats)}
    points = [(kind, count) for kind, values in counts.items() for count in values if count]  # 0 units cost 0
    latency = {kind: {0: 0.0} for kind in counts}
    for kind, count in progress.track(points, "generate_lut", unit="point", logger=log):
        latency[kind][count] = timers[kind](count)
    for kind, values in counts.items():
        measured = [latency[kind][count] for count in values]
        log.info("%s: %s", kind, ", ".join(f"{count} {t:.2f} ms" for count, t in zip(values, measured, strict=True)))
        path = write_lut(args.output_dir, kind, values, measured, lut_shape, args.batch_size, args.max_len, device)
        intercept, slope = fit_lut(values, measured)
        log.info("wrote %s; fit: %.3f ms + %.5f ms per %s", path, intercept, slope, kind)
    return 0


if __name__ == "__main__":
    sys.exit(main())
