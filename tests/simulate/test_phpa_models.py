"""The `phpa` peer's models: PHPA's Linear and Holt-Winters on the HPA's replica calculation."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from statsmodels.tsa.holtwinters import ExponentialSmoothing

from autoscaler.metrics import MetricKind
from autoscaler.model import Bounds, LoadSnapshot, Sample, Target, TargetConfig, TargetRef, WorkloadState
from autoscaler.simulate.phpa import HoltWinters, LinearReplicas, ReplicaModels

REQUESTS = MetricKind.REQUESTS
REF = TargetRef("shop", "agent")
CONFIG = TargetConfig(metrics=(REQUESTS,), bounds=Bounds(1, 50), per_pod={REQUESTS: 10.0})


def statsmodels_next(series: np.ndarray, season: int) -> float:
    """What PHPA's algorithm script computes, before its rounding up."""
    model = ExponentialSmoothing(
        series, trend="add", seasonal="add", seasonal_periods=season, initialization_method="estimated"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = model.fit(
            smoothing_level=0.9, smoothing_trend=0.1, smoothing_seasonal=0.1, optimized=False
        )
    return float(fitted.forecast(1)[0])


def test_holt_winters_predicts_nothing_before_two_seasons_are_stored() -> None:
    model = HoltWinters(season=12)
    assert [model.add(5) for _ in range(23)] == [None] * 23
    assert model.add(5) == 5


def test_holt_winters_agrees_with_a_statsmodels_refit_until_a_third_season_is_stored() -> None:
    season = 12
    rng = np.random.default_rng(7)
    counts = np.round(
        10 + 5 * np.sin(np.arange(3 * season) * 2 * np.pi / season) + rng.normal(0, 1, 36)
    )[:-1]
    model = HoltWinters(season=season)
    for n, count in enumerate(counts.astype(int), start=1):
        predicted = model.add(int(count))
        if n < 2 * season:
            continue
        expected = statsmodels_next(counts[:n], season)
        assert model.next_value == pytest.approx(expected, abs=1e-9), n
        assert predicted == math.ceil(expected - 1e-9)


def test_linear_extrapolates_the_last_counts_to_the_look_ahead() -> None:
    model = LinearReplicas(history=6, look_ahead_s=10.0)
    assert model.add(0.0, 4) == 4  # one point: that count
    predictions = [model.add(15.0 * k, 4 + 2 * k) for k in range(1, 8)]
    # Two pods per 15 s: 10 s past the count 18 (k = 7) the line is at 19.33, rounded up.
    assert predictions[-1] == 20


def test_linear_does_not_round_a_flat_history_up() -> None:
    model = LinearReplicas()
    assert [model.add(15.0 * k, 7) for k in range(10)] == [7] * 10


def tick(models: ReplicaModels, load: float | None, now: float, spec: int = 5):  # type: ignore[no-untyped-def]
    target = Target(WorkloadState(REF, spec_replicas=spec, ready_replicas=spec), CONFIG)
    snapshot = LoadSnapshot.of(requests=None if load is None else Sample(load, now - 30))
    return models.forecast(target, snapshot, now)


def test_the_prediction_is_handed_on_as_the_load_of_that_many_pods() -> None:
    models = ReplicaModels(sync_s=15.0)
    for k in range(5):
        forecasts = tick(models, 50.0 + 20.0 * k, 15.0 * k)
    forecast = forecasts.get(REQUESTS)
    assert forecast is not None
    point = forecast.at(60.0)
    assert point is not None
    # Counts 5, 7, 9, 11, 13 (load ÷ 10 per pod): the line is at 14.33 ten seconds on, so 15 pods.
    assert point[0] == pytest.approx(150.0)


def test_a_sync_without_metrics_stores_nothing_and_predicts_nothing() -> None:
    models = ReplicaModels(sync_s=15.0)
    tick(models, 50.0, 0.0)
    assert tick(models, None, 15.0).get(REQUESTS) is None
    # The missing sync left no count behind: the line runs through the two that were stored.
    forecast = tick(models, 70.0, 30.0).get(REQUESTS)
    assert forecast is not None
    point = forecast.at(30.0)
    assert point is not None
    assert point[0] == pytest.approx(10.0 * math.ceil(7 + 2 * 10 / 30 - 1e-9))
