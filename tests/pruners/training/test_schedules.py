"""Pruning schedules: values at the window's edges and inside, step-list walking, end-epoch capping."""

import logging

import pytest

from pruners import PolynomialSchedule, StepListSchedule, pruning_window, schedule_from_config, step_levels


def test_linear_ramp_edges_and_middle():
    schedule = PolynomialSchedule(0.1, 0.9, begin_step=100, end_step=200, frequency=10, power=1)
    assert schedule(99) == (False, pytest.approx(0.1))
    assert schedule(100) == (True, pytest.approx(0.1))
    assert schedule(150) == (True, pytest.approx(0.5))
    assert schedule(155) == (False, pytest.approx(0.54))
    assert schedule(200) == (True, pytest.approx(0.9))
    assert schedule(201) == (False, pytest.approx(0.9))


def test_cubic_ramp_prunes_fast_early():
    schedule = PolynomialSchedule(0.0, 0.8, begin_step=0, end_step=100, frequency=25, power=3)
    assert schedule.target(0) == 0.0
    assert schedule.target(50) == pytest.approx(0.8 * (1 - 0.5**3))  # 0.7: most of the way at half time
    assert schedule.target(100) == pytest.approx(0.8)
    assert [step for step in range(101) if schedule(step)[0]] == [0, 25, 50, 75, 100]


def test_end_step_prunes_even_off_the_beat():
    schedule = PolynomialSchedule(0.0, 0.5, begin_step=0, end_step=10, frequency=4, power=1)
    assert [step for step in range(12) if schedule(step)[0]] == [0, 4, 8, 10]


def test_step_list_walks_levels_evenly_over_the_window():
    schedule = StepListSchedule([0.1, 0.5, 0.7, 0.9], begin_step=30, end_step=60)
    assert schedule.event_steps == [30, 40, 50, 60]
    assert schedule(29) == (False, 0.0)
    assert schedule(30) == (True, 0.1)
    assert schedule(45) == (False, 0.5)
    assert schedule(50) == (True, 0.7)
    assert schedule(60) == (True, 0.9)
    assert schedule(1000) == (False, 0.9)


def test_step_levels_are_clipped_to_the_sparsity_range():
    percentages = (10, 25, 50, 70, 75, 80, 84, 88, 90, 92, 99.5)
    assert step_levels(percentages, 0.0, 0.9) == pytest.approx([0.1, 0.25, 0.5, 0.7, 0.75, 0.8, 0.84, 0.88, 0.9])
    assert step_levels(percentages, 0.3, 0.8) == pytest.approx([0.3, 0.5, 0.7, 0.75, 0.8])
    assert step_levels((), 0.0, 0.5) == [0.5]


def test_pruning_window_converts_epochs_and_caps_the_end(caplog):
    assert pruning_window(4, 23, epochs=25, steps_per_epoch=10) == (40, 230)
    with caplog.at_level(logging.WARNING):
        assert pruning_window(1, 23, epochs=5, steps_per_epoch=10) == (10, 50)
    assert "capped at epochs=5" in caplog.text
    with pytest.raises(ValueError, match="pruning_start_epoch=5"):
        pruning_window(5, 23, epochs=5, steps_per_epoch=10)


@pytest.mark.parametrize("schedule", [PolynomialSchedule(0.2, 0.8, 5, 50, 5, 1), StepListSchedule([0.5, 0.9], 3, 9)])
def test_schedules_round_trip_through_their_config(schedule):
    rebuilt = schedule_from_config(schedule.get_config())
    assert type(rebuilt) is type(schedule)
    assert [rebuilt(step) for step in range(60)] == [schedule(step) for step in range(60)]


@pytest.mark.parametrize(("build", "message"), [
    (lambda: PolynomialSchedule(0.9, 0.1, 0, 10), "start_sparsity must not exceed"),
    (lambda: PolynomialSchedule(0.0, 1.5, 0, 10), "end_sparsity must be in"),
    (lambda: PolynomialSchedule(0.0, 0.5, 10, 10), "begin_step=10, end_step=10"),
    (lambda: PolynomialSchedule(0.0, 0.5, 0, 10, frequency=0), "frequency=0"),
    (lambda: StepListSchedule([0.5, 0.2], 0, 10), "non-decreasing"),
    (lambda: schedule_from_config({"class_name": "Nope"}), "unknown schedule class 'Nope'"),
])
def test_bad_schedules_name_the_value(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_pruning_from_config_builds_what_each_method_documents(caplog):
    from experiment.config import GatedBertConfig
    from pruners import MagnitudePruner, MovementPruner, SptPruner, pruning_from_config

    def build(method, **overrides):
        config = GatedBertConfig(enable_pruning=True, pruning_method=method, epochs=10, pruning_start_epoch=2,
                                 pruning_end_epoch=8, end_sparsity=0.9, **overrides)
        return pruning_from_config(config, steps_per_epoch=100, prunable_weights=4 * 1_048_576)

    pruner, schedule = build("movement", movement_schedule="linear", pruning_scope="layer")
    assert isinstance(pruner, MovementPruner) and pruner.scope == "layer"
    assert (schedule.begin_step, schedule.end_step, schedule.frequency, schedule.power) == (200, 800, 67, 1)
    pruner, schedule = build("magnitude")
    assert isinstance(pruner, MagnitudePruner)
    assert schedule.levels == pytest.approx([0.1, 0.25, 0.5, 0.7, 0.75, 0.8, 0.84, 0.88, 0.9])
    with caplog.at_level(logging.WARNING):
        pruner, schedule = build("spt", pruning_frequency_steps=10, spt_explore_per_layer=True)
    assert "pruning_frequency_steps=10 is ignored by spt" in caplog.text
    assert isinstance(pruner, SptPruner) and pruner.explore_per_layer and pruner.seed == 42
    assert pruner.epsilon == pytest.approx(0.0025 / 4)  # four times the tiny preset's prunable weights
    assert pruning_from_config(GatedBertConfig(), 100, 1000) == (None, None)
