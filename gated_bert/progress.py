"""Progress of long steps, with rate and ETA: a bar on a terminal, plain periodic lines in logs.

    for batch in track(batches, "fisher", unit="batch"):
        ...

At verbosity 1 (the drivers' default) and with stderr on a terminal, a tqdm bar shows the count, rate and
ETA. Every step also logs a line at each tenth of the work (at most one a second) and at least every 30 s
(`fisher: 32/64 batch (50%), 20.5 batch/s, ETA 2 s`) and a last one when it ends, so log files always get
them; the console
leaves out the lines a bar is showing (`gated_bert.logs`). At verbosity 2, or off a terminal, the console
gets the lines and no bar; at 0, neither (the console shows warnings only).
"""

import logging
import sys
import time

from gated_bert.logs import ON_BAR

_settings = {"verbosity": 1}


def set_verbosity(verbose):
    """0: no bars; 1: bars on a terminal; 2: no bars, plain lines (the drivers pass `--verbose`)."""
    _settings["verbosity"] = verbose


def keras_verbosity(verbose):
    """Keras' `verbose` for `fit`: its bar (1) only on a terminal; off one (a log file, a pipe) a line per epoch (2),
    as its bar there is an unbroken run of escape codes."""
    return 2 if verbose == 1 and not sys.stdout.isatty() else verbose


def _bars_wanted():
    return _settings["verbosity"] == 1 and sys.stderr.isatty()


def _rate(rate):
    return f"{rate:,.0f}" if rate >= 100 else f"{rate:.3g}"


def _duration(seconds):
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds} s"


class Progress:
    """Counts the work a step has done toward `total` and reports it (see the module docstring).

    Args:
        total: units of work in all (None when unknown: no percentage or ETA).
        desc: what is being done, the prefix of every line.
        unit: what one unit of work is called (`batch`, `row`, `sublayer`).
        logger: where the lines go (default: this module's).
        every_seconds: longest time between two lines.
    """

    # Shortest time between two lines at tenths of the work: a step of a few seconds logs its last line only.
    min_seconds = 1.0

    def __init__(self, total, desc, unit="it", logger=None, every_seconds=30.0):
        self.total, self.desc, self.unit = total, desc, unit
        self.log = logger or logging.getLogger(__name__)
        self.every_seconds = every_seconds
        self.done = 0
        self.start = self._last_line = time.perf_counter()
        self._next_tenth = 1
        self._bar = None
        if _bars_wanted():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True, file=sys.stderr)

    def update(self, count=1):
        self.done += count
        if self._bar is not None:
            self._bar.update(count)
        now = time.perf_counter()
        tenth = int(10 * self.done / self.total) if self.total else 0
        since = now - self._last_line
        if self.done < (self.total or float("inf")) and (tenth >= self._next_tenth and since >= self.min_seconds
                                                        or since >= self.every_seconds):
            self._line(self.status(now))
            self._next_tenth, self._last_line = tenth + 1, now

    def status(self, now=None):
        """`32/64 batch (50%), 20.5 batch/s, ETA 2 s` (the parts that are known)."""
        elapsed = (now or time.perf_counter()) - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        if not self.total:
            return f"{self.done} {self.unit}, {_rate(rate)} {self.unit}/s"
        percent = 100 * self.done / self.total
        text = f"{self.done}/{self.total} {self.unit} ({percent:.0f}%), {_rate(rate)} {self.unit}/s"
        return f"{text}, ETA {_duration((self.total - self.done) / rate)}" if rate and self.done < self.total else text

    def close(self):
        if self._bar is not None:
            self._bar.close()
        elapsed = time.perf_counter() - self.start
        finished = "done" if self.total is None or self.done >= self.total else "stopped"
        self._line(f"{finished}, {self.done} {self.unit} in {elapsed:.1f} s ({_rate(self.done / max(elapsed, 1e-9))} "
                   f"{self.unit}/s)", on_bar=False)

    def _line(self, text, on_bar=None):
        shown = self._bar is not None if on_bar is None else on_bar
        self.log.info("%s: %s", self.desc, text, extra={ON_BAR: shown})

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False


def track(iterable, desc, unit="it", total=None, logger=None):
    """Yield the items of `iterable` while a `Progress` counts them (`total`: its length when it has one)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    with Progress(total, desc, unit, logger) as progress:
        for item in iterable:
            yield item
            progress.update()
