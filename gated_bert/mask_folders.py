"""Mask folders: structured masks on disk, the one format that train.py (gumbel), prune.py and evaluate.py share.

A folder holds, per unit kind (`gated_bert.vocabulary.UNIT_KINDS`), `<kind>_mask.npy`: float32
`[layers, units]`, 0 for a removed unit, 1 (binary) or a scale (real-valued, after rescaling) for a kept
one; learned-mask runs add `<kind>_logits.npy`. Beside them, `masks.json` names the kinds, their shapes
and files, whether each is binary, and where the masks came from (`source`, free-form); prune.py's folders
may add `logit_bias`, a shift of the classifier's bias that goes with the masks (one number per label;
`pruners.posttrain.bias_correction`).

Folders written before this format had no `masks.json`; they still load: prune.py's (`head_mask.npy` and
`neuron_mask.npy`) and gumbel runs' (`head_mask.npy`, `ffn_intermediate_mask.npy`, `ffn_output_mask.npy`,
`*_logits.npy`).
"""

import dataclasses
import glob
import os

import numpy as np

from gated_bert.files import atomic_path, read_json_object, write_json_atomic
from gated_bert.vocabulary import UNIT_KINDS, unit_kind

MASKS_JSON = "masks.json"
FORMAT = "gated-bert mask folder"
VERSION = 1
# The file stems of folders written before masks.json existed, per kind (gumbel runs used the long names).
_LEGACY_STEMS = {"head": ("head",), "neuron": ("neuron", "ffn_intermediate"), "ffn_out": ("ffn_output",)}


class MaskFolderError(ValueError):
    """A mask folder is missing, incomplete or malformed; the message names the folder and what is wrong."""


@dataclasses.dataclass
class MaskFolder:
    """What a mask folder holds: `masks` and `logits` as `{kind: float32 array [layers, units]}`, and the
    logit bias that goes with the masks (float32 `[num_labels]`) or None."""

    masks: dict
    logits: dict
    source: dict
    logit_bias: np.ndarray | None = None


def mask_file(kind):
    return f"{kind}_mask.npy"


def logits_file(kind):
    return f"{kind}_logits.npy"


def write_mask_folder(folder, masks, source, logits=None, logit_bias=None):
    """Write `masks` (and learned `logits`), `{kind: array [layers, units]}`, and `masks.json` (with the
    `logit_bias` that goes with the masks, if any) into `folder`.

    Every file is written atomically, `masks.json` last, so a folder with a `masks.json` is complete.
    Returns the file names written.
    """
    masks = _checked(masks, "masks")
    logits = _checked(logits or {}, "logits")
    os.makedirs(folder, exist_ok=True)
    entries, written = {}, []
    for kind, mask in masks.items():
        binary = bool(np.all((mask == 0) | (mask == 1)))
        entries[kind] = {"file": mask_file(kind), "shape": list(mask.shape), "binary": binary}
        if kind in logits:
            entries[kind]["logits"] = logits_file(kind)
    arrays = {mask_file(kind): mask for kind, mask in masks.items()}
    arrays |= {logits_file(kind): values for kind, values in logits.items()}
    for name, array in arrays.items():
        with atomic_path(os.path.join(folder, name)) as tmp:
            np.save(tmp, array)
        written.append(name)
    described = {"format": FORMAT, "version": VERSION, "kinds": entries, "source": source}
    if logit_bias is not None:
        described["logit_bias"] = [float(value) for value in np.ravel(logit_bias)]
    write_json_atomic(os.path.join(folder, MASKS_JSON), described)
    return [*written, MASKS_JSON]


def read_mask_folder(folder):
    """The `MaskFolder` in `folder`: this format, or a folder that prune.py or a gumbel run wrote before it."""
    if not os.path.isdir(folder):
        raise MaskFolderError(f"mask folder not found: {folder}")
    if os.path.isfile(os.path.join(folder, MASKS_JSON)):
        return _read_described(folder)
    return _read_legacy(folder)


def _checked(arrays, what):
    checked = {}
    for name, array in arrays.items():
        array = np.asarray(array, np.float32)
        if array.ndim != 2:
            raise ValueError(f"{what} must be [layers, units] per kind, got shape {array.shape} for {name!r}")
        checked[unit_kind(name)] = array
    order = {kind: index for index, kind in enumerate(UNIT_KINDS)}
    return dict(sorted(checked.items(), key=lambda item: order[item[0]]))


def _load(folder, name):
    try:
        return np.load(os.path.join(folder, name)).astype(np.float32)
    except (OSError, ValueError) as error:
        raise MaskFolderError(f"mask folder {folder}: cannot read {name}: {error}") from None


def _read_described(folder):
    described = read_json_object(os.path.join(folder, MASKS_JSON), "mask folder description", MaskFolderError)
    if described.get("format") != FORMAT or not isinstance(described.get("kinds"), dict):
        raise MaskFolderError(f"{os.path.join(folder, MASKS_JSON)} is not a mask folder description "
                              f"(format {described.get('format')!r}); pass a folder that prune.py or train.py wrote")
    masks, logits = {}, {}
    for name, entry in described["kinds"].items():
        try:
            kind = unit_kind(name)
        except ValueError as error:
            raise MaskFolderError(f"{os.path.join(folder, MASKS_JSON)}: {error}") from None
        masks[kind] = _load(folder, entry["file"])
        if list(masks[kind].shape) != list(entry["shape"]):
            raise MaskFolderError(f"mask folder {folder}: {entry['file']} has shape {masks[kind].shape}, but "
                                  f"{MASKS_JSON} says {tuple(entry['shape'])}")
        if "logits" in entry:
            logits[kind] = _load(folder, entry["logits"])
    logit_bias = described.get("logit_bias")
    if logit_bias is not None:
        if not (isinstance(logit_bias, list) and logit_bias
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in logit_bias)):
            raise MaskFolderError(f"{os.path.join(folder, MASKS_JSON)}: logit_bias must be a list of numbers, one "
                                  f"per label, got {logit_bias!r}")
        logit_bias = np.asarray(logit_bias, np.float32)
    return MaskFolder(masks, logits, described.get("source") or {}, logit_bias)


def _read_legacy(folder):
    masks, logits = {}, {}
    for kind, stems in _LEGACY_STEMS.items():
        for stem in stems:
            if os.path.isfile(os.path.join(folder, f"{stem}_mask.npy")):
                masks[kind] = _load(folder, f"{stem}_mask.npy")
                if os.path.isfile(os.path.join(folder, f"{stem}_logits.npy")):
                    logits[kind] = _load(folder, f"{stem}_logits.npy")
                break
    if not masks:
        expected = ", ".join([MASKS_JSON, *(mask_file(kind) for kind in UNIT_KINDS)])
        inside = _mask_folders_inside(folder)
        if inside:
            more = f" and {len(inside) - 5} more" if len(inside) > 5 else ""
            hint = f"; mask folders inside it: {', '.join(inside[:5])}{more} (pass one)"
        else:
            hint = "; pass a folder that prune.py or a gumbel run of train.py wrote"
        raise MaskFolderError(f"mask folder {folder} holds no masks (looked for {expected}){hint}")
    return MaskFolder(masks, logits, {"format": "written before masks.json"})


def _mask_folders_inside(folder, depth=5):
    """Folders below `folder`, at most `depth` levels down (prune.py's layout: shape/task/metric/constraint/seed),
    that hold a `masks.json`, sorted."""
    found = []
    for level in range(1, depth + 1):
        pattern = os.path.join(glob.escape(os.fspath(folder)), *["*"] * level, MASKS_JSON)
        found += [os.path.dirname(path) for path in glob.glob(pattern)]
    return sorted(found)


__all__ = ["MASKS_JSON", "MaskFolder", "MaskFolderError", "logits_file", "mask_file", "read_mask_folder",
           "write_mask_folder"]
