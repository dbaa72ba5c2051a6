"""When a model is re-estimated, and the bookkeeping every model shares.

A live model sees one or a few new points per tick. Re-estimating on every tick would cost a full fit
per series per tick, so a model is re-estimated

* on a cadence (``RefitPolicy.every``, counted in series time, not wall time, so that backtests
  behave exactly as live runs),
* when it has gone wrong: the median absolute standardized one-step error over the last
  ``drift_window`` points exceeds ``drift_threshold`` (a median, so one spike does not trigger it but a
  level shift does), or a degenerate model (a constant series) sees any change,
* when the new points cannot continue the old ones (a long hole),

and between refits the new points are only appended to the fitted state (cheap filtering with fixed
parameters). A failed refit keeps the previous model, which stays usable, and is retried after
``min_spacing``.

A caller that fits elsewhere (another process) calls ``defer_refits``: ``update`` then only appends,
``refit_due`` says when and why a refit is due, and ``refit`` runs it, on a copy of the model that the
caller adopts once it is done. Its scheduled refits fall on a phase of the cadence of its own
(``scheduled_refit``), so that models fitted together are not all due together.
"""

from __future__ import annotations

import abc
import math
import time
import warnings
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import ClassVar

import numpy as np
import numpy.typing as npt
import pandas as pd

from forecasting.base import FitReport, FitWarning, Forecast, ModelName, RefitReason, UpdateReport
from forecasting.errors import ForecastError, GapTooLongError, InsufficientHistoryError, NotFittedError
from forecasting.series import PrepConfig, RegularSeries, continue_series, prepare_series

__all__ = ["Prediction", "RefitPolicy", "StatefulForecaster", "capture_warnings", "scheduled_refit"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class RefitPolicy:
    every: timedelta | None = timedelta(hours=6)
    """Series time between scheduled refits; ``None`` for none (drift and gaps still refit)."""
    drift_window: int = 12
    drift_threshold: float = 2.0
    """Median |standardized one-step error| above which the model is refitted (0.67 if well fitted)."""
    min_spacing: timedelta = timedelta(hours=1)
    """Least series time between a fit and a drift refit, and between a failed refit and a retry."""

    def __post_init__(self) -> None:
        if (self.every is not None and self.every <= timedelta(0)) or self.min_spacing < timedelta(0):
            raise ValueError("every must be positive and min_spacing non-negative")
        if self.drift_window < 1 or self.drift_threshold <= 0:
            raise ValueError("drift_window must be >= 1 and drift_threshold > 0")


def scheduled_refit(end: pd.Timestamp, every: timedelta, phase: float | None = None) -> pd.Timestamp:
    """When a model fitted on data up to `end` is next refitted on schedule: `every` after `end`,
    or, given a `phase` in [0, 1), the first time at least half of `every` after `end` that lies
    that share of the way into a period of `every` (counted from the epoch). Models fitted at the
    same moment with different phases are then due at different times, spread over one period,
    and each keeps refitting exactly `every` apart from then on."""
    period = pd.Timedelta(every)
    if phase is None:
        return end + period
    if not 0.0 <= phase < 1.0:
        raise ValueError(f"phase must be in [0, 1), got {phase}")
    epoch = pd.Timestamp(0, tz=end.tz)
    offset = pd.Timedelta(round(phase * period.value))
    periods = math.ceil((end + period / 2 - epoch - offset) / period)
    return epoch + offset + periods * period


@dataclass(frozen=True, eq=False)
class Prediction:
    """What a model hook returns; ``StatefulForecaster.forecast`` turns it into a ``Forecast``."""

    mean: FloatArray
    lower: FloatArray
    upper: FloatArray
    notes: tuple[str, ...] = ()


@contextmanager
def capture_warnings(sink: list[FitWarning], context: str = "") -> Iterator[None]:
    """Record warnings raised inside the block into ``sink`` instead of printing them.

    The filter change is local to the block (``catch_warnings`` restores the previous filters), so the
    application's own warning configuration is untouched.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    seen = {(w.category, w.message) for w in sink}
    for item in caught:
        entry = FitWarning(item.category.__name__, str(item.message), context)
        if (entry.category, entry.message) not in seen:
            seen.add((entry.category, entry.message))
            sink.append(entry)


class StatefulForecaster(abc.ABC):
    """Implements ``Forecaster`` on top of four model hooks (``_estimate``, ``_append``, ...)."""

    name: ClassVar[ModelName]

    def __init__(self, prep: PrepConfig, refit: RefitPolicy):
        self._prep = prep
        self._refit = refit
        self._history: RegularSeries | None = None
        self._last_fit: FitReport | None = None
        self._next_due: pd.Timestamp | None = None
        self._fit_end: pd.Timestamp | None = None
        self._errors: deque[float] = deque(maxlen=refit.drift_window)
        self._deferred = False
        self._phase: float | None = None

    # -- hooks ------------------------------------------------------------------------------------
    @abc.abstractmethod
    def _min_points(self, step: pd.Timedelta) -> int:
        """Least number of points ``_estimate`` accepts."""

    @abc.abstractmethod
    def _max_points(self, step: pd.Timedelta) -> int:
        """History kept (and used by ``_estimate``)."""

    @abc.abstractmethod
    def _estimate(self, data: RegularSeries, reason: RefitReason | None) -> FitReport:
        """Fit on ``data`` and replace the model state; leave the state untouched on error.

        ``reason`` is ``None`` for an explicit ``fit`` call, else why ``update`` refits.
        """

    @abc.abstractmethod
    def _append(self, new: RegularSeries, history: RegularSeries) -> tuple[FloatArray, list[FitWarning]]:
        """Add ``new`` to the fitted state with fixed parameters.

        Returns the standardized one-step-ahead errors of the new points (``inf`` where a degenerate
        model saw a change) and the warnings raised.
        """

    @abc.abstractmethod
    def _predict(self, steps: int, level: float, history: RegularSeries) -> Prediction:
        """Forecast ``steps`` points after ``history.end``."""

    # -- Forecaster -------------------------------------------------------------------------------
    @property
    def last_fit(self) -> FitReport | None:
        """Report of the fit currently in use."""
        return self._last_fit

    def fit(self, series: pd.Series) -> FitReport:
        return self._fit_regular(prepare_series(series, self._prep), None)

    def defer_refits(self, phase: float | None = None) -> None:
        """From now on `update` leaves scheduled and drift refits to the caller (`refit_due`,
        `refit`); a refit after a long gap still runs in `update`, since it starts over on the
        points given. `phase` places the scheduled refits (see `scheduled_refit`)."""
        self._deferred = True
        self._phase = phase
        if self._next_due is not None and self._fit_end is not None and self._refit.every is not None:
            self._next_due = scheduled_refit(self._fit_end, self._refit.every, phase)

    def refit_due(self) -> RefitReason | None:
        """Why the model should be refitted now, if it should: it has drifted, or its scheduled
        refit is due (a drift first: it is the more urgent)."""
        if self._history is None:
            return None
        if self._drifted(self._history.end):
            return RefitReason.DRIFT
        if self._next_due is not None and self._history.end >= self._next_due:
            return RefitReason.SCHEDULED
        return None

    def refit(self, reason: RefitReason) -> UpdateReport:
        """Refit on the history held now, as `update` does when a refit is due; a failed refit
        keeps the fitted state and is due again after `min_spacing`."""
        return self._refit_or_append(None, self._require_history(), reason)

    def update(self, series: pd.Series) -> UpdateReport:
        history = self._require_history()
        try:
            new = continue_series(history, series, self._prep)
        except GapTooLongError:
            # The old state cannot be continued; start over on what the caller has now (which raises,
            # leaving the old state, if that has the hole too or is too short).
            report = self._fit_regular(prepare_series(series, self._prep), RefitReason.GAP)
            appended = len(self._require_history())
            return UpdateReport(appended=appended, refit=RefitReason.GAP, fit=report)
        if new is None:
            return UpdateReport(appended=0)
        combined = history.append(new, keep=self._max_points(history.step))
        due = self._next_due is not None and combined.end >= self._next_due
        if due and not self._deferred:
            return self._refit_or_append(new, combined, RefitReason.SCHEDULED)
        errors, caught = self._append(new, combined)
        self._history = combined
        self._errors.extend(float(e) for e in errors)
        if not self._deferred and self._drifted(combined.end):
            return self._refit_or_append(None, combined, RefitReason.DRIFT, len(new), caught)
        return UpdateReport(appended=len(new), warnings=tuple(caught))

    def forecast(self, steps: int, level: float = 0.8) -> Forecast:
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if not 0.0 < level < 1.0:
            raise ValueError(f"level must be in (0, 1), got {level}")
        history = self._require_history()
        pred = self._predict(steps, level, history)
        mean = np.asarray(pred.mean, dtype=np.float64)
        if not all(np.isfinite(values).all() for values in (mean, pred.lower, pred.upper)):
            raise ForecastError(f"{self.name.value} produced a non-finite forecast")
        # Rounding in a back-transform can put a bound a hair on the wrong side of the mean.
        lower = np.minimum(pred.lower, mean)
        upper = np.maximum(pred.upper, mean)
        return Forecast(
            model=self.name,
            start=history.end + history.step,
            step=history.step,
            level=level,
            mean=tuple(float(v) for v in mean),
            lower=tuple(float(v) for v in lower),
            upper=tuple(float(v) for v in upper),
            notes=pred.notes,
        )

    # -- internals --------------------------------------------------------------------------------
    def _require_history(self) -> RegularSeries:
        if self._history is None:
            raise NotFittedError(f"{self.name.value}: fit() must succeed before update() or forecast()")
        return self._history

    def _fit_regular(self, data: RegularSeries, reason: RefitReason | None) -> FitReport:
        data = data.tail(self._max_points(data.step))
        needed = self._min_points(data.step)
        if len(data) < needed:
            raise InsufficientHistoryError(self.name.value, needed, len(data))
        started = time.perf_counter()
        report = self._estimate(data, reason)
        report = replace(report, seconds=time.perf_counter() - started)
        self._history = data
        self._last_fit = report
        self._fit_end = data.end
        every = self._refit.every
        self._next_due = None if every is None else scheduled_refit(data.end, every, self._phase)
        self._errors.clear()
        return report

    def _drifted(self, now: pd.Timestamp) -> bool:
        if not self._errors:
            return False
        assert self._fit_end is not None
        if any(np.isinf(e) for e in self._errors):
            return True
        if len(self._errors) < self._refit.drift_window:
            return False
        if now - self._fit_end < pd.Timedelta(self._refit.min_spacing):
            return False
        return float(np.median(np.abs(np.array(self._errors)))) > self._refit.drift_threshold

    def _refit_or_append(
        self,
        pending: RegularSeries | None,
        combined: RegularSeries,
        reason: RefitReason,
        appended: int | None = None,
        caught: list[FitWarning] | None = None,
    ) -> UpdateReport:
        count = appended if appended is not None else (len(pending) if pending is not None else 0)
        try:
            report = self._fit_regular(combined, reason)
        except ForecastError as exc:
            # Keep serving the previous model: it is still a fitted model, only older.
            if pending is not None:
                _, more = self._append(pending, combined)
                caught = (caught or []) + more
                self._history = combined
            self._errors.clear()
            self._next_due = combined.end + pd.Timedelta(self._refit.min_spacing)
            return UpdateReport(
                appended=count, refit=reason, refit_error=str(exc), warnings=tuple(caught or [])
            )
        return UpdateReport(appended=count, refit=reason, fit=report, warnings=tuple(caught or []))
