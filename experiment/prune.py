"""Retraining-free structured pruning of a train.py checkpoint under a MAC or latency budget (Fisher or K-prune).

    python prune.py --ckpt_dir checkpoints_baseline_sst2 --constraint 0.5
    python -m efficiency.generate_lut --model_size tiny --output_dir luts/tiny
    python prune.py --ckpt_dir checkpoints_baseline_sst2 --constraint 0.6 --metric latency \\
        --head_lut luts/tiny/head_lut.json --neuron_lut luts/tiny/neuron_lut.json
    python prune.py --ckpt_dir checkpoints_baseline_sst2 --constraint 0.5 --method kprune
    python prune.py --ckpt_dir my-bert-qqp/ --task_name qqp --constraint 0.5   # a fine-tuned Hugging Face folder
    python prune.py --ckpt_dir checkpoints_baseline_sst2 --constraint 0.5 --sample_file served.tsv   # your rows

`--method fisher` (Kwon et al., NeurIPS 2022): Fisher information of the
head and neuron gates on a sample of training rows (or of `--sample_file`'s), a global search of how
many heads and neurons to keep, per-layer rearrangement of which ones, and
least-squares rescaling of the kept ones; then a shift of the classifier's
bias that brings the pruned model's predictions on the sample back to the
dense model's (`pruners.posttrain.bias_correction`). No weight is trained. Writes
`<output_dir>/<model>/<task>/<metric>/<constraint>/seed_<seed>/`: a mask
folder (`head_mask.npy`, `neuron_mask.npy`, `masks.json`; see
`gated_bert.mask_folders`), `log.txt` and `metrics.json`;
`evaluate.py --masks_dir` scores the masks again. Each stage is a function
from inputs to masks; the loaded model keeps its gates throughout, and a
stage's masks are put on them only while they are scored.

`--method kprune` (Park et al., ICLR 2024; MAC budget only): sublayer by
sublayer, bottom to top, knowledge measurement, a global mask search, and
least-squares tuning of the kept units' output
weights (see `pruners.posttrain.kprune`); then the same bias correction, fitted
on K-prune's sample and added to the pruned model's classifier bias. Writes the
same files under `<task>/kprune_mac/...`, plus the pruned model as a train.py
checkpoint (`config_kprune_<time>.json`, `best_kprune_<time>.keras`), which
`evaluate.py --ckpt_dir` and `prune.py --ckpt_dir` load.
"""

import argparse
import logging
import os
import shlex
import sys
import time

from efficiency.latency import LutError, read_lut
from experiment.checkpoints import CheckpointError, open_checkpoint
from experiment.config import ConfigError
from gated_bert import progress
from gated_bert.cli import add_bool_flag, add_verbose_flag, quiet_start
from gated_bert.files import staged_folder
from gated_bert.logs import log_file, setup_console_logging
from gated_bert.pretrained_folders import PretrainedError
from gated_bert.vocabulary import POSTTRAIN_METHODS, PRESETS
from tasks import TASKS, DataUnavailableError, GlueFormatError

log = logging.getLogger("prune")


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    add = parser.add_argument
    add("--ckpt_dir", required=True, help="checkpoint folder written by train.py (checkpoints_<method>_<task>/), "
        "or a Hugging Face folder fine-tuned for --task (config.json, model.safetensors, its classification head)")
    add("--checkpoint", default="best", choices=("best", "last"), help="which saved model to prune [best]")
    add("--task", "--task_name", dest="task", choices=tuple(TASKS),
        help="GLUE task, must be the checkpoint's (--task_name: the seed tool's name) [the checkpoint's task]")
    add("--method", default="fisher", choices=POSTTRAIN_METHODS, help="pruning method [fisher]")
    add("--constraint", type=float, required=True,
        help="fraction of the dense model's MACs (or latency) to KEEP, 0 < c < 1")
    add("--metric", default="mac", choices=("mac", "latency"), help="what the constraint limits [mac]")
    add("--head_lut", "--mha_lut", dest="head_lut",
        help="attention latency per kept head, head_lut.json from efficiency.generate_lut (needed by --metric "
        "latency)")
    add("--neuron_lut", "--ffn_lut", dest="neuron_lut",
        help="FFN latency per kept neuron, neuron_lut.json from efficiency.generate_lut (needed by --metric latency)")
    add("--num_samples", type=int, default=2048, help="fisher: training rows sampled [2048]")
    add_bool_flag(parser, "per_row_fisher", "fisher: the empirical Fisher from every sampled row's gradient, as the "
                  "method's paper defines it, instead of from each batch's mean-loss gradient, as its code does "
                  "(on a fine-tuned MiniLM the per-batch default scored higher at 0.5 and 0.4 MACs: see the README)",
                  default=False)
    add("--num_tokens", type=int, default=100_000,
        help="kprune: training rows are sampled until they hold this many tokens [100000]")
    add("--lam_pred", type=float, default=1.0, help="kprune: weight of predictive knowledge [1.0]")
    add("--lam_rep", type=float, default=2.5e-4, help="kprune: weight of representational knowledge [2.5e-4]")
    add("--mu", type=float, help="kprune: multiplier of head importance against neurons, on the reference "
        "implementation's scale (a head's knowledge per context dimension) [the head width: 64 on BERT-base as in "
        "the reference, 32 on MiniLM; importance per MAC alone]")
    add("--T", type=float, default=2.0, help="kprune: softmax temperature of predictive knowledge [2]")
    add_bool_flag(parser, "bias_correction", "after the last stage, shift the classifier's bias so that the pruned "
                  "model's mean prediction on the sample (its labels unused) is the dense model's; fisher's mask "
                  "folder keeps the shift, kprune's checkpoint has it in its bias (false: as the methods' papers)",
                  default=True)
    add_bool_flag(parser, "sublayerwise_tuning", "kprune: refit each pruned sublayer's output weights by least "
                  "squares, as the method's paper does (false: measurement and search only)", default=True)
    add("--sample_batch_size", type=int, help="rows per sample batch [fisher: 32, its estimate is per batch; "
        "kprune: 128, or as many as fit 16384 tokens of max_len but at least 32, its knowledge is per row and the "
        "batching sets only speed and memory]")
    add("--seed", type=int, default=0, help="seed of the sample [0]")
    add("--sample_file", help="draw the sample from this file instead of the task's training rows: rows like the "
        "inputs the model will serve, in the format of the task's training file (a GLUE task's TSV with its header "
        "and labels; a custom task's columns); only Fisher's gradients use the labels, so for kprune any valid label "
        "will do [the training file]")
    add("--data_dir", help="GLUE directory [env GLUE_DIR, else the checkpoint's data_dir]")
    add("--tokenizer", help="tokenizer name or folder [env TOKENIZER, else the checkpoint's]")
    add("--max_eval_samples", type=int, help="score only the first N dev rows [all]")
    add("--rescale_tokens", type=int, default=8192,
        help="fisher: sampled tokens per rescaling least-squares problem [8192]")
    add("--backend", default="auto", choices=("auto", "scipy", "cupy"),
        help="least-squares backend: SciPy (CPU), CuPy (GPU) or auto [auto]")
    add("--output_dir", default="outputs", help="root of the output folders [outputs]")
    add_bool_flag(parser, "overwrite", "replace the result folder of an earlier run with the same model shape, "
                  "task, metric, constraint and seed (without it such a run is refused)", default=False)
    add("--export", metavar="DIR", help="then export the pruned model into DIR (as export.py does, every format "
        "whose packages are installed; DIR must not exist) [no export]")
    add_verbose_flag(parser)
    return parser


def model_name(config):
    """The preset's name when the checkpoint has a preset's shape, else `L{layers}_D{d}_H{heads}_F{dff}`."""
    shape = {key: getattr(config, key) for key in ("num_layers", "d_model", "num_heads", "dff")}
    if PRESETS[config.model_size] == shape:
        return config.model_size
    return "L{num_layers}_D{d_model}_H{num_heads}_F{dff}".format(**shape)


def check_args(args, environ):
    """Every input check that needs no model: returns `(config, model path, LUTs or None, output folder)`."""
    if not 0 < args.constraint < 1:
        raise ConfigError(f"--constraint is the fraction of MACs/latency to keep and must be in (0, 1), got "
                          f"{args.constraint}; e.g. --constraint 0.5 keeps half")
    for name in ("num_samples", "num_tokens", "sample_batch_size", "rescale_tokens", "max_eval_samples", "mu", "T"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise ConfigError(f"--{name} must be positive, got {value}")
    if min(args.lam_pred, args.lam_rep) < 0 or args.lam_pred == args.lam_rep == 0:
        raise ConfigError(f"--lam_pred and --lam_rep must be non-negative and not both 0, got {args.lam_pred} and "
                          f"{args.lam_rep}")
    if args.method == "kprune" and args.metric != "mac":
        raise ConfigError("--method kprune supports --metric mac only; use --method fisher for a latency budget")
    if args.backend == "cupy":
        quiet_start()
        from pruners.posttrain.lstsq import resolve_backend

        try:
            resolve_backend("cupy")
        except RuntimeError as error:
            raise ConfigError(f"--backend cupy: {error}") from None
    if args.sample_file and not os.path.isfile(args.sample_file):
        raise ConfigError(f"--sample_file {args.sample_file} is not a file; give rows in the format of the task's "
                          "training file, or leave it out to sample the training rows")
    model_path, config = open_checkpoint(args.ckpt_dir, args.checkpoint, environ, args.data_dir, args.tokenizer,
                                         args.max_eval_samples, args.task)
    args.sample_batch_size = sample_batch_size(args, config)  # metrics.json records the size used
    luts = None
    if args.metric == "latency":
        if not (args.head_lut and args.neuron_lut):
            raise ConfigError("--metric latency needs --head_lut and --neuron_lut; generate them on the target "
                              "device with python -m efficiency.generate_lut --model_size ...")
        shape = {"d_model": config.d_model, "num_heads": config.num_heads,
                 "head_dim": config.d_model // config.num_heads, "dff": config.dff}
        luts = (read_lut(args.head_lut, "head", shape), read_lut(args.neuron_lut, "neuron", shape))
    elif args.head_lut or args.neuron_lut:
        log.warning("--head_lut/--neuron_lut are used by --metric latency only; ignoring them")
    if args.export and os.path.exists(args.export):
        raise ConfigError(f"--export {args.export} exists; choose another folder (export never replaces one here)")
    kind = args.metric if args.method == "fisher" else f"{args.method}_{args.metric}"
    folder = os.path.join(args.output_dir, model_name(config), config.task, kind, f"{args.constraint:g}",
                          f"seed_{args.seed}")
    if os.path.exists(folder) and not args.overwrite:
        raise ConfigError(f"{folder} holds an earlier result (same model shape, task, metric, constraint and seed); "
                          "pass --overwrite to replace it, or another --output_dir or --seed to keep both")
    return config, model_path, luts, folder


def load_inputs(args, config):
    """`(task, sample, dev batches, what the sample was drawn from)`: the sample batches are a list, reused by every
    stage; they come from the training rows, or from `--sample_file`."""
    import numpy as np

    from experiment.checkpoints import dev_dataset
    from gated_bert.files import sha256_of
    from tasks import load_split, load_tokenizer, read_task_file
    from tasks.pipeline import make_dataset

    spec = config.task_spec()
    tokenizer = load_tokenizer(config.tokenizer)
    if args.sample_file:
        train = read_task_file(spec, args.sample_file, tokenizer, config.max_len)
        drawn = {"file": os.path.abspath(args.sample_file), "sha256": sha256_of([args.sample_file])}
    else:
        train = load_split(spec, "train", tokenizer, data_dir=config.data_dir, max_len=config.max_len,
                           cache_dir=config.cache_dir)
        drawn = {"file": None}
    dev, dev_ds = dev_dataset(config, spec, tokenizer)
    rows = np.random.default_rng(args.seed).permutation(len(train))
    if args.method == "kprune":  # as many rows as it takes to reach num_tokens (after truncation)
        tokens = np.cumsum(np.minimum(train.lengths[rows], config.max_len))
        rows = rows[:int(np.searchsorted(tokens, args.num_tokens)) + 1]
        # Knowledge is measured per row, so rows of like length may share a batch: little padding.
        rows = rows[np.argsort(train.lengths[rows], kind="stable")]
    else:
        rows = np.sort(rows[:args.num_samples])
    sample = list(make_dataset(train.take(rows), args.sample_batch_size, shuffle=False,
                               max_len=config.max_len, pad_id=tokenizer.pad_token_id or 0))
    tokens = sum(int(np.sum(inputs["attention_mask"])) for inputs, _ in sample)
    drawn.update(rows=len(rows), of_rows=len(train), tokens=tokens)
    log.info("%s: %d rows sampled of %d %s (%d tokens) in %d batches, %d dev rows", spec.name, len(rows),
             len(train), f"in {args.sample_file}" if args.sample_file else "training rows", tokens, len(sample),
             len(dev))
    return spec, sample, dev_ds, drawn


def sample_batch_size(args, config):
    """`--sample_batch_size`, else the method's default (see its help)."""
    if args.sample_batch_size:
        return args.sample_batch_size
    return 32 if args.method == "fisher" else max(32, min(128, 16384 // config.max_len))


class Budget:
    """The constraint as MACs or estimated latency, and how to measure a mask against it."""

    def __init__(self, args, config, luts, dense_heads, dense_neurons):
        from efficiency import mac_shape, unit_macs
        from efficiency.latency import LatencyModel

        self.metric, self.constraint = args.metric, args.constraint
        self.mac_shape = mac_shape(config)
        costs = unit_macs(**self.mac_shape)
        self.head_cost, self.neuron_cost = costs["head"], costs["neuron"]
        self.latency = LatencyModel.from_luts(*luts) if luts else None
        self.dense = self.measure(dense_heads, dense_neurons)
        self.limit = args.constraint * self.dense

    def measure(self, heads, neurons):
        """MACs, or estimated milliseconds, of the blocks a mask keeps."""
        from efficiency import count_macs

        if self.metric == "latency":
            return self.latency.estimate(heads, neurons)
        return count_macs(heads, neurons, **self.mac_shape)["total"]

    def search(self, head_importance, neuron_importance):
        from pruners.posttrain.mask_search import search_latency, search_mac

        if self.metric == "latency":
            return search_latency(head_importance, neuron_importance, self.latency, self.limit)
        return search_mac(head_importance, neuron_importance, self.head_cost, self.neuron_cost, self.limit)


class Stages:
    """Times the stages of a run (scoring excluded) and scores each stage's masks on the dev set.

    Scoring puts a stage's masks on the model's gates only while it runs (`gated.masks_applied`), so no stage
    finds another's masks on the model.
    """

    def __init__(self, dev_ds, spec, budget, metric):
        from tasks import dataset_labels

        self.dev_ds, self.spec, self.budget, self.metric = dev_ds, spec, budget, metric
        self.labels = dataset_labels(dev_ds)
        self.seconds, self.scores = {}, {}
        self.tick = time.perf_counter()

    def timed(self, name):
        """Record the seconds since the last stage ended as `name`."""
        self.seconds[name] = time.perf_counter() - self.tick
        self.tick = time.perf_counter()

    def score(self, name, model, heads, neurons, timed=True, logit_bias=None):
        """Record the stage's seconds (unless not `timed`), then score `model` with `heads`/`neurons` on its gates
        (and its classifier's bias shifted by `logit_bias`)."""
        import numpy as np

        from gated import masks_applied
        from tasks import score_model

        if timed:
            self.seconds[name] = time.perf_counter() - self.tick
        scored = time.perf_counter()
        with masks_applied(model, {"head": heads, "neuron": neurons}, logit_bias):
            self.scores[name] = score_model(model, self.dev_ds, self.spec, self.labels)
        self.seconds["evaluation"] = self.seconds.get("evaluation", 0.0) + time.perf_counter() - scored
        log.info("%s: dev %s %.4f; kept %d/%d heads, %d/%d neurons; %s %.4g of dense", name,
                 self.spec.primary_metric, self.scores[name][f"dev_{self.spec.primary_metric}"],
                 np.count_nonzero(heads), heads.size, np.count_nonzero(neurons), neurons.size, self.metric,
                 self.budget.measure(heads, neurons) / self.budget.dense)
        self.tick = time.perf_counter()


def fisher_stages(args, model, spec, sample, budget, stages, alive_heads, alive_neurons):
    """Fisher, search, rearrange, rescale, bias correction: `(head mask, neuron mask, logit bias or None, metrics
    entries)`; `model` is only read."""
    from experiment.recipe import build_loss
    from pruners.posttrain.fisher import collect_gate_gradients, fisher_importance
    from pruners.posttrain.rearrange import rearrange
    from pruners.posttrain.rescale import rescale

    head_grads, neuron_grads, fisher, dense_logits = collect_gate_gradients(
        model, sample, build_loss(spec), per_row=args.per_row_fisher, return_logits=True)
    head_grads *= alive_heads[None]  # gated-off units carry no information and are pruned first
    neuron_grads *= alive_neurons[None]
    log.info("fisher: %d samples in %.1f s (%.1f samples/s)", fisher["samples"], fisher["seconds"],
             fisher["samples_per_second"])
    stages.timed("fisher")
    heads, neurons = budget.search(fisher_importance(head_grads), fisher_importance(neuron_grads))
    heads, neurons = heads * alive_heads, neurons * alive_neurons
    stages.score("search", model, heads, neurons)
    heads, head_costs = rearrange(heads, head_grads)
    neurons, neuron_costs = rearrange(neurons, neuron_grads)
    stages.score("rearrange", model, heads, neurons)
    heads, neurons, report = rescale(model, heads, neurons, sample, backend=args.backend,
                                     max_tokens=args.rescale_tokens, seed=args.seed)
    stages.score("rescale", model, heads, neurons)
    extra = {"fisher": fisher, "rearrange": {"head_costs": head_costs, "neuron_costs": neuron_costs},
             "rescale": report}
    if not args.bias_correction:
        return heads, neurons, None, extra
    logit_bias, extra["bias_correction"] = correct_logit_bias(model, heads, neurons, sample, spec, dense_logits)
    stages.score("bias_correction", model, heads, neurons, logit_bias=logit_bias)
    return heads, neurons, logit_bias, extra


def correct_logit_bias(pruned_model, heads, neurons, sample, spec, dense):
    """The logit bias correction, on the sample, of `pruned_model` with the masks on its gates against `dense`, the
    dense model's logits on the sample (from the method's own pass over it: Fisher's gradients, K-prune's first
    measurement), and its metrics entry."""
    from gated import masks_applied
    from pruners.posttrain.bias_correction import fit_logit_bias, logit_distance, sample_logits
    from pruners.posttrain.probe import GateProbe

    with masks_applied(pruned_model, {"head": heads, "neuron": neurons}):
        pruned = sample_logits(GateProbe(pruned_model, "bias correction"), sample)
    shift = fit_logit_bias(dense, pruned, regression=spec.is_regression)
    measure = "mse" if spec.is_regression else "kl"
    before, after = (logit_distance(dense, logits, spec.is_regression) for logits in (pruned, pruned + shift))
    log.info("bias correction: logit bias %s; on the sample, %s from the dense model's logits %.4g -> %.4g",
             [round(float(value), 4) for value in shift], measure, before, after)
    return shift, {"logit_bias": shift.tolist(), f"{measure}_before": before, f"{measure}_after": after}


def kprune_stages(args, config, model, spec, sample, budget, stages, out):
    """K-prune and the bias correction (added to the pruned copy's classifier bias), then the copy saved as a
    train.py checkpoint: `(head mask, neuron mask, None, metrics entries)`; `model` is only read."""
    import datetime

    from gated import add_logit_bias
    from gated_bert.files import sha256_of
    from pruners.posttrain.kprune import kprune

    mu = float(config.d_model // config.num_heads) if args.mu is None else args.mu
    log.info("kprune: head multiplier mu %.3g%s", mu, "" if args.mu is not None else " (the head width: "
             "importance per MAC alone)")
    result = kprune(
        model, sample, budget=budget.limit, head_cost=budget.head_cost, neuron_cost=budget.neuron_cost,
        lam_pred=args.lam_pred, lam_rep=args.lam_rep, mu=mu, temperature=args.T, regression=spec.is_regression,
        tuning=args.sublayerwise_tuning, backend=args.backend, seed=args.seed)
    heads, neurons = result.head_mask, result.neuron_mask
    stages.score("kprune", result.model, heads, neurons)
    extra = {"kprune": {"steps": result.steps, "seconds": result.seconds, "mu": mu}}
    if args.bias_correction:
        logit_bias, extra["bias_correction"] = correct_logit_bias(result.model, heads, neurons, sample, spec,
                                                                  result.dense_logits)
        add_logit_bias(result.model, logit_bias)  # the checkpoint carries it: its mask folder holds no shift
        stages.score("bias_correction", result.model, heads, neurons)
    stamp = datetime.datetime.now().strftime("%Y%m%d_%H%M%S_%f")
    checkpoint = os.path.join(out, f"best_kprune_{stamp}.keras")
    config.save(os.path.join(out, f"config_kprune_{stamp}.json"))
    result.model.save(checkpoint)
    extra["kprune"]["checkpoint"] = os.path.basename(checkpoint)
    # Named by file name: the folder is renamed into place once every file is written.
    extra["kprune"]["source"] = {"path": os.path.basename(checkpoint), "weights_sha256": sha256_of([checkpoint])}
    log.info("saved the pruned model (masks on its gates%s%s) as %s",
             ", output weights tuned" if args.sublayerwise_tuning else "",
             ", logit bias added" if args.bias_correction else "", os.path.basename(checkpoint))
    return heads, neurons, None, extra


def run(args, config, model_path, luts, out):
    """Every stage, each timed and scored; writes the mask folder and metrics.json (and K-prune's model) into `out`."""
    import numpy as np

    from experiment.checkpoints import checkpoint_source, load_checkpoint
    from gated import structured_gates
    from gated_bert.files import write_json_atomic
    from gated_bert.mask_folders import write_mask_folder

    log.info("pruning %s with %s to keep %g of its %s (remove %g)", model_path, args.method, args.constraint,
             "MACs" if args.metric == "mac" else "estimated latency", 1 - args.constraint)
    tick = time.perf_counter()
    # -- Model and data ---------------------------------------------------------
    source = checkpoint_source(model_path)
    model = load_checkpoint(model_path, config)
    spec, sample, dev_ds, drawn = load_inputs(args, config)
    gates = structured_gates(model, ("head", "neuron"))  # the loaded model's gates, kept as they are throughout
    alive = gates["head"] != 0, gates["neuron"] != 0
    budget = Budget(args, config, luts, np.ones(alive[0].shape), np.ones(alive[1].shape))
    stages = Stages(dev_ds, spec, budget, args.metric)
    stages.seconds["load"] = time.perf_counter() - tick
    stages.score("dense", model, gates["head"], gates["neuron"], timed=False)
    # -- Pruning -------------------------------------------------------------------
    if args.method == "kprune":
        heads, neurons, logit_bias, extra = kprune_stages(args, config, model, spec, sample, budget, stages, out)
    else:
        heads, neurons, logit_bias, extra = fisher_stages(args, model, spec, sample, budget, stages, *alive)
    # -- Outputs -------------------------------------------------------------------
    final = list(stages.scores)[-1]
    # The masks go with the checkpoint they are put on: the loaded one, or K-prune's tuned copy beside them.
    made_for = extra["kprune"]["source"] if args.method == "kprune" else source
    write_mask_folder(out, {"head": heads, "neuron": neurons},
                      {"written_by": "prune.py", "method": args.method, "stage": final, "checkpoint": model_path,
                       "checkpoints": [made_for]},
                      logit_bias=logit_bias)
    metrics = {"checkpoint": model_path, "weights_sha256": source["weights_sha256"], "method": args.method,
               "task": spec.name, "metric": args.metric, "constraint": args.constraint, "removed": 1 - args.constraint,
               "primary_metric": f"dev_{spec.primary_metric}", "dev": stages.scores, "final": final, "sample": drawn,
               **run_summary(config, stages, budget, alive, heads, neurons), **extra, "args": vars(args)}
    write_json_atomic(os.path.join(out, "metrics.json"), metrics)
    log.info("MACs: kept %.1f%% (removed %.1f%%) of %d; dev %s %.4f dense -> %.4f pruned",
             100 * metrics["macs"]["kept_fraction"], 100 * (1 - metrics["macs"]["kept_fraction"]),
             metrics["macs"]["dense"], spec.primary_metric, stages.scores["dense"][f"dev_{spec.primary_metric}"],
             stages.scores[final][f"dev_{spec.primary_metric}"])


def run_summary(config, stages, budget, alive, heads, neurons):
    """metrics.json's `macs`, `seconds`, `kept`, `latency_ms` (latency budgets only) and `versions`."""
    import numpy as np

    from efficiency import count_macs
    from experiment.outputs import package_versions

    def total(head_mask, neuron_mask):
        return count_macs(head_mask, neuron_mask, **budget.mac_shape)["total"]

    macs = {"dense": total(np.ones(heads.shape), np.ones(neurons.shape)), "before": total(*alive),
            "after": total(heads, neurons), "seq_len": config.max_len}
    macs["kept_fraction"] = macs["after"] / macs["dense"]
    seconds = stages.seconds
    summary = {
        "macs": macs, "seconds": {**seconds, "pruning": sum(v for k, v in seconds.items() if k != "evaluation")},
        "kept": {"heads": int(np.count_nonzero(heads)), "neurons": int(np.count_nonzero(neurons)),
                 "heads_per_layer": np.count_nonzero(heads, axis=1).tolist(),
                 "neurons_per_layer": np.count_nonzero(neurons, axis=1).tolist()},
        "versions": package_versions(),
    }
    if budget.latency:
        summary["latency_ms"] = {"dense": budget.dense, "budget": budget.limit,
                                 "estimated": budget.measure(heads, neurons), "model": budget.latency.get_config()}
        kept = summary["latency_ms"]["estimated"] / budget.dense
        log.info("estimated block latency: kept %.1f%% (removed %.1f%%) of %.2f ms", 100 * kept, 100 * (1 - kept),
                 budget.dense)
    return summary


def main(argv=None, environ=None):
    """Command-line entry point; returns the exit status."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    setup_console_logging(args.verbose)
    progress.set_verbosity(args.verbose)
    try:
        config, model_path, luts, folder = check_args(args, os.environ if environ is None else environ)
    except (ConfigError, CheckpointError, LutError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    quiet_start()
    start = time.perf_counter()
    try:
        with staged_folder(folder) as tmp, log_file(os.path.join(tmp, "log.txt")):
            run(args, config, model_path, luts, tmp)
    except CheckpointError as error:  # a checkpoint that loads badly or holds NaN weights
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (ConfigError, DataUnavailableError, GlueFormatError, PretrainedError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        return 130
    log.info("done in %.1f s: %s", time.perf_counter() - start, folder)
    return export_pruned(args, folder, environ) if args.export else 0


def export_pruned(args, folder, environ):
    """`--export`: export.py on the pruned result (Fisher: the checkpoint with the new mask folder; K-prune: its
    tuned checkpoint); returns the exit status. A failed export keeps the pruning result."""
    from deploy import ExportError, FormatUnavailableError
    from experiment.export import build_parser as export_parser
    from experiment.export import export

    source = ["--ckpt_dir", folder] if args.method == "kprune" else ["--ckpt_dir", args.ckpt_dir, "--checkpoint",
                                                                     args.checkpoint]
    given = {"task": args.task, "data_dir": args.data_dir, "tokenizer": args.tokenizer,
             "max_eval_samples": args.max_eval_samples, "verbose": args.verbose}
    argv = [*source, "--masks_dir", folder, "--output_dir", args.export,
            *(item for name, value in given.items() if value is not None for item in (f"--{name}", str(value)))]
    try:
        export(export_parser().parse_args(argv), os.environ if environ is None else environ)
    except (ExportError, FormatUnavailableError, FileExistsError, ValueError, OSError) as error:
        # export.py's flags the error may name (--formats, --int8_agreement) are not prune.py's: give its command.
        print(f"error: export: {error}\nthe pruning result in {folder} is complete; to export it with other "
              f"settings, run: python export.py {shlex.join(argv)} ...", file=sys.stderr)
        return 1
    log.info("exported to %s", args.export)
    return 0


if __name__ == "__main__":
    sys.exit(main())
