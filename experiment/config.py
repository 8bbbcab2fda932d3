"""One configuration object for every run: `GatedBertConfig`.

Values are layered, later layers winning:
    dataclass defaults < model-size preset < JSON file (`--config`)
    < environment variables (upper-case field names, `RUN_NAME` for
      `name`; `GLUE_DIR`, `BENCHMARK_EPOCHS`) < command-line flags (`--task rte`).
Every override is generated from the dataclass fields and type-checked;
unknown keys and bad values stop the run before any work. `pruning_method`
alone enables pruning: `enable_pruning` is derived from it (kept for config
files), and a value given beside it that contradicts it is an error.
`init_from` (a Hugging Face folder, or a train.py checkpoint folder) fixes the
shape and vocabulary from the checkpoint and puts the fine-tuning recipe
(`FINETUNE_RECIPE`) under every layer; `train_file` makes the task `custom`, with its labels read from the
file unless a layer gives `label_names`.
"""

import argparse
import dataclasses
import difflib
import importlib.util
import os
import types
import typing
from dataclasses import dataclass, field

from gated_bert.cli import FALSE, TRUE
from gated_bert.files import read_json_object, write_json_atomic
from gated_bert.pretrained_folders import PretrainedError, has_tokenizer, is_pretrained_folder, read_architecture
from gated_bert.vocabulary import (
    ANNEALING,
    GRANULAR_METHODS,
    GRANULARITIES,
    POOLINGS,
    PRESETS,
    PRUNING_METHODS,
    RAMPS,
    SCHEDULED_METHODS,
    SCOPES,
    UNIT_KINDS,
    expand_unit_kinds,
)
from tasks.custom import CUSTOM, TASK_TYPES, custom_task, infer_labels, read_columns
from tasks.loaders import GlueFormatError
from tasks.registry import TASKS

SHAPE_FIELDS = ("num_layers", "d_model", "num_heads", "dff")
# Environment variables that map to a field under another name. The later
# entry wins when both name the same field.
ENV_ALIASES = {"GLUE_DIR": "data_dir", "BENCHMARK_EPOCHS": "epochs"}
# Fields read from an environment variable other than their upper-case name (NAME is too common to claim).
ENV_NAMES = {"name": "RUN_NAME"}
# Percentages walked by the magnitude and SPT schedules (clipped to [start_sparsity, end_sparsity]).
DEFAULT_SPARSITY_STEPS = (10.0, 25.0, 50.0, 70.0, 75.0, 80.0, 84.0, 88.0, 90.0, 92.0, 93.0, 94.0, 95.0, 96.0,
                          97.0, 97.5, 98.0, 98.5, 99.0, 99.5)


# The defaults of a run that fine-tunes a pretrained checkpoint (`init_from`), under every layer a user sets:
# a few epochs at a higher rate with dropout (README, "Fine-tuning a Hugging Face checkpoint"); pruning starts at
# once.
FINETUNE_RECIPE = {"epochs": 3, "batch_size": 32, "learning_rate": 5e-5, "warmup_ratio": 0.1, "dropout_rate": 0.1,
                   "pruning_start_epoch": 0}
DEFAULT_MAX_LEN = 128


class ConfigError(ValueError):
    """A configuration value, key or file is invalid; the message says which and how to fix it."""


# The longest position table (max_len) of a model trained from scratch here; an imported model's is its own.
MAX_POSITIONS = 4096


def _field(default, help_text, **checks):
    """A dataclass field carrying its help text and validation rules.

    `checks` may hold `choices` (allowed values), `positive` (> 0),
    `non_negative` (>= 0) or `fraction` (`(low, high, closed_high)`).
    """
    return field(default=default, metadata={"help": help_text, **checks})


@dataclass
class GatedBertConfig:
    """Every setting of a run. See the module docstring for how values are layered."""

    # Model shape. The four shape fields default to the preset of `model_size`.
    model_size: str = _field("tiny", "encoder preset: " + ", ".join(PRESETS), choices=tuple(PRESETS))
    num_layers: int | None = _field(None, "encoder blocks", positive=True)
    d_model: int | None = _field(None, "hidden width", positive=True)
    num_heads: int | None = _field(None, "attention heads", positive=True)
    dff: int | None = _field(None, "feed-forward width", positive=True)
    vocab_size: int = _field(30522, "token vocabulary size (must cover the tokenizer's)", positive=True)
    max_len: int = _field(DEFAULT_MAX_LEN, "longest sequence in tokens; longer inputs are truncated (at most 4096; "
                          "with init_from, the checkpoint's position count)", positive=True)
    dropout_rate: float = _field(0.0, "dropout on embeddings, attention and residuals", fraction=(0.0, 1.0, False))
    pooling: str = _field("cls", "what the classifier reads from the last block: cls (the [CLS] row, through the "
                          "checkpoint's pooler: BERT's head) or mean (the mean of the real tokens' rows, the "
                          "classifier fresh: how sentence-transformers checkpoints such as all-MiniLM-L6-v2 were "
                          "trained)", choices=POOLINGS)
    init_from: str = _field("", "Hugging Face folder (config.json + model.safetensors) to fine-tune from: its "
                            "shape, vocabulary and tokenizer are used, and the fine-tuning recipe becomes the "
                            "default; or a train.py checkpoint folder (a pruned or composed model, its masks kept "
                            "fixed, pruning_method none); empty: train from scratch")
    # Task and data.
    task: str = _field("sst2", "GLUE task: " + ", ".join(TASKS) + "; custom: your own files (--train_file)",
                       choices=(*TASKS, CUSTOM))
    data_dir: str = _field("", "GLUE directory holding e.g. SST-2/train.tsv and dev.tsv; empty: the hub (env GLUE_DIR)")
    train_file: str = _field("", "your own task's training rows: .csv, .tsv or .jsonl with a header (JSON keys); "
                             "sets task to custom")
    validation_file: str = _field("", "your own task's validation rows, same columns as train_file")
    text_column: str = _field("text", "custom task: the column of the (first) text")
    text_pair_column: str = _field("", "custom task: the column of the second text of a pair (empty: single texts)")
    label_column: str = _field("label", "custom task: the column of the label")
    task_type: str = _field("auto", "custom task: classification, regression, or auto (regression when the "
                            "labels are non-integer numbers)", choices=TASK_TYPES)
    label_names: tuple[str, ...] | None = _field(None, "custom task: class labels in class-id order (none: read "
                                                 "from train_file, sorted); recorded in every checkpoint's config")
    tokenizer: str = _field("bert-base-uncased", "tokenizer: hub name or local directory")
    cache_dir: str = _field("~/.cache/gated_bert", "where tokenized arrays are cached")
    max_train_samples: int | None = _field(None, "use only the first N training rows", positive=True)
    max_eval_samples: int | None = _field(None, "use only the first N dev rows", positive=True)
    dynamic_padding: bool = _field(True, "bucket by length and pad per batch (false: pad every batch to max_len)")
    # Training.
    epochs: int = _field(25, "training epochs (env BENCHMARK_EPOCHS overrides EPOCHS)", positive=True)
    batch_size: int = _field(96, "examples per training batch", positive=True)
    learning_rate: float = _field(2e-5, "peak AdamW learning rate", positive=True)
    warmup_ratio: float = _field(0.1, "fraction of steps for linear warm-up", fraction=(0.0, 1.0, False))
    weight_decay: float = _field(0.01, "AdamW decoupled weight decay", non_negative=True)
    layer_lr_decay: float = _field(1.0, "layer-wise learning-rate decay: the head trains at learning_rate, the top "
                                   "block at learning_rate x d, each layer below at d times the one above (the "
                                   "embeddings last); 1: one rate for every layer", positive=True,
                                   fraction=(0.0, 1.0, True))
    seed: int = _field(42, "seed for initialisation, shuffling and dropout", non_negative=True)
    verbose: int = _field(1, "Keras verbosity: 0 silent, 1 progress bar (off a terminal: a line per epoch), 2 one "
                          "line per epoch", choices=(0, 1, 2))
    intra_op_threads: int = _field(0, "CPU threads inside one op (0: TensorFlow decides)", non_negative=True)
    inter_op_threads: int = _field(0, "CPU threads across ops (0: TensorFlow decides)", non_negative=True)
    strategy: str = _field("default", "default (one device) or mirrored (tf.distribute.MirroredStrategy: one replica "
                           "per device, batch_size split among them; several machines: run_experiments.sh "
                           "-backend ray)", choices=("default", "mirrored"))
    devices: tuple[str, ...] | None = _field(None, "mirrored: the devices to replicate on, e.g. GPU:0,GPU:1 (none: "
                                             "every local GPU, else the CPU)")
    # Pruning during training.
    enable_pruning: bool | None = _field(None, "whether pruning_method prunes; derived from it (true for any method "
                                         "but none), kept for config files; a value that contradicts it is an error")
    pruning_method: str = _field("none", "none, magnitude, movement, spt, soft_movement or gumbel (any but none "
                                 "enables pruning)", choices=PRUNING_METHODS)
    start_sparsity: float = _field(0.0, "sparsity at the start of the pruning window", fraction=(0.0, 1.0, True))
    end_sparsity: float = _field(0.99, "final sparsity, reached at the end of pruning_end_epoch",
                                 fraction=(0.0, 1.0, True))
    pruning_start_epoch: int = _field(4, "epochs trained before pruning begins", non_negative=True)
    pruning_end_epoch: int = _field(23, "epoch at whose end end_sparsity is reached (capped at epochs)", positive=True)
    sparsity_steps: tuple[float, ...] = _field(
        DEFAULT_SPARSITY_STEPS, "sparsity levels in percent that magnitude and spt walk, one pruning event each, "
        "clipped to [start_sparsity, end_sparsity] (space- or comma-separated)")
    pruning_scope: str = _field("global", "rank weights across all layers (global) or within each layer",
                                choices=SCOPES)
    pruning_granularity: str = _field(
        "weight", "what magnitude, movement, spt and soft_movement remove: single weights (weight; end_sparsity is a "
        "fraction of the prunable weights), or FFN neurons, attention heads or both through their gates "
        "(end_sparsity is a fraction of the blocks' MACs; a unit ranks by the mean score of its weights)",
        choices=tuple(GRANULARITIES))
    pruning_frequency_steps: int | None = _field(
        None, "steps between movement pruning events (none: 400 for base, scaled by depth: 67 for tiny)", positive=True)
    movement_schedule: str = _field("cubic", "movement's sparsity ramp", choices=tuple(RAMPS))
    spt_epsilon: float = _field(0.0025, "fraction of live weights SPT probes per event (scaled down above tiny)",
                                fraction=(0.0, 1.0, True))
    spt_explore_per_layer: bool = _field(False, "SPT probes each layer on its own instead of all layers at once")
    spt_reward_alpha: float = _field(0.125, "weight of a new SPT reward sample", fraction=(0.0, 1.0, True))
    # Soft movement (pruning_method soft_movement): learned scores, a threshold and a regulariser.
    soft_movement_threshold: float = _field(0.5, "soft_movement: a mask keeps its weight (or unit) while "
                                            "sigmoid(score) exceeds this", fraction=(0.0, 1.0, False), positive=True)
    soft_movement_lambda: float = _field(10.0, "soft_movement: final weight of the regulariser lambda * "
                                         "mean(sigmoid(scores)); higher prunes more (unused with target_sparsity)",
                                         non_negative=True)
    soft_movement_warmup: float = _field(0.1, "soft_movement: fraction of the training steps over which lambda "
                                         "(or target_sparsity) rises linearly from 0", fraction=(0.0, 1.0, True))
    soft_movement_freeze: float = _field(1.0, "soft_movement: fraction of the training steps after which the masks "
                                         "stop moving and only the weights train on; with target_sparsity they are "
                                         "first set to it, the lowest scores out until they cost the target (1: "
                                         "never)",
                                         fraction=(0.0, 1.0, True), positive=True)
    # Learned Gumbel-Sigmoid masks (pruning_method gumbel).
    learn_masks: tuple[str, ...] = _field(("head", "neuron"), "gumbel: unit kinds to learn masks for, any of "
                                          + ", ".join(UNIT_KINDS) + " or all (space- or comma-separated; "
                                          "ffn_int still means neuron)")
    gumbel_temp_start: float = _field(5.0, "gumbel: temperature at the first step", positive=True)
    gumbel_temp_end: float = _field(0.1, "gumbel: temperature at the last step", positive=True)
    gumbel_temp_anneal: str = _field("exponential", "gumbel: temperature schedule: linear, exponential or constant "
                                     "(stays at the start)", choices=ANNEALING)
    sparsity_loss: float = _field(0.1, "gumbel: weight of the mean keep-probability (unused with target_sparsity)",
                                  non_negative=True)
    quantization_loss: float = _field(0.01, "gumbel: weight of the keep-probabilities' binary entropy",
                                      non_negative=True)
    target_sparsity: float | None = _field(None, "gumbel and soft_movement: the fraction to remove, reached by a "
                                           "Lagrangian controller. gumbel: of heads/neurons (see target_measure); "
                                           "soft_movement: of the prunable weights, or with a structured "
                                           "pruning_granularity of the blocks' MACs. none: gumbel's fixed "
                                           "sparsity_loss weight, soft_movement's fixed lambda",
                                           fraction=(0.0, 1.0, False))
    target_measure: str = _field("units", "gumbel: what target_sparsity is a fraction of: units (each learned "
                                 "kind's heads or neurons, one controller per kind) or macs (the blocks' MACs, one "
                                 "controller over the head and neuron masks, which then trade against each other)",
                                 choices=("units", "macs"))
    target_warmup: float = _field(0.5, "gumbel: fraction of the training steps over which the target rises "
                                  "linearly from 0 to target_sparsity", fraction=(0.0, 1.0, True))
    masks_lr: float = _field(0.01, "gumbel and soft_movement: Adam learning rate of the mask logits or scores",
                             positive=True)
    freeze: bool = _field(False, "gumbel: train only the masks; backbone weights stay unchanged")
    log_loss_every: int = _field(5, "gumbel: steps between two logs of the mask loss terms", positive=True)
    # Knowledge distillation (any method).
    teacher: str = _field("", "distil from this model while training: a train.py checkpoint folder (its best model) "
                          "or a fine-tuned Hugging Face folder of the same task and tokenizer; empty: no distillation")
    distill_temperature: float = _field(2.0, "teacher: softmax temperature of the KD term", positive=True)
    distill_alpha: float = _field(0.5, "teacher: weight of the KD term; the task loss gets 1 - distill_alpha",
                                  fraction=(0.0, 1.0, True))
    distill_hidden_weight: float = _field(0.0, "teacher: weight of the hidden-state term (each block's output "
                                          "against its teacher block's, through a learned map when the widths "
                                          "differ); 0: logits only", non_negative=True)
    # Tracking.
    wandb: bool = _field(False, "log to Weights & Biases in project WANDB_PROJECT (default gated-bert) and entity "
                         "WANDB_ENTITY, grouped with the runs that differ only by seed (needs the wandb package; "
                         "WANDB_MODE=offline works "
                         "without network)")
    name: str = _field("", "run name for tracking and metadata (empty: {method}_{task}_{timestamp})")
    tensorboard: str = _field("", "write TensorBoard logs under this folder, one subfolder per run name (Keras' "
                              "TensorBoard callback: every epoch's losses, dev metrics, sparsity, MACs kept, "
                              "temperatures and loss terms); empty: none")
    # Outputs.
    output_dir: str = _field(".", "root for results_*/, checkpoints_*/ and experiment_logs/")
    progress_file: str = _field("", "keep a one-line progress file here (percent epoch epochs metric value "
                                "status), as run_experiments.sh reads; empty: none")

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            _check_type(f.name, getattr(self, f.name), hints[f.name])
        self.sparsity_steps = tuple(float(step) for step in self.sparsity_steps)
        try:
            self.learn_masks = expand_unit_kinds(self.learn_masks)
        except ValueError as error:
            raise ConfigError(f"learn_masks: {error}") from None
        _check_rules(self)
        self.enable_pruning = _enable_pruning(self.enable_pruning, self.pruning_method)
        for name, value in PRESETS[self.model_size].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.max_len > MAX_POSITIONS and not self.init_from:
            raise ConfigError(f"max_len={self.max_len} exceeds {MAX_POSITIONS}, the longest position table a model "
                              "trained here gets (attention's memory grows with its square; BERT's is 512); set "
                              f"--max_len {MAX_POSITIONS} or less")
        if self.d_model % self.num_heads:
            raise ConfigError(
                f"num_heads must divide d_model, got num_heads={self.num_heads}, "
                f"d_model={self.d_model}; change one of them (--num_heads / --d_model)"
            )
        _check_pruning(self)

    def task_spec(self):
        """The `TaskSpec` of the run's task: a GLUE task, or the custom task of the config's files and labels."""
        if self.task != CUSTOM:
            return TASKS[self.task]
        return custom_task(self.train_file, self.validation_file, self.text_column, self.label_column,
                           self.label_names, self.text_pair_column)

    @property
    def method(self):
        """The run's method name: the pruning method, or `baseline` without pruning."""
        return self.pruning_method if self.enable_pruning else "baseline"

    def to_dict(self):
        """Field values as JSON types (lists for tuples)."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in dataclasses.asdict(self).items()}

    def save(self, path):
        """Write the config as JSON (atomically: a crash leaves no partial file)."""
        write_json_atomic(path, self.to_dict())

    @classmethod
    def from_dict(cls, values, source="config"):
        """Build from a mapping of field values, rejecting unknown keys."""
        _reject_unknown(values, source)
        return cls(**values)

    @classmethod
    def load(cls, path):
        """Load a config written by `save` (or any JSON of field values)."""
        return cls.from_dict(_read_json(path), source=str(path))


def _field_names():
    return [f.name for f in dataclasses.fields(GatedBertConfig)]


def _reject_unknown(values, source):
    for key in values:
        if key not in _field_names():
            close = difflib.get_close_matches(key, _field_names(), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown config key '{key}' in {source}{hint}")


def _base_types(type_):
    """The non-None member types of a (possibly optional) annotation."""
    if typing.get_origin(type_) in (typing.Union, types.UnionType):
        return tuple(t for t in typing.get_args(type_) if t is not type(None))
    return (type_,)


def _allows_none(type_):
    return type(None) in typing.get_args(type_)


def _is_number(value):
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_type(name, value, type_):
    if value is None and _allows_none(type_):
        return
    (base,) = _base_types(type_)
    if typing.get_origin(base) is tuple:
        item_type = typing.get_args(base)[0]
        is_item = _is_number if item_type is float else lambda item: isinstance(item, item_type)
        if not isinstance(value, list | tuple) or not all(is_item(item) for item in value):
            kind = "numbers" if item_type is float else "strings"
            raise ConfigError(f"{name} must be a list of {kind}, got {value!r}")
        return
    ok = isinstance(value, base) and not (base is int and isinstance(value, bool))
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        raise ConfigError(f"{name} must be {base.__name__}, got {value!r} ({type(value).__name__})")


def _check_types(values, source):
    """Each value of its field's type, checked as the file is read: the folders a file names (`teacher`,
    `init_from`, the custom task's files) are looked at before the config is built."""
    hints = typing.get_type_hints(GatedBertConfig)
    for name, value in values.items():
        try:
            _check_type(name, value, hints[name])
        except ConfigError as error:
            raise ConfigError(f"{error} in {source}") from None


def _parse_string(name, raw, type_, source):
    """Convert a string from the environment or the command line to the field's type."""
    text = raw.strip()
    if _allows_none(type_) and text.lower() in {"", "none", "null"}:
        return None
    (base,) = _base_types(type_)
    try:
        if typing.get_origin(base) is tuple:
            item_type = typing.get_args(base)[0]
            return tuple(item_type(item) for item in text.replace(",", " ").split())
        if base is bool:
            if text.lower() in TRUE | FALSE:
                return text.lower() in TRUE
            raise ValueError
        return base(text)
    except ValueError:
        raise ConfigError(f"{source} gives {name}={raw!r}, which is not a valid {base.__name__}") from None


def _check_rules(config):
    for f in dataclasses.fields(config):
        value, rules = getattr(config, f.name), f.metadata
        if value is None or isinstance(value, tuple):
            continue
        if "choices" in rules and value not in rules["choices"]:
            allowed = ", ".join(str(c) for c in rules["choices"])
            raise ConfigError(f"unknown {f.name} {value!r}; choose one of: {allowed}")
        if rules.get("positive") and value <= 0:
            raise ConfigError(f"{f.name} must be positive, got {f.name}={value}")
        if rules.get("non_negative") and value < 0:
            raise ConfigError(f"{f.name} must be >= 0, got {f.name}={value}")
        if "fraction" in rules:
            low, high, closed = rules["fraction"]
            if not (low <= value <= high if closed else low <= value < high):
                bracket = "]" if closed else ")"
                raise ConfigError(f"{f.name} must be in [{low}, {high}{bracket}, got {f.name}={value}")


def _check_pruning(config):
    """Rules that tie the pruning fields together."""
    if config.start_sparsity > config.end_sparsity:
        raise ConfigError(f"start_sparsity must not exceed end_sparsity, got start_sparsity={config.start_sparsity}"
                          f", end_sparsity={config.end_sparsity}")
    bad = [step for step in config.sparsity_steps if not 0 <= step <= 100]
    if bad or list(config.sparsity_steps) != sorted(config.sparsity_steps):
        raise ConfigError(f"sparsity_steps must be non-decreasing percentages in [0, 100], "
                          f"got {list(config.sparsity_steps)}")
    if config.target_sparsity is not None and config.method not in ("gumbel", "soft_movement"):
        raise ConfigError("target_sparsity is used by learned masks only; add --pruning_method gumbel or "
                          "soft_movement, or drop --target_sparsity (magnitude, movement and spt use end_sparsity)")
    gumbel_only = {"freeze": config.freeze, "target_measure": config.target_measure != "units"}
    for name, is_set in gumbel_only.items():
        if is_set and config.method != "gumbel":
            raise ConfigError(f"{name} is used by learned masks only (gumbel); add --pruning_method gumbel, or "
                              f"drop --{name}")
    if config.method == "gumbel" and not config.learn_masks:
        raise ConfigError("pruning_method gumbel learns masks of the learn_masks kinds, but learn_masks is empty; "
                          "set --learn_masks to head, neuron, ffn_out (several) or all")
    if config.target_measure == "macs":
        _check_mac_target(config)
    _check_granularity(config)
    if config.distill_hidden_weight and not config.teacher:
        raise ConfigError(f"distill_hidden_weight={config.distill_hidden_weight} needs a model to distil from; add "
                          "--teacher DIR or drop --distill_hidden_weight")
    if config.devices and config.strategy != "mirrored":
        raise ConfigError(f"devices {' '.join(config.devices)} are for --strategy mirrored (now {config.strategy}); "
                          "add --strategy mirrored or drop --devices")
    last = min(config.pruning_end_epoch, config.epochs)
    if config.method in SCHEDULED_METHODS and config.pruning_start_epoch >= last:
        raise ConfigError(
            f"pruning_start_epoch={config.pruning_start_epoch} leaves no epoch to prune in: it must be below "
            f"pruning_end_epoch={config.pruning_end_epoch} and epochs={config.epochs}; lower --pruning_start_epoch "
            "or raise --epochs"
        )


def _check_granularity(config):
    """Units are pruned by the scheduled methods, ranked globally, to a MAC fraction that those kinds can reach."""
    if config.pruning_granularity == "weight":
        return
    if config.method not in GRANULAR_METHODS:
        raise ConfigError(f"pruning_granularity {config.pruning_granularity} is for "
                          f"{', '.join(GRANULAR_METHODS)}, not {config.method}; drop --pruning_granularity")
    if config.pruning_scope != "global":
        raise ConfigError(f"pruning_granularity {config.pruning_granularity} ranks heads and neurons across all "
                          "blocks; drop --pruning_scope layer")
    reachable = unit_mac_share(config, GRANULARITIES[config.pruning_granularity])
    if config.method == "soft_movement" and (config.target_sparsity or 0.0) > reachable:
        raise ConfigError(f"target_sparsity={config.target_sparsity} asks for more than the "
                          f"{config.pruning_granularity} units hold: at most {reachable:.4f} of the blocks' MACs can "
                          "go; lower --target_sparsity or use --pruning_granularity both")
    if config.method in SCHEDULED_METHODS and config.end_sparsity > reachable:
        raise ConfigError(f"end_sparsity={config.end_sparsity} asks for more than the "
                          f"{config.pruning_granularity} units hold: at most {reachable:.4f} of the blocks' MACs can "
                          "go; lower --end_sparsity or use --pruning_granularity both")


def _check_mac_target(config):
    """A MAC target needs a target, head or neuron masks only, and no more MACs than those kinds hold."""
    if config.target_sparsity is None:
        raise ConfigError("target_measure macs reads target_sparsity as a fraction of the blocks' MACs, but "
                          "target_sparsity is not set; add --target_sparsity (e.g. 0.5)")
    if "ffn_out" in config.learn_masks:
        raise ConfigError("target_measure macs counts the MACs of heads and neurons, and ffn_out masks remove none; "
                          "drop ffn_out from --learn_masks or use --target_measure units")
    reachable = unit_mac_share(config, config.learn_masks)
    if config.target_sparsity > reachable:
        raise ConfigError(f"target_sparsity={config.target_sparsity} asks for more than the learned "
                          f"{' and '.join(config.learn_masks)} masks hold: at most {reachable:.4f} of the blocks' "
                          "MACs can go; lower --target_sparsity or learn head and neuron masks")


def unit_mac_share(config, kinds):
    """The share of a model's block MACs (at `max_len` tokens) held by the unit `kinds`."""
    from efficiency.mac import mac_shape, unit_macs

    costs = unit_macs(**mac_shape(config))
    macs = {"head": config.num_heads * costs["head"], "neuron": config.dff * costs["neuron"]}
    return sum(macs[kind] for kind in kinds) / sum(macs.values())


def _enable_pruning(given, method):
    """`enable_pruning` follows from the method; a given value must agree with it."""
    derived = method != "none"
    if given is None or given == derived:
        return derived
    if given:
        raise ConfigError("enable_pruning is true but pruning_method is 'none'; choose --pruning_method "
                          "magnitude, movement, spt or gumbel (the method alone enables pruning)")
    raise ConfigError(f"enable_pruning is false but pruning_method is {method!r}; drop enable_pruning (the method "
                      "alone enables pruning) or set --pruning_method none")


def _read_json(path):
    return read_json_object(path, "config file", ConfigError)


def env_name(field_name):
    """The environment variable that sets a field."""
    return ENV_NAMES.get(field_name, field_name.upper())


def env_overrides(environ):
    """Field values named by environment variables (upper-case field names and aliases)."""
    hints = typing.get_type_hints(GatedBertConfig)
    values = {}
    keys = [(env_name(name), name) for name in _field_names()] + list(ENV_ALIASES.items())
    for env_key, name in keys:
        if env_key in environ:
            values[name] = _parse_string(name, environ[env_key], hints[name], f"environment variable {env_key}")
    return values


def build_parser():
    """The command-line parser: one `--field` flag per config field, plus `--config`."""
    parser = argparse.ArgumentParser(
        description="Train a gated BERT encoder on a GLUE task. Values are layered: defaults < "
        "model_size preset < --config JSON < environment variables (upper-case names) < flags.",
        argument_default=argparse.SUPPRESS,
        allow_abbrev=False,
    )
    parser.add_argument("--config", metavar="JSON", help="JSON file of config values")
    hints = typing.get_type_hints(GatedBertConfig)
    for f in dataclasses.fields(GatedBertConfig):
        default = "the model_size preset" if f.name in SHAPE_FIELDS else f.default
        if isinstance(default, tuple):
            default = " ".join(f"{value:g}" if isinstance(value, float) else value for value in default)
        # A boolean flag alone means true, as in every driver (gated_bert.cli); it also takes a value.
        boolean = {"nargs": "?", "const": "true"} if bool in _base_types(hints[f.name]) else {}
        parser.add_argument(
            f"--{f.name}", metavar="BOOL" if boolean else f.name.upper(), **boolean,
            help=f"{f.metadata['help']} [default: {default}; env {env_name(f.name)}]",
        )
    return parser


def resolve_config(argv=(), environ=None):
    """Resolve the final config from a JSON file, the environment and CLI flags.

    Raises `ConfigError` for any unknown key, bad value or missing data;
    `argparse` exits for unknown flags.
    """
    return config_from_flags(vars(build_parser().parse_args(list(argv))), environ)


def config_from_flags(flags, environ=None):
    """The final config from parsed flags (`build_parser`'s, as strings) over a `--config` file and the
    environment; checks the data folder and tracking as `resolve_config` does."""
    environ = os.environ if environ is None else environ
    flags = dict(flags)
    file_values = {}
    if "config" in flags:
        path = flags.pop("config")
        file_values = _read_json(path)
        _reject_unknown(file_values, path)
        _check_types(file_values, path)
    hints = typing.get_type_hints(GatedBertConfig)
    cli_values = {name: _parse_string(name, raw, hints[name], f"flag --{name}") for name, raw in flags.items()}
    values = with_teacher(with_custom_task(with_pretrained(_layered([file_values, env_overrides(environ),
                                                                     cli_values]))))
    config = GatedBertConfig(**values)
    check_data_dir(config)
    check_tracking(config)
    return config


def _layered(layers):
    """Field values of `layers`, later layers winning. A layer that sets `pruning_method` also decides
    `enable_pruning` (derived from it), so a saved config's `enable_pruning` never contradicts a method chosen
    over it; the two are checked against each other only when one layer gives both."""
    values = {}
    for layer in layers:
        if "pruning_method" in layer and "enable_pruning" not in layer:
            values.pop("enable_pruning", None)
        values.update(layer)
    return values


def with_teacher(values):
    """`values` with the `teacher` folder made absolute (jobs may start elsewhere); a missing folder is an error."""
    folder = values.get("teacher")
    if not folder:
        return values
    if not os.path.isdir(folder):
        raise ConfigError(f"teacher {folder} is not a folder; give a train.py checkpoint folder "
                          "(checkpoints_<method>_<task>/) or a fine-tuned Hugging Face folder")
    return {**values, "teacher": os.path.abspath(folder)}


def with_pretrained(values):
    """`values` completed from the `init_from` checkpoint, when one is set: its shape and vocabulary (a value
    that contradicts them is an error), its tokenizer and the fine-tuning recipe, where no layer chose them."""
    folder = values.get("init_from")
    if not folder:
        return values
    if is_checkpoint_folder(folder):
        return with_checkpoint(values, folder)
    try:
        architecture = read_architecture(folder)
    except PretrainedError as error:
        raise ConfigError(f"init_from: {error}") from None
    clash = {key: values[key] for key, value in architecture.shape().items()
             if values.get(key) is not None and values[key] != value}
    if clash:
        raise ConfigError(f"init_from {folder} fixes the model's shape, but {clash} contradicts its "
                          f"{ {key: architecture.shape()[key] for key in clash} }; drop those settings")
    folder = os.path.abspath(folder)  # the run's jobs, and later prune.py, may start elsewhere
    values = {**FINETUNE_RECIPE, "max_len": min(DEFAULT_MAX_LEN, architecture.max_tokens), **values,
              **architecture.shape(), "init_from": folder}
    if values["max_len"] > architecture.max_tokens:
        raise ConfigError(f"max_len={values['max_len']} exceeds the {architecture.max_tokens} positions of "
                          f"init_from {folder}; set --max_len {architecture.max_tokens} or less")
    if "tokenizer" not in values and has_tokenizer(folder):
        values["tokenizer"] = folder
    return values


# What a train.py checkpoint given as `init_from` brings besides its shape, where no layer sets them: its task (its
# classifier was trained for it) and where its data and tokenizer are.
CHECKPOINT_CARRIES = ("task", "train_file", "validation_file", "text_column", "text_pair_column", "label_column",
                      "task_type", "label_names", "data_dir", "tokenizer")


def is_checkpoint_folder(folder):
    """Whether `folder` is a train.py checkpoint folder (a `config_*.json` beside its models) and not a Hugging
    Face one (`is_pretrained_folder`; some, such as sentence-transformers', hold `config_*.json` files too)."""
    import glob

    return (os.path.isdir(folder) and not is_pretrained_folder(folder)
            and bool(glob.glob(os.path.join(folder, "config_*.json"))))


def with_checkpoint(values, folder):
    """`values` completed from a train.py checkpoint folder given as `init_from` (a pruned, composed or
    fine-tuned model, trained on with its masks and gates fixed): its shape, vocabulary, task and data, under the
    fine-tuning recipe."""
    from experiment.checkpoints import CheckpointError, find_checkpoint

    try:
        _, config_path = find_checkpoint(folder, "best")
    except CheckpointError as error:
        raise ConfigError(f"init_from: {error}") from None
    saved = read_json_object(config_path, "checkpoint config", ConfigError)
    fixed = {**{key: saved.get(key) for key in ("vocab_size", *SHAPE_FIELDS)}, "pooling": saved.get("pooling", "cls")}
    clash = {key: values[key] for key in fixed if values.get(key) is not None and values[key] != fixed[key]}
    if clash:
        raise ConfigError(f"init_from {folder} fixes the model's shape and head, but {clash} contradicts its "
                          f"{ {key: fixed[key] for key in clash} }; drop those settings")
    if values.get("pruning_method", "none") != "none":
        raise ConfigError(f"init_from {folder} is a train.py checkpoint, which trains on with its masks and gates "
                          f"fixed; pruning_method must be none, got {values['pruning_method']!r}")
    if values.get("task") and values["task"] != saved.get("task"):
        raise ConfigError(f"--task {values['task']} does not match the task of init_from {folder} "
                          f"({saved.get('task')}); its classifier was trained for that task")
    carried = {key: saved[key] for key in CHECKPOINT_CARRIES if saved.get(key) not in (None, "")}
    values = {**FINETUNE_RECIPE, "max_len": saved.get("max_len", DEFAULT_MAX_LEN), **carried, **values, **fixed,
              "init_from": os.path.abspath(folder)}
    if values["max_len"] > saved.get("max_len", DEFAULT_MAX_LEN):
        raise ConfigError(f"max_len={values['max_len']} exceeds the max_len {saved.get('max_len')} that init_from "
                          f"{folder} was trained with; set --max_len {saved.get('max_len')} or less")
    return values


def with_custom_task(values):
    """`values` with a custom task completed: `train_file` makes the task `custom`, and the label names are read
    from the training file unless a layer gives them (a checkpoint's config does)."""
    if not values.get("train_file"):
        if values.get("task") == CUSTOM:
            raise ConfigError("task custom reads your own files: add --train_file and --validation_file")
        return values
    task = values.get("task", CUSTOM)
    if task != CUSTOM:
        raise ConfigError(f"--train_file defines a custom task, but task is {task!r}; drop --task (or use "
                          "--task custom)")
    for name in ("train_file", "validation_file"):
        if not values.get(name) or not os.path.isfile(values[name]):
            raise ConfigError(f"{name} {values.get(name)!r} is not a file; a custom task needs --train_file and "
                              "--validation_file (.csv, .tsv or .jsonl)")
    values = {**values, "task": CUSTOM, "train_file": os.path.abspath(values["train_file"]),
              "validation_file": os.path.abspath(values["validation_file"])}
    columns = [values.get("text_column", "text"), values.get("text_pair_column"), values.get("label_column", "label")]
    try:
        for path in (values["train_file"], values["validation_file"]):
            read_columns(path, [name for name in columns if name], limit=1)
        if values.get("label_names") is None and values.get("task_type", "auto") != "regression":
            values["label_names"] = infer_labels(values["train_file"], columns[-1], values.get("task_type", "auto"))
    except GlueFormatError as error:
        raise ConfigError(str(error)) from None
    return values


def check_tracking(config):
    """Stop early when `wandb` or `tensorboard` is asked for but its package is missing."""
    if config.wandb and importlib.util.find_spec("wandb") is None:
        raise ConfigError("--wandb true needs the wandb package, which is not installed: pip install wandb "
                          "(or pip install -e '.[tracking]'), or drop --wandb; set WANDB_MODE=offline to log "
                          "without network")
    if config.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(f"--tensorboard {config.tensorboard} needs the tensorboard package, which is not "
                          "installed: pip install tensorboard (or pip install -e '.[tracking]'), or drop --tensorboard")


def check_data_dir(config):
    """Stop early when `data_dir` is set but lacks the task's TSV files."""
    if config.task == CUSTOM:
        missing = [path for path in (config.train_file, config.validation_file) if not os.path.isfile(path)]
        if missing:
            raise ConfigError(f"the custom task's files {missing} are not there; pass --train_file and "
                              "--validation_file again (or move the files back)")
        return
    if not config.data_dir:
        return
    missing = [path for path in TASKS[config.task].local_files(config.data_dir) if not os.path.isfile(path)]
    if missing:
        raise ConfigError(
            f"data_dir {config.data_dir!r} lacks the {config.task} files {missing}; point GLUE_DIR or "
            f"--data_dir at a GLUE directory holding {TASKS[config.task].dir_name}/"
        )
