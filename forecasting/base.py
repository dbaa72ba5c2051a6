"""The interface every model implements, and the typed values that cross it.

A model's life: ``fit(series)`` once, then per tick ``update(series)`` with whatever the metrics
source returned (only points newer than the model's last one are used; the model itself decides when
a full refit is due) and ``forecast(steps, level)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

__all__ = [
    "CandidateFit",
    "FitReport",
    "FitWarning",
    "Forecast",
    "Forecaster",
    "ModelName",
    "RefitReason",
    "UpdateReport",
]


class ModelName(StrEnum):
    """Models known to :func:`forecasting.make_forecaster`; the values are the CLI names."""

    ARIMA = "arima"
    HOLT_WINTERS = "holt-winters"
    SEASONAL_NAIVE = "seasonal-naive"
    NAIVE = "naive"


class RefitReason(Enum):
    """Why ``update`` re-estimated the model instead of only appending the new points."""

    SCHEDULED = "scheduled"
    DRIFT = "drift"
    GAP = "gap"


@dataclass(frozen=True)
class FitWarning:
    """A warning raised by the estimation library during one fit (kept, never printed)."""

    category: str
    message: str
    context: str = ""


@dataclass(frozen=True)
class CandidateFit:
    """One candidate tried during model selection."""

    spec: str
    aic: float | None
    error: str | None = None


@dataclass(frozen=True)
class FitReport:
    """What a fit chose and what it ran into."""

    model: ModelName
    spec: str
    """Human-readable description of the chosen model, e.g. ``ARIMA(2,0,1) log daily=4``."""
    n_obs: int
    end: pd.Timestamp
    """Timestamp of the last point used."""
    aic: float | None = None
    candidates: tuple[CandidateFit, ...] = ()
    budget_exhausted: bool = False
    """The work budget (or the wall-clock guard) stopped model selection before the end of the grid."""
    warnings: tuple[FitWarning, ...] = ()
    seconds: float = field(default=0.0, compare=False)
    """Wall time of the fit; excluded from equality so reports of identical fits compare equal."""


@dataclass(frozen=True)
class UpdateReport:
    """Outcome of one ``update``."""

    appended: int
    """New points taken from the series (0 when it held nothing newer; after a gap refit, the points
    of the series the model now holds)."""
    refit: RefitReason | None = None
    fit: FitReport | None = None
    refit_error: str | None = None
    """A due refit failed; the previous model (with the new points appended) stays in use."""
    warnings: tuple[FitWarning, ...] = ()


@dataclass(frozen=True)
class Forecast:
    """Point forecast and prediction interval for ``steps`` grid points after the last observation.

    ``mean`` is the model's point forecast on the original scale. For a model fitted on a log scale it
    is the back-transformed mean of the log, i.e. the median, which is what minimizes absolute error;
    the bounds are the back-transformed quantiles, so ``level`` keeps its meaning.
    """

    model: ModelName
    start: pd.Timestamp
    """Timestamp of the first forecast point (one step after the last observation)."""
    step: pd.Timedelta
    level: float
    mean: tuple[float, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.mean)
        if n == 0 or len(self.lower) != n or len(self.upper) != n:
            raise ValueError("mean, lower and upper must be non-empty and of equal length")
        if not 0.0 < self.level < 1.0:
            raise ValueError(f"level must be in (0, 1), got {self.level}")
        values = np.array([self.lower, self.mean, self.upper], dtype=np.float64)
        if not np.isfinite(values).all():
            raise ValueError("forecast values must be finite")
        if (np.diff(values, axis=0) < 0).any():
            raise ValueError("a forecast must satisfy lower <= mean <= upper")

    @property
    def steps(self) -> int:
        return len(self.mean)

    @property
    def index(self) -> pd.DatetimeIndex:
        return pd.date_range(self.start, periods=self.steps, freq=self.step)

    def to_frame(self) -> pd.DataFrame:
        """Columns ``mean``, ``lower``, ``upper`` indexed by the forecast timestamps."""
        return pd.DataFrame(
            {"mean": self.mean, "lower": self.lower, "upper": self.upper}, index=self.index
        )


@runtime_checkable
class Forecaster(Protocol):
    """What the controller and the backtests call; every model implements it."""

    @property
    def name(self) -> ModelName: ...

    @property
    def last_fit(self) -> FitReport | None:
        """Report of the fit in use (``None`` before the first successful fit)."""
        ...

    def fit(self, series: pd.Series) -> FitReport:
        """Estimate the model on ``series`` (any DatetimeIndex; it is regularized first).

        Raises ``InvalidSeriesError``, ``GapTooLongError``, ``InsufficientHistoryError`` or
        ``FitFailedError``; on error the previous state, if any, is kept.
        """
        ...

    def update(self, series: pd.Series) -> UpdateReport:
        """Take the points of ``series`` newer than the last one seen; refit when due."""
        ...

    def forecast(self, steps: int, level: float = 0.8) -> Forecast:
        """Forecast ``steps`` points ahead with a central ``level`` prediction interval."""
        ...
