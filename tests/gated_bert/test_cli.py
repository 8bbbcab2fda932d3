"""The drivers' command-line conventions: one boolean style, and TensorFlow's start-up kept quiet."""

import argparse
import os
import subprocess
import sys

import pytest

from conftest import REPO
from gated_bert.cli import add_bool_flag, parse_bool


def _parser():
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_bool_flag(parser, "slice", "remove pruned units")
    parser.add_argument("--seed", type=int)
    return parser


@pytest.mark.parametrize(("argv", "expected"), [
    ([], False), (["--slice"], True), (["--slice", "--seed", "3"], True), (["--slice", "true"], True),
    (["--slice", "false"], False), (["--slice", "NO"], False), (["--slice", "1"], True), (["--slice=off"], False),
])
def test_a_boolean_flag_alone_means_true_and_takes_a_value(argv, expected):
    assert _parser().parse_args(argv).slice is expected


def test_a_bad_boolean_names_the_value():
    with pytest.raises(argparse.ArgumentTypeError, match="expected true or false .* got 'maybe'"):
        parse_bool("maybe")
    assert "[false]" in _parser().format_help() and "(alone: true)" in _parser().format_help()


def _quiet_start(env):
    code = ("import sys; from gated_bert.cli import quiet_start; quiet_start(); "
            "print('imported', file=sys.stderr)")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env}, cwd=REPO)


def test_tensorflow_starts_without_its_banners_unless_asked():
    quiet = _quiet_start({"GATED_BERT_TF_LOGS": "0"})
    assert quiet.returncode == 0 and quiet.stderr == "imported\n"
    loud = _quiet_start({"GATED_BERT_TF_LOGS": "1"})
    assert loud.returncode == 0 and loud.stderr.endswith("imported\n")
    # The banners are TensorFlow's to choose; this checks that something was hidden, whatever it says.
    assert len(loud.stderr) > len(quiet.stderr)


def test_what_a_quiet_block_printed_is_shown_when_it_fails():
    code = ("import os, sys\n"
            "from gated_bert.cli import _stderr_captured\n"
            "with _stderr_captured():\n"
            "    os.write(2, b'hidden\\n')\n"
            "try:\n"
            "    with _stderr_captured():\n"
            "        os.write(2, b'shown because it failed\\n')\n"
            "        raise RuntimeError('import failed')\n"
            "except RuntimeError:\n"
            "    print('after', file=sys.stderr)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0 and result.stderr == "shown because it failed\nafter\n"
