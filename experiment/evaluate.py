"""Score a train.py checkpoint on its task's dev set, optionally with saved masks on its gates.

    python evaluate.py --ckpt_dir checkpoints_baseline_sst2 --masks_dir outputs/tiny/sst2/mac/0.5/seed_0
    python evaluate.py --ckpt_dir outputs/tiny/sst2/kprune_mac/0.5/seed_0 --slice   # K-prune's tuned model
    python evaluate.py --ckpt_dir checkpoints_gumbel_sst2 --masks_dir results_gumbel_sst2/masks_gumbel_<time>
    python evaluate.py --ckpt_dir my-bert-qqp/ --task qqp   # a Hugging Face folder fine-tuned elsewhere

`--masks_dir` takes any mask folder (`gated_bert.mask_folders`): prune.py's,
a gumbel run's, or one written before `masks.json` existed. A folder's logit
bias correction (prune.py's, by default) is added to the classifier's bias.

Prints one JSON object: the dev loss and metrics, the kept heads and neurons
and their MACs. `--slice` scores the physically smaller model instead
(pruned heads and neurons removed), and adds its parameter count.
"""

import argparse
import os
import sys

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
    add_checkpoint_arguments(parser, "a mask folder (from prune.py or a gumbel run) to put on the gates")
    add_bool_flag(parser, "slice", "remove pruned heads and neurons before scoring")
    add_verbose_flag(parser)
    return parser


def evaluate(args, environ):
    """The JSON-ready result for `args`: the inputs are checked first, then TensorFlow is started."""
    model_path, config, folder, source = open_with_masks(args, environ)
    quiet_start()
    result = score_checkpoint(args, model_path, config, folder.masks if folder else {},
                              folder.logit_bias if folder else None)
    return {"checkpoint": model_path, "weights_sha256": source["weights_sha256"], **result}


def score_checkpoint(args, model_path, config, masks, logit_bias=None):
    """Load the checkpoint, put `masks` on its gates and add `logit_bias` to its classifier's bias (and slice it
    with `--slice`), score it on the dev set."""
    import numpy as np

    from efficiency import count_macs, mac_shape
    from experiment.checkpoints import dev_dataset, load_checkpoint, put_masks
    from gated import count_parameters, structured_gates
    from gated.slicing import slice_pruned
    from tasks import load_tokenizer, score_model

    model = load_checkpoint(model_path, config)
    put_masks(model, masks, args.masks_dir, logit_bias)
    gates = structured_gates(model, ("head", "neuron"))
    if args.slice:
        model = slice_pruned(model)
    spec = config.task_spec()
    dev, dataset = dev_dataset(config, spec, load_tokenizer(config.tokenizer))
    macs = count_macs(gates["head"], gates["neuron"], **mac_shape(config))["total"]
    dense = count_macs(np.ones_like(gates["head"]), np.ones_like(gates["neuron"]), **mac_shape(config))["total"]
    return {"masks_dir": args.masks_dir, "task": spec.name, "dev_rows": len(dev),
            **score_model(model, dataset, spec), "kept_heads": int(np.count_nonzero(gates["head"])),
            "kept_neurons": int(np.count_nonzero(gates["neuron"])), "macs": macs, "macs_kept_fraction": macs / dense,
            "parameters": count_parameters(model), "sliced": args.slice}


def main(argv=None, environ=None):
    """Command-line entry point; returns the exit status."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    setup_console_logging(args.verbose)  # logs (tokenization, ...) go to stderr; the result is stdout's JSON
    progress.set_verbosity(args.verbose)
    try:
        result = evaluate(args, os.environ if environ is None else environ)
    except (ConfigError, CheckpointError, MaskFolderError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (DataUnavailableError, GlueFormatError, PretrainedError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(json_text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
