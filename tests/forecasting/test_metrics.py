"""Accuracy scores (forecasting.metrics), checked against values computed by hand.

Covers: MASE with one scale and with per-origin scales, and undefined (nan) for a zero scale; the
seasonal-naive MAE denominator and its too-short error; the relative MAE behind MASE against no
change (a ratio of sums; when no change is perfect, a lagging forecast is infinitely worse and a
perfect one undefined, with rounding not counted as an error); sMAPE including the 0/0 convention
and its 200 % ceiling; interval coverage with bounds counted as inside.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from forecasting.metrics import coverage, mase, relative_mae, seasonal_naive_mae, smape


def _a(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float64)


@pytest.mark.parametrize(
    ("actual", "forecast", "scale", "expected"),
    [
        pytest.param(_a(10, 20), _a(12, 16), 2.0, 1.5, id="one-scale"),
        pytest.param(_a(10, 20), _a(12, 16), _a(1.0, 4.0), 1.5, id="per-point-scale"),
        pytest.param(_a(5, 5), _a(5, 5), 3.0, 0.0, id="perfect"),
    ],
)
def test_mase(
    actual: np.ndarray, forecast: np.ndarray, scale: float | np.ndarray, expected: float
) -> None:
    assert mase(actual, forecast, scale) == pytest.approx(expected)


def test_mase_is_undefined_for_a_zero_scale() -> None:
    assert math.isnan(mase(_a(1.0), _a(2.0), 0.0))


def test_seasonal_naive_mae() -> None:
    history = _a(1, 2, 3, 2, 4, 3)  # season 2: |3-1|, |2-2|, |4-3|, |3-2| -> mean 1.0
    assert seasonal_naive_mae(history, 2) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="more than"):
        seasonal_naive_mae(_a(1, 2), 2)


def test_relative_mae_is_a_ratio_of_sums() -> None:
    actual = _a(10, 20, 30)
    # Errors 1, 1, 1 against no change's 0, 10, 10: 3 / 20, although one point of no change is exact.
    assert relative_mae(actual, _a(11, 21, 29), _a(10, 10, 20)) == pytest.approx(0.15)
    assert relative_mae(actual, _a(10, 10, 20), _a(10, 10, 20)) == pytest.approx(1.0)


def test_relative_mae_where_no_change_is_perfect() -> None:
    flat = _a(5, 5, 5, 5)
    lagging = _a(5, 4, 5, 5)
    assert relative_mae(flat, lagging, flat) == math.inf
    assert math.isnan(relative_mae(flat, flat, flat))
    rounded = flat * (1 + 1e-13)  # "no change" after a round trip through a log scale
    assert math.isnan(relative_mae(flat, rounded, flat))
    assert math.isnan(relative_mae(_a(), _a(), _a()))


@pytest.mark.parametrize(
    ("actual", "forecast", "expected"),
    [
        pytest.param(_a(100), _a(110), 200 * 10 / 210, id="over"),
        pytest.param(_a(0, 0), _a(0, 0), 0.0, id="zero-over-zero-is-perfect"),
        pytest.param(_a(0), _a(5), 200.0, id="ceiling"),
    ],
)
def test_smape(actual: np.ndarray, forecast: np.ndarray, expected: float) -> None:
    assert smape(actual, forecast) == pytest.approx(expected)


def test_coverage_counts_bounds_as_inside() -> None:
    actual = _a(1, 2, 3, 4)
    lower = _a(1, 0, 3.5, 0)
    upper = _a(2, 1, 4, 4)
    assert coverage(actual, lower, upper) == pytest.approx(0.5)
