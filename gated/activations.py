"""The FFN activations of the BERT family, by their Hugging Face `hidden_act` names."""

import keras


@keras.saving.register_keras_serializable(package="gated_bert")
def gelu_tanh(x):
    """GELU's tanh approximation (`gelu_new` in Hugging Face configs; GPT-2, some BERT variants)."""
    return keras.activations.gelu(x, approximate=True)


# Hugging Face `hidden_act` -> what `keras.activations.get` takes. `gelu` is the exact (erf) GELU.
HIDDEN_ACTS = {"gelu": "gelu", "gelu_new": gelu_tanh, "gelu_pytorch_tanh": gelu_tanh, "gelu_tanh": gelu_tanh,
               "relu": "relu"}


def hidden_activation(name):
    """The activation called `name` (a `HIDDEN_ACTS` key); the error lists the supported ones."""
    if name not in HIDDEN_ACTS:
        raise ValueError(f"unsupported hidden_act {name!r}; supported: {', '.join(HIDDEN_ACTS)}")
    return keras.activations.get(HIDDEN_ACTS[name])
