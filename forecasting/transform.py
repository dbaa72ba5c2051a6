"""The scale a model is fitted on.

Load is positive and skewed: bursts are multiplicative (twice the users, twice the requests), and its
noise grows with its level. Fitting on ``log(y + c)`` makes both additive and constant, so Gaussian
intervals fit the data; the point forecast and the interval bounds are transformed back (quantiles
survive a monotone transform). ``c`` is a small fraction of the series' typical level, so the transform
does not depend on the unit (cores or millicores) and zeros stay finite.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np
import numpy.typing as npt

from forecasting.errors import InvalidSeriesError

__all__ = ["Scale", "Transform"]

FloatArray = npt.NDArray[np.float64]

# Offset as a fraction of the median: small enough to keep the log's variance stabilization where the
# load is, large enough that near-zero stretches do not become huge negative outliers.
_OFFSET_FRACTION = 0.05


class Scale(Enum):
    """Scale the model is fitted on."""

    AUTO = "auto"
    """Log when every value is >= 0 (load), linear otherwise."""
    LINEAR = "linear"
    LOG = "log"


@dataclass(frozen=True)
class Transform:
    """``z = log(y + offset)`` when ``log``, else the identity. Also remembers whether to clip at 0."""

    log: bool
    offset: float
    nonnegative: bool

    @classmethod
    def choose(cls, scale: Scale, values: FloatArray) -> Transform:
        """The transform for ``scale`` given the training values."""
        nonnegative = bool(values.size) and float(values.min()) >= 0.0
        if scale is Scale.LINEAR or (scale is Scale.AUTO and not nonnegative):
            return cls(log=False, offset=0.0, nonnegative=nonnegative)
        if not nonnegative:
            raise InvalidSeriesError("a log scale needs non-negative values")
        typical = float(np.median(values))
        if typical <= 0.0:
            typical = float(values.mean())
        offset = _OFFSET_FRACTION * typical if typical > 0.0 else 1.0
        return cls(log=True, offset=offset, nonnegative=True)

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
        out = np.exp(values) - self.offset if self.log else np.asarray(values, dtype=np.float64)
        return np.maximum(out, 0.0) if self.nonnegative else out
