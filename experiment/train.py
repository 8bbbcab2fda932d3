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

    Only weight-level pruning methods get per-weight kernel masks; every model keeps its head and neuron gates.
    """
    from gated import build_gated_encoder, load_pretrained
    from gated_bert.vocabulary import SCHEDULED_METHODS

    options = {"num_labels": spec.num_labels, "max_len": config.max_len, "dropout_rate": config.dropout_rate,
               "learn_masks": config.learn_masks if config.method == "gumbel" else (),
               "kernel_masks": config.method in SCHEDULED_METHODS}
    if config.init_from:
        return load_pretrained(config.init_from, **options)
    return build_gated_encoder(vocab_size=config.vocab_size, num_layers=config.num_layers, d_model=config.d_model,
                               num_heads=config.num_heads, dff=config.dff, **options)


def init_metadata(config):
    """Where the starting weights came from: the `init_from` folder and the SHA-256 of its weights."""
    if not config.init_from:
        return None
    from gated_bert.pretrained_folders import read_architecture, weights_sha256

    return {"folder": os.path.abspath(config.init_from), "weights_sha256": weights_sha256(config.init_from),
            "model_type": read_architecture(config.init_from).model_type}


class MethodSetup:
    """What a run's method adds to training: callbacks, CSV columns, metadata and how the best epoch is chosen."""

    def __init__(self, config, steps_per_epoch, stats, paths):
        from callbacks import GumbelMaskCallback, PruningCallback
        from pruners import gumbel_from_config, pruning_from_config

        self.callbacks, self.columns, self.metadata, self.selection = [], [], None, {}
        pruner, schedule = pruning_from_config(config, steps_per_epoch, stats["total"])
        if pruner:
            self.callbacks = [PruningCallback(pruner, schedule)]
            self.columns = [f"sparsity/{path}" for path in stats["layers"]]
            self.metadata = {"pruner": pruner.get_config(), "schedule": schedule.get_config()}
            # A pruning run's best epoch is chosen among those at the final sparsity.
            self.selection = {"min_target_sparsity": config.end_sparsity}
        elif config.method == "gumbel":
            learner, temperature = gumbel_from_config(config, steps_per_epoch)
            self.callbacks = [GumbelMaskCallback(learner, temperature, config.log_loss_every, paths.step_log,
                                                 paths.masks_dir, (paths.best_checkpoint, paths.last_checkpoint))]
            kinds = config.learn_masks
            self.columns = ["temperature", "sparsity_loss", "quantization_loss",
                            *(f"mask_sparsity/{kind}" for kind in kinds),
                            *(f"expected_sparsity/{kind}" for kind in kinds),
                            *(f"lagrange_l1/{kind}" for kind in kinds if config.target_sparsity is not None)]
            self.metadata = {"learner": learner.get_config(), "temperature": temperature.get_config(),
                             "masks_dir": paths.masks_dir, "step_log": paths.step_log}
            # Learned masks are final only when the temperature has reached its end: the last epoch.
            self.selection = {"min_epoch": config.epochs}


def make_datasets(config, spec, tokenizer, train_split, dev_split):
    """Shuffled, length-bucketed train batches and deterministic dev batches."""
    from tasks.pipeline import make_dataset

    batching = {"dynamic_padding": config.dynamic_padding, "max_len": config.max_len,
                "pad_id": tokenizer.pad_token_id or 0}
    train_ds = make_dataset(train_split, config.batch_size, shuffle=True, seed=config.seed, **batching)
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


def run(config):
    """Train with `config`; returns the metadata JSON's path."""
    from callbacks import (
        BestAndLastCheckpoint,
        DevEvaluator,
        FiniteGuard,
        GracefulStop,
        ProgressFile,
        ResultsLogger,
        WandbLogger,
        deferred_signals,
        start_wandb_run,
    )
    from experiment.outputs import RunPaths
    from experiment.plots import plot_run
    from experiment.recipe import build_loss, build_optimizer
    from gated import count_parameters, sparsity_stats
    from gated_bert.logs import log_file

    # -- Data ---------------------------------------------------------------
    spec = config.task_spec()
    tokenizer, train_split, dev_split = load_data(config, spec)
    train_ds, dev_ds = make_datasets(config, spec, tokenizer, train_split, dev_split)
    steps_per_epoch = int(train_ds.cardinality())

    # -- Model and method ---------------------------------------------------
    model = build_model(config, spec)
    model.compile(optimizer=build_optimizer(config, steps_per_epoch), loss=build_loss(spec))
    stats = sparsity_stats(model)
    timestamp = datetime.datetime.now().strftime("%Y%m%d_%H%M%S_%f")
    paths = RunPaths(config.output_dir, config.method, spec.name, timestamp)
    name = config.name or f"{config.method}_{spec.name}_{timestamp}"
    method = MethodSetup(config, steps_per_epoch, stats, paths)

    # -- Outputs (created only now that data and model are known to work) ---
    paths.create_dirs()
    paths.remove_stale_partials()
    config.save(paths.checkpoint_config)
    metadata = run_metadata(config, spec, paths, name, model, train_split, dev_split, steps_per_epoch, method)
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
    callbacks = [
        FiniteGuard(advice),  # first: a diverged epoch is neither scored, nor recorded, nor saved
        DevEvaluator(dev_ds, spec),  # the others read its dev_* logs
        *method.callbacks,  # before the logger, which reads their sparsity and mask logs
        logger,
        BestAndLastCheckpoint(paths.best_checkpoint, paths.last_checkpoint, f"dev_{spec.primary_metric}",
                              **method.selection),
        *([WandbLogger(tracker, config.log_loss_every)] if tracker else []),
        *([progress_file] if progress_file else []),
        stop,
    ]

    # -- Train --------------------------------------------------------------
    with log_file(paths.log_file):
        log.info("%s: %d train rows (%d batches), %d dev rows; %d parameters, %d prunable kernel weights",
                 spec.name, len(train_split), steps_per_epoch, len(dev_split), count_parameters(model),
                 metadata["model"]["prunable_weights"])
        log.info("training %s on %s for %d epochs (run %s); results in %s", config.method, spec.name,
                 config.epochs, name, paths.results_dir)
        if method.metadata:
            log.info("%s: %s", config.method, method.metadata)
        try:
            with stop:
                model.fit(train_ds, epochs=config.epochs, callbacks=callbacks, verbose=config.verbose, shuffle=False)
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
        best, final = logger.best_row(), logger.rows[-1]
        log.info("final %s: %s; best %s (epoch %s)", logger.primary, final.get(logger.primary),
                 best and best.get(logger.primary), best and best["epoch"])
        log.info("wrote %s", paths.metadata)
    return paths.metadata


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def parse_args(argv):
    """`(config, dry_run)`: the config's flags plus `--dry_run`, resolved (`ConfigError` for a bad value)."""
    parser = build_parser()
    add_bool_flag(parser, "dry_run", "check the config and the data folder, print the resolved config as JSON and "
                  "exit without training")
    flags = vars(parser.parse_args(argv))
    dry_run = flags.pop("dry_run")
    return config_from_flags(flags), dry_run


def main(argv=None):
    """Command-line entry point; returns the exit status."""
    try:
        config, dry_run = parse_args(sys.argv[1:] if argv is None else argv)
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
    from callbacks import NonFiniteError  # TensorFlow has started: importing Keras callbacks costs nothing more

    try:
        run(config)
    except (ConfigError, DataUnavailableError, GlueFormatError, PretrainedError, NonFiniteError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: finished epochs are in the results CSV, metadata status 'interrupted'", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
