"""Find and load a checkpoint with its config, and the dev set it is scored on.

A checkpoint is a train.py folder (`checkpoints_<method>_<task>/`) or a Hugging Face folder fine-tuned
elsewhere (a `...ForSequenceClassification` with its head, given with its task). Shared by `prune.py`,
`evaluate.py` and `export.py`.
"""

import glob
import os


class CheckpointError(ValueError):
    """A checkpoint folder lacks a file, or holds files that do not fit together."""


def add_checkpoint_arguments(parser, masks_help):
    """The flags of a driver that reads a checkpoint, a mask folder and the dev rows (evaluate.py, export.py):
    `--ckpt_dir --checkpoint --masks_dir --task --data_dir --tokenizer --max_eval_samples --force`."""
    from gated_bert.cli import add_bool_flag
    from tasks import TASKS

    parser.add_argument("--ckpt_dir", required=True, help="checkpoint folder written by train.py (or prune.py's "
                        "K-prune folder), or a Hugging Face folder fine-tuned for --task")
    parser.add_argument("--checkpoint", default="best", choices=("best", "last"), help="which saved model [best]")
    parser.add_argument("--masks_dir", help=masks_help)
    parser.add_argument("--task", "--task_name", dest="task", choices=tuple(TASKS),
                        help="GLUE task, must be the checkpoint's [the checkpoint's task]")
    parser.add_argument("--data_dir", help="GLUE directory [env GLUE_DIR, else the checkpoint's]")
    parser.add_argument("--tokenizer", help="tokenizer name or folder [env TOKENIZER, else the checkpoint's]")
    parser.add_argument("--max_eval_samples", type=int, help="use only the first N dev rows [all]")
    add_bool_flag(parser, "force", "put --masks_dir on the checkpoint even when the folder says it was made from "
                  "another one (its weights' SHA-256 differs)", default=False)


def checkpoint_source(model_path):
    """`{"path", "weights_sha256"}` of a checkpoint (`open_checkpoint`'s model path): what every result records
    about the model it came from. A `.keras` file's digest is that of its bytes, a Hugging Face folder's that of
    its weight files."""
    from gated_bert.files import sha256_of
    from gated_bert.pretrained_folders import weights_sha256

    digest = weights_sha256(model_path) if os.path.isdir(model_path) else sha256_of([model_path])
    return {"path": os.path.abspath(model_path), "weights_sha256": digest}


def check_mask_source(folder, masks_dir, source, force=False):
    """Refuse (`MaskFolderError`) a mask folder made from another checkpoint than `source` (`checkpoint_source`)
    unless `force`. A folder that names no checkpoint digest (written before they were recorded) is accepted."""
    from gated_bert.mask_folders import MaskFolderError

    made_from = [entry for entry in folder.source.get("checkpoints") or [] if isinstance(entry, dict)]
    digests = {entry.get("weights_sha256") for entry in made_from} - {None}
    if force or not digests or source["weights_sha256"] in digests:
        return
    raise MaskFolderError(f"the masks in {masks_dir} were made from {made_from[0].get('path')} (weights SHA-256 "
                          f"{sorted(digests)[0][:12]}...), not from {source['path']} ({source['weights_sha256'][:12]}"
                          "...); pass the checkpoint they were made from, or --force to put them on this one anyway")


def open_with_masks(args, environ):
    """`(model path, config, mask folder or None, checkpoint_source)` for a driver with
    `add_checkpoint_arguments`' flags: the checkpoint opened, its mask folder read and checked to be made from it
    (unless `--force`). Reads no weights and starts no TensorFlow."""
    from gated_bert.mask_folders import read_mask_folder

    model_path, config = open_checkpoint(args.ckpt_dir, args.checkpoint, environ, args.data_dir, args.tokenizer,
                                         args.max_eval_samples, args.task)
    folder = read_mask_folder(args.masks_dir) if args.masks_dir else None
    source = checkpoint_source(model_path)
    if folder:
        check_mask_source(folder, args.masks_dir, source, args.force)
    return model_path, config, folder, source


def put_masks(model, masks, masks_dir, logit_bias=None):
    """Set `model`'s gates from `masks` (`{kind: array}`, read from `masks_dir`) and add the folder's `logit_bias`
    (if any) to its classifier's bias; masks or a bias of another shape are a `MaskFolderError` naming the
    folder."""
    from gated import add_logit_bias, set_structured_masks
    from gated_bert.mask_folders import MaskFolderError

    try:
        set_structured_masks(model, masks)
        if logit_bias is not None:
            add_logit_bias(model, logit_bias)
    except ValueError as error:
        raise MaskFolderError(f"the masks in {masks_dir} do not fit this model: {error}; they were made for "
                              "another model") from None


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
        nearby = _checkpoint_folders_near(ckpt_dir)
        hint = (f"; train.py's checkpoint folders beside or inside it: {', '.join(nearby)} (pass one as --ckpt_dir)"
                if nearby else "")
        raise CheckpointError(f"{ckpt_dir} holds no config_*.json: not a train.py checkpoint folder{hint}")
    config_path = configs[-1]
    model_path = os.path.join(ckpt_dir, os.path.basename(config_path).replace("config_", f"{which}_", 1)
                              .removesuffix(".json") + ".keras")
    if not os.path.isfile(model_path):
        raise CheckpointError(f"{ckpt_dir} has {os.path.basename(config_path)} but not {os.path.basename(model_path)}"
                              f"; the run may have stopped before saving (try --checkpoint "
                              f"{'last' if which == 'best' else 'best'})")
    return model_path, config_path


def _checkpoint_folders_near(folder):
    """train.py checkpoint folders (`checkpoints_*` holding a config) inside `folder` (a run's output folder) or
    beside it (its `results_*` folder), sorted."""
    found = {os.path.dirname(path) for pattern in ("checkpoints_*", os.path.join(os.pardir, "checkpoints_*"))
             for path in glob.glob(os.path.join(folder, pattern, "config_*.json"))}
    return sorted(os.path.normpath(path) for path in found)


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


def open_checkpoint(ckpt_dir, which, environ, data_dir=None, tokenizer=None, max_eval_samples=None, task=None):
    """`(model path, config)` of a train.py checkpoint folder or a fine-tuned Hugging Face folder.

    A train.py folder gives its newest run (`find_checkpoint`, `checkpoint_config`). A Hugging Face folder needs
    `task` and a classification head of that task's label count; its model path is the folder itself, which
    `load_checkpoint` reads with `gated.load_pretrained`.
    """
    from experiment.config import ConfigError, GatedBertConfig, check_data_dir, with_pretrained
    from gated_bert.pretrained_folders import PretrainedError, classifier_labels, is_pretrained_folder
    from tasks import get_task

    if not is_pretrained_folder(ckpt_dir):  # a config.json with its model_type wins over any config_*.json
        model_path, config_path = find_checkpoint(ckpt_dir, which)
        return model_path, checkpoint_config(config_path, environ, data_dir, tokenizer, max_eval_samples, task)
    if not task:
        raise ConfigError(f"{ckpt_dir} is a Hugging Face folder, which does not say its task: add --task")
    try:
        labels = classifier_labels(ckpt_dir)
    except PretrainedError as error:
        raise CheckpointError(str(error)) from None
    if labels is None:
        raise CheckpointError(f"{ckpt_dir} has no classification head: it is not fine-tuned for {task}. Fine-tune "
                              f"it first (python train.py --init_from {ckpt_dir} --task {task}), then pass the "
                              "checkpoints_<method>_<task>/ folder it writes")
    if labels != get_task(task).num_labels:
        raise CheckpointError(f"{ckpt_dir}'s classification head has {labels} labels, but {task} has "
                              f"{get_task(task).num_labels}; it was fine-tuned for another task")
    given = {"init_from": ckpt_dir, "task": task, "max_eval_samples": max_eval_samples}
    data = data_dir or environ.get("GLUE_DIR")
    tokenizer = tokenizer or environ.get("TOKENIZER")
    given.update({"data_dir": data} if data else {})
    given.update({"tokenizer": tokenizer} if tokenizer else {})
    config = GatedBertConfig(**with_pretrained(given))
    check_data_dir(config)
    return ckpt_dir, config


def dev_dataset(config, spec, tokenizer):
    """`(dev split, deterministic dev batches)` of the config's task."""
    from tasks import load_split
    from tasks.pipeline import make_dataset

    dev = load_split(spec, "dev", tokenizer, data_dir=config.data_dir, max_len=config.max_len,
                     cache_dir=config.cache_dir, limit=config.max_eval_samples)
    dataset = make_dataset(dev, config.batch_size, shuffle=False, dynamic_padding=config.dynamic_padding,
                           max_len=config.max_len, pad_id=tokenizer.pad_token_id or 0)
    return dev, dataset


def load_checkpoint(model_path, config=None):
    """The saved model, with learned Gumbel masks (if any) baked into its gates. A Hugging Face folder
    (`open_checkpoint`) is loaded with its head for `config`'s task.

    A file that is not a readable Keras archive, or a model with NaN or infinite weights (the run that saved it
    diverged), is a `CheckpointError`.
    """
    import zipfile

    import keras

    import gated  # noqa: F401  (registers the gated layers for deserialisation)
    from gated import learned_gates, load_pretrained, non_finite_weights, without_learned_masks

    if os.path.isdir(model_path):
        model = load_pretrained(model_path, num_labels=config.task_spec().num_labels, max_len=config.max_len,
                                require_head=True)
    else:
        if not zipfile.is_zipfile(model_path):
            raise CheckpointError(f"{model_path} is not a Keras archive or is truncated (a copy cut short, or a "
                                  "save that was killed); use the other checkpoint (--checkpoint best|last) or "
                                  "train again")
        try:
            model = keras.saving.load_model(model_path, compile=False)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
            raise CheckpointError(f"{model_path} is not a Keras archive or is truncated ({type(error).__name__}: "
                                  f"{error}); use the other checkpoint (--checkpoint best|last) or train "
                                  "again") from None
    bad = non_finite_weights(model)
    if bad:
        raise CheckpointError(f"{model_path} holds NaN or infinite weights ({len(bad)} tensors, first: {bad[0]}): "
                              "the run that saved it diverged; train it again with a lower --learning_rate")
    return without_learned_masks(model) if learned_gates(model) else model
