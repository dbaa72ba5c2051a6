"""The scale a model is fitted on.

Load is positive and skewed: bursts are multiplicative (twice the users, twice the requests), and its
noise grows with its level. Fitting on ``log(y + c)`` makes both additive and constant, so Gaussian
intervals fit the data; the point forecast and the interval bounds are transformed back (quantiles
survive a monotone transform). ``c`` is a small fraction of the series' typical level, so the transform
does not depend on the unit (cores or millicores) and zeros stay finite.

The way back is bounded: a log-scale trend extrapolated over a ramp (load going up by orders of
magnitude per step) makes ``exp`` overflow to inf, or return a finite number no load ever reaches.
``inverse`` refuses anything above ``HEADROOM`` times the largest value the model was fitted on with
``ForecastOutOfRangeError``, checked on the model's scale before ``exp``, so it never overflows. Below
the bound the values are exactly what they were without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np
import numpy.typing as npt

from forecasting.errors import ForecastOutOfRangeError, InvalidSeriesError

__all__ = ["HEADROOM", "Scale", "Transform"]

FloatArray = npt.NDArray[np.float64]

# Offset as a fraction of the median: small enough to keep the log's variance stabilization where the
# load is, large enough that near-zero stretches do not become huge negative outliers.
_OFFSET_FRACTION = 0.05

HEADROOM = 1e6
"""Forecasts above this multiple of the largest value fitted are refused. Generous on purpose, so that
no interval a model honestly gives is refused: the widest 99 % upper bound half an hour ahead reaches
2e3 times the largest value on the shared traces (naive model, ELB requests; ARIMA stays below 1.5),
and 2e4 on a synthetic, mostly idle and spiky series."""

# Whatever the series, a bound stays this far below the largest float, so ``exp`` and the subtraction
# of the offset, and the spans a Forecast checks (upper - lower), cannot overflow.
_LARGEST = float(np.finfo(np.float64).max) / 4.0
_LOG_LARGEST = float(np.log(_LARGEST))


class Scale(Enum):
    """Scale the model is fitted on."""

    AUTO = "auto"
    """Log when every value is >= 0 (load), linear otherwise."""
    LINEAR = "linear"
    LOG = "log"


@dataclass(frozen=True)
class Transform:
    """``z = log(y + offset)`` when ``log``, else the identity. Also remembers whether to clip at 0,
    and the largest ``z`` (in absolute value on a linear scale) that ``inverse`` gives back."""

    log: bool
    offset: float
    nonnegative: bool
    ceiling: float

    @classmethod
    def choose(cls, scale: Scale, values: FloatArray) -> Transform:
        """The transform for ``scale`` given the training values."""
        nonnegative = bool(values.size) and float(values.min()) >= 0.0
        largest = float(np.abs(values).max()) if values.size else 0.0
        if scale is Scale.LINEAR or (scale is Scale.AUTO and not nonnegative):
            # Divided rather than multiplied, so that the bound itself cannot overflow.
            ceiling = _LARGEST if largest > _LARGEST / HEADROOM else HEADROOM * largest
            return cls(log=False, offset=0.0, nonnegative=nonnegative, ceiling=ceiling)
        if not nonnegative:
            raise InvalidSeriesError("a log scale needs non-negative values")
        typical = float(np.median(values))
        if typical <= 0.0:
            typical = float(values.mean())
        offset = _OFFSET_FRACTION * typical if typical > 0.0 else 1.0
        ceiling = min(float(np.log(largest + offset)) + float(np.log(HEADROOM)), _LOG_LARGEST)
        return cls(log=True, offset=offset, nonnegative=True, ceiling=ceiling)

    @property
    def label(self) -> str:
        return "log" if self.log else "linear"

    def forward(self, values: FloatArray) -> FloatArray:
        if not self.log:
            return np.asarray(values, dtype=np.float64)
        # Values below the training minimum (a new low) stay finite thanks to the offset; a negative
        # value cannot reach a log model because the series was checked when it was fitted, but clip
        # defensively so one bad sample cannot produce NaN.
        shifted = np.maximum(np.asarray(values, dtype=np.float64) + self.offset, self.offset * 1e-3)
        return np.log(shifted)

    def inverse(self, values: FloatArray) -> FloatArray:
        """``values`` back on the series' scale; raises ``ForecastOutOfRangeError`` if any is NaN or
        beyond the bound (a lower bound may fall as far as it likes on a log scale: it ends at 0)."""
        z = np.asarray(values, dtype=np.float64)
        reach = z if self.log else np.abs(z)
        if np.isnan(z).any() or (reach > self.ceiling).any():
            limit = float(np.exp(self.ceiling)) - self.offset if self.log else self.ceiling
            detail = "is not a number" if np.isnan(z).any() else "is out of range"
            raise ForecastOutOfRangeError(limit, detail)
        out = np.exp(z) - self.offset if self.log else z
        return np.maximum(out, 0.0) if self.nonnegative else out
