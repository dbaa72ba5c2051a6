"""Forecast accuracy scores as defined in BENCHMARK.md ("Forecast accuracy").

All functions take aligned arrays of actuals and forecasts (any shape) and ignore nothing: callers pass
only the points they score.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["coverage", "mase", "relative_mae", "seasonal_naive_mae", "smape"]

FloatArray = npt.NDArray[np.float64]


def seasonal_naive_mae(history: FloatArray, season: int) -> float:
    """In-sample MAE of "same time one season ago" on ``history``: the MASE denominator."""
    if season < 1 or history.shape[0] <= season:
        raise ValueError(f"need more than {season} points, got {history.shape[0]}")
    return float(np.mean(np.abs(history[season:] - history[:-season])))


def mase(actual: FloatArray, forecast: FloatArray, scale: FloatArray | float) -> float:
    """Mean of ``|actual - forecast| / scale``; ``scale`` per point (its origin's) or one number.

    Below 1: better than the seasonal naive forecast was in-sample. ``nan`` if any scale is 0 (a
    series that repeats itself exactly has no meaningful scaled error).
    """
    scales = np.broadcast_to(np.asarray(scale, dtype=np.float64), np.shape(actual))
    if actual.size == 0 or (scales <= 0).any():
        return float("nan")
    return float(np.mean(np.abs(actual - forecast) / scales))


def relative_mae(actual: FloatArray, forecast: FloatArray, benchmark: FloatArray) -> float:
    """MAE of ``forecast`` divided by the MAE of ``benchmark`` on the same points.

    Below 1: the forecast erred less than the benchmark there. A ratio of sums, not a mean of ratios,
    so a point where the benchmark happened to be exact weighs as little as it should instead of
    dividing by zero. ``nan`` when both are exact everywhere (or nothing is scored), ``inf`` when
    only the benchmark is. "Exact" allows rounding (a total error below ``1e-9`` of the total
    actual): a forecast that went through ``exp(log(y))`` is not infinitely worse than ``y`` itself.
    """
    if actual.size == 0:
        return float("nan")
    error = float(np.sum(np.abs(actual - forecast)))
    rival = float(np.sum(np.abs(actual - benchmark)))
    rounding = 1e-9 * float(np.sum(np.abs(actual)))
    if rival > rounding:
        return error / rival
    return float("nan") if error <= rounding else float("inf")


def smape(actual: FloatArray, forecast: FloatArray) -> float:
    """Symmetric MAPE in percent (0..200); a point where both are 0 counts as a perfect 0."""
    if actual.size == 0:
        return float("nan")
    denominator = np.abs(actual) + np.abs(forecast)
    safe = np.where(denominator > 0, denominator, 1.0)
    terms = np.where(denominator > 0, 200.0 * np.abs(actual - forecast) / safe, 0.0)
    return float(np.mean(terms))


def coverage(actual: FloatArray, lower: FloatArray, upper: FloatArray) -> float:
    """Share of actuals inside ``[lower, upper]`` (bounds included)."""
    if actual.size == 0:
        return float("nan")
    return float(np.mean((actual >= lower) & (actual <= upper)))
