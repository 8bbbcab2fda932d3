"""The pruning scheme: the distinct pruning units across all configurations, and which unit fills each module.

A unit is one (layer, module, method, rate): the same pruned module wherever a configuration contains it, so it
is pruned and fine-tuned once. Its id is stable (`layer3.ffn_output.l1.r0.3`). The scheme records the SHA-256
of the configurations file it was made from and of its own content; `read_scheme` refuses a scheme whose
configurations file changed or that was edited by hand, since its units would no longer be the ones the
configurations need.
"""

import hashlib
import json
import os

from composability.configs import LINEAR_MODULES, ComposeError, read_configurations, refuse_existing
from gated_bert.files import read_json_object, sha256_of, write_json_atomic

FORMAT = "gated-bert compose scheme"
VERSION = 1
# Pruning methods per module family; the first is the default.
ATTENTION_METHODS = ("l1_heads", "l1")
LINEAR_METHODS = ("l1", "l1_neurons")
REGENERATE = "regenerate it with: compose.py scheme -i CONFIGURATIONS -o SCHEME"


def unit_id(layer, module, method, rate):
    return f"layer{layer}.{module}.{method}.r{rate:g}"


def method_of(module, attention_method, linear_method):
    return linear_method if module in LINEAR_MODULES else attention_method


def make_scheme(config_path, attention_method=ATTENTION_METHODS[0], linear_method=LINEAR_METHODS[0]):
    """The scheme of the configurations in `config_path`: its units (rate 0 is no unit: the module stays dense)
    and, per configuration, `{"<layer>": {module: unit id}}`."""
    if attention_method not in ATTENTION_METHODS:
        raise ComposeError(f"unknown attention method {attention_method!r}; choose from {', '.join(ATTENTION_METHODS)}")
    if linear_method not in LINEAR_METHODS:
        raise ComposeError(f"unknown linear method {linear_method!r}; choose from {', '.join(LINEAR_METHODS)}")
    content = read_configurations(config_path)
    units, configurations = {}, []
    for configuration in content["configurations"]:
        filled = {}
        for layer, modules in sorted(configuration["layers"].items(), key=lambda item: int(item[0])):
            for module, rate in modules.items():
                if rate == 0:
                    continue
                method = method_of(module, attention_method, linear_method)
                uid = unit_id(int(layer), module, method, float(rate))
                units[uid] = {"id": uid, "layer": int(layer), "module": module, "method": method,
                              "rate": float(rate)}
                filled.setdefault(layer, {})[module] = uid
        configurations.append({"index": configuration["index"], "modules": filled})
    scheme = {"format": FORMAT, "version": VERSION,
              "configurations_file": {"path": os.path.abspath(config_path), "sha256": sha256_of([config_path])},
              "methods": {"attention": attention_method, "linear": linear_method},
              "units": sorted(units.values(), key=lambda unit: unit["id"]), "configurations": configurations}
    return {**scheme, "scheme_sha256": content_sha256(scheme)}


def content_sha256(scheme):
    """SHA-256 of the scheme's content (its own digest left out), keys sorted."""
    body = {key: value for key, value in scheme.items() if key != "scheme_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def write_scheme(path, scheme, overwrite=False):
    refuse_existing(path, overwrite)
    write_json_atomic(path, scheme)


def read_scheme(path):
    """The scheme in `path`, refused (`ComposeError`) when edited by hand or when its configurations file is gone
    or changed since."""
    scheme = read_json_object(path, "scheme", ComposeError, f" ({REGENERATE})")
    if scheme.get("format") != FORMAT:
        raise ComposeError(f"{path} is not a scheme (format {scheme.get('format')!r}); {REGENERATE}")
    if scheme.get("scheme_sha256") != content_sha256(scheme):
        raise ComposeError(f"{path} was edited by hand (its content no longer matches its scheme_sha256); edit the "
                           f"configurations file instead and {REGENERATE}")
    source = scheme["configurations_file"]
    if not os.path.isfile(source["path"]):
        raise ComposeError(f"{path} was made from {source['path']}, which is gone; {REGENERATE}")
    if sha256_of([source["path"]]) != source["sha256"]:
        raise ComposeError(f"{source['path']} changed after {path} was made from it; {REGENERATE}")
    return scheme


def configuration(scheme, index, scheme_path="the scheme"):
    """Configuration `index` of `scheme`: `{"<layer>": {module: unit id}}`."""
    count = len(scheme["configurations"])
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
        raise ComposeError(f"configuration {index!r} is out of range: {scheme_path} has {count} configurations "
                           f"(0 to {count - 1})")
    return scheme["configurations"][index]["modules"]


def units_of(scheme, index=None):
    """The scheme's units (`{id: unit}`), or only those configuration `index` uses."""
    units = {unit["id"]: unit for unit in scheme["units"]}
    if index is None:
        return units
    used = {uid for modules in configuration(scheme, index).values() for uid in modules.values()}
    return {uid: unit for uid, unit in units.items() if uid in used}
