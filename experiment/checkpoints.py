"""Load a train.py checkpoint, put structured masks on its gates, and score it on a task's dev set.

Shared by `prune.py` (which writes masks) and `evaluate.py` (which reads them back).
"""

import glob
import os

import numpy as np

MASK_FILES = {"head": "head_mask.npy", "ffn_int": "neuron_mask.npy"}


class CheckpointError(ValueError):
    """A checkpoint folder or mask folder lacks a file, or holds files that do not fit together."""


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


def checkpoint_config(config_path, environ, data_dir=None, tokenizer=None, max_eval_samples=None):
    """The run's saved config, with data and tokenizer from the flags, else `GLUE_DIR` / `TOKENIZER`, else as saved.

    The task's files must exist there (`ConfigError` otherwise).
    """
    from experiment.config import GatedBertConfig, check_data_dir

    saved = GatedBertConfig.load(config_path)
    config = GatedBertConfig(**{**saved.to_dict(),
                                "data_dir": data_dir or environ.get("GLUE_DIR") or saved.data_dir,
                                "tokenizer": tokenizer or environ.get("TOKENIZER") or saved.tokenizer,
                                "max_eval_samples": max_eval_samples})
    check_data_dir(config)
    return config


def mac_shape(config):
    """The shape MACs are counted at: `{d_model, head_dim, seq_len=max_len}` (see `efficiency.mac`)."""
    return {"d_model": config.d_model, "head_dim": config.d_model // config.num_heads, "seq_len": config.max_len}


def dev_dataset(config, spec, tokenizer):
    """`(dev split, deterministic dev batches)` of the config's task."""
    from tasks import load_split
    from tasks.pipeline import make_dataset

    dev = load_split(spec, "dev", tokenizer, data_dir=config.data_dir, max_len=config.max_len,
                     cache_dir=config.cache_dir, limit=config.max_eval_samples)
    dataset = make_dataset(dev, config.batch_size, shuffle=False, max_len=config.max_len,
                           pad_id=tokenizer.pad_token_id or 0)
    return dev, dataset


def load_checkpoint(model_path):
    """The saved model, with learned Gumbel masks (if any) baked into its gates."""
    import keras

    import gated  # noqa: F401  (registers the gated layers for deserialisation)
    from gated import learned_gates, without_learned_masks

    model = keras.saving.load_model(model_path, compile=False)
    return without_learned_masks(model) if learned_gates(model) else model


def current_masks(model):
    """`(head gates [L, H], neuron gates [L, F])` as numpy arrays."""
    from gated import get_head_gates, get_neuron_gates

    return np.stack(list(get_head_gates(model).values())), np.stack(list(get_neuron_gates(model).values()))


def apply_masks(model, head_mask, neuron_mask):
    """Set the head and neuron gates (`[L, H]`, `[L, F]`; real values scale the units)."""
    from gated import set_structured_masks

    set_structured_masks(model, {"head": head_mask, "ffn_int": neuron_mask})


def save_masks(folder, head_mask, neuron_mask):
    """Write `head_mask.npy` and `neuron_mask.npy` (float32) into `folder`."""
    from gated_bert.files import atomic_path

    for kind, mask in (("head", head_mask), ("ffn_int", neuron_mask)):
        with atomic_path(os.path.join(folder, MASK_FILES[kind])) as tmp:
            np.save(tmp, np.asarray(mask, np.float32))


def load_masks(folder, model=None):
    """`(head_mask, neuron_mask)` from a prune.py output folder, checked against `model`'s gate shapes."""
    paths = {kind: os.path.join(folder, name) for kind, name in MASK_FILES.items()}
    missing = [path for path in paths.values() if not os.path.isfile(path)]
    if missing:
        raise CheckpointError(f"mask folder {folder} lacks {', '.join(os.path.basename(p) for p in missing)}; "
                              "pass a folder that prune.py wrote")
    head, neuron = np.load(paths["head"]), np.load(paths["ffn_int"])
    if model is not None:
        want = tuple(mask.shape for mask in current_masks(model))
        if (head.shape, neuron.shape) != want:
            raise CheckpointError(f"masks in {folder} have shapes {head.shape} and {neuron.shape}, but the model's "
                                  f"gates are {want[0]} and {want[1]}: they were made for another model")
    return head, neuron


def dev_metrics(model, dataset, spec):
    """`{dev_loss, dev_<metric>...}` of `model` on a deterministic dev dataset."""
    from callbacks import DevEvaluator

    evaluator = DevEvaluator(dataset, spec)
    evaluator.set_model(model)
    return evaluator.evaluate()
