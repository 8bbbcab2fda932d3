"""Hugging Face BERT-family checkpoints in and out: `load_pretrained` and `save_pretrained`.

One weight-name table per architecture (`_BODY`, `_HEADS`) maps our variable paths to the checkpoint's tensor
names. Weights are read with `safetensors`' numpy API: no PyTorch. Hugging Face linear weights are
`(out, in)`; our kernels are `(in, out)`, so every `.weight` of a linear layer is transposed.
"""

import json
import logging
import os

import numpy as np

from gated.compact import folded_weights
from gated.encoder import EncoderBlock, EncoderEmbeddings, build_gated_encoder, pooling_of
from gated.masks import collect_gated_layers, learned_gates
from gated_bert.files import staged_folder
from gated_bert.pretrained_folders import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    PretrainedError,
    read_architecture,
    weight_files,
)

log = logging.getLogger(__name__)

# The prefix of the encoder's tensors in a task model (BertForSequenceClassification: `bert.`); a bare model
# (BertModel) has none. Head tensors (`classifier.*`, `pre_classifier.*`) never carry it.
_PREFIXES = {"bert": "bert.", "roberta": "roberta.", "distilbert": "distilbert."}
# Tensors a checkpoint may hold that a sequence classifier does not use: pre-training heads, buffers.
_UNUSED = {"bert": ("cls.", "embeddings.position_ids"),
           "roberta": ("lm_head.", "pooler.", "embeddings.position_ids"),
           "distilbert": ("vocab_transform.", "vocab_layer_norm.", "vocab_projector.", "embeddings.position_ids")}

_BERT_LAYER = {
    "attention/query": "attention.self.query", "attention/key": "attention.self.key",
    "attention/value": "attention.self.value", "attention/output": "attention.output.dense",
    "attention_norm": "attention.output.LayerNorm", "ffn/intermediate": "intermediate.dense",
    "ffn/output": "output.dense", "ffn_norm": "output.LayerNorm",
}
_DISTILBERT_LAYER = {
    "attention/query": "attention.q_lin", "attention/key": "attention.k_lin", "attention/value": "attention.v_lin",
    "attention/output": "attention.out_lin", "attention_norm": "sa_layer_norm", "ffn/intermediate": "ffn.lin1",
    "ffn/output": "ffn.lin2", "ffn_norm": "output_layer_norm",
}
_EMBEDDINGS = {"embeddings/token": "embeddings.word_embeddings",
               "embeddings/position": "embeddings.position_embeddings",
               "embeddings/segment": "embeddings.token_type_embeddings", "embeddings/norm": "embeddings.LayerNorm"}
_LAYERS = {"bert": ("encoder.layer", _BERT_LAYER), "roberta": ("encoder.layer", _BERT_LAYER),
           "distilbert": ("transformer.layer", _DISTILBERT_LAYER)}
_HEADS = {"bert": {"pooler": "pooler.dense", "classifier": "classifier"},
          "roberta": {"pooler": "classifier.dense", "classifier": "classifier.out_proj"},
          "distilbert": {"pooler": "pre_classifier", "classifier": "classifier"}}
_POOLER_OF = {"bert": "tanh", "roberta": "tanh", "distilbert": "relu"}
# Our variable name -> the Hugging Face parameter name, per kind of layer.
_DENSE = {"kernel": "weight", "bias": "bias"}
_NORM = {"gamma": "weight", "beta": "bias"}
_EMBEDDING = {"embeddings": "weight"}


def _layer_names(model_type, num_layers):
    """`{our layer path: Hugging Face module name}` of the encoder body (embeddings and blocks)."""
    stem, table = _LAYERS[model_type]
    names = {ours: theirs for ours, theirs in _EMBEDDINGS.items()
             if model_type != "distilbert" or ours != "embeddings/segment"}
    for index in range(num_layers):
        names.update({f"block_{index}/{ours}": f"{stem}.{index}.{theirs}" for ours, theirs in table.items()})
    return names


def _tensor_names(layer_names):
    """`{our variable path: (tensor name, transpose)}` for the layers in `layer_names`."""
    names = {}
    for ours, theirs in layer_names.items():
        suffixes = _EMBEDDING if ours.startswith("embeddings/") and ours != "embeddings/norm" else \
            _NORM if ours.endswith("norm") else _DENSE
        for variable, parameter in suffixes.items():
            names[f"{ours}/{variable}"] = (f"{theirs}.{parameter}", variable == "kernel")
    return names


def _read_tensors(folder):
    """Every tensor of the folder's safetensors files as float32 numpy, LayerNorm `gamma/beta` renamed to
    `weight/bias`."""
    from safetensors.numpy import load_file

    tensors = {}
    for path in weight_files(folder):
        try:
            loaded = load_file(path)
        except Exception as error:  # safetensors raises its own error types for a damaged header
            raise PretrainedError(f"{path} is not a readable safetensors file: {error}") from None
        for name, value in loaded.items():
            name = name.removesuffix(".gamma") + ".weight" if name.endswith("LayerNorm.gamma") else name
            name = name.removesuffix(".beta") + ".bias" if name.endswith("LayerNorm.beta") else name
            tensors[name] = value.astype(np.float32)
    return tensors


def _strip_prefix(tensors, model_type):
    prefix = _PREFIXES[model_type]
    return {name.removeprefix(prefix): value for name, value in tensors.items()}


def _check_names(tensors, body, folder, model_type):
    """Missing encoder tensors and unknown extra tensors are errors; known unused ones are logged."""
    missing = sorted(name for name, _ in body.values() if name not in tensors)
    if missing:
        raise PretrainedError(f"{folder}: the {model_type} checkpoint lacks {len(missing)} encoder tensors: "
                              f"{missing[:6]}{' ...' if len(missing) > 6 else ''}; is config.json's model_type "
                              "right, and are the weights complete?")
    known = {name for name, _ in body.values()}
    known |= {f"{module}.{parameter}" for module in _HEADS[model_type].values() for parameter in ("weight", "bias")}
    extra = sorted(name for name in tensors if name not in known)
    unused = [name for name in extra if name.startswith(_UNUSED[model_type])]
    unknown = [name for name in extra if name not in unused]
    if unknown:
        raise PretrainedError(f"{folder}: {len(unknown)} tensors fit no {model_type} encoder layer: {unknown[:6]}"
                              f"{' ...' if len(unknown) > 6 else ''}; the checkpoint may be another architecture")
    if unused:
        log.info("%s: not used by a sequence classifier: %d tensors (%s ...)", folder, len(unused), unused[0])


def _head_tensors(tensors, model_type, num_labels, d_model, folder):
    """`({our variable path: value}, classifier loaded?)` for the pooler and classifier tensors that fit (kernels
    transposed to ours); the others are logged and left to their fresh initialisation."""
    found, expected = {}, {"pooler": (d_model, d_model), "classifier": (num_labels, d_model)}
    for ours, module in _HEADS[model_type].items():
        weight, bias = tensors.get(f"{module}.weight"), tensors.get(f"{module}.bias")
        if weight is None or bias is None:
            log.info("%s has no %s (%s.weight): %s initialised fresh", folder, ours, module, ours)
        elif weight.shape != expected[ours]:
            log.info("%s: %s.weight is %s, not %s for num_labels=%d: %s initialised fresh", folder, module,
                     weight.shape, expected[ours], num_labels, ours)
        else:
            found.update({f"{ours}/kernel": weight.T, f"{ours}/bias": bias})
    return found, "classifier/kernel" in found


def load_pretrained(folder, num_labels=None, max_len=None, require_head=False, **overrides):
    """A `GatedModel` holding the weights of the Hugging Face checkpoint in `folder`.

    `folder` holds `config.json` and `model.safetensors` (or a sharded `model.safetensors.index.json`), read
    without PyTorch. `model_type` `bert` (with or without the `bert.` prefix, LayerNorm `weight/bias` or
    `gamma/beta`), `distilbert` and `roberta` are supported. A classification head in the checkpoint is loaded
    when its shape fits `num_labels` (default: the checkpoint's head, else 2); otherwise the head is
    initialised fresh and a log line says so (`require_head=True` makes that an error: a model must have been
    fine-tuned to be scored or pruned). `max_len` is the longest input accepted (default: the position table's
    length). `overrides` go to `build_gated_encoder` (`dropout_rate`, `kernel_masks`, `learn_masks`, `name`,
    `pooling`: with `pooling="mean"` the classifier reads the mean of the token states, as sentence-transformers
    checkpoints were trained to be read, with no pooler between, and starts fresh);
    an override of the checkpoint's architecture is an error. Raises `PretrainedError` naming the file and the
    fix for every input it cannot load.
    """
    architecture = read_architecture(folder)
    options = architecture.encoder_options()
    mean_pooled = overrides.get("pooling", "cls") == "mean"
    if mean_pooled:  # sentence-transformers' head: the classifier reads the mean of the token states directly
        options["pooler"] = None
    clash = {key: value for key, value in overrides.items() if key in options and value != options[key]}
    if clash:
        raise PretrainedError(f"{folder}: {clash} contradicts the checkpoint's architecture "
                              f"({ {key: options[key] for key in clash} }); drop those arguments")
    max_len = architecture.max_tokens if max_len is None else max_len
    if max_len > architecture.max_tokens:
        raise PretrainedError(f"max_len={max_len} exceeds the {architecture.max_tokens} positions of {folder}; "
                              f"use max_len <= {architecture.max_tokens}")
    tensors = _strip_prefix(_read_tensors(folder), architecture.model_type)
    body = _tensor_names(_layer_names(architecture.model_type, architecture.num_layers))
    _check_names(tensors, body, folder, architecture.model_type)
    if num_labels is None:
        head = tensors.get(f"{_HEADS[architecture.model_type]['classifier']}.weight")
        num_labels = 2 if head is None else int(head.shape[0])
    values = {ours: tensors[name].T if transpose else tensors[name] for ours, (name, transpose) in body.items()}
    if mean_pooled:
        heads, has_head = {}, False
        log.info("%s: pooling='mean' reads no [CLS] head: the classifier is initialised fresh", folder)
    else:
        heads, has_head = _head_tensors(tensors, architecture.model_type, num_labels, architecture.d_model, folder)
    if require_head and not has_head:
        raise PretrainedError(f"{folder} has no classification head for {num_labels} labels: it is not fine-tuned "
                              "for this task. Fine-tune it first: train.py --init_from "
                              f"{folder} --task <task>, then pass the checkpoints_<method>_<task>/ folder")
    model = build_gated_encoder(**{"kernel_masks": False, **overrides, **options, "max_len": max_len,
                                   "num_labels": num_labels})
    _assign(model, {**values, **heads}, folder)
    return model


def _assign(model, values, folder):
    variables = {variable.path: variable for variable in model.weights}
    for path, value in values.items():
        variable = variables[path]
        if tuple(variable.shape) != value.shape:
            raise PretrainedError(f"{folder}: tensor for {path} has shape {value.shape}, but the architecture in "
                                  f"config.json needs {tuple(variable.shape)}; config.json and the weights disagree")
        variable.assign(value)


def save_pretrained(model, folder, model_type=None, label_names=None, overwrite=False):
    """Write `model` as a Hugging Face folder (`config.json` + `model.safetensors`) that `load_pretrained` and
    Hugging Face tools read.

    Gates and kernel masks are folded into the weights (a head gate scales its output-projection rows, a neuron
    gate its FFN output row, an output gate its column and bias), so gate-scaled or masked models are written
    as the function they compute; learned Gumbel masks must be baked first (`without_learned_masks`) and
    sliced models, whose blocks differ in shape, cannot be written. `model_type` defaults to what the
    embeddings imply (no segments: distilbert; a position offset: roberta; else bert). The folder is written
    whole or not at all; an existing one is replaced only with `overwrite=True`.
    """
    from safetensors.numpy import save_file

    if os.path.exists(folder) and not overwrite:
        raise FileExistsError(f"{folder} exists; choose another folder or pass overwrite=True")
    if learned_gates(model):
        raise ValueError("the model learns Gumbel masks; bake them into its gates first (gated.without_learned_masks)")
    architecture = _architecture_of(model, model_type)
    body = _tensor_names(_layer_names(architecture["model_type"], architecture["num_hidden_layers"]))
    values = folded_weights(model)
    tensors = {name: np.ascontiguousarray(values[ours].T if transpose else values[ours])
               for ours, (name, transpose) in body.items()}
    prefix = _PREFIXES[architecture["model_type"]]
    tensors = {prefix + name: value for name, value in tensors.items()}
    for ours, module in _HEADS[architecture["model_type"]].items():
        module = prefix + module if module == "pooler.dense" else module  # BertModel's own pooler
        if f"{ours}/kernel" in values:
            tensors[f"{module}.weight"] = np.ascontiguousarray(values[f"{ours}/kernel"].T)
            tensors[f"{module}.bias"] = values[f"{ours}/bias"]
    num_labels = int(values["classifier/bias"].shape[0])
    names = label_names or [f"LABEL_{index}" for index in range(num_labels)]
    config = _hf_config(architecture, names)
    with staged_folder(folder) as tmp:
        save_file(tensors, os.path.join(tmp, WEIGHTS_FILE), metadata={"format": "pt"})
        with open(os.path.join(tmp, CONFIG_FILE), "w", encoding="utf-8") as handle:
            json.dump(config, handle, indent=2)
    return folder


def _architecture_of(model, model_type):
    """The Hugging Face config fields of `model`, read from its layers."""
    embeddings = next(layer for layer in model.layers if isinstance(layer, EncoderEmbeddings))
    blocks = list(collect_gated_layers(model, EncoderBlock).values())
    shapes = {(block.num_heads, block.dff, block.head_dim) for block in blocks}
    if len(shapes) != 1 or next(iter(shapes))[2] is not None:
        raise ValueError("save_pretrained needs every block at the full shape; this model was sliced (blocks of "
                         f"{sorted(shapes)} heads, FFN widths, head widths): save the unsliced model with its gates")
    if model_type is None:
        model_type = "distilbert" if not embeddings.type_vocab_size else \
            "roberta" if embeddings.position_offset else "bert"
    if model_type not in _PREFIXES:
        raise ValueError(f"model_type must be one of {sorted(_PREFIXES)}, got {model_type!r}")
    block = blocks[0]
    if model_type == "distilbert" and embeddings.type_vocab_size:
        raise ValueError("distilbert has no segment embeddings, but this model has; save it as bert")
    if pooling_of(model) == "mean":
        raise ValueError(f"a Hugging Face {model_type} sequence classifier reads the [CLS] row, but this model's "
                         "classifier reads the mean of the token states (pooling='mean'): it has no Hugging Face "
                         "form; fine-tune with pooling='cls' (train.py --pooling cls) to save it")
    pooler = _pooler_activation(model)
    if pooler != _POOLER_OF[model_type]:
        raise ValueError(f"a {model_type} classifier has a {_POOLER_OF[model_type]} dense layer before it, but "
                         f"this model's pooler is {pooler!r}: {model_type} cannot hold it")
    return {"model_type": model_type, "num_hidden_layers": len(blocks), "hidden_size": embeddings.d_model,
            "num_attention_heads": block.num_heads, "intermediate_size": block.dff,
            "vocab_size": embeddings.vocab_size, "max_position_embeddings": embeddings.max_len,
            "type_vocab_size": embeddings.type_vocab_size, "hidden_act": block.hidden_act,
            "layer_norm_eps": block.layer_norm_eps, "pad_token_id": max(embeddings.position_offset - 1, 0)}


def _pooler_activation(model):
    names = {layer.name: layer for layer in model.layers}
    pooler = names.get("pooler")
    return None if pooler is None else pooler.activation.__name__


def _hf_config(architecture, label_names):
    """A `config.json` for `architecture` (our field names translated for distilbert)."""
    model_type = architecture["model_type"]
    classes = {"bert": "BertForSequenceClassification", "roberta": "RobertaForSequenceClassification",
               "distilbert": "DistilBertForSequenceClassification"}
    labels = {"id2label": {str(i): name for i, name in enumerate(label_names)},
              "label2id": {name: i for i, name in enumerate(label_names)}, "architectures": [classes[model_type]]}
    if model_type == "distilbert":
        return {"model_type": model_type, "n_layers": architecture["num_hidden_layers"],
                "dim": architecture["hidden_size"], "n_heads": architecture["num_attention_heads"],
                "hidden_dim": architecture["intermediate_size"], "vocab_size": architecture["vocab_size"],
                "max_position_embeddings": architecture["max_position_embeddings"],
                "activation": architecture["hidden_act"], **labels}
    return {**architecture, "position_embedding_type": "absolute", **labels}
