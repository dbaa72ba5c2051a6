"""Out-of-sample interval calibration (forecasting.calibration).

Covers: the raw interval until enough residuals arrived; factors equal to the split-conformal
quantile of each side's scores, computed by hand; a deliberately too-narrow (and a too-wide) interval
whose coverage moves to the level out of sample, each point calibrated on earlier residuals only; a
biased forecast calibrated per side; the sliding window forgets an old regime; steps are calibrated
apart; zero-width sides stay finite; a whole ``Forecast`` calibrated with its mean kept; bad input.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from forecasting import Forecast, ModelName
from forecasting.calibration import CalibrationConfig, IntervalCalibrator, Widening


def _online_coverage(
    calibrator: IntervalCalibrator, actuals: np.ndarray, half_width: float, skip: int
) -> tuple[float, float]:
    """Raw and calibrated coverage of a forecast of 0 with a ±half_width interval, each point's
    calibrated interval taken before its own outcome is observed."""
    raw = calibrated = 0
    for i, y in enumerate(actuals):
        lower, upper = calibrator.interval(1, 0.0, -half_width, half_width)
        if i >= skip:
            raw += -half_width <= y <= half_width
            calibrated += lower <= y <= upper
        calibrator.observe(1, 0.0, -half_width, half_width, float(y))
    scored = len(actuals) - skip
    return raw / scored, calibrated / scored


def test_raw_interval_until_enough_residuals() -> None:
    calibrator = IntervalCalibrator(0.8, CalibrationConfig(window=50, min_residuals=10))
    for _ in range(9):
        calibrator.observe(1, 10.0, 9.0, 11.0, 15.0)
    assert calibrator.widening(1) is None
    assert calibrator.interval(1, 10.0, 9.0, 11.0) == (9.0, 11.0)
    calibrator.observe(1, 10.0, 9.0, 11.0, 15.0)
    assert calibrator.widening(1) is not None


def test_factors_are_the_conformal_quantile_of_each_side() -> None:
    calibrator = IntervalCalibrator(0.8, CalibrationConfig(window=20, min_residuals=20))
    # Mean 0, interval [-1, 2]; actuals 1..20: upper scores y/2, lower scores -y.
    for y in range(1, 21):
        calibrator.observe(1, 0.0, -1.0, 2.0, float(y))
    # ceil((20 + 1) * 0.9) = 19: the 19th smallest upper score is 19 / 2; every lower score is
    # negative, so the lower factor is 0 (the interval keeps the mean).
    assert calibrator.widening(1) == Widening(lower=0.0, upper=9.5, residuals=20)
    assert calibrator.interval(1, 0.0, -1.0, 2.0) == (0.0, 19.0)


def test_a_too_narrow_interval_reaches_the_level_out_of_sample() -> None:
    rng = np.random.default_rng(11)
    actuals = rng.normal(0.0, 3.0, 3000)  # a ±1 interval covers about 26 %
    raw, calibrated = _online_coverage(IntervalCalibrator(0.8), actuals, 1.0, skip=100)
    assert raw < 0.35
    assert calibrated == pytest.approx(0.8, abs=0.03)


def test_a_too_wide_interval_is_narrowed() -> None:
    rng = np.random.default_rng(12)
    actuals = rng.normal(0.0, 0.3, 3000)
    raw, calibrated = _online_coverage(IntervalCalibrator(0.8), actuals, 1.0, skip=100)
    assert raw > 0.99
    assert calibrated == pytest.approx(0.8, abs=0.03)


def test_a_biased_forecast_is_widened_on_the_side_it_misses() -> None:
    calibrator = IntervalCalibrator(0.8)
    rng = np.random.default_rng(13)
    # The truth runs 2 above a forecast of 0 whose interval is ±1.
    for y in rng.normal(2.0, 0.5, 100):
        calibrator.observe(1, 0.0, -1.0, 1.0, float(y))
    widening = calibrator.widening(1)
    assert widening is not None
    assert widening.lower == 0.0
    assert widening.upper > 2.0


def test_the_window_forgets_an_old_regime() -> None:
    calibrator = IntervalCalibrator(0.8, CalibrationConfig(window=30, min_residuals=10))
    for _ in range(30):
        calibrator.observe(1, 0.0, -1.0, 1.0, 5.0)
    first = calibrator.widening(1)
    assert first is not None
    assert first.upper == pytest.approx(5.0)
    for _ in range(30):
        calibrator.observe(1, 0.0, -1.0, 1.0, 0.5)
    assert calibrator.residuals(1) == 30
    second = calibrator.widening(1)
    assert second is not None
    assert second.upper == pytest.approx(0.5)


def test_each_step_is_calibrated_apart() -> None:
    calibrator = IntervalCalibrator(0.8, CalibrationConfig(min_residuals=5))
    for _ in range(10):
        calibrator.observe(2, 0.0, -1.0, 1.0, 3.0)
    assert calibrator.widening(1) is None
    assert calibrator.interval(1, 0.0, -1.0, 1.0) == (-1.0, 1.0)
    assert calibrator.interval(2, 0.0, -1.0, 1.0) == (0.0, 3.0)  # no actual fell below the mean


def test_a_zero_width_side_keeps_finite_bounds() -> None:
    config = CalibrationConfig(min_residuals=5, max_factor=4.0)
    calibrator = IntervalCalibrator(0.8, config)
    for _ in range(10):
        calibrator.observe(1, 5.0, 5.0, 5.0, 6.0)  # a constant forecast the load then left
    widening = calibrator.widening(1)
    assert widening == Widening(lower=0.0, upper=4.0, residuals=10)
    assert calibrator.interval(1, 5.0, 4.0, 6.0) == (5.0, 9.0)


def test_calibrates_a_whole_forecast_and_keeps_its_mean() -> None:
    calibrator = IntervalCalibrator(0.8, CalibrationConfig(min_residuals=5))
    for _ in range(10):
        calibrator.observe(1, 10.0, 8.0, 12.0, 16.0)
    forecast = Forecast(
        model=ModelName.ARIMA,
        start=pd.Timestamp("2024-01-01"),
        step=pd.Timedelta(minutes=5),
        level=0.8,
        mean=(10.0, 11.0),
        lower=(8.0, 9.0),
        upper=(12.0, 13.0),
    )
    calibrated = calibrator.calibrate(forecast)
    assert calibrated.mean == forecast.mean
    assert calibrated.upper == (16.0, 13.0)  # step 2 has no residuals yet
    assert calibrated.lower == (10.0, 9.0)
    assert "at 1 of 2 steps" in calibrated.notes[-1]
    with pytest.raises(ValueError, match="level"):
        IntervalCalibrator(0.5).calibrate(forecast)


@pytest.mark.parametrize(
    ("step", "mean", "lower", "upper", "actual", "message"),
    [
        pytest.param(0, 1.0, 0.0, 2.0, 1.0, "step must be", id="step-zero"),
        pytest.param(1, 1.0, 1.5, 2.0, 1.0, "lower <= mean", id="mean-below-lower"),
        pytest.param(1, 1.0, 0.0, 2.0, math.nan, "actual must be finite", id="nan-actual"),
    ],
)
def test_bad_residuals_are_rejected(
    step: int, mean: float, lower: float, upper: float, actual: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        IntervalCalibrator(0.8).observe(step, mean, lower, upper, actual)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"window": 0}, "window", id="no-window"),
        pytest.param({"window": 10, "min_residuals": 11}, "min_residuals", id="min-above-window"),
        pytest.param({"max_factor": 0.5}, "max_factor", id="factor-below-one"),
    ],
)
def test_bad_config_is_rejected(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CalibrationConfig(**kwargs)
