"""Progress of long steps: periodic lines with rate and ETA in logs, a bar (and no duplicate lines) on a terminal."""

import io
import logging
import re

import pytest

from gated_bert import logs, progress


@pytest.fixture
def records(monkeypatch):
    """Every record the progress module logs, and the lines a console handler would print."""
    caught, console = [], io.StringIO()
    handler = logging.StreamHandler(console)
    handler.addFilter(logs._not_on_a_bar)
    logger = logging.getLogger("test_progress")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(handler)

    class Catch(logging.Handler):
        def emit(self, record):
            caught.append(record)

    logger.addHandler(Catch())
    yield logger, caught, console
    logger.handlers.clear()
    progress.set_verbosity(1)


def test_lines_at_each_tenth_with_rate_and_eta_then_a_last_line(records, monkeypatch):
    logger, caught, console = records
    monkeypatch.setattr("sys.stderr.isatty", lambda: False)
    monkeypatch.setattr(progress.Progress, "min_seconds", 0.0)
    items = list(progress.track(range(20), "fisher", unit="batch", logger=logger))
    assert items == list(range(20))
    lines = [record.getMessage() for record in caught]
    assert len(lines) == 10  # 2/20 ... 18/20, then the last line
    assert re.fullmatch(r"fisher: 2/20 batch \(10%\), [0-9.,]+ batch/s, ETA \d+ s", lines[0])
    assert lines[8].startswith("fisher: 18/20 batch (90%)")
    assert re.fullmatch(r"fisher: done, 20 batch in [0-9.]+ s \([0-9.,]+ batch/s\)", lines[-1])
    assert console.getvalue().count("\n") == 10  # off a terminal the console prints them all


def test_a_quick_step_logs_its_last_line_only(records, monkeypatch):
    logger, caught, _ = records
    monkeypatch.setattr("sys.stderr.isatty", lambda: False)
    list(progress.track(range(20), "fisher", unit="batch", logger=logger))  # far under a second
    assert [record.getMessage().split(",")[0] for record in caught] == ["fisher: done"]


def test_on_a_terminal_the_bar_shows_progress_and_the_console_skips_its_lines(records, monkeypatch):
    logger, caught, console = records
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    monkeypatch.setattr(progress.Progress, "min_seconds", 0.0)
    with progress.Progress(10, "rescale", unit="sublayer", logger=logger) as step:
        assert step._bar is not None
        for _ in range(10):
            step.update()
    assert len(caught) == 10  # log files still get every line
    (shown,) = console.getvalue().splitlines()  # the console only the last: the bar showed the others
    assert shown.startswith("rescale: done, 10 sublayer in")


@pytest.mark.parametrize("verbose", [0, 2])
def test_verbosity_0_and_2_draw_no_bar(records, monkeypatch, verbose):
    logger, caught, _ = records
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    progress.set_verbosity(verbose)
    with progress.Progress(4, "tokenization", unit="row", logger=logger) as step:
        assert step._bar is None
        step.update(4)
    assert [record.getMessage().split(",")[0] for record in caught] == ["tokenization: done"]


def test_a_step_left_early_says_so(records, monkeypatch):
    logger, caught, _ = records
    monkeypatch.setattr("sys.stderr.isatty", lambda: False)
    for index in progress.track(range(4), "rescale", unit="sublayer", logger=logger):
        if index == 1:
            break
    assert caught[-1].getMessage().startswith("rescale: stopped, 1 sublayer in")
