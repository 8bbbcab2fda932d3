"""What a Hugging Face model folder holds, read from its `config.json` and file names alone (no weights, no
TensorFlow): the architecture our encoder must take to load it, its weight files and their fingerprint.

Supported `model_type`s: `bert` (and every BERT-architecture model: MiniLM, BGE, E5, ...), `distilbert` and
`roberta`. `gated.load_pretrained` reads the weights.
"""

import json
import os
from dataclasses import dataclass

from gated_bert.files import sha256_of

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
TORCH_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")
SUPPORTED_TYPES = ("bert", "distilbert", "roberta")


class PretrainedError(ValueError):
    """A Hugging Face folder cannot be loaded; the message names the file and what to do."""


@dataclass(frozen=True)
class Architecture:
    """The encoder shape and options of a Hugging Face checkpoint, as `build_gated_encoder` arguments.

    Args:
        model_type: `bert`, `distilbert` or `roberta`.
        num_layers, d_model, num_heads, dff, vocab_size: the shape.
        num_positions: rows of the position table.
        position_offset: row of the first token's position (RoBERTa: `pad_token_id + 1`).
        type_vocab_size: segment ids (0: no segment embeddings).
        hidden_act: the FFN activation's Hugging Face name.
        layer_norm_eps: epsilon of every LayerNorm.
        pooler: activation of the dense layer between `[CLS]` and the classifier.
        label_names: the config's `id2label` in id order (None when it has none).
        problem_type: the config's `problem_type` (None when unset).
    """

    model_type: str
    num_layers: int
    d_model: int
    num_heads: int
    dff: int
    vocab_size: int
    num_positions: int
    position_offset: int
    type_vocab_size: int
    hidden_act: str
    layer_norm_eps: float
    pooler: str
    label_names: tuple | None = None
    problem_type: str | None = None

    @property
    def max_tokens(self):
        """The longest sequence the position table holds."""
        return self.num_positions - self.position_offset

    def encoder_options(self):
        """The `build_gated_encoder` keyword arguments this architecture fixes."""
        return {"vocab_size": self.vocab_size, "num_layers": self.num_layers, "d_model": self.d_model,
                "num_heads": self.num_heads, "dff": self.dff, "num_positions": self.num_positions,
                "position_offset": self.position_offset, "type_vocab_size": self.type_vocab_size,
                "hidden_act": self.hidden_act, "layer_norm_eps": self.layer_norm_eps, "pooler": self.pooler}

    def shape(self):
        """The four shape fields of a run config plus `vocab_size`."""
        return {"num_layers": self.num_layers, "d_model": self.d_model, "num_heads": self.num_heads,
                "dff": self.dff, "vocab_size": self.vocab_size}


def is_pretrained_folder(folder):
    """Whether `folder` looks like a Hugging Face model folder (a `config.json` with a `model_type`)."""
    path = os.path.join(folder, CONFIG_FILE)
    if not os.path.isfile(path):
        return False
    try:
        with open(path, encoding="utf-8") as handle:
            return "model_type" in json.load(handle)
    except (OSError, ValueError):
        return False


def read_config(folder):
    """The folder's `config.json` as a dict (`PretrainedError` when missing or not a JSON object)."""
    path = os.path.join(folder, CONFIG_FILE)
    if not os.path.isfile(path):
        raise PretrainedError(f"{folder} has no {CONFIG_FILE}: not a Hugging Face model folder (it needs "
                              f"{CONFIG_FILE} and {WEIGHTS_FILE})")
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except ValueError as error:
        raise PretrainedError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(config, dict):
        raise PretrainedError(f"{path} must hold a JSON object, got {type(config).__name__}")
    return config


def _required(config, key, path, alias=None):
    if key in config:
        return config[key]
    if alias and alias in config:
        return config[alias]
    raise PretrainedError(f"{path} lacks {key!r}, which a {config.get('model_type')} config must have")


def read_architecture(folder):
    """The `Architecture` described by `folder/config.json`."""
    config = read_config(folder)
    path = os.path.join(folder, CONFIG_FILE)
    model_type = config.get("model_type")
    if model_type not in SUPPORTED_TYPES:
        raise PretrainedError(f"{path}: model_type {model_type!r} is not supported; supported: "
                              f"{', '.join(SUPPORTED_TYPES)} (BERT-architecture models such as MiniLM, BGE and "
                              "E5 declare bert)")
    labels = config.get("id2label")
    label_names = tuple(labels[key] for key in sorted(labels, key=int)) if isinstance(labels, dict) else None
    common = {"model_type": model_type, "vocab_size": _required(config, "vocab_size", path),
              "num_positions": _required(config, "max_position_embeddings", path), "label_names": label_names,
              "problem_type": config.get("problem_type")}
    if model_type == "distilbert":
        return Architecture(num_layers=_required(config, "n_layers", path), d_model=_required(config, "dim", path),
                            num_heads=_required(config, "n_heads", path),
                            dff=_required(config, "hidden_dim", path), position_offset=0, type_vocab_size=0,
                            hidden_act=config.get("activation", "gelu"), layer_norm_eps=1e-12, pooler="relu",
                            **common)
    offset = config.get("pad_token_id", 1) + 1 if model_type == "roberta" else 0
    default_eps = 1e-5 if model_type == "roberta" else 1e-12
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise PretrainedError(f"{path}: position_embedding_type {config['position_embedding_type']!r} is not "
                              "supported; only absolute positions are")
    return Architecture(num_layers=_required(config, "num_hidden_layers", path),
                        d_model=_required(config, "hidden_size", path),
                        num_heads=_required(config, "num_attention_heads", path),
                        dff=_required(config, "intermediate_size", path), position_offset=offset,
                        type_vocab_size=config.get("type_vocab_size", 2),
                        hidden_act=config.get("hidden_act", "gelu"),
                        layer_norm_eps=config.get("layer_norm_eps", default_eps), pooler="tanh", **common)


def weight_files(folder):
    """The folder's safetensors files, in shard order; `PretrainedError` says how to convert a PyTorch-only
    folder."""
    single = os.path.join(folder, WEIGHTS_FILE)
    if os.path.isfile(single):
        return [single]
    index = os.path.join(folder, WEIGHTS_INDEX)
    if os.path.isfile(index):
        try:
            with open(index, encoding="utf-8") as handle:
                shards = sorted(set(json.load(handle)["weight_map"].values()))
        except (ValueError, KeyError, AttributeError) as error:
            raise PretrainedError(f"{index} is not a safetensors index (a JSON object with weight_map): "
                                  f"{error}") from None
        missing = [name for name in shards if not os.path.isfile(os.path.join(folder, name))]
        if missing:
            raise PretrainedError(f"{index} names shards that are not in {folder}: {missing}")
        return [os.path.join(folder, name) for name in shards]
    torch = [name for name in TORCH_FILES if os.path.isfile(os.path.join(folder, name))]
    if torch:
        raise PretrainedError(
            f"{folder} holds only PyTorch weights ({torch[0]}), which we read without PyTorch only as "
            f"safetensors: convert it on any machine that has transformers, e.g. python -c \"from transformers "
            f"import AutoModel; AutoModel.from_pretrained('{folder}').save_pretrained('{folder}', "
            "safe_serialization=True)\"")
    raise PretrainedError(f"{folder} has {CONFIG_FILE} but no {WEIGHTS_FILE} (or {WEIGHTS_INDEX}); copy the "
                          "model's weights there")


def weights_sha256(folder):
    """SHA-256 of the folder's weight files, read in shard order (one file: that file's own digest)."""
    return sha256_of(weight_files(folder))


# The classification head's output weight, per model type (`(num_labels, d_model)`; never under the prefix).
CLASSIFIER_WEIGHT = {"bert": "classifier.weight", "roberta": "classifier.out_proj.weight",
                     "distilbert": "classifier.weight"}


def classifier_labels(folder):
    """How many labels the folder's classification head has (None without one), read from the safetensors
    headers alone."""
    from safetensors import safe_open

    name = CLASSIFIER_WEIGHT[read_architecture(folder).model_type]
    for path in weight_files(folder):
        with safe_open(path, framework="numpy") as handle:
            if name in handle.keys():
                return int(handle.get_slice(name).get_shape()[0])
    return None


def has_tokenizer(folder):
    """Whether `folder` holds tokenizer files that `AutoTokenizer` can load."""
    return any(os.path.isfile(os.path.join(folder, name)) for name in ("tokenizer.json", "vocab.txt", "vocab.json"))
