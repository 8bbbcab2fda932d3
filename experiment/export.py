"""Export a train.py checkpoint, optionally with a mask folder, as a compact model for serving.

    python export.py --ckpt_dir checkpoints_baseline_sst2 --masks_dir outputs/tiny/sst2/mac/0.5/seed_0 \
        --output_dir exported/sst2_0.5
    python export.py --ckpt_dir checkpoints_gumbel_sst2 --output_dir exported/gumbel   # learned masks baked in
    python export.py --ckpt_dir outputs/tiny/sst2/kprune_mac/0.5/seed_0 --output_dir exported/kprune

The output folder holds `model.keras` (gates, scales and masks folded into the kernels, pruned heads and
neurons removed), `saved_model/`, `model.tflite`, `model_int8.tflite` (dynamic-range int8), `model.onnx` (with
the `onnx` extra), the tokenizer files and the card (`card.json`, `README.md`). Every format is run on the dev
rows and must reproduce the masked checkpoint's logits (to 1e-4; int8: the same prediction on 99% of rows,
`--int8_agreement`), or nothing is written. An existing output folder is replaced only with `--overwrite`.
"""

import argparse
import json
import os
import sys

from deploy.formats import FORMATS
from experiment.checkpoints import CheckpointError, add_checkpoint_arguments, open_with_masks
from experiment.config import ConfigError
from gated_bert import progress
from gated_bert.cli import add_bool_flag, add_verbose_flag, quiet_start
from gated_bert.files import json_text
from gated_bert.logs import setup_console_logging
from gated_bert.mask_folders import MaskFolderError
from gated_bert.pretrained_folders import PretrainedError
from tasks import DataUnavailableError, GlueFormatError


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    add_checkpoint_arguments(parser, "a mask folder (from prune.py or a gumbel run) to fold in")
    parser.add_argument("--output_dir", required=True, help="the export folder (must not exist, see --overwrite)")
    parser.add_argument("--formats", default="all", type=_formats,
                        help=f"comma-separated, any of {', '.join(FORMATS)} [all: every one whose packages are "
                             "installed; onnx needs the onnx extra]")
    add_bool_flag(parser, "overwrite", "replace an existing --output_dir")
    parser.add_argument("--latency_runs", type=_non_negative, default=5,
                        help="timed runs per format at batch 1 and 32 for the card (0: no timing) [5]")
    parser.add_argument("--int8_agreement", type=_share, default=0.99,
                        help="least share of dev rows on which the int8 model must predict what the checkpoint "
                             "does, else nothing is written (regression: Pearson r); 0 checks nothing [0.99]")
    parser.add_argument("--threads", type=_non_negative, default=0,
                        help="TFLite and ONNX Runtime threads (0: their defaults) [0]")
    add_verbose_flag(parser)
    return parser


def _formats(text):
    if text == "all":
        return None
    formats = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [fmt for fmt in formats if fmt not in FORMATS]
    if unknown or not formats:
        raise argparse.ArgumentTypeError(f"unknown format {', '.join(unknown) or repr(text)}; write a comma-separated "
                                         f"list of {', '.join(FORMATS)}, or all")
    return formats


def _non_negative(text):
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return int(text)


def _share(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a share in [0, 1], got {text!r}")
    return value


def export(args, environ):
    """The card of the export `args` asks for: the inputs are checked first, then TensorFlow is started."""
    from deploy.formats import check_available, onnx_available

    if os.path.exists(args.output_dir) and not args.overwrite:
        raise FileExistsError(f"{args.output_dir} exists; choose another --output_dir or pass --overwrite to "
                              "replace it")
    formats = args.formats or [fmt for fmt in FORMATS if fmt != "onnx" or onnx_available()]
    check_available(formats)
    if args.formats is None and "onnx" not in formats:
        print("export: onnx left out: it needs tf2onnx and onnxruntime (pip install 'gated-bert[onnx]')",
              file=sys.stderr)
    model_path, config, folder, source = open_with_masks(args, environ)
    quiet_start()
    return export_checkpoint(args, model_path, config, folder, formats, source)


def export_checkpoint(args, model_path, config, folder, formats, source):
    """Load the checkpoint, put the folder's masks on its gates (and its logit bias on its classifier), export it."""
    from deploy import DevRows, export_model
    from experiment.checkpoints import dev_dataset, load_checkpoint, put_masks
    from tasks import load_tokenizer

    model = load_checkpoint(model_path, config)
    if folder:
        put_masks(model, folder.masks, args.masks_dir, folder.logit_bias)
    spec = config.task_spec()
    tokenizer = load_tokenizer(config.tokenizer)
    _, dataset = dev_dataset(config, spec, tokenizer)
    made_by = folder.source if folder else {}
    about = {"checkpoint": source["path"], "checkpoint_sha256": source["weights_sha256"],
             "masks_dir": args.masks_dir and os.path.abspath(args.masks_dir),
             "method": made_by.get("method") or config.method, "constraint": _constraint(args.masks_dir),
             "max_len": config.max_len}
    return export_model(model, args.output_dir, DevRows(list(dataset.as_numpy_iterator()), spec), formats=formats,
                        tokenizer=tokenizer, about=about,
                        overwrite=args.overwrite, latency_runs=args.latency_runs, threads=args.threads or None,
                        int8_agreement=args.int8_agreement)


def _constraint(masks_dir):
    """The constraint of a prune.py mask folder, from its metrics.json (None for other folders)."""
    path = masks_dir and os.path.join(masks_dir, "metrics.json")
    if not path or not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle).get("constraint")


def main(argv=None, environ=None):
    """Command-line entry point; returns the exit status."""
    from deploy import ExportError, FormatUnavailableError

    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    setup_console_logging(args.verbose)
    progress.set_verbosity(args.verbose)
    try:
        card = export(args, os.environ if environ is None else environ)
    except (ConfigError, CheckpointError, MaskFolderError, FileExistsError, FormatUnavailableError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (ExportError, DataUnavailableError, GlueFormatError, PretrainedError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(json_text({"output_dir": args.output_dir, "parameters": card["parameters"], "macs": card["macs"],
                     "formats": {fmt: {"bytes": r["bytes"], "dev": r["dev"], "latency_ms": r["latency_ms"]}
                                 for fmt, r in card["formats"].items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
