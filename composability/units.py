"""Pruning units: their masks from a dense block's weights (L1 maths in numpy), their files, and putting them on
a model.

A unit's file (`<unit id>.npz`) holds, per `GatedDense` of its module (`SUBLAYERS`), `<name>/kernel`,
`<name>/bias` and `<name>/kernel_mask`, plus a structured gate when its method removes whole units
(`head_gate` for heads, `neuron_gate` for FFN neurons), and `meta`, the unit's description as JSON. Pruned
kernel entries are stored as exact zeros. A units folder (`compose.py prune`, `finetune-modules`) holds one
file per unit and `units.json`: the scheme and checkpoint they were made from, and each file's SHA-256.
"""

import json
import math
import os

import numpy as np

from composability.configs import ComposeError
from gated_bert.files import atomic_path, read_json_object, sha256_of, write_json_atomic
from pruners.training.masking import masks_for_sparsity

# The GatedDense layers of each module, by name, as attributes of a block.
SUBLAYERS = {"attention": {"query": ("attention", "query"), "key": ("attention", "key"),
                           "value": ("attention", "value")},
             "attention_output": {"output": ("attention", "output_dense")},
             "ffn_intermediate": {"intermediate": ("ffn", "intermediate")},
             "ffn_output": {"output": ("ffn", "output_dense")}}
UNITS_JSON = "units.json"
FORMAT = "gated-bert compose units"


def removed_count(rate, total):
    """How many of `total` units a rate removes: `rate * total` rounded half up."""
    return int(math.floor(rate * total + 0.5))


def l1_mask(kernel, rate):
    """0/1 mask removing the `round(rate * size)` weights of least magnitude (ties: the earlier first)."""
    return masks_for_sparsity({"k": np.abs(kernel)}, {"k": np.ones_like(kernel)}, rate, scope="layer")["k"]


def lowest(scores, rate):
    """Boolean keep-vector removing the `removed_count(rate, n)` lowest scores (ties: the earlier first)."""
    order = np.argsort(scores, kind="stable")
    keep = np.ones(len(scores), bool)
    keep[order[:removed_count(rate, len(scores))]] = False
    return keep


def head_keep(kernels, num_heads, rate):
    """Boolean `[num_heads]`: the heads kept when those whose query, key and value kernel columns have the least
    L1 norm (summed over the three) are removed."""
    width = kernels[0].shape[1] // num_heads
    norms = sum(np.abs(kernel).reshape(kernel.shape[0], num_heads, width).sum(axis=(0, 2)) for kernel in kernels)
    return lowest(norms, rate)


def unit_masks(unit, kernels, num_heads):
    """`({sublayer: 0/1 kernel mask}, {gate name: 0/1 gate})` of `unit` on the dense `kernels` (`{sublayer:
    [in, out]}`)."""
    method, rate = unit["method"], unit["rate"]
    if method == "l1":
        return {name: l1_mask(kernel, rate) for name, kernel in kernels.items()}, {}
    if method == "l1_heads":
        keep = head_keep(list(kernels.values()), num_heads, rate)
        columns = np.repeat(keep, next(iter(kernels.values())).shape[1] // num_heads).astype(np.float32)
        return {name: np.broadcast_to(columns, kernel.shape).copy() for name, kernel in kernels.items()}, \
            {"head_gate": keep.astype(np.float32)}
    if method == "l1_neurons":
        ((name, kernel),) = kernels.items()
        if unit["module"] == "ffn_intermediate":  # a neuron is a column (and its gate)
            keep = lowest(np.abs(kernel).sum(axis=0), rate)
            return {name: np.broadcast_to(keep, kernel.shape).astype(np.float32)}, \
                {"neuron_gate": keep.astype(np.float32)}
        keep = lowest(np.abs(kernel).sum(axis=1), rate)  # an output projection's input row
        return {name: np.broadcast_to(keep[:, None], kernel.shape).astype(np.float32)}, {}
    raise ComposeError(f"unit {unit['id']}: unknown method {method!r}")


def sublayers(block, module):
    """`{name: GatedDense}` of `module` in `block`."""
    return {name: getattr(getattr(block, owner), attribute) for name, (owner, attribute) in SUBLAYERS[module].items()}


def prune_unit(block, unit):
    """The arrays of `unit` pruned from `block`'s dense weights (see the module docstring)."""
    layers = sublayers(block, unit["module"])
    kernels = {name: np.asarray(layer.masked_kernel.numpy(), np.float32) for name, layer in layers.items()}
    masks, gates = unit_masks(unit, kernels, block.attention.num_heads)
    arrays = {}
    for name, layer in layers.items():
        arrays[f"{name}/kernel"] = kernels[name] * masks[name]
        arrays[f"{name}/bias"] = np.asarray(layer.bias.numpy(), np.float32)
        arrays[f"{name}/kernel_mask"] = masks[name].astype(np.float32)
    return {**arrays, **gates}


def gate_variable(block, name):
    return block.attention.head_gate if name == "head_gate" else block.ffn.intermediate.unit_gate


def put_unit(block, unit, arrays, source):
    """Assign `unit`'s `arrays` to `block` (built with kernel masks); an array of another shape is a
    `ComposeError` naming `source` (the unit's file)."""
    targets = {}
    for name, layer in sublayers(block, unit["module"]).items():
        targets |= {f"{name}/kernel": layer.kernel, f"{name}/bias": layer.bias,
                    f"{name}/kernel_mask": layer.kernel_mask}
    targets |= {name: gate_variable(block, name) for name in arrays if name.endswith("_gate")}
    missing = sorted(set(targets) - set(arrays))
    if missing:
        raise ComposeError(f"{source} lacks {', '.join(missing)}: it is not a unit of module {unit['module']}")
    for name, variable in targets.items():
        if variable is None:
            raise ComposeError(f"{source}: the model has no {name} to hold it")
        if tuple(arrays[name].shape) != tuple(variable.shape):
            raise ComposeError(f"{source} holds {name} of shape {tuple(arrays[name].shape)}, but layer "
                               f"{unit['layer']}'s {unit['module']} needs {tuple(variable.shape)}: the unit was made "
                               "for a model of another shape")
    for name, variable in targets.items():
        variable.assign(arrays[name])


def unit_file(folder, uid):
    return os.path.join(folder, f"{uid}.npz")


def save_unit(folder, unit, arrays):
    """Write `unit`'s file atomically; returns its SHA-256."""
    path = unit_file(folder, unit["id"])
    with atomic_path(path) as tmp:
        np.savez(tmp, meta=np.array(json.dumps(unit)), **arrays)
    return sha256_of([path])


def load_unit(folder, unit, index=None):
    """`unit`'s arrays from `folder`, checked against the folder's index (`ComposeError` for a missing, changed or
    foreign file)."""
    path = unit_file(folder, unit["id"])
    if not os.path.isfile(path):
        raise ComposeError(f"{folder} has no file for unit {unit['id']} ({os.path.basename(path)}); run compose.py "
                           "prune with this scheme")
    if index is not None and index["units"].get(unit["id"], {}).get("sha256") != sha256_of([path]):
        raise ComposeError(f"{path} is not the file {os.path.join(folder, UNITS_JSON)} lists (changed or copied in); "
                           "prune the units again")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: np.asarray(data[name]) for name in data.files}
    except (OSError, ValueError) as error:
        raise ComposeError(f"cannot read unit file {path}: {error}") from None
    meta = json.loads(str(arrays.pop("meta", "{}")))
    if {key: meta.get(key) for key in ("layer", "module", "method", "rate")} != \
            {key: unit[key] for key in ("layer", "module", "method", "rate")}:
        raise ComposeError(f"{path} holds unit {meta.get('id')!r}, not {unit['id']}")
    return arrays


def write_index(folder, scheme, checkpoint, units, hashes, **extra):
    """Write `units.json` (last: a folder with one is complete): the scheme's digest, the checkpoint, and per unit
    its description, file and SHA-256."""
    write_json_atomic(os.path.join(folder, UNITS_JSON),
                      {"format": FORMAT, "scheme_sha256": scheme["scheme_sha256"], "checkpoint": checkpoint,
                       "units": {uid: {**units[uid], "file": os.path.basename(unit_file(folder, uid)), "sha256": digest}
                                 for uid, digest in sorted(hashes.items())}, **extra})


def read_index(folder, scheme=None, checkpoint=None):
    """A units folder's index, checked to come from `scheme` and from `checkpoint`'s weights, when given."""
    if not os.path.isdir(folder):
        raise ComposeError(f"units folder not found: {folder}; write it with compose.py prune")
    index = read_json_object(os.path.join(folder, UNITS_JSON), "units index", ComposeError,
                             " (the folder is incomplete: run compose.py prune or finetune-modules again)")
    if index.get("format") != FORMAT or not isinstance(index.get("units"), dict):
        raise ComposeError(f"{folder} is not a units folder (format {index.get('format')!r})")
    if scheme and index.get("scheme_sha256") != scheme["scheme_sha256"]:
        raise ComposeError(f"the units in {folder} were made from another scheme; prune them again with this one")
    made_from = index.get("checkpoint") or {}
    if checkpoint and made_from.get("weights_sha256") != checkpoint["weights_sha256"]:
        raise ComposeError(f"the units in {folder} were pruned from {made_from.get('path')}, not from "
                           f"{checkpoint['path']} (the weights' SHA-256 differs); pass the checkpoint they came from, "
                           "or prune them again")
    return index


def index_units(index):
    """`{unit id: unit}` described by a units index."""
    keys = ("id", "layer", "module", "method", "rate")
    return {uid: {key: entry[key] for key in keys} for uid, entry in index["units"].items()}
