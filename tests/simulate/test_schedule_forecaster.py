"""The `scheduled` peer's forecast: each coming hour is the mean of the same hour over up to 14 past
days, redone every 6 hours, and nothing before one past day is seen."""

from __future__ import annotations

from collections.abc import Callable

from autoscaler.metrics import MetricKind
from autoscaler.model import (
    Bounds,
    Forecasts,
    LoadForecast,
    LoadSnapshot,
    Sample,
    Target,
    TargetConfig,
    TargetRef,
    WorkloadState,
)
from autoscaler.simulate.schedule import HourlyProfileForecaster

HOUR = 3600.0
DAY = 24 * HOUR
START = 10_000 * DAY
REF = TargetRef("shop", "agent")
TARGET = Target(
    WorkloadState(REF, spec_replicas=2, ready_replicas=2),
    TargetConfig(
        metrics=(MetricKind.REQUESTS,), bounds=Bounds(1, 10), per_pod={MetricKind.REQUESTS: 1.0}
    ),
)


def feed(
    forecaster: HourlyProfileForecaster, load: Callable[[float], float], until: float
) -> LoadForecast | None:
    """A sample every 15 s (describing the load 30 s before, from START on) up to `until`; the
    forecast in force then."""
    t = START + 30
    forecasts = Forecasts()
    while t <= until:
        snapshot = LoadSnapshot.of(requests=Sample(load(t - 30), t - 30))
        forecasts = forecaster.forecast(TARGET, snapshot, t)
        t += 15.0
    return forecasts.get(MetricKind.REQUESTS)


def mean_at(forecast: LoadForecast | None, t: float) -> float | None:
    point = None if forecast is None else forecast.at(t)
    return None if point is None else point[0]


def hour_of_day(t: float) -> float:
    return (t % DAY) // HOUR


def test_no_forecast_before_a_whole_past_day() -> None:
    assert feed(HourlyProfileForecaster(), hour_of_day, START + 20 * HOUR) is None


def test_each_hour_is_the_same_hour_of_the_past_days() -> None:
    def load(t: float) -> float:
        return 10.0 if hour_of_day(t) == 9 else 1.0

    forecast = feed(HourlyProfileForecaster(), load, START + DAY + 7 * HOUR)
    assert mean_at(forecast, START + DAY + 9 * HOUR) == 10.0
    assert mean_at(forecast, START + DAY + 10 * HOUR) == 1.0


def test_past_days_are_averaged_up_to_the_window() -> None:
    # Day d carries d units all day: an hour of day 3 is the mean of days 0, 1 and 2.
    def load(t: float) -> float:
        return float((t - START) // DAY)

    at = START + 3 * DAY + HOUR
    assert mean_at(feed(HourlyProfileForecaster(), load, at), at) == 1.0
    # With a window of one day, only yesterday counts.
    assert mean_at(feed(HourlyProfileForecaster(days=1), load, at), at) == 2.0


def test_the_forecast_is_redone_every_six_hours() -> None:
    first_at = START + DAY  # the first moment a whole past day covers the coming hours
    before = feed(HourlyProfileForecaster(), hour_of_day, first_at + 6 * HOUR - 15)
    after = feed(HourlyProfileForecaster(), hour_of_day, first_at + 6 * HOUR)
    assert before is not None
    assert after is not None
    assert (before.made_at, after.made_at) == (first_at, first_at + 6 * HOUR)
