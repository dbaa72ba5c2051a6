"""Out-of-sample calibration of prediction intervals: split-conformal on recent residuals.

A model's interval comes from its own in-sample errors, so it is only as right as the model's idea of
its errors. The calibrator checks that idea against outcomes: it keeps, per horizon step, the last
``window`` forecasts whose actuals are known, and rescales the interval's two half-widths so that the
level's share of those outcomes would have been inside.

Method, per horizon step ``k`` (step 1 is the first point after the last observation):

* **Scores.** For a forecast ``(mean, lower, upper)`` and its actual ``y``, the upper score is
  ``(y - mean) / (upper - mean)`` and the lower score ``(mean - y) / (mean - lower)``: how many raw
  half-widths the actual lay beyond the mean on each side (negative on the other side; ``±inf`` where
  the model gave that side no width and the actual still fell there). The raw interval covered ``y``
  exactly when both scores are at most 1.
* **Factors.** With ``n`` scores of each side and ``q = (1 + level) / 2``, a side's factor is the
  ``ceil((n + 1) q)``-th smallest of its scores: the split-conformal quantile, which covers at least
  ``q`` of a new exchangeable score. Each side so misses at most ``(1 - level) / 2`` and the two
  misses are disjoint, so the interval ``[mean - f_lo (mean - lower), mean + f_hi (upper - mean)]``
  covers at least ``level``. The sides are calibrated apart because the controller provisions for the
  upper bound: a model that lags a rise misses above more often than below, and one factor for both
  would hide that by widening the lower side too.
* **Bounds on a factor.** At least 0, so the interval keeps the mean (``Forecast`` requires
  ``lower <= mean <= upper``); at most ``max_factor``, so a run of zero-width forecasts (infinite
  scores) cannot make a bound infinite.
* **Until calibrated** (fewer than ``min_residuals`` residuals of a step, or too few for the
  conformal quantile of the level to exist) the raw interval is returned unchanged.

Residuals of load forecasts are neither independent nor identically distributed (bursts cluster, the
day has quiet and busy hours), so the conformal guarantee does not hold as such; the sliding window is
what lets the factors follow a change of regime. The window counts residuals, not time: in a
rolling-origin backtest one arrives per origin, in a controller one per forecast bucket, so the same
count spans very different stretches of time.

The caller must feed a residual only once its actual is known, i.e. never one whose target is at or
after the point being forecast; ``forecasting.backtest`` does this with the origins' own order.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, replace

import numpy as np

from forecasting.base import Forecast

__all__ = ["CalibrationConfig", "IntervalCalibrator", "Widening"]


@dataclass(frozen=True)
class CalibrationConfig:
    window: int = 100
    """Residuals kept per horizon step (the most recent ones)."""
    min_residuals: int = 20
    """Below this many residuals of a step, its interval is returned unchanged."""
    max_factor: float = 10.0
    """Largest multiple of a raw half-width a calibrated one may be."""

    def __post_init__(self) -> None:
        if self.window < 1 or not 1 <= self.min_residuals <= self.window:
            raise ValueError("window must be >= 1 and min_residuals in 1..window")
        if not (math.isfinite(self.max_factor) and self.max_factor >= 1.0):
            raise ValueError("max_factor must be finite and >= 1")


@dataclass(frozen=True)
class Widening:
    """Multipliers of the raw half-widths of one horizon step, and how many residuals set them."""

    lower: float
    upper: float
    residuals: int


class IntervalCalibrator:
    """Per-step split-conformal calibration at one interval ``level`` (see the module docstring).

    Feed each forecast's outcome with :meth:`observe` once it is known; :meth:`interval` and
    :meth:`calibrate` then return calibrated bounds for new forecasts made at the same level.
    """

    def __init__(self, level: float, config: CalibrationConfig | None = None) -> None:
        if not 0.0 < level < 1.0:
            raise ValueError(f"level must be in (0, 1), got {level}")
        self.level = level
        self.config = config or CalibrationConfig()
        self._scores: dict[int, deque[tuple[float, float]]] = {}
        self._widening: dict[int, Widening | None] = {}

    def observe(self, step: int, mean: float, lower: float, upper: float, actual: float) -> None:
        """One outcome: the forecast made ``step`` points ahead at this level, and what happened."""
        _check_point(step, mean, lower, upper)
        if not math.isfinite(actual):
            raise ValueError(f"actual must be finite, got {actual}")
        scores = self._scores.get(step)
        if scores is None:
            scores = self._scores[step] = deque(maxlen=self.config.window)
        scores.append((_score(mean - actual, mean - lower), _score(actual - mean, upper - mean)))
        self._widening.pop(step, None)

    def residuals(self, step: int) -> int:
        """Residuals of ``step`` currently kept."""
        return len(self._scores.get(step, ()))

    def widening(self, step: int) -> Widening | None:
        """The factors for ``step``, or ``None`` while it has too few residuals to calibrate."""
        if step not in self._widening:
            self._widening[step] = self._compute(step)
        return self._widening[step]

    def interval(self, step: int, mean: float, lower: float, upper: float) -> tuple[float, float]:
        """Calibrated ``(lower, upper)`` of a forecast point ``step`` ahead (raw while uncalibrated)."""
        _check_point(step, mean, lower, upper)
        factors = self.widening(step)
        if factors is None:
            return lower, upper
        return (
            min(mean, mean - factors.lower * (mean - lower)),
            max(mean, mean + factors.upper * (upper - mean)),
        )

    def calibrate(self, forecast: Forecast) -> Forecast:
        """``forecast`` with each step's interval calibrated; the mean is unchanged."""
        if not math.isclose(forecast.level, self.level):
            raise ValueError(f"calibrated at level {self.level}, forecast is at {forecast.level}")
        bounds = [
            self.interval(k, m, lo, hi)
            for k, (m, lo, hi) in enumerate(
                zip(forecast.mean, forecast.lower, forecast.upper, strict=True), start=1
            )
        ]
        calibrated = sum(1 for k in range(1, forecast.steps + 1) if self.widening(k) is not None)
        note = f"interval calibrated out of sample at {calibrated} of {forecast.steps} steps"
        return replace(
            forecast,
            lower=tuple(b[0] for b in bounds),
            upper=tuple(b[1] for b in bounds),
            notes=(*forecast.notes, note),
        )

    def _compute(self, step: int) -> Widening | None:
        scores = self._scores.get(step)
        n = 0 if scores is None else len(scores)
        if scores is None or n < self.config.min_residuals:
            return None
        rank = math.ceil((n + 1) * (1.0 + self.level) / 2.0 - 1e-9)
        if rank > n:
            return None
        table = np.array(scores, dtype=np.float64)
        lower = float(np.partition(table[:, 0], rank - 1)[rank - 1])
        upper = float(np.partition(table[:, 1], rank - 1)[rank - 1])
        return Widening(self._bounded(lower), self._bounded(upper), n)

    def _bounded(self, factor: float) -> float:
        return min(self.config.max_factor, max(0.0, factor))


def _score(excess: float, half_width: float) -> float:
    if half_width > 0:
        return excess / half_width
    # A side the model gave no width: exact hits cost nothing, anything else cannot be scaled away.
    return 0.0 if excess == 0 else math.copysign(math.inf, excess)


def _check_point(step: int, mean: float, lower: float, upper: float) -> None:
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    if not (math.isfinite(lower) and math.isfinite(upper) and lower <= mean <= upper):
        raise ValueError(f"need finite lower <= mean <= upper, got {lower}, {mean}, {upper}")
