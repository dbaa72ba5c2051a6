"""Forecasts stay finite and within reach of the series, on every model (ARIMA, Holt-Winters,
seasonal naive, naive).

Covers: a series whose log-scale forecast explodes (an exponential ramp to 1e300, or one to 1e100
whose forecast is finite but far beyond anything seen) fits, and its forecast is refused with
ForecastOutOfRangeError (a retryable ForecastError), never inf/NaN and never a numpy RuntimeWarning;
so is a ramp that arrives by ``update`` after an ordinary fit; values near the largest float are an
InvalidSeriesError, at fit and at update; the back-transform's bound (a million times the largest
value fitted, on a log or linear scale) refuses above it, refuses NaN and inf, and below it is the
plain formula; an ordinary series forecasts the same numbers as before the bound existed.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest

from forecasting import (
    ForecastError,
    ForecastOutOfRangeError,
    InvalidSeriesError,
    ModelName,
    make_forecaster,
)
from forecasting.transform import Scale, Transform

from .synthetic import PER_DAY, daily_load

MODELS = [pytest.param(name, id=name.value) for name in ModelName]
DAYS = 2.5  # enough history for every model (Holt-Winters needs two full days)
RAMP_STEPS = 6


@contextmanager
def no_warnings() -> Iterator[None]:
    """Any warning inside the block (numpy's overflow RuntimeWarning above all) fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def ramp_into(load: pd.Series, top: float, *, yesterday: bool) -> pd.Series:
    """``load`` whose last buckets climb exponentially from 1 to ``top``.

    With ``yesterday`` the ramp is also where the forecast window was one day earlier (descending,
    so it is no repeat of today's), which is the history a seasonal naive forecast reads.
    """
    ramped = load.copy()
    ramp = np.logspace(0.0, np.log10(top), RAMP_STEPS)
    ramped.iloc[-RAMP_STEPS:] = ramp
    if yesterday:
        ramped.iloc[-PER_DAY : -PER_DAY + RAMP_STEPS] = ramp[::-1]
    return ramped


# A ramp to 1e300 overflows exp on every model. One to 1e100 does not overflow, but the trend (ARIMA,
# Holt-Winters) or yesterday's ramp with its spread (seasonal naive) reach 1e12 times the top of the
# series or more. Naive is left out there: its mean is the last value, and its upper bound (1.6e5
# times the top) stays within the bound.
EXPLODING = [
    pytest.param(name, 1e300, id=f"ramp-to-1e300-overflows-exp-{name.value}") for name in ModelName
]
EXPLODING += [
    pytest.param(name, 1e100, id=f"ramp-to-1e100-finite-but-far-beyond-{name.value}")
    for name in (ModelName.ARIMA, ModelName.HOLT_WINTERS, ModelName.SEASONAL_NAIVE)
]


@pytest.mark.parametrize(("name", "top"), EXPLODING)
def test_an_exploding_forecast_is_a_typed_error_not_inf_or_a_warning(
    name: ModelName, top: float
) -> None:
    series = ramp_into(daily_load(DAYS), top, yesterday=name is ModelName.SEASONAL_NAIVE)
    model = make_forecaster(name)
    with no_warnings():
        model.fit(series)
        with pytest.raises(ForecastOutOfRangeError) as caught:
            model.forecast(6, 0.8)
    assert isinstance(caught.value, ForecastError)
    assert caught.value.retryable  # a later window or refit may forecast again; fall back meanwhile


@pytest.mark.parametrize("name", [ModelName.ARIMA, ModelName.NAIVE], ids=lambda n: n.value)
def test_a_ramp_arriving_after_an_ordinary_fit_is_refused(name: ModelName) -> None:
    load = daily_load(DAYS)
    model = make_forecaster(name)
    model.fit(load.iloc[:-RAMP_STEPS])
    with no_warnings():
        model.update(ramp_into(load, 1e300, yesterday=False).iloc[-RAMP_STEPS:])
        with pytest.raises(ForecastOutOfRangeError):
            model.forecast(6, 0.8)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize(
    "scale",
    [
        pytest.param(1e306, id="largest-1.5e308"),
        pytest.param(1e303, id="largest-1.5e305"),
    ],
)
def test_values_near_the_largest_float_are_an_invalid_series(name: ModelName, scale: float) -> None:
    with no_warnings(), pytest.raises(InvalidSeriesError, match="beyond"):
        make_forecaster(name).fit(daily_load(DAYS) * scale)


def test_a_new_point_near_the_largest_float_is_an_invalid_series() -> None:
    load = daily_load(DAYS)
    model = make_forecaster(ModelName.NAIVE)
    model.fit(load.iloc[:-1])
    with no_warnings(), pytest.raises(InvalidSeriesError, match="beyond"):
        model.update(load.iloc[-1:] * 1e306)


@pytest.mark.parametrize(
    ("scale", "factor", "refused"),
    [
        pytest.param(Scale.LOG, 1e5, False, id="log-100000x-largest-kept"),
        pytest.param(Scale.LOG, 1e7, True, id="log-10000000x-largest-refused"),
        pytest.param(Scale.LINEAR, 1e5, False, id="linear-100000x-largest-kept"),
        pytest.param(Scale.LINEAR, -1e7, True, id="linear-minus-10000000x-largest-refused"),
    ],
)
def test_the_back_transform_refuses_beyond_a_million_times_the_largest_value(
    scale: Scale, factor: float, refused: bool
) -> None:
    fitted = np.array([0.0, 3.0, 40.0, 7.5])
    transform = Transform.choose(scale, fitted)
    z = transform.forward(np.array([2.0, factor * 40.0]))
    if refused:
        with no_warnings(), pytest.raises(ForecastOutOfRangeError):
            transform.inverse(z)
    else:
        with no_warnings():
            assert transform.inverse(z) == pytest.approx([2.0, factor * 40.0], rel=1e-9)


@pytest.mark.parametrize(
    "z",
    [
        pytest.param(np.array([np.inf]), id="plus-inf"),
        pytest.param(np.array([1.0, np.nan]), id="nan"),
        pytest.param(np.array([800.0]), id="beyond-exp-range"),
    ],
)
def test_the_back_transform_refuses_what_is_not_a_number_it_can_return(z: np.ndarray) -> None:
    transform = Transform.choose(Scale.LOG, np.array([1.0, 2.0, 3.0]))
    with no_warnings(), pytest.raises(ForecastOutOfRangeError):
        transform.inverse(z)


def test_the_back_transform_below_the_bound_is_the_plain_formula() -> None:
    values = daily_load(DAYS).to_numpy()
    transform = Transform.choose(Scale.AUTO, values)
    z = transform.forward(values) + np.linspace(-3.0, 3.0, values.size)
    expected = np.maximum(np.exp(z) - transform.offset, 0.0)
    assert np.array_equal(transform.inverse(z), expected)


# (mean at step 1, mean at step 6, lower at step 6, upper at step 6) of a 6-step 80 % forecast of
# daily_load(2.5), recorded before the bound existed: the bound must not move any of them.
BEFORE_THE_BOUND = {
    ModelName.ARIMA: (135.43218700599988, 138.63617030556725, 131.94663019456783, 145.37453717930305),
    ModelName.HOLT_WINTERS: (
        134.55263081126174,
        144.02750770305596,
        130.28604150499513,
        159.16838042727034,
    ),
    ModelName.SEASONAL_NAIVE: (
        133.85332054563486,
        141.02484793270258,
        130.3888003109355,
        152.498632528296,
    ),
    ModelName.NAIVE: (134.51159685048208, 134.51159685048208, 118.76446881511092, 152.26801609828198),
}


@pytest.mark.parametrize("name", MODELS)
def test_an_ordinary_series_forecasts_as_before(name: ModelName) -> None:
    model = make_forecaster(name)
    model.fit(daily_load(DAYS))
    with no_warnings():
        forecast = model.forecast(6, 0.8)
    got = (forecast.mean[0], forecast.mean[-1], forecast.lower[-1], forecast.upper[-1])
    assert got == pytest.approx(BEFORE_THE_BOUND[name], rel=1e-9)
