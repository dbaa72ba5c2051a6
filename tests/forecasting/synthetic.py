"""Synthetic load series for the forecasting tests: known shapes, seeded noise, 5-minute grid."""

from __future__ import annotations

import numpy as np
import pandas as pd

STEP = pd.Timedelta(minutes=5)
PER_DAY = 288
START = pd.Timestamp("2024-03-04 00:00")


def index(points: int, start: pd.Timestamp = START, step: pd.Timedelta = STEP) -> pd.DatetimeIndex:
    return pd.date_range(start, periods=points, freq=step)


def daily_pattern(points: int, level: float = 100.0, amplitude: float = 40.0) -> np.ndarray:
    """The noise-free daily shape: a peak in the afternoon, a trough at night."""
    t = np.arange(points) / PER_DAY
    return level + amplitude * np.sin(2 * np.pi * (t - 0.375)) + 0.25 * amplitude * np.cos(4 * np.pi * t)


def daily_load(
    days: float,
    *,
    level: float = 100.0,
    amplitude: float = 40.0,
    noise: float = 4.0,
    ar: float = 0.6,
    seed: int = 7,
) -> pd.Series:
    """Daily pattern plus AR(1) noise of standard deviation ``noise``."""
    points = round(days * PER_DAY)
    rng = np.random.default_rng(seed)
    shocks = rng.normal(0.0, noise * np.sqrt(1 - ar**2), points)
    wander = np.zeros(points)
    for i in range(1, points):
        wander[i] = ar * wander[i - 1] + shocks[i]
    return pd.Series(daily_pattern(points, level, amplitude) + wander, index=index(points))


def hourly_spikes(days: float, *, base: float = 30.0, height: float = 40.0, seed: int = 3) -> pd.Series:
    """A flat load with a spike at the same minute of every hour, as a cron job makes."""
    points = round(days * PER_DAY)
    rng = np.random.default_rng(seed)
    values = base + rng.normal(0.0, 1.0, points)
    minute = np.arange(points) % 12
    values[minute == 0] += height
    values[minute == 1] += height / 3
    return pd.Series(values, index=index(points))
