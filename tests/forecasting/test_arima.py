"""ARIMA specifics (forecasting.arima with forecasting.seasonality and forecasting.lifecycle).

Covers: recovering a known synthetic daily pattern (shape, timing, interval covering the truth) on
5-minute, 1-minute and 30-minute grids; the hourly profile switched on for an hourly cron spike and
off for plain daily load; the time budget cutting only the tail of the order grid; statsmodels
warnings recorded on the fit report and none escaping; a failed fit raising FitFailedError and keeping
the previous model; a failed scheduled refit keeping the old model current; scheduled and drift
refits (a level shift is followed); updating point by point equals one batched update; a hole between
history and new points refitting on the new series; log versus linear scale (asymmetric versus
symmetric intervals; negative values); empirical interval quantiles matching Gaussian ones on
Gaussian noise and narrower ones on heavy-tailed noise.
"""

from __future__ import annotations

import warnings
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from statsmodels.tsa.arima.model import ARIMA

from forecasting import (
    ArimaConfig,
    FitFailedError,
    InsufficientHistoryError,
    InvalidSeriesError,
    RefitPolicy,
    RefitReason,
    Scale,
)
from forecasting.arima import DEFAULT_ORDERS, ArimaForecaster, IntervalMethod, _Filter

from .synthetic import PER_DAY, daily_load, daily_pattern, hourly_spikes, index


def _config(**settings: Any) -> ArimaConfig:
    return ArimaConfig(**settings)


@pytest.mark.parametrize(
    ("step", "days"),
    [
        pytest.param(pd.Timedelta(minutes=5), 4, id="5min"),
        pytest.param(pd.Timedelta(minutes=1), 3, id="1min"),
        pytest.param(pd.Timedelta(minutes=30), 12, id="30min"),
    ],
)
def test_recovers_a_known_daily_pattern(step: pd.Timedelta, days: int) -> None:
    per_day = round(pd.Timedelta(days=1) / step)
    points = (days + 1) * per_day
    t = np.arange(points) / per_day
    truth = 100 + 40 * np.sin(2 * np.pi * (t - 0.375)) + 10 * np.cos(4 * np.pi * t)
    noise = np.random.default_rng(11).normal(0.0, 4.0, points)
    series = pd.Series(truth + noise, index=pd.date_range("2024-03-04", periods=points, freq=step))
    model = ArimaForecaster(_config())
    report = model.fit(series.iloc[: days * per_day])
    assert "daily=" in report.spec
    forecast = model.forecast(per_day, 0.8)
    ahead = truth[days * per_day :]
    mean = np.array(forecast.mean)
    assert np.mean(np.abs(mean - ahead)) < 3.0  # amplitude 40, noise 4
    assert abs(int(np.argmax(mean)) - int(np.argmax(ahead))) <= per_day // 24  # peak within an hour
    inside = (ahead >= np.array(forecast.lower)) & (ahead <= np.array(forecast.upper))
    assert inside.mean() > 0.95  # the noise-free truth sits inside the 80 % band


@pytest.mark.parametrize(
    ("series", "hourly"),
    [
        pytest.param(hourly_spikes(3), True, id="cron-spike-every-hour"),
        pytest.param(daily_load(3), False, id="plain-daily-load"),
    ],
)
def test_hourly_profile_only_when_the_data_has_one(series: pd.Series, hourly: bool) -> None:
    model = ArimaForecaster(_config())
    assert ("hourly" in model.fit(series).spec) is hourly


def test_hourly_profile_forecasts_the_next_spike() -> None:
    series = hourly_spikes(3)
    model = ArimaForecaster(_config())
    model.fit(series)
    forecast = model.forecast(12)
    spike_at = [i for i, ts in enumerate(forecast.index) if ts.minute == 0]
    assert len(spike_at) == 1
    assert int(np.argmax(forecast.mean)) == spike_at[0]
    assert max(forecast.mean) > 60  # base 30 + spike 40, on a log scale: a little under 70


@pytest.mark.parametrize(
    ("settings", "tried", "exhausted"),
    [
        pytest.param({"fit_budget_evals": 1}, 1, True, id="tiny-budget-keeps-first-order"),
        pytest.param({}, 4, False, id="default-budget-tries-all"),
        pytest.param({"fit_guard_s": 1e-9}, 1, True, id="wall-clock-guard-cuts-on-a-slow-machine"),
    ],
)
def test_budget_only_cuts_the_tail_of_the_grid(
    settings: dict[str, Any], tried: int, exhausted: bool
) -> None:
    report = ArimaForecaster(ArimaConfig(**settings)).fit(daily_load(3))
    assert len(report.candidates) == tried
    assert report.budget_exhausted is exhausted
    assert report.candidates[0].spec == "ARIMA(1,0,1)"


def test_the_budget_counts_work_so_a_slow_machine_selects_the_same_model() -> None:
    # A clock that moves an hour at every read stands for a machine far slower than any: without
    # a wall-clock guard, the selection and the forecast are unchanged.
    data = daily_load(3)
    steady = ArimaForecaster(ArimaConfig())
    steady.fit(data)
    ticks = iter(range(0, 10**9, 3600))
    slow = ArimaForecaster(ArimaConfig(), clock=lambda: float(next(ticks)))
    report = slow.fit(data)
    assert not report.budget_exhausted
    assert len(report.candidates) == 4
    a, b = steady.forecast(12, 0.8), slow.forecast(12, 0.8)
    assert np.array_equal(a.mean, b.mean)
    assert np.array_equal(a.upper, b.upper)


def test_statsmodels_warnings_are_recorded_and_do_not_escape(monkeypatch: pytest.MonkeyPatch) -> None:
    original = ArimaForecaster._fit_order

    def noisy(self: ArimaForecaster, endog: Any, order: tuple[int, int, int]) -> Any:
        warnings.warn(f"synthetic warning for {order}", RuntimeWarning, stacklevel=1)
        return original(self, endog, order)

    monkeypatch.setattr(ArimaForecaster, "_fit_order", noisy)
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        report = ArimaForecaster(_config()).fit(daily_load(3))
    assert escaped == []
    recorded = {(w.category, w.context) for w in report.warnings}
    assert ("RuntimeWarning", "ARIMA(1,0,1)") in recorded
    assert ("RuntimeWarning", "ARIMA(2,1,2)") in recorded


def test_real_statsmodels_warnings_do_not_escape() -> None:
    rng = np.random.default_rng(0)
    walk = pd.Series(100 + np.cumsum(rng.normal(0.0, 1.0, 600)), index=index(600))
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        ArimaForecaster(_config()).fit(walk)
    assert escaped == []


def test_failed_fit_is_typed_and_keeps_the_previous_model(monkeypatch: pytest.MonkeyPatch) -> None:
    model = ArimaForecaster(_config())
    model.fit(daily_load(3))
    before = model.forecast(6)

    def broken(self: ArimaForecaster, endog: Any, order: tuple[int, int, int]) -> Any:
        raise np.linalg.LinAlgError("singular matrix")

    monkeypatch.setattr(ArimaForecaster, "_fit_order", broken)
    with pytest.raises(FitFailedError) as caught:
        model.fit(daily_load(3, seed=99))
    assert caught.value.retryable
    assert len(caught.value.reasons) == 4
    assert model.forecast(6) == before


def test_failed_scheduled_refit_keeps_serving_the_old_model(monkeypatch: pytest.MonkeyPatch) -> None:
    series = daily_load(3)
    model = ArimaForecaster(_config(refit=RefitPolicy(every=timedelta(hours=1))))
    start = 2 * PER_DAY
    model.fit(series.iloc[:start])

    def broken(self: ArimaForecaster, endog: Any, order: tuple[int, int, int]) -> Any:
        raise ValueError("no convergence")

    monkeypatch.setattr(ArimaForecaster, "_fit_order", broken)
    report = model.update(series.iloc[: start + 12])
    assert report.refit is RefitReason.SCHEDULED
    assert report.fit is None
    assert report.refit_error is not None
    assert "no convergence" in report.refit_error
    assert report.appended == 12
    assert model.forecast(3).start == series.index[start + 12]


def test_refit_happens_on_schedule_not_before() -> None:
    series = daily_load(3)
    config = _config(refit=RefitPolicy(every=timedelta(hours=1)))
    model = ArimaForecaster(config)
    start = 2 * PER_DAY
    model.fit(series.iloc[:start])
    quiet = model.update(series.iloc[: start + 11])
    assert quiet.appended == 11
    assert quiet.refit is None
    due = model.update(series.iloc[: start + 12])
    assert due.refit is RefitReason.SCHEDULED
    assert due.fit is not None
    assert due.fit.end == series.index[start + 11]


def test_level_shift_triggers_a_drift_refit_and_is_followed() -> None:
    series = daily_load(4)
    shift_at = 3 * PER_DAY
    series.iloc[shift_at:] += 80.0
    model = ArimaForecaster(_config())
    model.fit(series.iloc[:shift_at])
    reasons = []
    for end in range(shift_at + 1, shift_at + 25):
        reasons.append(model.update(series.iloc[:end]).refit)
    assert RefitReason.DRIFT in reasons
    forecast = model.forecast(3)
    expected = daily_pattern(shift_at + 27)[-3:] + 80.0
    assert np.allclose(forecast.mean, expected, rtol=0.15)


def test_point_by_point_updates_equal_one_batched_update() -> None:
    series = daily_load(3)
    start = 2 * PER_DAY
    single, batched = ArimaForecaster(_config()), ArimaForecaster(_config())
    single.fit(series.iloc[:start])
    batched.fit(series.iloc[:start])
    for end in range(start + 1, start + 13):
        single.update(series.iloc[:end])
    batched.update(series.iloc[: start + 12])
    np.testing.assert_allclose(single.forecast(6).mean, batched.forecast(6).mean, rtol=1e-9)
    np.testing.assert_allclose(single.forecast(6).upper, batched.forecast(6).upper, rtol=1e-9)


def test_hole_between_history_and_new_points_refits_on_the_new_series() -> None:
    series = daily_load(4)
    model = ArimaForecaster(_config())
    model.fit(series.iloc[:PER_DAY])
    report = model.update(series.iloc[2 * PER_DAY :])
    assert report.refit is RefitReason.GAP
    assert model.forecast(1).start == series.index[-1] + pd.Timedelta(minutes=5)
    with pytest.raises(InsufficientHistoryError):
        model.update(series.iloc[-10:].set_axis(series.index[-10:] + pd.Timedelta(days=1)))


@pytest.mark.parametrize(
    ("scale", "symmetric"),
    [
        pytest.param(Scale.LOG, False, id="log-upper-side-wider"),
        pytest.param(Scale.LINEAR, True, id="linear-symmetric"),
    ],
)
def test_gaussian_interval_shape_follows_the_scale(scale: Scale, symmetric: bool) -> None:
    model = ArimaForecaster(_config(scale=scale, interval=IntervalMethod.GAUSSIAN))
    model.fit(daily_load(3))
    forecast = model.forecast(12)
    above = np.array(forecast.upper) - np.array(forecast.mean)
    below = np.array(forecast.mean) - np.array(forecast.lower)
    assert np.allclose(above, below) is symmetric
    if not symmetric:
        assert (above > below).all()


@pytest.mark.parametrize(
    ("noise", "low", "high"),
    [
        pytest.param("normal", 0.85, 1.15, id="gaussian-noise-same-width"),
        pytest.param("student-t2", 0.3, 0.8, id="heavy-tails-narrower-bulk"),
    ],
)
def test_empirical_interval_width_against_gaussian(noise: str, low: float, high: float) -> None:
    points = 3 * PER_DAY
    rng = np.random.default_rng(21)
    shocks = rng.normal(0.0, 4.0, points) if noise == "normal" else 4.0 * rng.standard_t(2, points)
    series = pd.Series(daily_pattern(points) + shocks, index=index(points))
    widths = []
    for method in (IntervalMethod.EMPIRICAL, IntervalMethod.GAUSSIAN):
        model = ArimaForecaster(_config(scale=Scale.LINEAR, interval=method))
        model.fit(series)
        forecast = model.forecast(1, 0.8)
        widths.append(forecast.upper[0] - forecast.lower[0])
    assert low < widths[0] / widths[1] < high


def test_negative_values_fit_on_a_linear_scale_but_not_a_log_one() -> None:
    series = daily_load(3) - 100.0  # a signal around zero, e.g. a net flow
    assert ArimaForecaster(_config()).fit(series).spec.split()[1] == "linear"
    with pytest.raises(InvalidSeriesError):
        ArimaForecaster(_config(scale=Scale.LOG)).fit(series)


@pytest.mark.parametrize("order", DEFAULT_ORDERS, ids=lambda order: "ARIMA({},{},{})".format(*order))
def test_updates_and_forecasts_between_fits_are_statsmodels_own(order: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(7)
    y = np.cumsum(rng.normal(size=400)) * 0.05 + rng.normal(size=400)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = ARIMA(y[:300], order=order, trend="c" if order[1] == 0 else "n").fit(cov_type="none")
        extended = fitted.extend(y[300:])
        reference = extended.get_forecast(6)
    state = _Filter.of(fitted)
    errors = state.update(y[300:])
    expected = np.asarray(extended.filter_results.standardized_forecasts_error[0])
    # statsmodels stops updating the covariance once it has converged; the rest is rounding.
    np.testing.assert_allclose(errors, expected, rtol=1e-6, atol=1e-9)
    mean, variance = state.forecast(6)
    np.testing.assert_allclose(mean, np.asarray(reference.predicted_mean), rtol=1e-6)
    np.testing.assert_allclose(variance, np.asarray(reference.var_pred_mean), rtol=1e-6)


def test_a_point_the_filter_cannot_take_is_an_infinite_error_and_changes_nothing() -> None:
    model = ArimaForecaster()
    model.fit(daily_load(4))
    before = model.forecast(6, 0.8)
    state = model._state
    assert state is not None
    assert state.filter is not None
    errors = state.filter.update(np.array([np.nan, 1e308 * 10]))
    assert np.isinf(errors).all()
    assert model.forecast(6, 0.8) == before
