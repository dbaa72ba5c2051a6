"""The forecaster stage (`ModelForecaster`) and the predictive policy in the simulator.

Covers: no forecast (so a reactive fallback) until the model has enough history; forecasts that cover
the coming buckets once it has; forecasts scored against what then happened (coverage, error against
"no change"); the recurring load is what the same time of day reached on most past days (none
from one day); a target that disappears is forgotten; a forecast tape replayed on the same request
trace gives exactly the decisions of the run that recorded it; and on a daily wave with a steep
morning ramp the predictive policy is overloaded less than the HPA, at a cost close to it. Also what a
track keeps: its buckets bounded in float arrays, the recurring load they give the same as a plain
look-up of past days where buckets are missing, and a seed job that carries the means of the recorded
buckets (not the recorded points) and seeds the track as the inline fitter does.
"""

from __future__ import annotations

import math
import pickle
from collections import deque
from collections.abc import Callable, Collection, Hashable, Sequence

import numpy as np
import pandas as pd
import pytest

from autoscaler.fitting import FitDone, FitJob, ModelState
from autoscaler.forecast_stage import (
    DAY_S,
    MAX_LEVEL_CHANGE,
    ForecastSettings,
    ModelForecaster,
    _Buckets,
    _Seeded,
    _SeedWork,
    _Track,
)
from autoscaler.metrics import MetricKind
from autoscaler.model import Bounds, LoadSnapshot, Sample, Target, TargetConfig, TargetRef, WorkloadState
from autoscaler.simulate import Grid, RunResult, Scenario, Trace, run, score
from autoscaler.simulate.tape import ForecastTape
from forecasting import ModelName, make_forecaster

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


def test_the_buckets_kept_are_the_last_ones_in_compact_float_arrays() -> None:
    size = 50
    kept = _Buckets(size)
    times: deque[float] = deque(maxlen=size)
    values: deque[float] = deque(maxlen=size)
    rng = np.random.default_rng(3)
    at = 0.0
    for _ in range(400):
        count = int(rng.choice([1, 1, 1, 5, 49, 50, 120]))
        new_times = np.arange(count, dtype=np.float64) * 300.0 + at
        new_values = rng.uniform(0, 100, count)
        at += 300.0 * count
        if count == 1:
            kept.append(float(new_times[0]), float(new_values[0]))
        else:
            kept.extend(new_times, new_values)
        times.extend(new_times.tolist())
        values.extend(new_values.tolist())
        assert kept.times.tolist() == list(times)
        assert kept.values.tolist() == list(values)
        assert kept.times.dtype == kept.values.dtype == np.float64
        # One week's buckets and a little room: never a deque of float objects, never unbounded.
        assert kept._times.nbytes <= 8 * (size + size // 8)
    kept.clear()
    assert len(kept) == 0
    assert kept.times.shape == (0,)


def test_a_track_keeps_history_buckets_of_what_it_observed() -> None:
    settings = ForecastSettings(model=ModelName.NAIVE, history_buckets=36)
    track = _Track(MetricKind.REQUESTS, settings, make_forecaster(ModelName.NAIVE))
    for t in range(START, START + 100 * 300, 60):
        track.observe(t, ripple(t), 0.8)
    # The bucket still open is not kept; each one closed is kept as the mean of its samples.
    closed = [START + 300 * i for i in range(99)][-36:]
    assert len(track._history) == 36
    assert track._history.times.tolist() == closed
    expected = [np.mean([ripple(t) for t in range(b, b + 300, 60)]) for b in closed]
    assert track._history.values.tolist() == pytest.approx(expected, rel=1e-12)


def reference_recurring(
    settings: ForecastSettings, known: dict[float, float], times: Sequence[float], last: float
) -> tuple[float, ...]:
    """The recurring load by looking up each past bucket in a dict of every bucket kept."""
    step = settings.bucket_s
    recent = [known.get(last - i * step) for i in range(settings.recurring_level_buckets)]
    ratios = []
    for day in range(1, settings.recurring_days + 1):
        past = [known.get(last - day * DAY_S - i * step) for i in range(len(recent))]
        pairs = [(r, p) for r, p in zip(recent, past, strict=True) if r is not None and p is not None]
        if pairs and sum(p for _, p in pairs) > 0:
            ratios.append(sum(r for r, _ in pairs) / sum(p for _, p in pairs))
    if len(ratios) < 2:
        return ()
    level = min(MAX_LEVEL_CHANGE, max(1 / MAX_LEVEL_CHANGE, sorted(ratios)[len(ratios) // 2]))
    out = []
    for t in times:
        days = [
            known[t - d * DAY_S] for d in range(1, settings.recurring_days + 1) if t - d * DAY_S in known
        ]
        if len(days) < 2:
            return ()
        out.append(
            sorted(days, reverse=True)[math.ceil(settings.recurring_share * len(days)) - 1] * level
        )
    return tuple(out)


@pytest.mark.parametrize("share", [pytest.param(1.0, id="every-day"), pytest.param(0.6, id="most-days")])
def test_recurring_load_is_a_look_up_of_past_days_where_buckets_are_missing(share: float) -> None:
    settings = ForecastSettings(model=ModelName.NAIVE, recurring_share=share)
    track = _Track(MetricKind.REQUESTS, settings, make_forecaster(ModelName.NAIVE))
    rng = np.random.default_rng(11)
    grid = np.arange(9 * 288, dtype=np.float64) * 300.0 + START
    # Buckets missing at random, for hours at a time, and for more than a day.
    present = rng.uniform(size=grid.size) > 0.15
    present[500:560] = False
    present[3 * 288 + 100 : 4 * 288 + 120] = False
    load = rng.uniform(10, 100, grid.size)
    track.seed(grid[present], load[present], 0.8)
    kept = slice(-settings.history_buckets, None)
    known = dict(zip(grid[present][kept].tolist(), load[present][kept].tolist(), strict=True))
    outcomes = []
    for last in grid[-3 * 288 :: 7].tolist():
        times = tuple(last + 300.0 * (i + 1) for i in range(6))
        got = track._recurring(times, last)
        assert got == reference_recurring(settings, known, times, last)
        outcomes.append(bool(got))
    assert any(outcomes)
    assert not all(outcomes)  # some hours have fewer than two past days kept


class Queued:
    """A concurrent fitter that keeps what is submitted until the test runs it."""

    def __init__(self) -> None:
        self.jobs: list[FitJob] = []
        self.done: list[FitDone] = []

    @property
    def concurrent(self) -> bool:
        return True

    def submit(self, job: FitJob) -> None:
        self.jobs.append(job)

    def run(self) -> None:
        self.done = [FitDone(job.key, pickle.loads(pickle.dumps(job.work()))) for job in self.jobs]
        self.jobs = []

    def collect(self) -> tuple[FitDone, ...]:
        done, self.done = tuple(self.done), []
        return done

    def state(self, key: Hashable) -> ModelState | None:
        return ModelState.QUEUED if any(job.key == key for job in self.jobs) else None

    def discard(self, keys: Collection[Hashable]) -> None:
        self.jobs = [job for job in self.jobs if job.key not in keys]


class Recorded:
    def __init__(self, series: pd.Series) -> None:
        self.series = series

    def recorded(self, ref: TargetRef, kind: MetricKind) -> pd.Series | None:
        return self.series

    def pending(self, ref: TargetRef, kind: MetricKind) -> bool:
        return False


class ReadLater(Recorded):
    """A past that a source reads some ticks later (a large fleet's is read a share a tick)."""

    def __init__(self, series: pd.Series) -> None:
        super().__init__(series)
        self.waiting = True

    def recorded(self, ref: TargetRef, kind: MetricKind) -> pd.Series | None:
        assert not self.waiting, "the past was read before the source had it"
        return self.series

    def pending(self, ref: TargetRef, kind: MetricKind) -> bool:
        return self.waiting


def test_a_model_whose_past_is_still_to_be_read_waits_for_it_and_is_seeded_from_it() -> None:
    now = START + 3 * DAY + 150
    minutes = np.arange(now - 3 * DAY, now, 60)
    past = pd.Series([wave(float(t)) for t in minutes], index=pd.to_datetime(minutes, unit="s"))
    target = Target(WorkloadState(REF, 4, 4), CONFIG)
    source = ReadLater(past)
    fitter = Queued()
    forecaster = ModelForecaster(ForecastSettings(model=ModelName.NAIVE), fitter=fitter)
    for tick in range(3):
        at = now + 30 * tick
        forecasts = forecaster.forecast(
            target, LoadSnapshot.of(requests=Sample(wave(at), at)), at, source
        )
        # Decided reactively meanwhile, for the same reason as while its model is fitted.
        assert forecasts.get(MetricKind.REQUESTS) is None
        assert MetricKind.REQUESTS in forecasts.fitting
        assert fitter.jobs == []
    source.waiting = False
    at = now + 90
    forecaster.forecast(target, LoadSnapshot.of(requests=Sample(wave(at), at)), at, source)
    (job,) = fitter.jobs
    assert isinstance(job.work, _SeedWork)
    assert len(job.work.means) == 3 * 288


def test_a_seed_job_carries_bucket_means_and_seeds_as_the_inline_fitter_does() -> None:
    # Three days of one-minute points, ending within a bucket that is then not complete.
    now = START + 3 * DAY + 150
    minutes = np.arange(now - 3 * DAY, now, 60)
    rng = np.random.default_rng(5)
    points = np.array([wave(float(t)) for t in minutes]) * rng.uniform(0.9, 1.1, minutes.size)
    past = pd.Series(points, index=pd.to_datetime(minutes, unit="s"))
    target = Target(WorkloadState(REF, 4, 4), CONFIG)
    load = LoadSnapshot.of(requests=Sample(wave(now), now))
    fitter = Queued()
    pooled = ModelForecaster(ForecastSettings(model=ModelName.NAIVE), fitter=fitter)
    pooled.forecast(target, load, now, Recorded(past))
    (job,) = fitter.jobs
    work = job.work
    assert isinstance(work, _SeedWork)
    complete = (now // 300) * 300
    want = past[past.index < pd.to_datetime(complete, unit="s")].resample("300s").mean()
    assert work.times.dtype == work.means.dtype == np.float64
    assert work.times.tolist() == [t.timestamp() for t in want.index]
    assert work.means.tolist() == pytest.approx(want.to_list(), rel=1e-12)
    assert len(pickle.dumps(job)) < len(pickle.dumps(past)) / 3
    fitter.run()
    (done,) = fitter.done
    assert isinstance(done.result, _Seeded)
    assert isinstance(done.result.times, np.ndarray)
    assert isinstance(done.result.values, np.ndarray)
    later = now + 300
    pooled.forecast(target, LoadSnapshot.of(requests=Sample(wave(later), later)), later)
    inline = ModelForecaster(ForecastSettings(model=ModelName.NAIVE))
    inline.forecast(target, load, now, Recorded(past))
    inline.forecast(target, LoadSnapshot.of(requests=Sample(wave(later), later)), later)
    assert pooled.latest(REF, MetricKind.REQUESTS) is not None
    assert pooled.latest(REF, MetricKind.REQUESTS) == inline.latest(REF, MetricKind.REQUESTS)
