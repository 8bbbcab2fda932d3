"""The suite's names, in one import-light place: unit kinds, model presets, method names and the other
choices a run's config can name. Shell scripts read it too:

    python -c "from gated_bert.vocabulary import METHODS; print(*METHODS)"
"""

# What structured pruning removes, one gate per unit: attention heads, FFN intermediate neurons and FFN
# output units (the hidden units a feed-forward block writes). Layers, learned masks, Fisher and K-prune,
# MAC counts, latency tables and mask files all use these names.
UNIT_KINDS = ("head", "neuron", "ffn_out")
# Earlier spellings (learned-mask kinds before the names were unified), still read from config files,
# saved models and mask folders.
UNIT_KIND_ALIASES = {"ffn_int": "neuron"}

# Encoder shapes by name: layers / d_model / heads / FFN width.
PRESETS = {
    "tiny": {"num_layers": 2, "d_model": 256, "num_heads": 4, "dff": 512},
    "small": {"num_layers": 6, "d_model": 512, "num_heads": 8, "dff": 1024},
    "base": {"num_layers": 12, "d_model": 768, "num_heads": 12, "dff": 3072},
    "large": {"num_layers": 24, "d_model": 1024, "num_heads": 16, "dff": 4096},
}

# What the classifier reads from the last block: the `[CLS]` row (BERT's head) or the mean of the real tokens'
# rows (sentence-transformers' pooling, which checkpoints such as all-MiniLM-L6-v2 were trained with).
POOLINGS = ("cls", "mean")

# Training-time methods that follow the pruning window and a sparsity schedule.
SCHEDULED_METHODS = ("magnitude", "movement", "spt")
# Values of `pruning_method`: none, the scheduled methods, soft movement (learned scores, a threshold and a
# regulariser) and learned Gumbel masks (over the whole run).
PRUNING_METHODS = ("none", *SCHEDULED_METHODS, "soft_movement", "gumbel")
# The methods that prune single weights or whole units, as `pruning_granularity` says.
GRANULAR_METHODS = (*SCHEDULED_METHODS, "soft_movement")
# Method names of runs and result folders: `baseline` is training without pruning.
METHODS = ("baseline", *PRUNING_METHODS[1:])
# Retraining-free methods of prune.py.
POSTTRAIN_METHODS = ("fisher", "kprune")

# What the scheduled methods remove: single weights, or whole units (heads, FFN neurons or both) through their
# gates, the unit kinds each structured granularity ranks.
GRANULARITIES = {"weight": (), "neuron": ("neuron",), "head": ("head",), "both": ("head", "neuron")}

# Where weight pruning ranks weights: across all layers, or within each layer.
SCOPES = ("global", "layer")
# Movement pruning's sparsity ramps and their polynomial powers.
RAMPS = {"linear": 1, "cubic": 3}
# How the Gumbel temperature moves from its start to its end value.
ANNEALING = ("linear", "exponential", "constant")


def unit_kind(name):
    """The unit kind `name` stands for (an alias is translated); `ValueError` naming the choices otherwise."""
    kind = UNIT_KIND_ALIASES.get(name, name)
    if kind not in UNIT_KINDS:
        raise ValueError(f"unknown unit kind {name!r}; choose from {', '.join(UNIT_KINDS)}")
    return kind


def expand_unit_kinds(kinds):
    """The unit kinds named by `kinds` (`all` means every kind; aliases are translated), in `UNIT_KINDS` order.

    Raises `ValueError` naming an unknown kind.
    """
    kinds = tuple(kinds)
    unknown = [kind for kind in kinds if kind != "all" and UNIT_KIND_ALIASES.get(kind, kind) not in UNIT_KINDS]
    if unknown:
        raise ValueError(f"unknown unit kind(s) {unknown}; choose from {', '.join(UNIT_KINDS)} or all")
    if "all" in kinds:
        return UNIT_KINDS
    wanted = {UNIT_KIND_ALIASES.get(kind, kind) for kind in kinds}
    return tuple(kind for kind in UNIT_KINDS if kind in wanted)
