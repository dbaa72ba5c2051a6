"""Rolling-origin backtests (forecasting.backtest).

Covers: a run over all four models on a synthetic daily series (origins, refits, scores; ARIMA beats
"same time yesterday" and the naive models, coverage of the 80 % interval in a sane band); the JSON
shape the CLI prints; per-origin horizon forecasts for plotting (timestamps, ordering, actuals); origin
spacing of one hour plus one step; a model that cannot fit is counted as failed origins, not hidden;
input errors (too short, bad horizon or level); one short run on a real shared trace.
"""

from __future__ import annotations

import itertools
import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecasting import BacktestOptions, BacktestReport, ModelName, backtest_forecasts, run_backtest

from .synthetic import PER_DAY, STEP, daily_load

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


def test_report_serializes_to_the_cli_json_shape(report: BacktestReport) -> None:
    payload = json.loads(json.dumps(report.to_dict()))
    assert payload["horizon_s"] == 900.0
    assert set(payload["models"]) == set(ALL_MODELS)
    for scores in payload["models"].values():
        assert {"mase", "smape", "coverage"} <= set(scores)


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
