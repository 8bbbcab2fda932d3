"""The drivers' shared command-line conventions: one boolean style, one `--verbose`, a quiet TensorFlow start-up.

- A boolean flag alone means true (`--slice`); it also takes a value (`--slice false`, or yes/no, 1/0, on/off),
  the form environment variables and config files use.
- `--verbose 0` logs warnings only and draws no progress bar; `1` (the default) logs progress and draws bars
  on a terminal; `2` logs progress as plain lines, no bar (Keras' one line per epoch).
- TensorFlow prints start-up banners (oneDNN, CUDA and absl lines) straight to the process's stderr, which
  `TF_CPP_MIN_LOG_LEVEL` no longer silences; `quiet_start` hides them. Set `GATED_BERT_TF_LOGS=1` to
  see them. It also turns off transformers' advisory that PyTorch is missing: the suite uses its tokenizers
  only (`TRANSFORMERS_NO_ADVISORY_WARNINGS=0` brings it back).
"""

import argparse
import contextlib
import os
import sys
import tempfile

TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off"})
VERBOSITY = (0, 1, 2)
# Set to 1 to see TensorFlow's start-up lines (what quiet_start would hide).
TF_LOGS_ENV = "GATED_BERT_TF_LOGS"


def parse_bool(text):
    """`True`/`False` from true/false, yes/no, 1/0 or on/off (any case)."""
    value = str(text).strip().lower()
    if value in TRUE | FALSE:
        return value in TRUE
    raise argparse.ArgumentTypeError(f"expected true or false (or yes/no, 1/0, on/off), got {text!r}")


def add_bool_flag(parser, name, help_text, default=False):
    """`--name` alone sets true; `--name true|false` sets either."""
    parser.add_argument(f"--{name}", nargs="?", const=True, default=default, type=parse_bool, metavar="BOOL",
                        help=f"{help_text} (alone: true) [{str(default).lower()}]")


def add_verbose_flag(parser):
    parser.add_argument("--verbose", type=int, default=1, choices=VERBOSITY,
                        help="0: warnings only, no progress bars; 1: progress, with bars on a terminal; "
                        "2: progress as plain lines [1]")


@contextlib.contextmanager
def _stderr_captured():
    """Send file descriptor 2 to a temporary file while the block runs; replay it if the block raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                capture.seek(0)
                sys.stderr.write(capture.read().decode(errors="replace"))


def quiet_start():
    """Import TensorFlow and Keras and initialise the devices without their start-up banners, and turn off
    transformers' advisory warnings.

    Drivers call this once they know there is work to do (after `--help` and input checks), so that neither
    costs the seconds TensorFlow takes to load. What TensorFlow printed is shown if the import fails, and
    always with `GATED_BERT_TF_LOGS=1`.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    quiet = os.environ.get(TF_LOGS_ENV) != "1" and "tensorflow" not in sys.modules
    with _stderr_captured() if quiet else contextlib.nullcontext():
        import keras  # noqa: F401
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")  # device start-up prints too (cuInit)
