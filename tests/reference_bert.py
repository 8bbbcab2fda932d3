"""An independent numpy forward pass of the Hugging Face BERT family, and tiny random checkpoints in each
layout: the references `gated.load_pretrained` is tested against (no project code here)."""

import json
import math

import numpy as np
from safetensors.numpy import save_file

TINY = {"layers": 2, "hidden": 16, "heads": 4, "ffn": 32, "vocab": 40, "positions": 24}


def _layer_norm(x, weight, bias, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def _gelu(x):
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def _gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


ACTIVATIONS = {"gelu": _gelu, "gelu_new": _gelu_tanh, "relu": lambda x: np.maximum(x, 0.0)}


def _linear(tensors, name, x):
    return x @ tensors[f"{name}.weight"].astype(np.float64).T + tensors[f"{name}.bias"]


def _attention(tensors, names, x, mask, heads):
    batch, length, width = x.shape
    size = width // heads

    def split(y):
        return y.reshape(batch, length, heads, size).transpose(0, 2, 1, 3)

    q, k, v = (split(_linear(tensors, names[part], x)) for part in ("q", "k", "v"))
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(size) + (1.0 - mask[:, None, None, :]) * -1e9
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, length, width)
    return _linear(tensors, names["o"], context)


_BERT_NAMES = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
               "o": "attention.output.dense", "ln1": "attention.output.LayerNorm", "ff1": "intermediate.dense",
               "ff2": "output.dense", "ln2": "output.LayerNorm"}
_DISTIL_NAMES = {"q": "attention.q_lin", "k": "attention.k_lin", "v": "attention.v_lin", "o": "attention.out_lin",
                 "ln1": "sa_layer_norm", "ff1": "ffn.lin1", "ff2": "ffn.lin2", "ln2": "output_layer_norm"}


def hidden_states(tensors, config, input_ids, token_type_ids, attention_mask):
    """The last hidden state `(B, T, D)` in float64 (`tensors`: Hugging Face names without the model prefix)."""
    kind = config["model_type"]
    tensors = {name.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias"):
               value.astype(np.float64) for name, value in tensors.items()}
    mask = attention_mask.astype(np.float64)
    length = input_ids.shape[1]
    offset = config.get("pad_token_id", 1) + 1 if kind == "roberta" else 0
    x = tensors["embeddings.word_embeddings.weight"][input_ids]
    x = x + tensors["embeddings.position_embeddings.weight"][offset + np.arange(length)][None]
    if kind != "distilbert":
        x = x + tensors["embeddings.token_type_embeddings.weight"][token_type_ids]
    eps = config.get("layer_norm_eps", 1e-5 if kind == "roberta" else 1e-12)
    x = _layer_norm(x, tensors["embeddings.LayerNorm.weight"], tensors["embeddings.LayerNorm.bias"], eps)
    if kind == "distilbert":
        stem, names, layers, heads = "transformer.layer", _DISTIL_NAMES, config["n_layers"], config["n_heads"]
        act = ACTIVATIONS[config.get("activation", "gelu")]
    else:
        stem, names, layers = "encoder.layer", _BERT_NAMES, config["num_hidden_layers"]
        heads, act = config["num_attention_heads"], ACTIVATIONS[config.get("hidden_act", "gelu")]
    for index in range(layers):
        layer = {key: f"{stem}.{index}.{name}" for key, name in names.items()}
        attended = _attention(tensors, layer, x, mask, heads)
        x = _layer_norm(x + attended, tensors[f"{layer['ln1']}.weight"], tensors[f"{layer['ln1']}.bias"], eps)
        hidden = _linear(tensors, layer["ff2"], act(_linear(tensors, layer["ff1"], x)))
        x = _layer_norm(x + hidden, tensors[f"{layer['ln2']}.weight"], tensors[f"{layer['ln2']}.bias"], eps)
    return x


def logits(tensors, config, inputs):
    """Sequence-classification logits of the checkpoint's own head, in float64."""
    kind = config["model_type"]
    stripped = {name.split(".", 1)[1] if name.startswith(f"{kind}.") else name: value
                for name, value in tensors.items()}
    cls = hidden_states(stripped, config, **inputs)[:, 0]
    t = {name: value.astype(np.float64) for name, value in stripped.items()}
    if kind == "bert":
        return _linear(t, "classifier", np.tanh(_linear(t, "pooler.dense", cls)))
    if kind == "roberta":
        return _linear(t, "classifier.out_proj", np.tanh(_linear(t, "classifier.dense", cls)))
    return _linear(t, "classifier", np.maximum(_linear(t, "pre_classifier", cls), 0.0))


def tiny_config(kind, **extra):
    """A `config.json` dict of a tiny checkpoint of `kind` (`bert`, `roberta`, `distilbert`)."""
    if kind == "distilbert":
        base = {"model_type": kind, "n_layers": TINY["layers"], "dim": TINY["hidden"], "n_heads": TINY["heads"],
                "hidden_dim": TINY["ffn"], "vocab_size": TINY["vocab"], "max_position_embeddings": TINY["positions"],
                "activation": "gelu"}
    else:
        base = {"model_type": kind, "num_hidden_layers": TINY["layers"], "hidden_size": TINY["hidden"],
                "num_attention_heads": TINY["heads"], "intermediate_size": TINY["ffn"], "vocab_size": TINY["vocab"],
                "max_position_embeddings": TINY["positions"], "hidden_act": "gelu",
                "type_vocab_size": 1 if kind == "roberta" else 2,
                "layer_norm_eps": 1e-5 if kind == "roberta" else 1e-12}
        if kind == "roberta":
            base["pad_token_id"] = 1
    return {**base, **extra}


def tiny_tensors(config, seed=0, prefix=True, gamma_beta=False, head=True, num_labels=2):
    """Random float32 tensors with the Hugging Face names of `config`'s architecture."""
    rng = np.random.default_rng(seed)
    kind = config["model_type"]
    d, f = TINY["hidden"], TINY["ffn"]
    tensors = {}

    def linear(name, rows, cols):
        tensors[f"{name}.weight"] = rng.normal(0, 0.3, (rows, cols)).astype(np.float32)
        tensors[f"{name}.bias"] = rng.normal(0, 0.1, rows).astype(np.float32)

    def norm(name):
        weight, bias = ("gamma", "beta") if gamma_beta else ("weight", "bias")
        tensors[f"{name}.{weight}"] = (1.0 + rng.normal(0, 0.1, d)).astype(np.float32)
        tensors[f"{name}.{bias}"] = rng.normal(0, 0.1, d).astype(np.float32)

    tensors["embeddings.word_embeddings.weight"] = rng.normal(0, 0.5, (TINY["vocab"], d)).astype(np.float32)
    tensors["embeddings.position_embeddings.weight"] = rng.normal(0, 0.5, (TINY["positions"], d)).astype(np.float32)
    if kind != "distilbert":
        tensors["embeddings.token_type_embeddings.weight"] = rng.normal(
            0, 0.5, (config["type_vocab_size"], d)).astype(np.float32)
    norm("embeddings.LayerNorm")
    stem, names = ("transformer.layer", _DISTIL_NAMES) if kind == "distilbert" else ("encoder.layer", _BERT_NAMES)
    for index in range(TINY["layers"]):
        for key in ("q", "k", "v", "o"):
            linear(f"{stem}.{index}.{names[key]}", d, d)
        linear(f"{stem}.{index}.{names['ff1']}", f, d)
        linear(f"{stem}.{index}.{names['ff2']}", d, f)
        norm(f"{stem}.{index}.{names['ln1']}")
        norm(f"{stem}.{index}.{names['ln2']}")
    if prefix:
        tensors = {f"{kind}.{name}": value for name, value in tensors.items()}
    if kind == "bert":
        linear(f"{'bert.' if prefix else ''}pooler.dense", d, d)
    if head:
        pooler, classifier = {"bert": (None, "classifier"), "roberta": ("classifier.dense", "classifier.out_proj"),
                              "distilbert": ("pre_classifier", "classifier")}[kind]
        if pooler:
            linear(pooler, d, d)
        linear(classifier, num_labels, d)
    return tensors


def write_checkpoint(folder, config, tensors):
    """Write `config.json` and `model.safetensors` into `folder` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    save_file(tensors, str(folder / "model.safetensors"))
    return folder


def tiny_inputs(seed=1, batch=3, length=7, pair=True):
    """Random ids with a padded row and, with `pair`, a second segment."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, TINY["vocab"], (batch, length)).astype(np.int32)
    mask = np.ones((batch, length), np.int32)
    mask[1, 5:] = 0
    types = np.zeros((batch, length), np.int32)
    if pair:
        types[:, 4:] = 1
    return {"input_ids": ids * mask, "token_type_ids": types * mask, "attention_mask": mask}
