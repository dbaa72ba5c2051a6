"""Rolling-origin backtests (forecasting.backtest).

Covers: a run over all four models on a synthetic daily series (origins, refits, scores; ARIMA beats
"same time yesterday" and the naive models, coverage of the 80 % interval in a sane band); per-step
scores that agree with the all-steps and horizon ones; the JSON shape the CLI prints; per-origin
horizon forecasts for plotting (timestamps, ordering, actuals); origin spacing of one hour plus one
step; a model that cannot fit is counted as failed origins, not hidden; input errors (too short, bad
horizon or level); one short run on a real shared trace.

MASE against no change: the naive model is no change itself (exactly 1); on a step series where no
change is wrong only at the steps, a model that lags scores at least 1; on a random walk, where no
change is the best forecast there is, ARIMA cannot beat it by much. Calibrated coverage: a too-narrow
interval moves toward the level out of sample; calibration never uses an outcome from at or after the
origin (changing the series from some point on leaves every earlier origin's calibrated interval as
it was); the first origins, with no residuals yet, keep their raw interval.
"""

from __future__ import annotations

import itertools
import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecasting import (
    BacktestOptions,
    BacktestReport,
    CalibrationConfig,
    ModelName,
    backtest_forecasts,
    run_backtest,
)

from .synthetic import PER_DAY, STEP, daily_load, index

ALL_MODELS = ["arima", "holt-winters", "seasonal-naive", "naive"]


@pytest.fixture(scope="module")
def series() -> pd.Series:
    return daily_load(3.5, noise=6.0, ar=0.8, seed=5)


@pytest.fixture(scope="module")
def report(series: pd.Series) -> BacktestReport:
    return run_backtest(series, ALL_MODELS, horizon_steps=3, level=0.8)


def test_every_model_is_scored_on_the_same_origins(report: BacktestReport, series: pd.Series) -> None:
    expected_origins = len(range(2 * PER_DAY, len(series) - 3 + 1, 13))
    assert [r.model for r in report.results] == list(ModelName)
    for result in report.results:
        assert result.origins == expected_origins
        assert result.failed_origins == 0
        assert np.isfinite([result.mase, result.smape, result.coverage]).all()
    arima = report.result("arima")
    assert arima.refits >= 6  # first fit plus a refit every 6 hours of a 1.5-day test period
    assert arima.mase < 1.0
    assert arima.mase < report.result("seasonal-naive").mase
    assert arima.mase < report.result("naive").mase
    assert 0.6 <= arima.coverage <= 0.97


def test_per_step_scores_agree_with_the_summaries(report: BacktestReport) -> None:
    for result in report.results:
        assert [s.step for s in result.by_step] == [1, 2, 3]
        last = result.at_step(3)
        assert last.mase == result.mase_at_horizon
        assert last.coverage == result.coverage_at_horizon
        assert last.mase_no_change == result.mase_no_change_at_horizon
        assert last.coverage_calibrated == result.coverage_calibrated_at_horizon
        # Equal origins per step, so the all-steps coverage is the mean of the steps'.
        steps = [s.coverage for s in result.by_step]
        assert result.coverage == pytest.approx(np.mean(steps))
        assert np.isfinite([result.mase_no_change, result.coverage_calibrated]).all()
    arima = report.result("arima")
    # The daily wave is predictable: ARIMA beats carrying the last value forward.
    assert arima.mase_no_change < 1.0
    assert 0.6 <= arima.coverage_calibrated <= 0.97


def test_report_serializes_to_the_cli_json_shape(report: BacktestReport) -> None:
    payload = json.loads(json.dumps(report.to_dict()))
    assert payload["horizon_s"] == 900.0
    assert set(payload["models"]) == set(ALL_MODELS)
    assert payload["calibration"]["window"] == CalibrationConfig().window
    for scores in payload["models"].values():
        assert {"mase", "smape", "coverage", "mase_at_horizon", "coverage_at_horizon"} <= set(scores)
        assert {"mase_no_change", "mase_no_change_at_horizon", "coverage_calibrated",
                "coverage_calibrated_at_horizon"} <= set(scores)  # fmt: skip
        assert [step["step"] for step in scores["by_step"]] == [1, 2, 3]
        assert {"mase", "mase_no_change", "coverage", "coverage_calibrated"} <= set(scores["by_step"][0])


def test_naive_is_no_change_itself(report: BacktestReport) -> None:
    naive = report.result("naive")
    assert naive.mase_no_change == pytest.approx(1.0)
    assert all(s.mase_no_change == pytest.approx(1.0) for s in naive.by_step)


def test_a_lagging_model_does_not_beat_no_change_where_no_change_is_nearly_perfect() -> None:
    # A level that jumps every 2 hours and is flat in between: no change errs only across a jump,
    # "same time yesterday" almost everywhere.
    rng = np.random.default_rng(4)
    points = 4 * PER_DAY
    steps = pd.Series(np.repeat(rng.uniform(50, 150, points // 24), 24), index=index(points))
    options = BacktestOptions(origin_every=timedelta(minutes=10))
    report = run_backtest(steps, ["seasonal-naive", "naive"], 3, 0.8, options)
    lagging = report.result("seasonal-naive")
    assert lagging.mase_no_change >= 1.0
    assert all(s.mase_no_change >= 1.0 for s in lagging.by_step)
    assert report.result("naive").mase_no_change == pytest.approx(1.0)


def test_arima_cannot_beat_no_change_by_much_on_a_random_walk() -> None:
    rng = np.random.default_rng(2)
    points = 4 * PER_DAY
    walk = pd.Series(1000.0 + np.cumsum(rng.normal(0.0, 5.0, points)), index=index(points))
    arima = run_backtest(walk, ["arima"], 3, 0.8).result("arima")
    assert arima.failed_origins == 0
    assert 0.95 <= arima.at_step(1).mase_no_change <= 1.15
    assert 0.95 <= arima.mase_no_change <= 1.15


def _momentum(points: int, seed: int) -> pd.Series:
    """A load whose changes persist (AR(1) changes): its h-step changes are much wider than
    ``sqrt(h)`` one-step changes, so the naive model's interval is too narrow beyond step 1."""
    rng = np.random.default_rng(seed)
    changes = np.zeros(points)
    shocks = rng.normal(0.0, 1.0, points)
    for i in range(1, points):
        changes[i] = 0.9 * changes[i - 1] + shocks[i]
    return pd.Series(1000.0 + np.cumsum(changes), index=index(points))


def test_calibration_moves_a_too_narrow_interval_toward_the_level() -> None:
    options = BacktestOptions(origin_every=timedelta(minutes=10))
    naive = run_backtest(_momentum(4 * PER_DAY, 1), ["naive"], 6, 0.8, options).result("naive")
    far = naive.at_step(6)
    assert far.coverage < 0.5
    assert abs(far.coverage_calibrated - 0.8) < abs(far.coverage - 0.8)
    assert 0.65 <= far.coverage_calibrated <= 0.9
    assert abs(naive.coverage_calibrated - 0.8) < abs(naive.coverage - 0.8)


def test_calibration_never_uses_outcomes_from_at_or_after_the_origin() -> None:
    # An origin at every step: the horizon point of the origin 5 steps back is the origin's own
    # point, the nearest outcome a leak could reach.
    options = BacktestOptions(
        origin_every=timedelta(minutes=5), calibration=CalibrationConfig(min_residuals=5)
    )
    series = _momentum(4 * PER_DAY, 2)
    change = 3 * PER_DAY
    # From `change` on, the load swings wildly: any peek at those outcomes would widen the intervals.
    altered = series.copy()
    rng = np.random.default_rng(9)
    altered.iloc[change:] = altered.iloc[change:] * rng.uniform(0.3, 3.0, len(series) - change)
    before = backtest_forecasts(series, "naive", 6, 0.8, options)
    after = backtest_forecasts(altered, "naive", 6, 0.8, options)
    cutoff = series.index[change]
    early = [(a, b) for a, b in zip(before, after, strict=True) if a.origin <= cutoff]
    assert len(early) > 100
    for a, b in early:
        assert (a.calibrated_lower, a.calibrated_upper) == (b.calibrated_lower, b.calibrated_upper)
    # Some of those early origins' own targets lie past the change: their actuals differ.
    assert any(a.actual != b.actual for a, b in early)
    late = [(a, b) for a, b in zip(before, after, strict=True) if a.origin > cutoff]
    assert any(a.calibrated_upper != b.calibrated_upper for a, b in late)


def test_first_origins_keep_their_raw_interval() -> None:
    forecasts = backtest_forecasts(daily_load(3), "naive", 3, 0.8)
    first = forecasts[0]
    assert (first.calibrated_lower, first.calibrated_upper) == (first.lower, first.upper)


def test_per_origin_forecasts_for_plotting(series: pd.Series) -> None:
    forecasts = backtest_forecasts(series, "naive", horizon_steps=3, level=0.8)
    assert forecasts
    first = forecasts[0]
    assert first.origin == series.index[2 * PER_DAY]
    assert first.target == first.origin + 2 * STEP
    assert first.actual == pytest.approx(series[first.target])
    assert first.mean == pytest.approx(series.iloc[2 * PER_DAY - 1])  # naive: last value seen
    assert all(f.lower <= f.mean <= f.upper for f in forecasts)
    spacing = {b.origin - a.origin for a, b in itertools.pairwise(forecasts)}
    assert spacing == {pd.Timedelta(minutes=65)}


def test_origin_spacing_can_be_set(series: pd.Series) -> None:
    options = BacktestOptions(origin_every=timedelta(hours=2))
    report = run_backtest(series, ["naive"], 3, 0.8, options)
    assert report.origin_every == pd.Timedelta(hours=2)
    assert report.result("naive").origins == len(range(2 * PER_DAY, len(series) - 2, 24))


def test_a_model_that_cannot_fit_counts_failed_origins() -> None:
    # Holt-Winters needs two full days; with a 1-day warm-up its first origins have less.
    series = daily_load(2.5)
    options = BacktestOptions(warmup=timedelta(days=1))
    result = run_backtest(series, ["holt-winters"], 3, 0.8, options).result("holt-winters")
    assert result.failed_origins > 0
    assert result.origins > 0


@pytest.mark.parametrize(
    ("points", "horizon", "level", "message"),
    [
        pytest.param(2 * PER_DAY, 3, 0.8, "too short", id="no-room-after-warmup"),
        pytest.param(3 * PER_DAY, 0, 0.8, "horizon", id="zero-horizon"),
        pytest.param(3 * PER_DAY, 3, 1.0, "level", id="level-one"),
    ],
)
def test_bad_input_is_rejected(points: int, horizon: int, level: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        run_backtest(daily_load(3).iloc[:points], ["naive"], horizon, level)


def test_short_backtest_on_a_real_trace(traces_dir: Path) -> None:
    frame = pd.read_csv(traces_dir / "alibaba-2018-cluster-cpu-5m.csv", index_col=0, parse_dates=True)
    series = frame["value"].iloc[: 3 * PER_DAY]
    report = run_backtest(series, ["arima", "seasonal-naive"], 3, 0.8)
    arima = report.result("arima")
    assert arima.failed_origins == 0
    assert arima.mase < report.result("seasonal-naive").mase
    assert arima.mase < 1.0
