"""Composability: fine-tune shared pruned modules once, compose many pruned models from them.

    python compose.py config -o conf.json --attention 0.25 0.5 --linear 0.3 0.5 -n 2 --ckpt_dir CK
    python compose.py scheme -i conf.json -o conf_prune.json
    python compose.py prune --ckpt_dir CK -s conf_prune.json -o modules/
    python compose.py finetune-modules --ckpt_dir CK -m modules/ -o tuned/ --stats module_stats.csv
    python compose.py build --ckpt_dir CK -m tuned/ -s conf_prune.json -n 0 -o composed_0/
    python compose.py finetune -c composed_0/ --output_dir ft_0 --epochs 2      # train.py's flags
    python compose.py baseline --ckpt_dir CK -s conf_prune.json -n 0 -o pruned_0/ --output_dir base_0 --epochs 2
    python compose.py run -c conf.json --ckpt_dir CK --output_dir DIR --max_train_samples 2000 --epochs 4
    python compose.py plot -d DIR

Every step reads and writes files, so any step can be rerun alone; none replaces an existing output unless given
`--overwrite`, and a step that fails leaves no partial output. The logic is in the `composability` package.
"""

import argparse
import json
import logging
import os
import shutil
import sys
import time

from gated_bert.cli import add_bool_flag, add_verbose_flag, quiet_start
from gated_bert.files import write_json_atomic
from gated_bert.logs import setup_console_logging

log = logging.getLogger("compose")
TRAIN_PASSTHROUGH = "train.py's flags (--epochs, --learning_rate, --max_train_samples, --output_dir, ...) pass through"


# -- Parsers -------------------------------------------------------------------

def _checkpoint_flags(parser):
    parser.add_argument("--ckpt_dir", required=True, help="the dense checkpoint: a train.py checkpoint folder")
    parser.add_argument("--checkpoint", default="best", choices=("best", "last"), help="which saved model [best]")


def _overwrite_flag(parser):
    add_bool_flag(parser, "overwrite", "replace an existing output", default=False)


def _module_flags(parser, prefix):
    """Module-level fine-tuning flags; `run` prefixes them with `module_` (train.py's own flags pass through)."""
    def name(flag):
        return [f"--module_{flag}"] if prefix else [f"--{flag}", f"--module_{flag}"]

    parser.add_argument(*name("rows"), dest="rows", type=int, default=512,
                        help="training rows whose activations the units learn from (the first N) [512]")
    parser.add_argument(*name("heldout_rows"), dest="heldout_rows", type=int, default=64,
                        help="the next rows, for the held-out loss [64]")
    parser.add_argument(*name("steps"), dest="steps", type=int, default=200, help="Adam steps per unit [200]")
    parser.add_argument(*name("learning_rate"), dest="module_learning_rate", type=float, default=5e-4,
                        help="Adam learning rate of the units [5e-4]")
    parser.add_argument(*name("batch_size"), dest="module_batch_size", type=int, default=16,
                        help="rows per module-level step [16]")
    parser.add_argument(*name("log_every"), dest="log_every", type=int, default=20,
                        help="steps between two stats rows [20]")


def _method_flags(parser, default):
    from composability.scheme import ATTENTION_METHODS, LINEAR_METHODS

    parser.add_argument("--attention_method", choices=ATTENTION_METHODS, default=ATTENTION_METHODS[0] if default
                        else None, help="how attention's query/key/value are pruned: l1_heads, whole heads by the L1 "
                        "norm of their weights; l1, weight by weight [l1_heads]")
    parser.add_argument("--linear_method", choices=LINEAR_METHODS, default=LINEAR_METHODS[0] if default else None,
                        help="how the linear modules are pruned: l1, weight by weight; l1_neurons, whole neurons "
                        "(FFN intermediate columns with their gate, output projections' input rows) by L1 norm [l1]")


def build_parser():
    parser = argparse.ArgumentParser(prog="compose.py", description=__doc__.split("\n\n")[0], allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    steps = parser.add_subparsers(dest="step", required=True, metavar="STEP")

    def step(name, help_text):
        sub = steps.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)
        add_verbose_flag(sub)
        return sub

    sub = step("config", "write N configurations: configuration i prunes attention at --attention[i] and the linear "
               "modules at --linear[i] in every chosen layer")
    sub.add_argument("-o", "--output", required=True, help="configurations file to write (JSON, editable)")
    sub.add_argument("--attention", type=float, nargs="+", required=True, help="attention rates, one per configuration")
    sub.add_argument("--linear", type=float, nargs="+", required=True, help="linear rates, one per configuration")
    sub.add_argument("-n", type=int, required=True, dest="count", help="number of configurations")
    sub.add_argument("--layers", type=int, nargs="+", help="blocks to prune [every block: --num_layers or --ckpt_dir]")
    sub.add_argument("--num_layers", type=int, help="prune blocks 0 to N-1")
    sub.add_argument("--ckpt_dir", help="prune every block of this checkpoint")
    _overwrite_flag(sub)

    sub = step("scheme", "list the distinct pruning units of a configurations file and which unit fills each module")
    sub.add_argument("-i", "--input", required=True, help="configurations file")
    sub.add_argument("-o", "--output", required=True, help="scheme file to write")
    _method_flags(sub, default=True)
    _overwrite_flag(sub)

    sub = step("prune", "prune every unit of a scheme from the dense checkpoint (one file per unit)")
    _checkpoint_flags(sub)
    sub.add_argument("-s", "--scheme", required=True, help="scheme file")
    sub.add_argument("-o", "--output", required=True, help="units folder to write")
    _method_flags(sub, default=False)
    _overwrite_flag(sub)

    sub = step("finetune-modules", "train each unit, its mask enforced, to reproduce the dense module's output on "
               "that module's inputs (MSE)")
    _checkpoint_flags(sub)
    sub.add_argument("-m", "--modules", required=True, help="units folder (compose.py prune)")
    sub.add_argument("-o", "--output", required=True, help="tuned units folder to write")
    sub.add_argument("--stats", help="stats CSV: one row per unit and interval [module_stats.csv beside --output]")
    sub.add_argument("--data_dir", help="GLUE directory [env GLUE_DIR, else the checkpoint's]")
    sub.add_argument("--tokenizer", help="tokenizer [env TOKENIZER, else the checkpoint's]")
    _module_flags(sub, prefix=False)
    _overwrite_flag(sub)

    sub = step("build", "assemble configuration K from units into a checkpoint that train.py, evaluate.py, prune.py "
               "and export.py load")
    _checkpoint_flags(sub)
    sub.add_argument("-m", "--modules", required=True, help="units folder (tuned or not)")
    sub.add_argument("-s", "--scheme", required=True, help="scheme file")
    sub.add_argument("-n", type=int, required=True, dest="index", help="configuration index (from 0)")
    sub.add_argument("-o", "--output", required=True, help="checkpoint folder to write")
    _overwrite_flag(sub)

    sub = step("finetune", f"model-level fine-tuning of a composed checkpoint, its masks fixed ({TRAIN_PASSTHROUGH})")
    sub.add_argument("-c", "--composed", required=True, help="checkpoint folder written by build")

    sub = step("baseline", "the control: configuration K pruned directly from the dense checkpoint and fine-tuned "
               f"with the same recipe ({TRAIN_PASSTHROUGH})")
    _checkpoint_flags(sub)
    sub.add_argument("-s", "--scheme", required=True, help="scheme file")
    sub.add_argument("-n", type=int, required=True, dest="index", help="configuration index (from 0)")
    sub.add_argument("-o", "--output", required=True, help="checkpoint folder for the directly pruned model")
    _overwrite_flag(sub)

    sub = step("run", f"every step for every configuration and its baseline, then the summary and figures "
               f"({TRAIN_PASSTHROUGH} to both fine-tunings; --data_dir and --tokenizer to the module level too)")
    sub.add_argument("-c", "--configurations", required=True, help="configurations file")
    _checkpoint_flags(sub)
    sub.add_argument("--output_dir", required=True, help="folder for every output of the run")
    sub.add_argument("--data_dir", help="GLUE directory [env GLUE_DIR, else the checkpoint's]")
    sub.add_argument("--tokenizer", help="tokenizer [env TOKENIZER, else the checkpoint's]")
    _method_flags(sub, default=True)
    _module_flags(sub, prefix=True)
    _overwrite_flag(sub)

    sub = step("plot", "the figures of a run: loss curves per configuration and time to accuracy")
    sub.add_argument("-d", "--run_dir", required=True, help="a compose.py run's --output_dir")
    sub.add_argument("--formats", nargs="+", default=["png"], choices=("png", "pdf", "svg"), help="[png]")
    return parser


PASSES_THROUGH = ("finetune", "baseline", "run")


def parse_args(argv):
    """`(args, train.py flags)`; only the steps that fine-tune take flags of train.py's."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.step not in PASSES_THROUGH:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    forbidden = [flag for flag in ("--init_from", "--pruning_method", "--enable_pruning") if flag in rest]
    if forbidden:
        parser.error(f"{args.step} sets {forbidden[0]} itself; drop it")
    return args, rest


# -- Steps -----------------------------------------------------------------------

def step_config(args):
    from composability.configs import ComposeError, make_configurations, write_configurations

    if args.layers is not None:
        layers = args.layers
    elif args.num_layers is not None:
        layers = list(range(args.num_layers))
    elif args.ckpt_dir:
        layers = list(range(_checkpoint_config(args.ckpt_dir, "best").num_layers))
    else:
        raise ComposeError("say which blocks to prune: --layers 0 1 ..., --num_layers N, or --ckpt_dir CK (all of "
                           "its blocks)")
    write_configurations(args.output, make_configurations(args.attention, args.linear, args.count, layers),
                         args.overwrite)
    print(f"wrote {args.count} configurations of blocks {layers} to {args.output}")


def step_scheme(args):
    from composability.scheme import make_scheme, write_scheme

    scheme = make_scheme(args.input, args.attention_method, args.linear_method)
    write_scheme(args.output, scheme, args.overwrite)
    shared = sum(len(layers) for c in scheme["configurations"] for layers in c["modules"].values())
    print(f"wrote {args.output}: {len(scheme['units'])} distinct units fill {shared} modules of "
          f"{len(scheme['configurations'])} configurations")


def _checkpoint_config(ckpt_dir, which):
    from experiment.checkpoints import find_checkpoint
    from experiment.config import GatedBertConfig

    return GatedBertConfig.load(find_checkpoint(ckpt_dir, which)[1])


def _dense(args):
    """`(model, config, checkpoint_source)` of `--ckpt_dir`."""
    from experiment.checkpoints import checkpoint_source, find_checkpoint, load_checkpoint
    from experiment.config import GatedBertConfig

    model_path, config_path = find_checkpoint(args.ckpt_dir, args.checkpoint)
    return load_checkpoint(model_path), GatedBertConfig.load(config_path), checkpoint_source(model_path)


def _scheme_checked(args):
    from composability.configs import ComposeError
    from composability.scheme import read_scheme

    scheme = read_scheme(args.scheme)
    for family in ("attention", "linear"):
        given = getattr(args, f"{family}_method", None)
        if given and given != scheme["methods"][family]:
            raise ComposeError(f"--{family}_method {given}, but {args.scheme} prunes {family} modules with "
                               f"{scheme['methods'][family]}; regenerate it with: compose.py scheme -i "
                               f"{scheme['configurations_file']['path']} -o {args.scheme} --{family}_method {given}")
    return scheme


def step_prune(args):
    from composability.configs import refuse_existing
    from composability.pipeline import prune_units

    scheme = _scheme_checked(args)
    refuse_existing(args.output, args.overwrite, "folder")
    model, _, source = _dense(args)
    hashes = prune_units(model, scheme, args.output, source)
    print(f"wrote {len(hashes)} units to {args.output}")


def _row_batches(config, rows, heldout_rows, batch_size):
    from composability.configs import ComposeError
    from composability.module_tuning import row_batches
    from tasks import load_split, load_tokenizer

    spec = config.task_spec()
    tokenizer = load_tokenizer(config.tokenizer)
    split = load_split(spec, "train", tokenizer, data_dir=config.data_dir, max_len=config.max_len,
                       cache_dir=config.cache_dir, limit=rows + heldout_rows)
    if len(split) < rows + heldout_rows:
        raise ComposeError(f"--rows {rows} and --heldout_rows {heldout_rows} need {rows + heldout_rows} training rows, "
                           f"but {spec.name} has {len(split)}; ask for fewer")
    import numpy as np

    return (row_batches(split, np.arange(rows), batch_size),
            row_batches(split, np.arange(rows, rows + heldout_rows), batch_size))


def step_finetune_modules(args, environ=None):
    from composability.configs import ComposeError, refuse_existing
    from composability.module_tuning import TuningRecipe
    from composability.pipeline import tune_units
    from experiment.checkpoints import checkpoint_config, find_checkpoint

    for name in ("rows", "steps", "module_batch_size", "log_every"):
        if getattr(args, name) < 1:
            raise ComposeError(f"--{name.removeprefix('module_')} must be a positive integer, got "
                               f"{getattr(args, name)}")
    if args.heldout_rows < 0 or args.module_learning_rate <= 0:
        raise ComposeError(f"--heldout_rows must be >= 0 and --learning_rate > 0, got {args.heldout_rows} and "
                           f"{args.module_learning_rate}")
    stats = args.stats or os.path.join(os.path.dirname(os.path.abspath(args.output)), "module_stats.csv")
    refuse_existing(args.output, args.overwrite, "folder")
    refuse_existing(stats, args.overwrite, "--stats file")
    environ = os.environ if environ is None else environ
    config = checkpoint_config(find_checkpoint(args.ckpt_dir, args.checkpoint)[1], environ, args.data_dir,
                               args.tokenizer)
    train_rows, heldout_rows = _row_batches(config, args.rows, args.heldout_rows, args.module_batch_size)
    model, _, source = _dense(args)
    recipe = TuningRecipe(args.steps, args.module_learning_rate, args.module_batch_size, args.log_every)
    rows = tune_units(model, args.modules, source, args.output, stats, train_rows, heldout_rows, recipe)
    print(f"wrote {len({row['unit'] for row in rows})} tuned units to {args.output} and their losses to {stats}")


def _composed_checkpoint(args, units_dir, what):
    """Build configuration `args.index` (from `units_dir`, or pruned directly when None) and write it to
    `args.output`; returns the model path."""
    from composability.configs import refuse_existing
    from composability.pipeline import compose, write_checkpoint
    from composability.scheme import configuration
    from gated import sparsity_stats
    from gated_bert.files import sha256_of

    scheme = _scheme_checked(args)
    configuration(scheme, args.index, args.scheme)
    refuse_existing(args.output, args.overwrite, "folder")
    model, config, source = _dense(args)
    composed = compose(model, scheme, args.index, units_dir, source)
    provenance = {"kind": what, "configuration": args.index, "scheme": os.path.abspath(args.scheme),
                  "scheme_sha256": scheme["scheme_sha256"], "checkpoint": source,
                  "units_dir": os.path.abspath(units_dir) if units_dir else None,
                  "units_index_sha256": sha256_of([os.path.join(units_dir, "units.json")]) if units_dir else None,
                  "modules": scheme["configurations"][args.index]["modules"],
                  "global_sparsity": sparsity_stats(composed)["global_sparsity"]}
    path = write_checkpoint(composed, config, args.output, provenance)
    print(f"wrote configuration {args.index} ({what}, sparsity {provenance['global_sparsity']:.3f}) to {args.output}")
    return path


def step_build(args):
    _composed_checkpoint(args, args.modules, "composed")


def _train(init_from, rest, extra=()):
    """train.py's run on `init_from` with `extra` and `rest` (its flags); returns the run's metadata path."""
    from composability.configs import ComposeError
    from experiment import train

    config, dry_run, resume = train.parse_args(["--init_from", init_from, *extra, *rest])
    if dry_run or resume:
        raise ComposeError("--dry_run and --resume are train.py's own: run train.py --init_from "
                           f"{init_from} with them")
    train.configure_tensorflow(config)
    return train.run(config)


def _start_score(folder, rest, extra):
    """`{"dev", "dev_loss"}` of the checkpoint in `folder` before fine-tuning, on the dev rows its fine-tuning is
    scored on."""
    from experiment import train
    from experiment.checkpoints import dev_dataset, find_checkpoint, load_checkpoint
    from tasks import load_tokenizer
    from tasks.scoring import score_model

    config = train.parse_args(["--init_from", folder, *extra, *rest])[0]
    spec = config.task_spec()
    _, dataset = dev_dataset(config, spec, load_tokenizer(config.tokenizer))
    scores = score_model(load_checkpoint(find_checkpoint(folder, "best")[0]), dataset, spec)
    return {"dev": scores[f"dev_{spec.primary_metric}"], "dev_loss": scores["dev_loss"]}


def step_finetune(args, rest):
    path = _train(args.composed, rest, ["--verbose", str(args.verbose)])
    print(f"wrote {path}")


def step_baseline(args, rest):
    _composed_checkpoint(args, None, "baseline (pruned directly)")
    path = _train(args.output, rest, ["--verbose", str(args.verbose)])
    print(f"wrote {path}")


def step_run(args, rest):
    """Every step into `--output_dir`, then the summary and the figures."""
    from composability.configs import refuse_existing
    from composability.summary import plot_run, run_curve, summarize, write_summary

    out = args.output_dir
    refuse_existing(out, args.overwrite, "--output_dir")
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    conf = os.path.join(out, "conf.json")
    shutil.copyfile(args.configurations, conf)
    scheme_path = os.path.join(out, "conf_prune.json")
    from composability.configs import read_configurations

    count = len(read_configurations(conf)["configurations"])
    data = [*(["--data_dir", args.data_dir] if args.data_dir else []),
            *(["--tokenizer", args.tokenizer] if args.tokenizer else [])]
    total_steps = 3 + 4 * count
    done = [0]

    def announce(text):
        done[0] += 1
        log.info("[%d/%d] %s", done[0], total_steps, text)

    announce("scheme")
    step_scheme(argparse.Namespace(input=conf, output=scheme_path, attention_method=args.attention_method,
                                   linear_method=args.linear_method, overwrite=False))
    common = {"ckpt_dir": args.ckpt_dir, "checkpoint": args.checkpoint, "scheme": scheme_path, "overwrite": False,
              "attention_method": None, "linear_method": None}
    start = time.perf_counter()
    announce("prune the units")
    step_prune(argparse.Namespace(**common, output=os.path.join(out, "modules")))
    announce("module-level fine-tuning")
    step_finetune_modules(argparse.Namespace(**{**vars(args), **common}, modules=os.path.join(out, "modules"),
                                             output=os.path.join(out, "tuned"),
                                             stats=os.path.join(out, "module_stats.csv")))
    module_seconds = time.perf_counter() - start
    pairs, starts = [], {}
    for index in range(count):
        runs = {}
        for kind, units_dir in (("composed", os.path.join(out, "tuned")), ("baseline", None)):
            folder = os.path.join(out, f"{kind}_{index}")
            announce(f"configuration {index}: build the {kind} model")
            _composed_checkpoint(argparse.Namespace(**common, index=index, output=folder), units_dir, kind)
            announce(f"configuration {index}: fine-tune the {kind} model")
            extra = ["--output_dir", os.path.join(out, f"finetune_{kind}_{index}"), "--name", f"{kind}_{index}",
                     "--verbose", str(args.verbose), *data]
            starts[f"{kind}_{index}"] = _start_score(folder, rest, extra)
            log.info("configuration %d, %s model before fine-tuning: dev %.4f", index, kind,
                     starts[f"{kind}_{index}"]["dev"])
            runs[kind] = _train(folder, rest, extra)
        pairs.append((index, run_curve(runs["composed"], starts[f"composed_{index}"]),
                      run_curve(runs["baseline"], starts[f"baseline_{index}"])))
    rows, totals = summarize(pairs, module_seconds)
    text = write_summary(out, rows, totals, pairs[0][1]["metric"])
    write_json_atomic(os.path.join(out, "runs.json"), {"module_seconds": module_seconds, "configurations": count,
                                                       "start": starts})
    plot_run(pairs, module_seconds, out)
    print(text)


def _run_pairs(run_dir):
    import glob

    from composability.summary import run_curve

    with open(os.path.join(run_dir, "runs.json"), encoding="utf-8") as handle:
        runs = json.load(handle)
    pairs = []
    for index in range(runs["configurations"]):
        curves = []
        for kind in ("composed", "baseline"):
            found = sorted(glob.glob(os.path.join(run_dir, f"finetune_{kind}_{index}", "results_*", "metadata_*.json")))
            curves.append(run_curve(found[-1], runs.get("start", {}).get(f"{kind}_{index}")))
        pairs.append((index, *curves))
    return pairs, runs["module_seconds"]


def step_plot(args):
    from composability.configs import ComposeError
    from composability.summary import plot_run

    if not os.path.isfile(os.path.join(args.run_dir, "runs.json")):
        raise ComposeError(f"{args.run_dir} is not a finished compose.py run (no runs.json); pass a run's "
                           "--output_dir")
    pairs, module_seconds = _run_pairs(args.run_dir)
    for path in plot_run(pairs, module_seconds, args.run_dir, args.formats):
        print(f"wrote {path}")


STEPS = {"config": step_config, "scheme": step_scheme, "prune": step_prune, "finetune-modules": step_finetune_modules,
         "build": step_build, "plot": step_plot}
TRAINING_STEPS = {"finetune": step_finetune, "baseline": step_baseline, "run": step_run}
LIGHT = ("config", "scheme")  # no TensorFlow needed


def main(argv=None):
    """Command-line entry point; returns the exit status."""
    args, rest = parse_args(sys.argv[1:] if argv is None else argv)
    setup_console_logging(args.verbose)
    from gated_bert import progress

    progress.set_verbosity(args.verbose)
    errors = ()
    if args.step not in LIGHT:
        quiet_start()
        from callbacks import NonFiniteError, ResumeError  # TensorFlow has started: they cost nothing more

        errors = (NonFiniteError, ResumeError)
    from composability.configs import ComposeError
    from experiment.checkpoints import CheckpointError
    from experiment.config import ConfigError
    from gated_bert.mask_folders import MaskFolderError
    from gated_bert.pretrained_folders import PretrainedError
    from tasks import DataUnavailableError, GlueFormatError

    errors = (ComposeError, CheckpointError, ConfigError, MaskFolderError, PretrainedError, DataUnavailableError,
              GlueFormatError, OSError, *errors)
    try:
        if args.step in TRAINING_STEPS:
            TRAINING_STEPS[args.step](args, rest)
        else:
            STEPS[args.step](args)
    except errors as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
