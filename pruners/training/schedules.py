"""Schedules: small serialisable callables of the training step. Pruning schedules answer
`step -> (should_prune, target_sparsity)`; `TemperatureSchedule` answers `step -> temperature` for
learned Gumbel masks.

`step` counts finished training steps (the optimizer's iterations after the
batch), so step `s` is the end of batch `s`. A schedule prunes inside its
window `[begin_step, end_step]` and reaches its final sparsity at `end_step`.
"""

import bisect
import logging
import math

from gated_bert.vocabulary import ANNEALING

log = logging.getLogger(__name__)


def _check_window(begin_step, end_step):
    if begin_step < 0 or end_step <= begin_step:
        raise ValueError(
            f"need 0 <= begin_step < end_step, got begin_step={begin_step}, end_step={end_step}"
        )


def _check_fraction(name, value):
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {name}={value}")


class PolynomialSchedule:
    """Sparsity ramps from `start_sparsity` to `end_sparsity` as a polynomial of the step.

    `s(t) = end + (start - end) * (1 - (t - begin) / (end_step - begin)) ** power`:
    power 1 is a linear ramp, power 3 the cubic ramp of Zhu & Gupta (2017),
    which prunes fast early and slowly near the end.

    Args:
        start_sparsity: target at `begin_step`.
        end_sparsity: target at `end_step` and after.
        begin_step: first step that prunes.
        end_step: last step that prunes; always a pruning step.
        frequency: steps between pruning events, counted from `begin_step`.
        power: exponent of the ramp (1 linear, 3 cubic).
    """

    def __init__(self, start_sparsity, end_sparsity, begin_step, end_step, frequency=1, power=3):
        _check_window(begin_step, end_step)
        _check_fraction("start_sparsity", start_sparsity)
        _check_fraction("end_sparsity", end_sparsity)
        if start_sparsity > end_sparsity:
            raise ValueError(
                f"start_sparsity must not exceed end_sparsity, got {start_sparsity} > {end_sparsity}"
            )
        if frequency < 1:
            raise ValueError(f"frequency must be a positive number of steps, got frequency={frequency}")
        if power <= 0:
            raise ValueError(f"power must be positive, got power={power}")
        self.start_sparsity = start_sparsity
        self.end_sparsity = end_sparsity
        self.begin_step = begin_step
        self.end_step = end_step
        self.frequency = frequency
        self.power = power

    def target(self, step):
        """Sparsity the ramp asks for at `step` (start before the window, end after it)."""
        progress = min(max((step - self.begin_step) / (self.end_step - self.begin_step), 0.0), 1.0)
        return self.end_sparsity + (self.start_sparsity - self.end_sparsity) * (1.0 - progress) ** self.power

    def __call__(self, step):
        in_window = self.begin_step <= step <= self.end_step
        on_beat = (step - self.begin_step) % self.frequency == 0 or step == self.end_step
        return in_window and on_beat, self.target(step)

    def get_config(self):
        return {"class_name": type(self).__name__, "start_sparsity": self.start_sparsity,
                "end_sparsity": self.end_sparsity, "begin_step": self.begin_step, "end_step": self.end_step,
                "frequency": self.frequency, "power": self.power}


class StepListSchedule:
    """Walks a list of sparsity levels evenly over the window, one pruning event per level.

    Level `k` of `K` takes effect at `begin_step + round(k * (end_step - begin_step) / (K - 1))`,
    so the first level applies at `begin_step` and the last at `end_step`.

    Args:
        levels: non-decreasing sparsities in [0, 1] (fractions, not percentages).
        begin_step: step of the first level.
        end_step: step of the last level.
    """

    def __init__(self, levels, begin_step, end_step):
        _check_window(begin_step, end_step)
        levels = [float(level) for level in levels]
        if not levels:
            raise ValueError("levels must hold at least one sparsity")
        for level in levels:
            _check_fraction("every level", level)
        if any(b < a for a, b in zip(levels, levels[1:], strict=False)):
            raise ValueError(f"levels must be non-decreasing, got {levels}")
        self.levels = levels
        self.begin_step = begin_step
        self.end_step = end_step
        span, count = end_step - begin_step, len(levels)
        self.event_steps = [begin_step + round(k * span / (count - 1)) if count > 1 else end_step
                            for k in range(count)]

    def target(self, step):
        """The latest level whose event step has passed (0 before the first)."""
        reached = bisect.bisect_right(self.event_steps, step)
        return self.levels[reached - 1] if reached else 0.0

    def __call__(self, step):
        return step in self.event_steps, self.target(step)

    def get_config(self):
        return {"class_name": type(self).__name__, "levels": self.levels, "begin_step": self.begin_step,
                "end_step": self.end_step}


class TemperatureSchedule:
    """A callable `step -> temperature`, from `start` at step 0 to `end` at `total_steps`.

    `linear` interpolates, `exponential` interpolates geometrically
    (`start * (end / start) ** (step / total_steps)`), `constant` stays at
    `start`. Steps past `total_steps` keep the end value.

    Args:
        start: temperature at step 0 (> 0).
        end: temperature at `total_steps` (> 0).
        total_steps: length of the annealing.
        mode: one of `ANNEALING`.
    """

    def __init__(self, start, end, total_steps, mode="exponential"):
        if start <= 0 or end <= 0:
            raise ValueError(f"temperatures must be positive, got start={start}, end={end}")
        if total_steps <= 0:
            raise ValueError(f"total_steps must be positive, got total_steps={total_steps}")
        if mode not in ANNEALING:
            raise ValueError(f"unknown annealing mode {mode!r}; choose one of {', '.join(ANNEALING)}")
        self.start = float(start)
        self.end = float(end)
        self.total_steps = int(total_steps)
        self.mode = mode

    def __call__(self, step):
        progress = min(max(step / self.total_steps, 0.0), 1.0)
        if self.mode == "linear":
            return self.start + (self.end - self.start) * progress
        if self.mode == "exponential":
            return self.start * math.exp(progress * math.log(self.end / self.start))
        return self.start

    def get_config(self):
        return {"start": self.start, "end": self.end, "total_steps": self.total_steps, "mode": self.mode}


SCHEDULES = {cls.__name__: cls for cls in (PolynomialSchedule, StepListSchedule)}


def schedule_from_config(config):
    """Rebuild a schedule from its `get_config()`."""
    config = dict(config)
    name = config.pop("class_name", None)
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule class {name!r}; known: {sorted(SCHEDULES)}")
    return SCHEDULES[name](**config)


def pruning_window(start_epoch, end_epoch, epochs, steps_per_epoch):
    """Convert the pruning epochs to `(begin_step, end_step)`, capping the end at the run's length.

    Pruning begins once `start_epoch` epochs have finished and ends with
    epoch `end_epoch`; an end past the last epoch is capped there, with a warning.
    """
    if end_epoch > epochs:
        log.warning("pruning_end_epoch=%d is past the last epoch; capped at epochs=%d", end_epoch, epochs)
        end_epoch = epochs
    if not 0 <= start_epoch < end_epoch:
        raise ValueError(
            f"pruning must start before it ends: pruning_start_epoch={start_epoch}, "
            f"pruning_end_epoch={end_epoch} (after capping at epochs={epochs})"
        )
    return start_epoch * steps_per_epoch, end_epoch * steps_per_epoch


def step_levels(sparsity_steps, start_sparsity, end_sparsity):
    """The levels a step-list schedule walks: `sparsity_steps` (percentages) clipped to the
    sparsity range, starting at `start_sparsity` when it is above zero and ending at `end_sparsity`."""
    inside = [p / 100.0 for p in sparsity_steps if start_sparsity < p / 100.0 < end_sparsity]
    head = [start_sparsity] if start_sparsity > 0 else []
    return [*head, *inside, end_sparsity]
