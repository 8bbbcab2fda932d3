"""The drivers' logging: the console (its level set by `--verbose`) and a run's log file.

Progress lines (`gated_bert.progress`) are logged like any record, so log files get them; the console
leaves out the ones a progress bar is already showing.
"""

import contextlib
import logging

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Set on the records of progress lines whose progress a bar on the terminal is already drawing.
ON_BAR = "progress_on_bar"


def _not_on_a_bar(record):
    return not getattr(record, ON_BAR, False)


_console = logging.StreamHandler()
_console.setFormatter(logging.Formatter(LOG_FORMAT))
_console.addFilter(_not_on_a_bar)


def setup_console_logging(verbose):
    """INFO records reach the root logger (and so the run's log file); the console shows
    them unless `verbose` is 0, when it shows warnings only."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    _console.setLevel(logging.WARNING if verbose == 0 else logging.INFO)
    if _console not in root.handlers:
        root.addHandler(_console)


@contextlib.contextmanager
def log_file(path):
    """Copy this process's INFO-and-above log records to `path` while the block runs."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    previous_level = root.level
    root.setLevel(min(root.getEffectiveLevel(), logging.INFO))  # the file gets INFO even when run() is called alone
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)
        handler.close()
