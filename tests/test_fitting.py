"""Fitting beside the tick (`autoscaler.fitting`, the forecaster stage with a concurrent fitter).

Covers: a tick whose models are still fitting returns at once and decides every workload reactively
with reason `fallback-model-fitting`, and a later tick uses the forecasts once the fits are done (the
gauge's states follow); jobs run new fits first, then drift refits, then scheduled ones, whatever
order they came in; the scheduled refits of many models fitted together land spread over the refit
period, and then keep to it; a deferred model leaves its scheduled refit to the caller and refits
when told; a fitted ARIMA model pickles as its parameters and unpickles to the same forecasts; and
the pool of processes gives the forecasts the inline fitter gives for the same data, all finite.
"""

from __future__ import annotations

import math
import os
import pickle
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from autoscaler.fitting import (
    WORKER_NICENESS,
    FitJob,
    ModelState,
    PooledFitter,
    Priority,
    default_workers,
    process_pool,
)
from autoscaler.forecast_stage import ForecastSettings, ModelForecaster, TrackKey
from autoscaler.metrics import MetricKind
from autoscaler.model import (
    Bounds,
    LoadForecast,
    LoadSnapshot,
    Sample,
    Target,
    TargetConfig,
    TargetRef,
    WorkloadState,
)
from autoscaler.policy import Mode, PredictivePolicy, Reason
from autoscaler.reconcile import DecisionMemory, Stages, reconcile_once
from autoscaler.stages import MetricsSource
from forecasting import ArimaConfig, FitReport, ModelName, RefitPolicy, RefitReason, make_forecaster
from forecasting.arima import ArimaForecaster
from forecasting.baselines import NaiveForecaster
from forecasting.lifecycle import scheduled_refit
from tests.forecasting.synthetic import daily_load
from tests.polling import eventually
from tests.test_reconcile import Cluster, Log

REQUESTS = MetricKind.REQUESTS
CONFIG = TargetConfig(metrics=(REQUESTS,), bounds=Bounds(1, 50), per_pod={REQUESTS: 10.0})
DAY = 86_400
STEP = 300
# Midnight, so that the recorded days line up with the synthetic daily shape.
NOW = 1_710_000_000 - 1_710_000_000 % DAY
REFS = tuple(TargetRef("shop", f"web-{i}") for i in range(3))


def recorded(days: float, end: float = NOW) -> pd.Series:
    """Requests/s on the 5-minute grid, ending at the bucket before `end`."""
    load = daily_load(days)
    index = pd.to_datetime(end - STEP * len(load) + STEP * np.arange(len(load)), unit="s")
    return pd.Series(load.to_numpy(), index=index)


@dataclass
class Metrics(MetricsSource):
    """Every target at the same load, with the same recorded past."""

    past: pd.Series
    rps: float = 100.0
    at: float = NOW
    asked: list[TargetRef] = field(default_factory=list)

    def observe(self, targets: Sequence[Target], now: float) -> Mapping[TargetRef, LoadSnapshot]:
        return {t.state.ref: LoadSnapshot.of(requests=Sample(self.rps, self.at)) for t in targets}

    def recorded(self, ref: TargetRef, kind: MetricKind) -> pd.Series | None:
        self.asked.append(ref)
        return self.past

    def pending(self, ref: TargetRef, kind: MetricKind) -> bool:
        return False


class HeldNaive(NaiveForecaster):
    """A model whose fit waits for the test to let it through."""

    def __init__(self, gate: threading.Event) -> None:
        super().__init__()
        self._gate = gate

    def fit(self, series: pd.Series) -> FitReport:
        assert self._gate.wait(30), "the test never let the fit through"
        return super().fit(series)


def threads(workers: int) -> PooledFitter:
    return PooledFitter(lambda: ThreadPoolExecutor(workers), workers)


def test_a_slow_model_does_not_delay_any_decision() -> None:
    gate = threading.Event()
    fitter = threads(1)
    fitter.start()
    try:
        forecaster = ModelForecaster(
            ForecastSettings(model=ModelName.NAIVE), lambda _: HeldNaive(gate), fitter
        )
        cluster, log = Cluster(dict.fromkeys(REFS, 4)), Log()
        metrics = Metrics(recorded(2))
        stages = Stages(cluster, metrics, forecaster, PredictivePolicy(interval_s=30), cluster, log)
        memory = DecisionMemory()

        began = time.monotonic()
        report = reconcile_once(stages, memory, NOW)
        # The fits are held for as long as the test likes: this tick waited for none of them.
        assert time.monotonic() - began < 5
        assert {d.ref for d in report.decisions} == set(REFS)
        for decision in report.decisions:
            assert decision.mode is Mode.REACTIVE
            assert Reason.FALLBACK_MODEL_FITTING in decision.reasons
            assert Reason.FALLBACK_NO_FORECAST not in decision.reasons
            assert report.forecasts[decision.ref].fitting == {REQUESTS}
        states = forecaster.model_states()
        assert states[ModelState.QUEUED] + states[ModelState.FITTING] == len(REFS)
        assert states[ModelState.FITTED] == 0

        gate.set()
        eventually(lambda: fitter.pending() == 0, "the held fits to finish", timeout_s=20)
        metrics.at = NOW + 30
        report = reconcile_once(stages, memory, NOW + 30)
        for decision in report.decisions:
            assert report.forecasts[decision.ref].get(REQUESTS) is not None
            assert not report.forecasts[decision.ref].fitting
            assert Reason.FALLBACK_MODEL_FITTING not in decision.reasons
            assert Reason.FALLBACK_NO_FORECAST not in decision.reasons
            # The seed replayed and scored the recorded past: the forecast is judged at once.
            assert decision.forecast_errors
        assert forecaster.model_states()[ModelState.FITTED] == len(REFS)
    finally:
        gate.set()
        fitter.shutdown()


def test_new_fits_run_before_drift_refits_before_scheduled_ones() -> None:
    held = threading.Event()
    ran: list[str] = []

    def work(name: str) -> Callable[[], object]:
        def run() -> object:
            if name == "busy":
                assert held.wait(30)
            ran.append(name)
            return name

        return run

    fitter = threads(1)
    fitter.start()
    try:
        fitter.submit(FitJob("busy", Priority.SCHEDULED, work("busy")))
        eventually(lambda: fitter.state("busy") is ModelState.FITTING, "the first job to start")
        arrivals = [
            ("scheduled-a", Priority.SCHEDULED),
            ("drifted-a", Priority.DRIFTED),
            ("new-a", Priority.NEW),
            ("scheduled-b", Priority.SCHEDULED),
            ("new-b", Priority.NEW),
            ("drifted-b", Priority.DRIFTED),
        ]
        for name, priority in arrivals:
            fitter.submit(FitJob(name, priority, work(name)))
        assert fitter.state("new-b") is ModelState.QUEUED
        fitter.discard(["scheduled-b"])
        held.set()
        eventually(lambda: fitter.pending() == 0, "the queue to drain")
        assert ran == ["busy", "new-a", "new-b", "drifted-a", "drifted-b", "scheduled-a"]
        assert {done.key for done in fitter.collect()} == {"busy", *ran}
        assert fitter.collect() == ()
    finally:
        held.set()
        fitter.shutdown()


def test_scheduled_refits_of_models_fitted_together_spread_over_the_period() -> None:
    every = timedelta(hours=6)
    fitted_at = pd.Timestamp(NOW, unit="s")  # the clock: every model fitted at this same moment
    keys = [TrackKey(TargetRef(f"ns-{i % 7}", f"app-{i}"), kind, 1) for i in range(400)
            for kind in (MetricKind.CPU, REQUESTS)]  # fmt: skip
    due = [scheduled_refit(fitted_at, every, key.phase()) for key in keys]
    period = pd.Timedelta(every)
    assert all(fitted_at + period / 2 <= t < fitted_at + period * 1.5 for t in due)
    slots = 24
    counts = np.bincount(
        [int((t - fitted_at - period / 2) / (period / slots)) for t in due], minlength=slots
    )
    # No herd: no quarter hour gets more than twice its share.
    assert counts.max() <= 2 * len(keys) / slots
    # From then on each model keeps to its own phase, exactly one period apart.
    for key, first in zip(keys[:20], due[:20], strict=True):
        assert scheduled_refit(first, every, key.phase()) == first + period
    # The phase is the pair's, not the serial's: a model made again keeps its place.
    ref = TargetRef("shop", "web")
    assert TrackKey(ref, REQUESTS, 1).phase() == TrackKey(ref, REQUESTS, 9).phase()
    assert scheduled_refit(fitted_at, every) == fitted_at + period


def test_a_deferred_model_leaves_its_scheduled_refit_to_the_caller() -> None:
    series = daily_load(2)
    # Never drifting, so that what comes due is the schedule.
    model = ArimaForecaster(ArimaConfig(refit=RefitPolicy(drift_threshold=1e9)))
    model.fit(series.iloc[:-100])
    model.defer_refits(0.25)
    due = scheduled_refit(series.index[-101], timedelta(hours=6), 0.25)
    for at in range(len(series) - 100, len(series)):
        report = model.update(series.iloc[at : at + 1])
        assert report.refit is None  # the model never refits by itself
        end = series.index[at]
        expected = RefitReason.SCHEDULED if end >= due else None
        assert model.refit_due() is expected, end
    assert model.refit(RefitReason.SCHEDULED).fit is not None
    assert model.refit_due() is None


def test_a_fitted_arima_model_travels_as_its_parameters() -> None:
    series = daily_load(7)
    model = make_forecaster(ModelName.ARIMA)
    model.fit(series)
    sent = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
    # statsmodels' results of the fit (per-point filter output) would be most of a megabyte.
    assert len(sent) < 100_000
    received = pickle.loads(sent)
    assert received.forecast(6, 0.5) == model.forecast(6, 0.5)
    later = series.iloc[-3:].shift(3, freq="5min")
    assert received.update(later) == model.update(later)
    assert received.forecast(6, 0.5) == model.forecast(6, 0.5)


@pytest.fixture(scope="module")
def processes() -> Iterator[PooledFitter]:
    fitter = PooledFitter(lambda: process_pool(2), 2)
    fitter.start()
    yield fitter
    fitter.shutdown()


def test_the_process_pool_forecasts_as_the_inline_fitter_does(processes: PooledFitter) -> None:
    hours = 3
    load = recorded(3 + hours / 24, end=NOW + hours * 3600)
    metrics = Metrics(load[load.index < pd.Timestamp(NOW, unit="s")])
    # No refits: the pool places scheduled ones on a phase of their own, and runs drift refits later
    # than inline fitting does, so that from a refit on the two differ by design.
    fixed = RefitPolicy(every=None, drift_threshold=1e9)
    inline = ModelForecaster(make_model=lambda _: ArimaForecaster(ArimaConfig(refit=fixed)))
    pooled = ModelForecaster(
        make_model=lambda _: ArimaForecaster(ArimaConfig(refit=fixed)), fitter=processes
    )
    target = Target(WorkloadState(REFS[0], 4, 4), CONFIG)

    seconds = pd.DatetimeIndex(load.index).as_unit("s").asi8.tolist()
    by_bucket = dict(zip(seconds, load.to_numpy().tolist(), strict=True))

    def tick(now: float) -> tuple[LoadForecast | None, LoadForecast | None]:
        at = now - 15
        sample = LoadSnapshot.of(requests=Sample(by_bucket[int(at - at % STEP)], at))
        return (inline.forecast(target, sample, now, metrics).get(REQUESTS),
                pooled.forecast(target, sample, now, metrics).get(REQUESTS))  # fmt: skip

    first_inline, first_pooled = tick(NOW)
    assert first_inline is not None
    assert first_pooled is None
    eventually(lambda: processes.pending() == 0, "the pool to fit the model", timeout_s=30)
    compared = 0
    for now in range(NOW + 30, NOW + hours * 3600, 30):
        expected, got = tick(now)
        assert (expected is None) == (got is None)
        if expected is None or got is None:
            continue
        assert got.times == expected.times
        assert got.quality.checked == expected.quality.checked
        for a, b in ((got.mean, expected.mean), (got.upper, expected.upper)):
            assert all(math.isfinite(v) for v in a)
            assert a == pytest.approx(b, rel=1e-9)
        compared += 1
    assert compared > 300
    assert pooled.model_states()[ModelState.FITTED] == 1


def test_the_pool_fits_at_a_lower_cpu_priority_than_the_tick(processes: PooledFitter) -> None:
    processes.submit(FitJob("niceness", Priority.NEW, partial(os.nice, 0)))
    eventually(lambda: processes.pending() == 0, "the pool to run the job", timeout_s=30)
    (done,) = [d for d in processes.collect() if d.key == "niceness"]
    assert done.error is None
    assert done.result == min(19, os.nice(0) + WORKER_NICENESS)


def test_a_model_keeps_forecasting_while_the_pool_refits_it() -> None:
    finished: list[bool] = []
    fitter = PooledFitter(lambda: process_pool(1), 1, on_fit=lambda _, ok: finished.append(ok))
    fitter.start()
    try:
        hours = 10
        load = recorded(3 + hours / 24, end=NOW + hours * 3600)
        metrics = Metrics(load[load.index < pd.Timestamp(NOW, unit="s")])
        # Drift refits off, so that the one refit is the scheduled one, on the model's own phase.
        steady = RefitPolicy(drift_threshold=1e9)
        stage = ModelForecaster(
            make_model=lambda _: ArimaForecaster(ArimaConfig(refit=steady)), fitter=fitter
        )
        target = Target(WorkloadState(REFS[0], 4, 4), CONFIG)
        seconds = pd.DatetimeIndex(load.index).as_unit("s").asi8.tolist()
        by_bucket = dict(zip(seconds, load.to_numpy().tolist(), strict=True))

        def tick(now: float) -> LoadForecast | None:
            at = now - 15
            sample = LoadSnapshot.of(requests=Sample(by_bucket[int(at - at % STEP)], at))
            return stage.forecast(target, sample, now, metrics).get(REQUESTS)

        assert tick(NOW) is None
        eventually(lambda: fitter.pending() == 0, "the first fit", timeout_s=30)
        states: set[ModelState] = set()
        for now in range(NOW + 150, NOW + hours * 3600, 150):
            assert tick(now) is not None  # refitting or not, the model forecasts
            states |= {state for state, count in stage.model_states().items() if count}
            if fitter.pending():
                # What a tick meets while a refit runs: this loop is faster than a fit.
                eventually(lambda: fitter.pending() == 0, "the refit", timeout_s=30)
        # The first fit, then the scheduled refits (a first within the refit period, on the
        # model's phase, then one a period later if that came before the end).
        assert len(finished) in (2, 3)
        assert all(finished)
        assert states & {ModelState.QUEUED, ModelState.FITTING}
    finally:
        fitter.shutdown()


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [
        pytest.param("50000 100000\n", 1, id="half-a-cpu"),
        pytest.param("100000 100000\n", 1, id="one-cpu"),
        pytest.param("150000 100000\n", 2, id="one-and-a-half"),
        pytest.param("max 100000\n", None, id="no-limit"),
        pytest.param("garbage\n", None, id="unreadable"),
        pytest.param(None, None, id="no-cgroup-file"),
    ],
)
def test_fitting_workers_stay_within_the_container_cpu_limit(
    tmp_path: Path, cpu_max: str | None, expected: int | None
) -> None:
    cpus = len(os.sched_getaffinity(0))
    path = tmp_path / "cpu.max"
    if cpu_max is not None:
        path.write_text(cpu_max)
    assert default_workers(path) == (cpus if expected is None else min(cpus, expected))
