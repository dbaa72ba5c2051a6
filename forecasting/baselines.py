"""Reference models with the same interface: naive, seasonal naive (one day), Holt-Winters.

They fit on the same scale as ARIMA (``Scale.AUTO``: log for non-negative load) so that comparisons
measure the model, not the transform.

* Naive: the last value; interval from the RMS of one-step changes, widening with ``sqrt(h)``.
* Seasonal naive: the value one day earlier; interval from the RMS of one-day changes, widening with
  the number of days ahead (Hyndman & Athanasopoulos, FPP3 §5.5).
* Holt-Winters: ``statsmodels`` ``ETSModel`` (additive error, damped additive trend, additive daily
  season, heuristic initial states) on the last ``window``; analytic prediction intervals. Between
  refits the new points are filtered with the fitted parameters and initial states (``smooth``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta
from statistics import NormalDist
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import pandas as pd
from statsmodels.tsa.exponential_smoothing.ets import ETSModel

from forecasting.base import FitReport, FitWarning, ModelName, RefitReason
from forecasting.errors import FitFailedError, InvalidSeriesError
from forecasting.lifecycle import Prediction, RefitPolicy, StatefulForecaster, capture_warnings
from forecasting.series import PrepConfig, RegularSeries
from forecasting.transform import Scale, Transform

__all__ = [
    "BaselineConfig",
    "HoltWintersConfig",
    "HoltWintersForecaster",
    "NaiveForecaster",
    "SeasonalNaiveForecaster",
]

FloatArray = npt.NDArray[np.float64]
_DAY = pd.Timedelta(days=1)


@dataclass(frozen=True)
class BaselineConfig:
    scale: Scale = Scale.AUTO
    window: timedelta = timedelta(days=7)
    """History the interval width is estimated on."""
    prep: PrepConfig = field(default_factory=PrepConfig)


def _season_points(step: pd.Timedelta) -> int:
    points = _DAY / step
    if points < 2 or abs(points - round(points)) > 1e-9:
        raise InvalidSeriesError(f"a one-day season needs a step that divides a day, got {step}")
    return round(points)


def _rms(values: FloatArray) -> float:
    return float(np.sqrt(np.mean(np.square(values)))) if values.size else 0.0


class _EmpiricalBaseline(StatefulForecaster):
    """Naive models: nothing to estimate but the interval width, so every update re-estimates."""

    lag_of_season: ClassVar[bool]

    def __init__(self, config: BaselineConfig | None = None):
        self.config = config or BaselineConfig()
        # Re-estimation is a vectorized pass over the window, so there is no cadence to honour.
        super().__init__(self.config.prep, RefitPolicy(every=None))
        self._transform: Transform | None = None
        self._sigma = 0.0

    def _lag(self, step: pd.Timedelta) -> int:
        return _season_points(step) if self.lag_of_season else 1

    def _min_points(self, step: pd.Timedelta) -> int:
        return self._lag(step) + 2

    def _max_points(self, step: pd.Timedelta) -> int:
        return max(self._min_points(step), math.ceil(pd.Timedelta(self.config.window) / step))

    def _estimate(self, data: RegularSeries, reason: RefitReason | None) -> FitReport:
        transform = Transform.choose(self.config.scale, data.values)
        self._transform = transform
        self._sigma = self._spread(data)
        return FitReport(self.name, f"{self.name.value} {transform.label}", len(data), data.end)

    def _spread(self, data: RegularSeries) -> float:
        assert self._transform is not None
        z = self._transform.forward(data.values)
        lag = self._lag(data.step)
        return _rms(z[lag:] - z[:-lag])

    def _append(self, new: RegularSeries, history: RegularSeries) -> tuple[FloatArray, list[FitWarning]]:
        assert self._transform is not None
        z_all = self._transform.forward(history.values)
        lag = self._lag(history.step)
        z_new = z_all[-len(new) :]
        previous = z_all[-len(new) - lag : len(z_all) - lag]
        errors = _standardize(z_new - previous, self._sigma)
        self._sigma = self._spread(history)
        return errors, []

    def _predict(self, steps: int, level: float, history: RegularSeries) -> Prediction:
        assert self._transform is not None
        z = self._transform.forward(history.values)
        lag = self._lag(history.step)
        h = np.arange(1, steps + 1)
        # Step h repeats the value lag*ceil(h/lag) points back; each further season adds a variance.
        center = z[len(z) - lag + (h - 1) % lag]
        periods = (h - 1) // lag + 1
        spread = self._sigma * np.sqrt(periods)
        q = NormalDist().inv_cdf(0.5 + level / 2.0)
        inverse = self._transform.inverse
        return Prediction(inverse(center), inverse(center - q * spread), inverse(center + q * spread))


class NaiveForecaster(_EmpiricalBaseline):
    name: ClassVar[ModelName] = ModelName.NAIVE
    lag_of_season: ClassVar[bool] = False


class SeasonalNaiveForecaster(_EmpiricalBaseline):
    name: ClassVar[ModelName] = ModelName.SEASONAL_NAIVE
    lag_of_season: ClassVar[bool] = True


def _standardize(errors: FloatArray, sigma: float) -> FloatArray:
    if sigma > 0:
        return np.asarray(errors / sigma, dtype=np.float64)
    return np.where(np.abs(errors) > 0, np.inf, 0.0)


@dataclass(frozen=True)
class HoltWintersConfig:
    scale: Scale = Scale.AUTO
    window: timedelta = timedelta(days=7)
    damped_trend: bool = True
    refit: RefitPolicy = field(default_factory=RefitPolicy)
    prep: PrepConfig = field(default_factory=PrepConfig)


@dataclass(eq=False)
class _HwState:
    transform: Transform
    params: FloatArray
    init: dict[str, Any]
    z: FloatArray
    results: Any  # statsmodels ETSResults; None for a constant series
    constant: float | None


class HoltWintersForecaster(StatefulForecaster):
    name: ClassVar[ModelName] = ModelName.HOLT_WINTERS

    def __init__(self, config: HoltWintersConfig | None = None):
        self.config = config or HoltWintersConfig()
        super().__init__(self.config.prep, self.config.refit)
        self._state: _HwState | None = None

    def _min_points(self, step: pd.Timedelta) -> int:
        season = _season_points(step)
        # statsmodels' heuristic initialization needs two full seasons.
        return max(2 * season, 10 + 2 * (season // 2))

    def _max_points(self, step: pd.Timedelta) -> int:
        return max(self._min_points(step), math.ceil(pd.Timedelta(self.config.window) / step))

    def _model(self, z: FloatArray, season: int, **init: Any) -> Any:
        return ETSModel(
            pd.Series(z),  # ETS prediction needs a pandas index (fails on a bare ndarray)
            error="add",
            trend="add",
            damped_trend=self.config.damped_trend,
            seasonal="add",
            seasonal_periods=season,
            **init,
        )

    def _estimate(self, data: RegularSeries, reason: RefitReason | None) -> FitReport:
        season = _season_points(data.step)
        transform = Transform.choose(self.config.scale, data.values)
        z = transform.forward(data.values)
        if float(np.ptp(z)) <= 1e-12 * max(1.0, float(np.abs(z).max())):
            self._state = _HwState(transform, np.empty(0), {}, z, None, float(z[-1]))
            return FitReport(self.name, f"constant ({transform.label})", len(data), data.end)
        caught: list[FitWarning] = []
        try:
            with capture_warnings(caught, "ETS"):
                results = self._model(z, season, initialization_method="heuristic").fit(disp=False)
        except Exception as exc:  # statsmodels raises a variety of types for a bad fit
            raise FitFailedError(self.name.value, (f"{type(exc).__name__}: {exc}",)) from exc
        params = np.asarray(results.params, dtype=np.float64)
        if not (np.isfinite(params).all() and np.isfinite(results.mse)):
            raise FitFailedError(self.name.value, ("non-finite estimate",))
        init = {
            "initialization_method": "known",
            "initial_level": results.initial_level,
            "initial_trend": results.initial_trend,
            "initial_seasonal": results.initial_seasonal,
        }
        self._state = _HwState(transform, params, init, z, results, None)
        damped = "damped " if self.config.damped_trend else ""
        return FitReport(
            self.name,
            f"ETS(A,{damped}A,A) season={season} {transform.label}",
            len(data),
            data.end,
            aic=float(results.aic) if np.isfinite(results.aic) else None,
            warnings=tuple(caught),
        )

    def _append(self, new: RegularSeries, history: RegularSeries) -> tuple[FloatArray, list[FitWarning]]:
        state = self._require_state()
        z_new = state.transform.forward(new.values)
        state.z = np.concatenate((state.z, z_new))
        if state.constant is not None:
            changed = np.abs(z_new - state.constant) > 1e-12 * max(1.0, abs(state.constant))
            return np.where(changed, np.inf, 0.0), []
        sigma = math.sqrt(float(state.results.mse))
        caught: list[FitWarning] = []
        with capture_warnings(caught, "ETS smooth"):
            state.results = self._model(state.z, _season_points(history.step), **state.init).smooth(
                state.params
            )
        errors = np.asarray(state.results.resid, dtype=np.float64)[-len(new) :]
        return _standardize(errors, sigma), caught

    def _predict(self, steps: int, level: float, history: RegularSeries) -> Prediction:
        state = self._require_state()
        if state.constant is not None:
            flat = state.transform.inverse(np.full(steps, state.constant))
            return Prediction(flat, flat, flat, ("constant series: no spread to estimate",))
        n = len(state.z)
        prediction = state.results.get_prediction(start=n, end=n + steps - 1)
        center = np.asarray(prediction.predicted_mean, dtype=np.float64)
        bounds = np.asarray(prediction.pred_int(alpha=1.0 - level), dtype=np.float64)
        inverse = state.transform.inverse
        return Prediction(inverse(center), inverse(bounds[:, 0]), inverse(bounds[:, 1]))

    def _require_state(self) -> _HwState:
        assert self._state is not None, "StatefulForecaster checks the history first"
        return self._state
