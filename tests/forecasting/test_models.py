"""The Forecaster contract, checked on every model (ARIMA, Holt-Winters, seasonal naive, naive).

Covers, per model: too-short history raises InsufficientHistoryError (retryable); a constant series
and an all-zero series forecast themselves with a zero-width interval (no error, no invented value);
NaNs and short gaps are bridged while a long gap raises GapTooLongError; a single spike in the history
does not throw the forecast off; determinism (same input, equal forecasts); interval ordering
(lower <= mean <= upper) and a wider interval at a higher level; forecast timestamps; NotFittedError
before fit; update with nothing new; registry names.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecasting import (
    Forecaster,
    GapTooLongError,
    InsufficientHistoryError,
    ModelName,
    NotFittedError,
    make_forecaster,
    parse_model_names,
)

from .synthetic import PER_DAY, STEP, daily_load, index

MODELS = [pytest.param(name, id=name.value) for name in ModelName]
# Enough history for every model (Holt-Winters needs two full days).
DAYS = 2.5


@pytest.fixture(scope="module")
def load() -> pd.Series:
    return daily_load(DAYS)


@pytest.mark.parametrize("name", MODELS)
def test_models_implement_the_protocol(name: ModelName) -> None:
    model = make_forecaster(name)
    assert isinstance(model, Forecaster)
    assert model.name is name


@pytest.mark.parametrize(
    ("name", "points"),
    [
        pytest.param(ModelName.ARIMA, 40, id="arima"),
        pytest.param(ModelName.HOLT_WINTERS, 2 * PER_DAY - 1, id="holt-winters-two-days"),
        pytest.param(ModelName.SEASONAL_NAIVE, PER_DAY, id="seasonal-naive-one-day"),
        pytest.param(ModelName.NAIVE, 2, id="naive"),
    ],
)
def test_too_short_history_is_a_typed_retryable_error(name: ModelName, points: int) -> None:
    with pytest.raises(InsufficientHistoryError) as caught:
        make_forecaster(name).fit(daily_load(DAYS).iloc[:points])
    assert caught.value.retryable
    assert caught.value.got == points
    assert caught.value.needed > points


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("value", [pytest.param(0.0, id="all-zero"), pytest.param(42.5, id="constant")])
def test_constant_series_forecasts_itself_with_no_spread(name: ModelName, value: float) -> None:
    points = round(DAYS * PER_DAY)
    model = make_forecaster(name)
    model.fit(pd.Series(np.full(points, value), index=index(points)))
    forecast = model.forecast(6, 0.8)
    assert forecast.mean == pytest.approx((value,) * 6, abs=1e-9)
    assert forecast.lower == pytest.approx(forecast.mean, abs=1e-9)
    assert forecast.upper == pytest.approx(forecast.mean, abs=1e-9)


@pytest.mark.parametrize("name", MODELS)
def test_short_gaps_are_bridged_and_long_ones_rejected(name: ModelName, load: pd.Series) -> None:
    holed = load.copy()
    holed.iloc[100:103] = np.nan  # 15 minutes: filled
    holed = holed.drop(holed.index[400:402])  # two missing timestamps: filled
    make_forecaster(name).fit(holed).n_obs  # noqa: B018  (must not raise)
    broken = load.copy()
    broken.iloc[-30:-20] = np.nan  # 50 minutes near the end
    with pytest.raises(GapTooLongError):
        make_forecaster(name).fit(broken)


@pytest.mark.parametrize("name", MODELS)
def test_one_spike_in_history_does_not_throw_the_forecast_off(name: ModelName, load: pd.Series) -> None:
    spiky = load.copy()
    spiky.iloc[-40] *= 10  # a flash crowd 3 hours ago, long over
    calm = make_forecaster(name)
    calm.fit(load)
    model = make_forecaster(name)
    model.fit(spiky)
    forecast, reference = model.forecast(3), calm.forecast(3)
    assert max(forecast.mean) < 1.5 * max(reference.mean)
    assert forecast.lower[0] <= load.iloc[-1] * 1.5


@pytest.mark.parametrize("name", MODELS)
def test_same_input_gives_the_same_forecast(name: ModelName, load: pd.Series) -> None:
    first, second = make_forecaster(name), make_forecaster(name)
    assert first.fit(load) == second.fit(load)
    assert first.forecast(12, 0.8) == second.forecast(12, 0.8)
    first.update(daily_load(DAYS + 0.1).iloc[-30:])
    second.update(daily_load(DAYS + 0.1).iloc[-30:])
    assert first.forecast(12, 0.8) == second.forecast(12, 0.8)


@pytest.mark.parametrize("name", MODELS)
def test_intervals_are_ordered_and_widen_with_the_level(name: ModelName, load: pd.Series) -> None:
    model = make_forecaster(name)
    model.fit(load)
    narrow, wide = model.forecast(24, 0.5), model.forecast(24, 0.95)
    for forecast in (narrow, wide):
        assert all(
            lo <= m <= hi
            for lo, m, hi in zip(forecast.lower, forecast.mean, forecast.upper, strict=True)
        )
    assert narrow.mean == pytest.approx(wide.mean)
    assert all(w < n for w, n in zip(wide.lower, narrow.lower, strict=True))
    assert all(w > n for w, n in zip(wide.upper, narrow.upper, strict=True))


@pytest.mark.parametrize("name", MODELS)
def test_forecast_starts_one_step_after_the_last_point(name: ModelName, load: pd.Series) -> None:
    model = make_forecaster(name)
    model.fit(load)
    forecast = model.forecast(4)
    assert forecast.start == load.index[-1] + STEP
    assert list(forecast.index) == list(pd.date_range(load.index[-1] + STEP, periods=4, freq=STEP))
    assert forecast.to_frame().shape == (4, 3)
    assert model.update(load).appended == 0


@pytest.mark.parametrize("name", MODELS)
def test_forecast_before_fit_is_an_error(name: ModelName, load: pd.Series) -> None:
    model = make_forecaster(name)
    with pytest.raises(NotFittedError):
        model.forecast(3)
    with pytest.raises(NotFittedError):
        model.update(load)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("arima", (ModelName.ARIMA,), id="one"),
        pytest.param("arima, naive,arima", (ModelName.ARIMA, ModelName.NAIVE), id="spaces-and-repeats"),
        pytest.param(
            "holt-winters,seasonal-naive",
            (ModelName.HOLT_WINTERS, ModelName.SEASONAL_NAIVE),
            id="hyphenated",
        ),
    ],
)
def test_parse_model_names(text: str, expected: tuple[ModelName, ...]) -> None:
    assert parse_model_names(text) == expected


@pytest.mark.parametrize(
    "text", [pytest.param("prophet", id="unknown"), pytest.param(" , ", id="empty")]
)
def test_parse_model_names_rejects_bad_input(text: str) -> None:
    with pytest.raises(ValueError, match="model"):
        parse_model_names(text)
