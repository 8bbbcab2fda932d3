"""Configurations: which modules of which layers a pruned model prunes, and at what rate.

A configuration file (`compose.py config`) holds N configurations. Each names, per layer, the rate of each module
it prunes; a module it does not name stays dense. The modules of a block (`MODULES`):

- `attention`: the query, key and value projections (pruned by heads by default);
- `attention_output`, `ffn_intermediate`, `ffn_output`: the linear modules, the attention output projection
  and the two FFN layers (pruned weight by weight by default).

    {"format": "gated-bert compose configurations", "version": 1,
     "configurations": [{"index": 0, "layers": {"0": {"attention": 0.25, "attention_output": 0.3, ...}, ...}}]}

The file is meant to be edited: any layer's or module's rate may be changed, added or removed, and
`compose.py scheme` reads it again.
"""

import math
import os

from gated_bert.files import read_json_object, write_json_atomic

MODULES = ("attention", "attention_output", "ffn_intermediate", "ffn_output")
LINEAR_MODULES = MODULES[1:]
FORMAT = "gated-bert compose configurations"
VERSION = 1


class ComposeError(ValueError):
    """A composability input is malformed or does not fit; the message names the value and how to fix it."""


def check_rate(rate, where):
    """`rate` as a float in [0, 1) (`ComposeError` naming `where` otherwise)."""
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate) or not 0 <= rate < 1:
        raise ComposeError(f"{where}: a pruning rate must be a number in [0, 1), got {rate!r}")
    return float(rate)


def make_configurations(attention, linear, count, layers):
    """The configurations file's content: configuration i prunes `attention` (heads) at `attention[i]` and every
    linear module at `linear[i]`, in each of `layers`."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ComposeError(f"-n must be a positive number of configurations, got {count!r}")
    for name, rates in (("--attention", attention), ("--linear", linear)):
        if len(rates) != count:
            raise ComposeError(f"{name} needs one rate per configuration (-n {count}), got {len(rates)}: "
                               f"{' '.join(map(str, rates))}")
        for rate in rates:
            check_rate(rate, name)
    layers = _checked_layers(layers)
    configurations = []
    for index in range(count):
        rates = {"attention": float(attention[index]), **dict.fromkeys(LINEAR_MODULES, float(linear[index]))}
        configurations.append({"index": index, "layers": {str(layer): dict(rates) for layer in layers}})
    return {"format": FORMAT, "version": VERSION, "configurations": configurations}


def _checked_layers(layers):
    layers = list(layers)
    if not layers:
        raise ComposeError("no layers to prune: give --layers 0 1 ..., --num_layers N or --ckpt_dir")
    bad = [layer for layer in layers if isinstance(layer, bool) or not isinstance(layer, int) or layer < 0]
    if bad:
        raise ComposeError(f"--layers takes block indices (0, 1, ...), got {bad}")
    if len(set(layers)) != len(layers):
        raise ComposeError(f"--layers names a block twice: {layers}")
    return sorted(layers)


def write_configurations(path, content, overwrite=False):
    """Write a configurations file; an existing file is refused unless `overwrite`."""
    refuse_existing(path, overwrite)
    write_json_atomic(path, content)


def refuse_existing(path, overwrite, what="file"):
    """`ComposeError` when `path` exists (a folder that is not empty counts) and `overwrite` is false."""
    exists = os.path.isfile(path) or (os.path.isdir(path) and os.listdir(path))
    if exists and not overwrite:
        raise ComposeError(f"{path} already exists; pass --overwrite to replace it, or choose another {what}")


def read_configurations(path):
    """The configurations in `path`, checked: known modules, rates in [0, 1), layer indices, consecutive
    indices."""
    content = read_json_object(path, "configurations file", ComposeError,
                               " (write one with: compose.py config -o FILE ...)")
    if content.get("format") != FORMAT or not isinstance(content.get("configurations"), list):
        raise ComposeError(f"{path} is not a configurations file (format {content.get('format')!r}); write one "
                           "with compose.py config")
    configurations = content["configurations"]
    if not configurations:
        raise ComposeError(f"{path} holds no configurations")
    for position, configuration in enumerate(configurations):
        where = f"{path}: configuration {position}"
        if not isinstance(configuration, dict) or configuration.get("index") != position:
            raise ComposeError(f"{where} must be an object with \"index\": {position} (configurations are numbered "
                               "from 0 in order)")
        layers = configuration.get("layers")
        if not isinstance(layers, dict):
            raise ComposeError(f"{where} has no \"layers\" object")
        for layer, modules in layers.items():
            if not layer.isdigit():
                raise ComposeError(f"{where}: layer {layer!r} is not a block index (0, 1, ...)")
            if not isinstance(modules, dict):
                raise ComposeError(f"{where}, layer {layer}: expected {{module: rate}}, got {modules!r}")
            for module, rate in modules.items():
                if module not in MODULES:
                    raise ComposeError(f"{where}, layer {layer}: unknown module {module!r}; modules: "
                                       f"{', '.join(MODULES)}")
                check_rate(rate, f"{where}, layer {layer}, {module}")
    return content
