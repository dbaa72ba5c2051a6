"""The forecaster stage (`ModelForecaster`) and the predictive policy in the simulator.

Covers: no forecast (so a reactive fallback) until the model has enough history; forecasts that cover
the coming buckets once it has; forecasts scored against what then happened (coverage, error against
"no change"); the recurring load is what the same time of day reached on most past days (none
from one day); a target that disappears is forgotten; a forecast tape replayed on the same request
trace gives exactly the decisions of the run that recorded it; and on a daily wave with a steep
morning ramp the predictive policy is overloaded less than the HPA, at a cost close to it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pytest

from autoscaler.forecast_stage import ForecastSettings, ModelForecaster
from autoscaler.metrics import MetricKind
from autoscaler.model import Bounds, LoadSnapshot, Sample, Target, TargetConfig, TargetRef, WorkloadState
from autoscaler.simulate import Grid, RunResult, Scenario, Trace, run, score
from autoscaler.simulate.tape import ForecastTape
from forecasting import ModelName

REF = TargetRef("shop", "web")
CONFIG = TargetConfig(metrics=(MetricKind.REQUESTS,), bounds=Bounds(1, 50),
                      per_pod={MetricKind.REQUESTS: 10.0})  # fmt: skip
DAY = 86_400
START = 1_700_000_000 - 1_700_000_000 % DAY


def wave(t: float) -> float:
    """Requests/s: a daily cycle between 20 and 200 with a steep rise in the morning (most of it
    within half an hour: faster than the HPA follows, slow enough for a daily profile to learn)."""
    phase = (t % DAY) / DAY
    rise = 1.0 / (1.0 + math.exp(max(-60.0, min(60.0, -300 * (phase - 0.35)))))
    return 20.0 + 180.0 * rise * (1.0 if phase < 0.8 else 0.3)


def ripple(t: float) -> float:
    """Requests/s that change every bucket: an hourly sine."""
    return 50.0 + 30.0 * math.sin(2 * math.pi * t / 3600)


def feed(
    stage: ModelForecaster,
    seconds: int,
    targets: Sequence[Target],
    load: Callable[[float], float] = wave,
) -> None:
    for t in range(START, START + seconds, 30):
        for target in targets:
            stage.forecast(target, LoadSnapshot.of(requests=Sample(load(t), t)), t + 30)
        stage.keep_only({target.state.ref for target in targets})


def naive_stage() -> ModelForecaster:
    return ModelForecaster(ForecastSettings(model=ModelName.NAIVE))


def test_no_forecast_before_history_then_forecasts_cover_the_next_buckets() -> None:
    stage = ModelForecaster()
    target = Target(WorkloadState(REF, 4, 4), CONFIG)
    feed(stage, 3600, [target])
    assert stage.latest(REF, MetricKind.REQUESTS) is None  # an hour is too short for ARIMA
    feed(stage, 2 * DAY, [target])
    forecast = stage.latest(REF, MetricKind.REQUESTS)
    assert forecast is not None
    now = START + 2 * DAY
    # The first bucket is the one still filling (it holds the latest sample); the forecast reaches
    # past any lead time a policy would ask for.
    assert forecast.times[0] <= now - 30 < forecast.times[0] + forecast.step_s
    assert forecast.peak_upper(now, now + 1500) is not None
    assert len(forecast.times) == 6
    assert all(m <= u for m, u in zip(forecast.mean, forecast.upper, strict=True))
    assert forecast.quality.checked == 48  # the rolling window is full
    assert forecast.quality.coverage is not None
    assert forecast.quality.coverage >= 0.7


def test_quality_scores_against_no_change() -> None:
    # A naive model *is* "no change": its scaled error is exactly 1.
    stage = naive_stage()
    target = Target(WorkloadState(REF, 4, 4), CONFIG)
    feed(stage, 6 * 3600, [target], ripple)
    forecast = stage.latest(REF, MetricKind.REQUESTS)
    assert forecast is not None
    assert forecast.quality.scaled_error == pytest.approx(1.0)


def test_flat_load_does_not_make_a_forecast_look_infinitely_bad() -> None:
    # "No change" is perfect on flat load; small misses are then judged against the load level.
    stage = ModelForecaster(ForecastSettings(model=ModelName.SEASONAL_NAIVE))
    target = Target(WorkloadState(REF, 4, 4), CONFIG)
    feed(stage, DAY + 6 * 3600, [target], lambda t: 20.0 + (0.4 if (t // 300) % 2 else 0.0))
    forecast = stage.latest(REF, MetricKind.REQUESTS)
    assert forecast is not None
    assert forecast.quality.scaled_error is not None
    assert forecast.quality.scaled_error < 1.0


def test_a_target_that_disappears_is_forgotten() -> None:
    stage = naive_stage()
    other = TargetRef("shop", "cart")
    a = Target(WorkloadState(REF, 4, 4), CONFIG)
    b = Target(WorkloadState(other, 4, 4), CONFIG)
    feed(stage, 3600, [a, b])
    assert stage.latest(other, MetricKind.REQUESTS) is not None
    feed(stage, 600, [a])
    assert stage.latest(other, MetricKind.REQUESTS) is None


def wave_trace(days: int) -> Trace:
    times = np.arange(START, START + days * DAY + 1, 300, dtype=np.int64)
    values = np.array([wave(float(t)) * 300 for t in times])
    return Trace("wave", times, values, 300)


WaveRuns = tuple[Grid, ForecastTape, RunResult, RunResult]

SCENARIO = Scenario(kind=MetricKind.REQUESTS, capacity=5.0, target_utilization=0.7,
                    startup_delay_s=120, warmup_s=2 * DAY)  # fmt: skip


@pytest.fixture(scope="module")
def wave_runs() -> WaveRuns:
    # Seasonal naive ("same time yesterday") knows a ramp that repeats daily to the minute: the test
    # is about the path from forecast to pods, not about one model's accuracy.
    grid = Grid.over(wave_trace(3), SCENARIO.step_s)
    tape = ForecastTape(ModelForecaster(ForecastSettings(model=ModelName.SEASONAL_NAIVE)))
    predictive = run("predictive", grid, SCENARIO, tape=tape)
    hpa = run("hpa", grid, SCENARIO)
    return grid, tape, predictive, hpa


def test_replayed_tape_gives_the_same_decisions(
    wave_runs: WaveRuns,
) -> None:
    grid, tape, recorded, _ = wave_runs
    replayed = run("predictive", grid, SCENARIO, tape=tape.replaying())
    assert np.array_equal(replayed.desired, recorded.desired)


def test_predictive_is_ahead_of_the_hpa_on_a_daily_ramp(
    wave_runs: WaveRuns,
) -> None:
    grid, _, predictive, hpa = wave_runs
    oracle_hours = score(run("oracle", grid, SCENARIO), 1.0).pod_hours
    p = score(predictive, oracle_hours)
    h = score(hpa, oracle_hours)
    assert h.overload_pct > 0.2  # the HPA reacts only once the morning ramp has arrived
    assert p.overload_pct < h.overload_pct / 2
    assert p.pod_hours < 1.05 * h.pod_hours
    band = predictive.forecast_upper
    assert band is not None
    assert np.mean(~np.isnan(band[len(band) // 2 :])) > 0.95  # forecasts in force once warmed up


def batch_job(t: float) -> float:
    """Requests/s: 20, and 300 for the half hour from 02:00 every day."""
    return 300.0 if 2 * 3600 <= t % DAY < 2.5 * 3600 else 20.0


@pytest.mark.parametrize(
    ("days", "want"),
    [
        pytest.param(3, 300.0, id="three-days-each-with-the-job"),
        pytest.param(1, None, id="one-day-is-not-a-pattern"),
    ],
)
def test_recurring_load_is_what_the_same_time_reached_on_most_days(
    days: int, want: float | None
) -> None:
    stage = naive_stage()
    target = Target(WorkloadState(REF, 2, 2), CONFIG)
    # Up to 01:50 of the next day: the buckets ahead reach into the job's half hour.
    feed(stage, days * DAY + 110 * 60, [target], batch_job)
    forecast = stage.latest(REF, MetricKind.REQUESTS)
    assert forecast is not None
    assert forecast.mean[0] == pytest.approx(20.0)  # "no change" has not seen it coming
    if want is None:
        assert forecast.recurring == ()
        return
    assert len(forecast.recurring) == len(forecast.times)
    by_time = dict(zip(forecast.times, forecast.recurring, strict=True))
    job = START + days * DAY + 2 * 3600
    assert by_time[job] == pytest.approx(want)
    assert by_time[job - 300] == pytest.approx(20.0)


def test_a_daily_batch_job_is_served_ahead_even_when_the_forecast_is_not_trusted() -> None:
    # Around the job the load jumps at random (±60 % every 5 minutes): "no change" forecasts are off
    # by a third of the load and more, so the trust gate rejects them, as it should; the job itself
    # comes at 02:00 every day.
    rng = np.random.default_rng(7)
    times = np.arange(START, START + 4 * DAY + 1, 300, dtype=np.int64)
    noisy = 20.0 * (1.0 + rng.uniform(-0.6, 0.6, len(times)))
    values = np.where((times % DAY >= 2 * 3600) & (times % DAY < 2.5 * 3600), 300.0, noisy) * 300
    grid = Grid.over(Trace("batch", times, values, 300), SCENARIO.step_s)
    tape = ForecastTape(ModelForecaster(ForecastSettings(model=ModelName.NAIVE)))
    predictive = run("predictive", grid, SCENARIO, tape=tape)
    hpa = run("hpa", grid, SCENARIO)
    oracle_hours = score(run("oracle", grid, SCENARIO), 1.0).pod_hours
    p = score(predictive, oracle_hours)
    h = score(hpa, oracle_hours)
    assert h.unserved_pct > 1.0  # the HPA starts pods only once the job has arrived
    assert p.unserved_pct < h.unserved_pct / 3
    assert p.pod_hours < 1.1 * h.pod_hours
