"""The layout a user gets: packages only (no generic top-level module), console scripts that work outside the
checkout, and drivers that load TensorFlow only once there is work to do."""

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

PACKAGES = {"callbacks", "composability", "deploy", "efficiency", "experiment", "gated", "gated_bert", "pruners",
            "tasks"}
# Names the loose root modules used to claim when installed (`evaluate` hid Hugging Face's package).
GENERIC = ("evaluate", "training", "methods", "fileio", "reporting", "evaluation", "config", "train", "prune",
           "plot_comparison", "export", "predict")
HEAVY = ("tensorflow", "keras", "transformers", "scipy", "pandas", "matplotlib")
SCRIPTS = {"gated-bert-train": "--pruning_method", "gated-bert-prune": "--constraint",
           "gated-bert-evaluate": "--masks_dir", "gated-bert-plot": "--results_dir", "gated-bert-lut": "--ffn_points",
           "gated-bert-export": "--formats", "gated-bert-predict": "--pair_column",
           "gated-bert-compose": "finetune-modules"}


def _python(code, cwd, *args):
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=120)


def test_nothing_installed_claims_a_generic_module_name(tmp_path):
    code = ("import importlib.util, json, sys\n"
            "specs = {name: importlib.util.find_spec(name) for name in sys.argv[1:]}\n"
            "print(json.dumps({name: spec.origin if spec else None for name, spec in specs.items()}))")
    found = json.loads(_python(code, tmp_path, *GENERIC).stdout)  # run outside the checkout, in this venv
    ours = {name: origin for name, origin in found.items() if origin and origin.startswith(str(REPO))}
    assert ours == {}, f"installed from the checkout: {ours}"


def test_the_distribution_installs_our_packages_only_and_no_other_claims_their_names():
    installed = set(importlib.metadata.distribution("gated-bert").read_text("top_level.txt").split())
    assert installed == PACKAGES
    owners = importlib.metadata.packages_distributions()
    assert {name: set(owners.get(name, ())) for name in PACKAGES} == {name: {"gated-bert"} for name in PACKAGES}


def test_console_scripts_run_from_outside_the_checkout(tmp_path):
    scripts = Path(sys.executable).parent
    for script, flag in SCRIPTS.items():
        result = subprocess.run([str(scripts / script), "--help"], capture_output=True, text=True, cwd=tmp_path,
                                timeout=120)
        assert result.returncode == 0, result.stderr
        assert flag in result.stdout, script


@pytest.mark.parametrize("argv", [["train.py", "--help"], ["prune.py", "--help"], ["evaluate.py", "--help"],
                                  ["export.py", "--help"], ["predict.py", "--help"],
                                  ["plot_comparison.py", "--help"], ["compose.py", "--help"],
                                  ["compose.py", "run", "--help"], ["-m", "efficiency.generate_lut", "--help"],
                                  ["train.py", "--dry_run", "--pruning_method", "movement", "--epochs", "6"]])
def test_help_and_dry_run_import_no_tensorflow(argv):
    code = ("import runpy, sys\n"
            "args = sys.argv[1:]\n"
            "module = args[1] if args[0] == '-m' else None\n"
            "sys.argv = args[1:] if module else args\n"
            "run = (lambda: runpy.run_module(module, run_name='__main__')) if module else \\\n"
            "    (lambda: runpy.run_path(args[0], run_name='__main__'))\n"
            "try:\n"
            "    run()\n"
            "except SystemExit as stop:\n"
            "    assert stop.code in (0, None), stop.code\n"
            f"print('HEAVY', [name for name in {HEAVY!r} if name in sys.modules])")
    result = _python(code, REPO, *argv)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "HEAVY []"
    assert "usage:" in result.stdout or '"pruning_method": "movement"' in result.stdout
    assert result.stderr == ""  # no TensorFlow or absl banner either


# What each package may import of ours (README, "Where things are"); the layers only ever point down.
ALLOWED = {
    "gated_bert": set(),
    "gated": {"gated_bert"},
    "tasks": {"gated_bert"},
    "efficiency": {"gated_bert", "gated"},
    "pruners.training": {"gated_bert", "gated", "efficiency"},
    "pruners.posttrain": {"gated_bert", "gated"},
    "pruners": {"pruners.training", "pruners.posttrain"},
    "callbacks": {"gated_bert", "gated", "tasks", "efficiency"},
    "deploy": {"gated_bert", "gated", "tasks", "efficiency"},
    "composability": {"gated_bert", "gated", "pruners.training"},
    "experiment": {"gated_bert", "gated", "tasks", "efficiency", "pruners", "pruners.training", "pruners.posttrain",
                   "callbacks", "deploy", "composability"},
}


def _unit(dotted):
    """The package a module belongs to, pruners split into its two families."""
    parts = dotted.split(".")
    return ".".join(parts[:2]) if parts[0] == "pruners" and len(parts) > 1 and parts[1] in ("training", "posttrain") \
        else parts[0]


def test_packages_import_only_the_layers_below_them():
    import ast

    found = {}
    for path in REPO.rglob("*.py"):
        relative = path.relative_to(REPO)
        if relative.parts[0] not in PACKAGES:
            continue
        owner = _unit(".".join(relative.with_suffix("").parts))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                if module.split(".")[0] in PACKAGES and _unit(module) != owner:
                    found.setdefault(owner, set()).add(_unit(module))
    wrong = {owner: sorted(imported - ALLOWED[owner]) for owner, imported in found.items() if imported - ALLOWED[owner]}
    assert wrong == {}
    assert found["pruners"] == {"pruners.training", "pruners.posttrain"}  # the two families only meet here


def test_the_root_config_module_is_the_experiment_config():
    import config
    import experiment.config

    assert config.GatedBertConfig is experiment.config.GatedBertConfig
    assert config.resolve_config is experiment.config.resolve_config
