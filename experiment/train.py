"""Train a gated encoder on a GLUE task and write complete, honest results.

    python train.py --task rte --epochs 3
    python train.py --init_from models/all-MiniLM-L6-v2 --task sst2   # fine-tune a Hugging Face checkpoint
    TASK=rte EPOCHS=3 MODEL_SIZE=tiny python train.py
    python train.py --pruning_method movement --end_sparsity 0.9 --dry_run   # check and print the config only

Outputs (under --output_dir): results_{method}_{task}/ (per-epoch CSV,
metadata JSON, plots), checkpoints_{method}_{task}/ (best and last model plus
the resolved config) and experiment_logs/.
"""

import datetime
import json
import logging
import os
import signal
import sys

from experiment.config import ConfigError, build_parser, config_from_flags
from gated_bert import progress
from gated_bert.cli import add_bool_flag, quiet_start
from gated_bert.logs import setup_console_logging
from gated_bert.pretrained_folders import PretrainedError
from tasks import DataUnavailableError, GlueFormatError

log = logging.getLogger("train")


def configure_tensorflow(config):
    """Thread counts and seeds; must run before TensorFlow executes any op."""
    import keras
    import tensorflow as tf

    if config.intra_op_threads:
        tf.config.threading.set_intra_op_parallelism_threads(config.intra_op_threads)
    if config.inter_op_threads:
        tf.config.threading.set_inter_op_parallelism_threads(config.inter_op_threads)
    keras.utils.set_random_seed(config.seed)


def distribution_strategy(config):
    """The `tf.distribute` strategy whose scope the model, its optimizer and every pruning variable are made in:
    TensorFlow's default (one device), or `MirroredStrategy` over `config.devices` (all local GPUs when none
    are named, else the CPU). Keras splits each `batch_size` batch among the replicas."""
    import tensorflow as tf

    if config.strategy == "default":
        return tf.distribute.get_strategy()
    known = {device.name.removeprefix("/device:") for device in tf.config.list_logical_devices()}
    missing = [name for name in config.devices or ()
               if name.removeprefix("/device:").upper() not in {known_name.upper() for known_name in known}]
    if missing:
        raise ConfigError(f"devices {' '.join(missing)} are not on this machine; it has: {' '.join(sorted(known))}")
    strategy = tf.distribute.MirroredStrategy(devices=list(config.devices) if config.devices else None)
    if config.batch_size % strategy.num_replicas_in_sync:
        raise ConfigError(f"batch_size={config.batch_size} does not split evenly among {strategy.num_replicas_in_sync}"
                          " replicas; choose a multiple of the replica count")
    log.info("mirrored strategy: %d replica(s) on %s", strategy.num_replicas_in_sync,
             " ".join(strategy.extended.worker_devices))
    return strategy


def load_data(config, spec):
    """Tokenizer plus tokenized train and dev splits (cached on disk)."""
    from tasks import load_split, load_tokenizer

    tokenizer = load_tokenizer(config.tokenizer)
    if len(tokenizer) > config.vocab_size:
        fix = (f"use the checkpoint's own tokenizer (drop --tokenizer and TOKENIZER): {config.init_from}"
               if config.init_from else f"set --vocab_size {len(tokenizer)} or larger")
        raise ConfigError(f"tokenizer {config.tokenizer!r} has {len(tokenizer)} tokens but vocab_size="
                          f"{config.vocab_size}; {fix}")
    common = {"data_dir": config.data_dir, "max_len": config.max_len, "cache_dir": config.cache_dir}
    train = load_split(spec, "train", tokenizer, limit=config.max_train_samples, **common)
    dev = load_split(spec, "dev", tokenizer, limit=config.max_eval_samples, **common)
    return tokenizer, train, dev


def build_model(config, spec):
    """The encoder to train: the `init_from` checkpoint's weights, else a fresh one of the config's shape.

    Only weight-level pruning (magnitude, movement, SPT or soft movement at weight granularity) gets per-weight
    kernel masks; every model keeps its head and neuron gates.
    """
    from experiment.config import is_checkpoint_folder
    from gated import build_gated_encoder, load_pretrained
    from gated_bert.vocabulary import GRANULAR_METHODS

    options = {"num_labels": spec.num_labels, "max_len": config.max_len, "dropout_rate": config.dropout_rate,
               "learn_masks": config.learn_masks if config.method == "gumbel" else (),
               "kernel_masks": config.method in GRANULAR_METHODS and config.pruning_granularity == "weight",
               "pooling": config.pooling}
    if is_checkpoint_folder(config.init_from):
        return checkpoint_model(config, spec)
    if config.init_from:
        return load_pretrained(config.init_from, **options)
    return build_gated_encoder(vocab_size=config.vocab_size, num_layers=config.num_layers, d_model=config.d_model,
                               num_heads=config.num_heads, dff=config.dff, **options)


def checkpoint_model(config, spec):
    """The best model of the train.py checkpoint folder `init_from`, its masks and gates as saved (training keeps
    them fixed), at the config's dropout rate."""
    from experiment.checkpoints import find_checkpoint, load_checkpoint
    from gated import rebuilt_with

    model = load_checkpoint(find_checkpoint(config.init_from, "best")[0])
    labels = int(model.get_layer("classifier").kernel.shape[-1])
    if labels != spec.num_labels:
        raise ConfigError(f"init_from {config.init_from} has a classifier of {labels} labels, but {spec.name} has "
                          f"{spec.num_labels}")
    return rebuilt_with(model, dropout_rate=config.dropout_rate)


def init_metadata(config):
    """Where the starting weights came from: the `init_from` folder and the SHA-256 of its weights."""
    from experiment.config import is_checkpoint_folder

    if not config.init_from:
        return None
    if is_checkpoint_folder(config.init_from):
        from experiment.checkpoints import checkpoint_source, find_checkpoint

        source = checkpoint_source(find_checkpoint(config.init_from, "best")[0])
        return {"folder": config.init_from, "checkpoint": source["path"], "weights_sha256": source["weights_sha256"]}
    from gated_bert.pretrained_folders import read_architecture, weights_sha256

    return {"folder": os.path.abspath(config.init_from), "weights_sha256": weights_sha256(config.init_from),
            "model_type": read_architecture(config.init_from).model_type}


def load_teacher(config, spec, tokenizer, resumed=None):
    """`(teacher model, its checkpoint_source)` of `config.teacher`: the best model of a train.py checkpoint folder
    or a fine-tuned Hugging Face folder, for the run's task, reading the same vocabulary as the student; for a
    resumed run (its metadata `resumed`), the very model it distilled from."""
    from experiment.checkpoints import checkpoint_source, load_checkpoint, open_checkpoint
    from tasks import load_tokenizer

    model_path, teacher_config = open_checkpoint(config.teacher, "best", {}, data_dir=config.data_dir or None,
                                                 task=spec.name)
    if teacher_config.tokenizer != config.tokenizer and (
            load_tokenizer(teacher_config.tokenizer).get_vocab() != tokenizer.get_vocab()):
        raise ConfigError(f"teacher {config.teacher} reads another vocabulary ({teacher_config.tokenizer}) than this "
                          f"run ({config.tokenizer}); distil between models that share a tokenizer")
    source = checkpoint_source(model_path)
    before = (resumed or {}).get("distillation", {}) or {}
    if resumed and before.get("teacher") != source:
        raise ConfigError(f"teacher {config.teacher} is not the model run {resumed.get('timestamp')} distilled from "
                          f"({before.get('teacher')}): its weights changed; give that model, or start a new run")
    return load_checkpoint(model_path, teacher_config), source


class MethodSetup:
    """What a run's method (and its distillation, with a teacher) adds to training: callbacks, CSV columns,
    metadata and how the best epoch is chosen."""

    def __init__(self, config, steps_per_epoch, stats, paths, teacher=None):
        from pruners import pruning_from_config

        self.callbacks, self.columns, self.metadata, self.selection = [], [], None, {}
        self.distillation, self.distillation_metadata = None, None
        pruner, schedule = pruning_from_config(config, steps_per_epoch, stats["total"])
        if pruner:
            self._add_pruner(config, stats, pruner, schedule)
        elif config.method == "soft_movement":
            self._add_soft_movement(config, steps_per_epoch, stats)
        elif config.method == "gumbel":
            self._add_gumbel(config, steps_per_epoch, paths)
        if teacher is not None:
            self._add_distillation(config, *teacher)

    def _add_pruner(self, config, stats, pruner, schedule):
        from callbacks import PruningCallback

        self.callbacks = [PruningCallback(pruner, schedule)]
        self.columns = [*(["macs_kept"] if pruner.structured else []),
                        *(f"sparsity/{path}" for path in stats["layers"])]
        self.metadata = {"pruner": pruner.get_config(), "schedule": schedule.get_config()}
        # A pruning run's best epoch is chosen among those at the final sparsity.
        self.selection = {"min_target_sparsity": config.end_sparsity}

    def _add_soft_movement(self, config, steps_per_epoch, stats):
        from callbacks import SoftMovementCallback
        from pruners import soft_movement_from_config

        learner = soft_movement_from_config(config, steps_per_epoch)
        self.callbacks = [SoftMovementCallback(learner, config.max_len)]
        controller = ["regularization_lambda"] if config.target_sparsity is None else ["lagrange_l1", "lagrange_l2"]
        self.columns = ["score_regularization", *controller,
                        *(["macs_kept"] if config.pruning_granularity != "weight" else []),
                        *(f"sparsity/{path}" for path in stats["layers"])]
        self.metadata = {"learner": learner.get_config()}
        # The masks follow the scores to the end: the last epoch's are the run's.
        self.selection = {"min_epoch": config.epochs}

    def _add_gumbel(self, config, steps_per_epoch, paths):
        from callbacks import GumbelMaskCallback
        from pruners import gumbel_from_config

        learner, temperature = gumbel_from_config(config, steps_per_epoch)
        self.callbacks = [GumbelMaskCallback(learner, temperature, config.log_loss_every, paths.step_log,
                                             paths.masks_dir, (paths.best_checkpoint, paths.last_checkpoint),
                                             config.max_len)]
        kinds = config.learn_masks
        controllers = [] if config.target_sparsity is None else ["macs"] if config.target_measure == "macs" else kinds
        self.columns = ["temperature", "sparsity_loss", "quantization_loss",
                        *(f"mask_sparsity/{kind}" for kind in kinds),
                        *(f"expected_sparsity/{kind}" for kind in kinds), "macs_kept",
                        *(f"lagrange_l1/{name}" for name in controllers)]
        self.metadata = {"learner": learner.get_config(), "temperature": temperature.get_config(),
                         "masks_dir": paths.masks_dir, "step_log": paths.step_log}
        # Learned masks are final only when the temperature has reached its end: the last epoch.
        self.selection = {"min_epoch": config.epochs}

    def _add_distillation(self, config, model, source):
        from callbacks import DistillationCallback
        from pruners import Distiller

        distiller = Distiller(model, config.distill_temperature, config.distill_alpha, config.distill_hidden_weight,
                              regression=config.task_spec().num_labels == 1, maps_lr=config.learning_rate)
        self.distillation = DistillationCallback(distiller)
        self.callbacks.append(self.distillation)
        self.columns += list(distiller.term_names)
        self.distillation_metadata = {"teacher": source, **distiller.get_config()}


def make_datasets(config, spec, tokenizer, train_split, dev_split, epochs_drawn=None):
    """Shuffled, length-bucketed train batches (the shuffle orders drawn so far counted in `epochs_drawn`,
    `tasks.pipeline.make_dataset`) and deterministic dev batches."""
    from tasks.pipeline import make_dataset

    batching = {"dynamic_padding": config.dynamic_padding, "max_len": config.max_len,
                "pad_id": tokenizer.pad_token_id or 0}
    train_ds = make_dataset(train_split, config.batch_size, shuffle=True, seed=config.seed, epochs_drawn=epochs_drawn,
                            **batching)
    dev_ds = make_dataset(dev_split, config.batch_size, shuffle=False, **batching)
    return train_ds, dev_ds


def run_metadata(config, spec, paths, name, model, train_split, dev_split, steps_per_epoch, method):
    """The fixed part of the metadata JSON: what ran, on what, with which versions."""
    import numpy as np

    from experiment.outputs import package_versions
    from gated import count_parameters, mask_variables, sparsity_stats

    masks = {id(variable) for variable in mask_variables(model)}  # learned mask logits train, but are no weights
    return {
        "method": config.method,
        "name": name,
        "pruning": method.metadata,
        "distillation": method.distillation_metadata,
        "task": spec.name,
        "timestamp": paths.timestamp,
        "config": config.to_dict(),
        "versions": package_versions(),
        "init_from": init_metadata(config),
        "data": {"train_rows": len(train_split), "dev_rows": len(dev_split), "steps_per_epoch": steps_per_epoch,
                 "source": config.data_dir or "hub", "tokenizer": config.tokenizer},
        "model": {"parameters": count_parameters(model), "prunable_weights": sparsity_stats(model)["total"],
                  "trainable_parameters": sum(int(np.prod(v.shape)) for v in model.trainable_variables
                                              if id(v) not in masks)},
        "paths": paths.as_dict(),
    }


# Settings a resumed run may change: how it reports and how many threads it uses, never what it computes.
RESUME_MAY_CHANGE = ("verbose", "progress_file", "intra_op_threads", "inter_op_threads", "wandb", "cache_dir",
                     "tensorboard")


def find_resumable(config, spec, resume):
    """`(metadata, metadata path)` of the run `--resume` names: `latest` (the newest unfinished run of the config's
    method and task under its output folder), a `metadata_*.json` file, or a `results_<method>_<task>/` folder
    (its newest unfinished run). The run must have a resume state and the config's settings (`ConfigError`)."""
    import glob

    from gated_bert.files import read_json_object

    if resume == "latest":
        folder = os.path.join(config.output_dir, f"results_{config.method}_{spec.name}")
    elif os.path.isdir(resume):
        folder = resume
    else:
        folder = None
    if folder is not None:
        found = [(read_json_object(path, "run metadata", ConfigError), path)
                 for path in sorted(glob.glob(os.path.join(folder, "metadata_*.json")))]
        unfinished = [item for item in found if item[0].get("status") != "completed"]
        if not unfinished:
            raise ConfigError(f"no unfinished {config.method} run on {spec.name} in {folder} to resume (runs that "
                              f"completed are not resumed); drop --resume to start a new run")
        meta, path = max(unfinished, key=lambda item: item[0].get("timestamp", ""))
    else:
        meta, path = read_json_object(resume, "run metadata", ConfigError), resume
    state = (meta.get("paths") or {}).get("resume_state")
    if not state or not os.path.isfile(state):
        raise ConfigError(f"run {meta.get('timestamp')} ({path}, status {meta.get('status')}) has no resume state: it "
                          f"stopped before its first epoch ended, or was written before runs could resume; start it "
                          "again without --resume")
    saved = dict(meta.get("config") or {})
    now = config.to_dict()
    differ = sorted(key for key in now if key not in RESUME_MAY_CHANGE and saved.get(key) != now[key])
    if differ:
        details = ", ".join(f"{key}: {saved.get(key)!r} in the run, {now[key]!r} now" for key in differ)
        raise ConfigError(f"--resume continues run {meta.get('timestamp')} with its own settings, but these differ "
                          f"({details}); give the command that started it plus --resume")
    return meta, path


def run(config, resume=None):
    """Train with `config`, or continue the run `resume` names (`find_resumable`); returns the metadata JSON's
    path."""
    import tensorflow as tf

    from callbacks import (
        BestAndLastCheckpoint,
        DevEvaluator,
        FiniteGuard,
        GracefulStop,
        ProgressFile,
        ResultsLogger,
        ResumeState,
        WandbLogger,
        deferred_signals,
        read_state,
        start_wandb_run,
        tensorboard_callback,
    )
    from experiment.outputs import RunPaths
    from experiment.plots import plot_run
    from experiment.recipe import build_loss, build_optimizer
    from gated import count_parameters, sparsity_stats
    from gated_bert.logs import log_file

    # -- Data ---------------------------------------------------------------
    spec = config.task_spec()
    resumed = find_resumable(config, spec, resume) if resume else None
    tokenizer, train_split, dev_split = load_data(config, spec)
    epochs_drawn = tf.Variable(0, dtype=tf.int64, trainable=False)  # a resumed run sets it to the epochs done
    train_ds, dev_ds = make_datasets(config, spec, tokenizer, train_split, dev_split, epochs_drawn)
    steps_per_epoch = int(train_ds.cardinality())

    # -- Model and method: every variable under the strategy's scope (mirrored: one copy per replica) ---------
    strategy = distribution_strategy(config)
    with strategy.scope():
        model = build_model(config, spec)
        model.compile(optimizer=build_optimizer(config, steps_per_epoch), loss=build_loss(spec))
        stats = sparsity_stats(model)
        timestamp = resumed[0]["timestamp"] if resumed else datetime.datetime.now().strftime("%Y%m%d_%H%M%S_%f")
        paths = RunPaths(config.output_dir, config.method, spec.name, timestamp)
        name = config.name or f"{config.method}_{spec.name}_{timestamp}"
        teacher = load_teacher(config, spec, tokenizer, resumed[0] if resumed else None) if config.teacher else None
        method = MethodSetup(config, steps_per_epoch, stats, paths, teacher)

    # -- Outputs (created only now that data and model are known to work) ---
    paths.create_dirs()
    paths.remove_stale_partials()
    state = read_state(paths.resume_state) if resumed else None
    if not resumed:
        config.save(paths.checkpoint_config)
    metadata = run_metadata(config, spec, paths, name, model, train_split, dev_split, steps_per_epoch, method)
    if resumed:
        metadata["resumed"] = [*resumed[0].get("resumed", []), {"at": datetime.datetime.now().isoformat(
            timespec="seconds"), "after_epoch": state[0]}]
    logger = ResultsLogger(paths.csv, paths.metadata, spec.metrics, spec.primary_metric, len(train_split), metadata,
                           extra_columns=method.columns, **method.selection)
    tracker = start_wandb_run(name, config.to_dict(), paths.results_dir) if config.wandb else None
    progress_file = (ProgressFile(config.progress_file, config.epochs, steps_per_epoch, f"dev_{spec.primary_metric}")
                     if config.progress_file else None)
    # Ctrl-C or SIGTERM while training: recorded at once (the sender may kill us soon), raised at the next batch
    # end.
    stop = GracefulStop(on_signal=lambda signum: logger.write_metadata(status="interrupted",
                                                                       error=f"KeyboardInterrupt: signal {signum}"))
    advice = (f"lower --learning_rate (now {config.learning_rate:g}; gradients are already clipped at global norm 1)"
              " or check the data")
    checkpoints = BestAndLastCheckpoint(paths.best_checkpoint, paths.last_checkpoint, f"dev_{spec.primary_metric}",
                                        **method.selection)
    participants = {"logger": logger, "checkpoints": checkpoints,
                    **({"method": method.callbacks[0]}
                       if method.callbacks and method.callbacks[0] is not method.distillation else {}),
                    **({"distillation": method.distillation} if method.distillation else {}),
                    **({"progress": progress_file} if progress_file else {})}
    callbacks = [
        FiniteGuard(advice),  # first: a diverged epoch is neither scored, nor recorded, nor saved
        DevEvaluator(dev_ds, spec),  # the others read its dev_* logs
        *method.callbacks,  # before the logger, which reads their sparsity and mask logs
        logger,
        checkpoints,
        *([WandbLogger(tracker, config.log_loss_every)] if tracker else []),
        *([tensorboard_callback(os.path.join(config.tensorboard, name))] if config.tensorboard else []),
        *([progress_file] if progress_file else []),
        # After the others: it saves their state once they have finished the epoch, and puts it back once they
        # have reset themselves when training begins.
        ResumeState(paths.resume_state, participants, restore=state),
        stop,
    ]
    initial_epoch = state[0] if state else 0
    epochs_drawn.assign(initial_epoch)  # epoch k's shuffle order is the k-th drawn

    # -- Train --------------------------------------------------------------
    with log_file(paths.log_file):
        log.info("%s: %d train rows (%d batches), %d dev rows; %d parameters, %d prunable kernel weights",
                 spec.name, len(train_split), steps_per_epoch, len(dev_split), count_parameters(model),
                 metadata["model"]["prunable_weights"])
        log.info("training %s on %s for %d epochs (run %s); results in %s", config.method, spec.name,
                 config.epochs, name, paths.results_dir)
        if method.metadata:
            log.info("%s: %s", config.method, method.metadata)
        if resumed:
            log.info("resuming run %s after epoch %d of %d (%s)", timestamp, initial_epoch, config.epochs, resumed[1])
        try:
            with stop, strategy.scope():  # variables the callbacks make as training begins are mirrored too
                model.fit(train_ds, epochs=config.epochs, initial_epoch=initial_epoch, callbacks=callbacks,
                          verbose=progress.keras_verbosity(config.verbose), shuffle=False)
        except BaseException as error:
            status = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
            with deferred_signals():  # a second Ctrl-C, or the orchestrator's SIGTERM, waits for these writes
                logger.write_metadata(status=status, error=f"{type(error).__name__}: {error}")
                if progress_file:
                    progress_file.finish(status)
                plot_run(logger.rows, spec.metrics, paths)
                if tracker:
                    tracker.finish(exit_code=1)
                paths.remove_empty_dirs()
            raise

        # -- Results --------------------------------------------------------
        with deferred_signals():
            plot_run(logger.rows, spec.metrics, paths)
            if tracker:
                tracker.finish()
            if os.path.exists(paths.resume_state):  # complete: nothing to resume
                os.remove(paths.resume_state)
        best, final = logger.best_row(), logger.rows[-1]
        log.info("final %s: %s; best %s (epoch %s)", logger.primary, final.get(logger.primary),
                 best and best.get(logger.primary), best and best["epoch"])
        log.info("wrote %s", paths.metadata)
    return paths.metadata


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def parse_args(argv):
    """`(config, dry_run, resume)`: the config's flags plus `--dry_run` and `--resume`, resolved (`ConfigError` for
    a bad value)."""
    parser = build_parser()
    add_bool_flag(parser, "dry_run", "check the config and the data folder, print the resolved config as JSON and "
                  "exit without training")
    parser.add_argument("--resume", nargs="?", const="latest", metavar="RUN",
                        help="continue an unfinished run (killed, interrupted or failed) from its last finished epoch, "
                        "with the same flags as the command that started it: alone, the newest unfinished run of this "
                        "method and task under --output_dir; or RUN, its metadata_*.json or a results_<method>_<task>/ "
                        "folder (its newest unfinished run)")
    flags = vars(parser.parse_args(argv))
    dry_run, resume = flags.pop("dry_run"), flags.pop("resume", None)
    return config_from_flags(flags), dry_run, resume


def main(argv=None):
    """Command-line entry point; returns the exit status."""
    try:
        config, dry_run, resume = parse_args(sys.argv[1:] if argv is None else argv)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if dry_run:
        print(json.dumps(config.to_dict(), indent=2))
        return 0
    setup_console_logging(config.verbose)
    progress.set_verbosity(config.verbose)
    signal.signal(signal.SIGTERM, _interrupt)  # a stopped run records itself like Ctrl-C does
    quiet_start()
    configure_tensorflow(config)
    from callbacks import NonFiniteError, ResumeError  # TensorFlow has started: Keras callbacks cost nothing more

    try:
        run(config, resume)
    except (ConfigError, DataUnavailableError, GlueFormatError, PretrainedError, NonFiniteError, ResumeError,
            OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: finished epochs are in the results CSV, metadata status 'interrupted'", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
