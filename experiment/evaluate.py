"""Score a train.py checkpoint on its task's dev set, optionally with prune.py's masks on its gates.

    python evaluate.py --ckpt_dir checkpoints_baseline_sst2 --masks_dir outputs/tiny/sst2/mac/0.5/seed_0
    python evaluate.py --ckpt_dir outputs/tiny/sst2/kprune_mac/0.5/seed_0 --slice   # K-prune's tuned model

Prints one JSON object: the dev loss and metrics, the kept heads and neurons
and their MACs. `--slice` scores the physically smaller model instead
(pruned heads and neurons removed), and adds its parameter count.
"""

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from experiment.checkpoints import CheckpointError, find_checkpoint  # noqa: E402
from experiment.config import ConfigError  # noqa: E402
from tasks import DataUnavailableError, GlueFormatError  # noqa: E402


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--ckpt_dir", required=True, help="checkpoint folder written by train.py")
    parser.add_argument("--checkpoint", default="best", choices=("best", "last"), help="which saved model [best]")
    parser.add_argument("--masks_dir", help="folder holding head_mask.npy and neuron_mask.npy (from prune.py)")
    parser.add_argument("--slice", action="store_true", help="remove pruned heads and neurons before scoring")
    parser.add_argument("--data_dir", help="GLUE directory [env GLUE_DIR, else the checkpoint's]")
    parser.add_argument("--tokenizer", help="tokenizer name or folder [env TOKENIZER, else the checkpoint's]")
    parser.add_argument("--max_eval_samples", type=int, help="score only the first N dev rows [all]")
    return parser


def evaluate(args, environ):
    """The JSON-ready result for `args`."""
    import numpy as np

    from efficiency import count_macs
    from experiment.checkpoints import (
        apply_masks,
        checkpoint_config,
        current_masks,
        dev_dataset,
        dev_metrics,
        load_checkpoint,
        load_masks,
        mac_shape,
    )
    from gated.slicing import slice_pruned
    from tasks import get_task, load_tokenizer

    model_path, config_path = find_checkpoint(args.ckpt_dir, args.checkpoint)
    config = checkpoint_config(config_path, environ, args.data_dir, args.tokenizer, args.max_eval_samples)
    model = load_checkpoint(model_path)
    if args.masks_dir:
        apply_masks(model, *load_masks(args.masks_dir, model))
    heads, neurons = current_masks(model)
    if args.slice:
        model = slice_pruned(model)
    spec = get_task(config.task)
    dev, dataset = dev_dataset(config, spec, load_tokenizer(config.tokenizer))
    macs = count_macs(heads, neurons, **mac_shape(config))["total"]
    dense = count_macs(np.ones_like(heads), np.ones_like(neurons), **mac_shape(config))["total"]
    return {"checkpoint": model_path, "masks_dir": args.masks_dir, "task": spec.name, "dev_rows": len(dev),
            **dev_metrics(model, dataset, spec), "kept_heads": int(np.count_nonzero(heads)),
            "kept_neurons": int(np.count_nonzero(neurons)), "macs": macs, "macs_kept_fraction": macs / dense,
            "parameters": model.count_params(), "sliced": args.slice}


def main(argv=None, environ=None):
    """Command-line entry point; returns the exit status."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        result = evaluate(args, os.environ if environ is None else environ)
    except (ConfigError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (DataUnavailableError, GlueFormatError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
