"""The `crane` peer: Crane's DSP prediction, and the EHPA through the simulator. A load that surges
at 09:00 every day is met with ready pods once two whole days are stored, where the HPA only reacts;
a load without a daily period gets no prediction, and then the peer is the HPA."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache

import numpy as np
import pytest

from autoscaler.metrics import MetricKind
from autoscaler.model import Bounds, LoadSnapshot, Sample, Target, TargetConfig, TargetRef, WorkloadState
from autoscaler.simulate import Grid, RunResult, Scenario, Trace, run
from autoscaler.simulate.crane import (
    DEFAULT_ESTIMATORS,
    DspForecaster,
    dsp_prediction,
    prediction_error,
)

T0 = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp())
DAY = 86_400
HOUR = 3600
MINUTE = 60
STEP = 300
SCENARIO = Scenario(
    kind=MetricKind.REQUESTS,
    capacity=1.0,
    target_utilization=0.5,
    startup_delay_s=120,
    warmup_s=0,
)
REQUESTS = MetricKind.REQUESTS


def morning_rush(days: int) -> Trace:
    """2 load units/s, and 20 from 09:00 to 10:00 each day."""
    times = np.arange(0, days * DAY, STEP, dtype=np.int64)
    hour = (times % DAY) // HOUR
    rate = np.where(hour == 9, 20.0, 2.0)
    return Trace("morning-rush", times + T0, rate * STEP, STEP)


def growing(days: int) -> Trace:
    """A load that grows all along, with noise and no daily pattern."""
    times = np.arange(0, days * DAY, STEP, dtype=np.int64)
    noise = np.random.default_rng(3).normal(0.0, 0.5, len(times))
    rate = 2.0 + 8.0 * times / (days * DAY) + noise
    return Trace("growing", times + T0, np.maximum(rate, 0.1) * STEP, STEP)


@cache
def runs(trace: str) -> tuple[Grid, RunResult, RunResult]:
    grid = Grid.over(morning_rush(3) if trace == "morning-rush" else growing(3), SCENARIO.step_s)
    return grid, run("hpa", grid, SCENARIO), run("crane", grid, SCENARIO)


def step_at(grid: Grid, seconds: int) -> int:
    (k,) = np.flatnonzero(grid.times == T0 + seconds)
    return int(k)


def test_a_later_morning_is_met_with_ready_pods() -> None:
    grid, hpa, crane = runs("morning-rush")
    rush = step_at(grid, 2 * DAY + 9 * HOUR)
    # 20 units/s at 0.5 of a pod's capacity is 40 pods; the prediction's margin adds some.
    assert crane.ready[rush] >= 40
    # The HPA has only reacted to the first minutes of the ramp.
    assert hpa.ready[rush] < 25


def test_before_two_whole_days_are_stored_the_peer_is_the_hpa() -> None:
    grid, hpa, crane = runs("morning-rush")
    first_prediction = step_at(grid, 2 * DAY)
    assert np.array_equal(crane.desired[:first_prediction], hpa.desired[:first_prediction])
    assert not np.array_equal(crane.desired, hpa.desired)


def test_a_load_without_a_daily_period_gets_the_hpas_decisions() -> None:
    _, hpa, crane = runs("growing")
    assert np.array_equal(crane.desired, hpa.desired)
    assert [(c.at, c.replicas) for c in crane.changes] == [(c.at, c.replicas) for c in hpa.changes]


def daily_wave(days: float, phase_minutes: int = 0) -> np.ndarray:
    minutes = np.arange(phase_minutes, phase_minutes + int(days * 1440), dtype=np.float64)
    noise = np.random.default_rng(5).normal(0.0, 0.2, len(minutes))
    return 10.0 + 6.0 * np.sin(2 * np.pi * minutes / 1440) + noise


def test_the_dsp_predicts_the_next_day_of_a_daily_wave() -> None:
    history = daily_wave(7)
    predicted = dsp_prediction(history)
    assert predicted is not None
    assert len(predicted) == 1440
    truth = 10.0 + 6.0 * np.sin(2 * np.pi * np.arange(7 * 1440, 8 * 1440) / 1440)
    # Every estimator has a margin above the reconstruction, at most a fifth.
    assert np.all(predicted >= 0.97 * truth)
    assert np.all(predicted <= 1.25 * truth)


def test_nothing_is_predicted_from_less_than_two_whole_days() -> None:
    assert dsp_prediction(daily_wave(1.9)) is None
    assert dsp_prediction(daily_wave(2.0)) is not None


def test_a_series_without_a_daily_period_gets_no_prediction() -> None:
    minutes = np.arange(7 * 1440, dtype=np.float64)
    assert dsp_prediction(5.0 + minutes / 1440) is None
    # Eight-hour cycles are periodic, but not with a period Crane uses.
    assert dsp_prediction(10.0 + 5.0 * np.sin(2 * np.pi * minutes / 480)) is None


def test_an_under_prediction_costs_more_than_an_equal_over_prediction() -> None:
    actual = np.full(10, 100.0)
    under = prediction_error(actual, np.full(10, 90.0))
    over = prediction_error(actual, np.full(10, 110.0))
    assert over == pytest.approx(0.1)
    assert under == pytest.approx(-np.log(0.9) / np.log(1.25))
    assert under > 4 * over
    # An actual value near zero leaves percentages undefined: the mean absolute error decides.
    assert prediction_error(np.array([0.0, 10.0]), np.array([1.0, 12.0])) == pytest.approx(1.5)


def test_the_estimators_are_cranes_eight_defaults() -> None:
    assert len(DEFAULT_ESTIMATORS) == 8
    assert {e.margin_fraction for e in DEFAULT_ESTIMATORS} == {0.01, 0.10, 0.15, 0.20}
    assert {(e.min_items, e.low_amplitude_threshold) for e in DEFAULT_ESTIMATORS} == {
        (3, 1.0),
        (50, 0.05),
    }


TARGET = Target(
    WorkloadState(TargetRef("shop", "agent"), spec_replicas=5, ready_replicas=5),
    TargetConfig(
        metrics=(REQUESTS,), bounds=Bounds(1, 60), per_pod={REQUESTS: 0.5}, target_utilization=0.5
    ),
)


def feed(forecaster: DspForecaster, load: np.ndarray, start: float = 0.0) -> float:
    """One sample per minute, each the minute's mean, seen half a minute after it ends; returns the
    time of the last tick."""
    now = start
    for i, value in enumerate(load.tolist()):
        now = start + (i + 1) * MINUTE + 30
        forecaster.forecast(TARGET, LoadSnapshot.of(requests=Sample(value, now - 30, 60)), now)
    return now


def test_the_forecaster_refreshes_every_twelve_hours_and_withdraws_a_lost_period() -> None:
    forecaster = DspForecaster()
    wave = daily_wave(2.5)
    now = feed(forecaster, wave)
    made = forecaster.forecast(TARGET, LoadSnapshot(), now).get(REQUESTS)
    assert made is not None
    # Made at the refresh after two whole days, to reach past the next refresh and its hour.
    assert made.made_at == pytest.approx(2 * DAY + 90)
    assert made.step_s == MINUTE
    assert made.mean == made.upper
    assert made.times[-1] + MINUTE >= made.made_at + 13 * HOUR
    # The next refresh, after half a day of a load a hundred times higher, finds no daily period.
    now = feed(forecaster, np.full(13 * 60, 1_000.0), start=now - 30)
    assert forecaster.forecast(TARGET, LoadSnapshot(), now).get(REQUESTS) is None
