"""Find and load a train.py checkpoint with its config, and the dev set it is scored on.

Shared by `prune.py` and `evaluate.py`.
"""

import glob
import os


class CheckpointError(ValueError):
    """A checkpoint folder lacks a file, or holds files that do not fit together."""


def find_checkpoint(ckpt_dir, which="best"):
    """`(model path, config path)` of the newest run in a train.py checkpoint folder.

    train.py writes `{best,last}_{method}_{timestamp}.keras` beside
    `config_{method}_{timestamp}.json`; with several runs in one folder the
    newest timestamp is used.
    """
    if which not in ("best", "last"):
        raise CheckpointError(f"checkpoint must be best or last, got {which!r}")
    if not os.path.isdir(ckpt_dir):
        raise CheckpointError(f"checkpoint folder not found: {ckpt_dir}; pass the checkpoints_<method>_<task>/ "
                              "folder that train.py wrote")
    # config_{method}_{timestamp}.json: the timestamp sorts in time order.
    configs = sorted(glob.glob(os.path.join(ckpt_dir, "config_*.json")),
                     key=lambda path: os.path.basename(path).split("_", 2)[-1])
    if not configs:
        raise CheckpointError(f"{ckpt_dir} holds no config_*.json: not a train.py checkpoint folder")
    config_path = configs[-1]
    model_path = os.path.join(ckpt_dir, os.path.basename(config_path).replace("config_", f"{which}_", 1)
                              .removesuffix(".json") + ".keras")
    if not os.path.isfile(model_path):
        raise CheckpointError(f"{ckpt_dir} has {os.path.basename(config_path)} but not {os.path.basename(model_path)}"
                              f"; the run may have stopped before saving (try --checkpoint "
                              f"{'last' if which == 'best' else 'best'})")
    return model_path, config_path


def checkpoint_config(config_path, environ, data_dir=None, tokenizer=None, max_eval_samples=None, task=None):
    """The run's saved config, with data and tokenizer from the flags, else `GLUE_DIR` / `TOKENIZER`, else as saved.

    The task's files must exist there, and `task`, when given, must be the checkpoint's (`ConfigError`
    otherwise: its classifier was trained for its own task).
    """
    from experiment.config import ConfigError, GatedBertConfig, check_data_dir

    saved = GatedBertConfig.load(config_path)
    if task and task != saved.task:
        raise ConfigError(f"--task {task} does not match the checkpoint's task {saved.task}; its classifier was "
                          "trained for that task (drop --task or pick another checkpoint)")
    config = GatedBertConfig(**{**saved.to_dict(),
                                "data_dir": data_dir or environ.get("GLUE_DIR") or saved.data_dir,
                                "tokenizer": tokenizer or environ.get("TOKENIZER") or saved.tokenizer,
                                "max_eval_samples": max_eval_samples})
    check_data_dir(config)
    return config


def dev_dataset(config, spec, tokenizer):
    """`(dev split, deterministic dev batches)` of the config's task."""
    from tasks import load_split
    from tasks.pipeline import make_dataset

    dev = load_split(spec, "dev", tokenizer, data_dir=config.data_dir, max_len=config.max_len,
                     cache_dir=config.cache_dir, limit=config.max_eval_samples)
    dataset = make_dataset(dev, config.batch_size, shuffle=False, dynamic_padding=config.dynamic_padding,
                           max_len=config.max_len, pad_id=tokenizer.pad_token_id or 0)
    return dev, dataset


def load_checkpoint(model_path):
    """The saved model, with learned Gumbel masks (if any) baked into its gates."""
    import keras

    import gated  # noqa: F401  (registers the gated layers for deserialisation)
    from gated import learned_gates, without_learned_masks

    model = keras.saving.load_model(model_path, compile=False)
    return without_learned_masks(model) if learned_gates(model) else model
