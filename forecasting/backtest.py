"""Rolling-origin backtests (BENCHMARK.md, "Forecast accuracy"), run as a model would run live.

Design:

* **Origins** every ``origin_every`` after a ``warmup`` (default 2 days, as in the autoscaling
  benchmark). The default spacing is one hour *plus one step* (65 minutes on 5-minute data): a whole
  hour would score the same minutes of every hour only, and on a trace with an hourly cron spike (AWS
  auto-scaling group) that alone moved the seasonal-naive MASE from 1.0 to 1.5. At an origin the
  model has seen exactly the points before it and forecasts the next ``horizon_steps`` points.
* **Model life**: fitted once at the first origin on everything before it; at each later origin it
  receives the points since the previous origin through ``update`` — the same call the controller makes
  each tick — and so refits on its own cadence and drift rule, with cheap appends in between. Passing
  an hour's points in one call filters exactly as twelve single-point calls would (the Kalman filter
  and the hourly profile are sequential); only the drift check runs once per batch instead of per
  point. A model that raises a typed error at an origin is counted in ``failed_origins`` and refitted
  from scratch at the next one.
* **Scores** over every step ``1..h`` of every scored origin, again for each step alone
  (``by_step``; step 1 is the origin's own point) and for the ``h``-th step (``*_at_horizon``):

  - ``mase``: MASE against the in-sample one-day seasonal-naive MAE of all data before the origin
    (below 1 beats "same time yesterday");
  - ``mase_no_change``: the model's MAE over the scored origins and steps divided by the MAE, at the
    same origins and steps, of "no change" (the last value before the origin carried over the
    horizon: what a reactive scaler assumes). Below 1 the model beat no change on exactly those
    points. The scale is out of sample on purpose: the usual in-sample h-step naive MAE compares the
    model's errors now with no change's errors in the past, so on a trace whose volatility changes
    the ratio would move with the volatility rather than with the model's skill, and the rival a
    reactive scaler faces is no change at these very moments. It is the ratio the controller's trust
    gate computes live from the forecasts it scores (there with a noise floor). Strictly this is a
    relative MAE; it keeps the name BENCHMARK.md uses;
  - ``smape`` (all steps only);
  - ``coverage``: the share of actuals inside the model's ``level`` interval;
  - ``coverage_calibrated``: the same share after split-conformal calibration out of sample
    (``forecasting.calibration``): at each origin, each step's interval is rescaled from the residuals
    of that step at earlier origins whose actuals lie before this origin (``options.calibration``
    says how many are kept), and only from those: no outcome at or after the origin is used. Until
    a step has enough residuals its raw interval counts. One residual per step arrives per origin, so
    at the default spacing the default window of 100 spans about 4.5 days of 5-minute data.

Cost: this origin grid keeps a 28-day, 5-minute trace at about 600 forecasts per model; with the
default 6-hour ARIMA refits the four models take well under a minute on one core. Calibration adds a
few array operations per origin and step.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from forecasting.arima import ArimaConfig
from forecasting.base import ModelName
from forecasting.calibration import CalibrationConfig, IntervalCalibrator
from forecasting.errors import ForecastError
from forecasting.metrics import coverage, mase, relative_mae, smape
from forecasting.registry import make_forecaster
from forecasting.series import PrepConfig, RegularSeries, prepare_series

__all__ = [
    "BacktestOptions",
    "BacktestProgress",
    "BacktestReport",
    "ModelResult",
    "OriginForecast",
    "StepScores",
    "backtest_forecasts",
    "run_backtest",
]

FloatArray = npt.NDArray[np.float64]
BacktestProgress = Callable[[str, float], None]
"""Told (the model's name, the fraction of its origins done) as a backtest goes: models run one after
the other, and a slow one (ARIMA on weeks of data) takes minutes."""


@dataclass(frozen=True)
class BacktestOptions:
    warmup: timedelta = timedelta(days=2)
    origin_every: timedelta | None = None
    """Spacing of origins; ``None`` for one hour plus one step (see the module docstring)."""
    arima: ArimaConfig | None = None
    """ARIMA settings; ``None`` for the defaults (a work budget, no wall-clock guard: scores do not
    depend on how busy the machine is)."""
    prep: PrepConfig = field(default_factory=PrepConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    """How intervals are calibrated out of sample for ``coverage_calibrated``."""


@dataclass(frozen=True)
class OriginForecast:
    """The forecast made at one origin for its horizon point, and what happened."""

    origin: pd.Timestamp
    """Time of the first point the model had not seen."""
    target: pd.Timestamp
    """Time of the horizon point (``origin + (h - 1) * step``)."""
    actual: float
    mean: float
    lower: float
    upper: float
    calibrated_lower: float
    """The interval after out-of-sample calibration (the raw one until calibration has enough
    residuals)."""
    calibrated_upper: float


@dataclass(frozen=True)
class StepScores:
    """Scores of one horizon step alone (see the module docstring for each)."""

    step: int
    """1 for the origin's own point, ``h`` for the horizon point."""
    mase: float
    mase_no_change: float
    coverage: float
    coverage_calibrated: float

    def scores(self) -> dict[str, float | int | None]:
        return {
            "step": self.step,
            "mase": _finite_or_none(self.mase),
            "mase_no_change": _finite_or_none(self.mase_no_change),
            "coverage": _finite_or_none(self.coverage),
            "coverage_calibrated": _finite_or_none(self.coverage_calibrated),
        }


@dataclass(frozen=True)
class ModelResult:
    model: ModelName
    mase: float
    smape: float
    coverage: float
    mase_at_horizon: float
    coverage_at_horizon: float
    mase_no_change: float
    mase_no_change_at_horizon: float
    coverage_calibrated: float
    coverage_calibrated_at_horizon: float
    origins: int
    """Origins scored."""
    failed_origins: int
    refits: int
    """Full fits, including the first."""
    by_step: tuple[StepScores, ...]
    """Steps ``1..h`` in order (empty when no origin was scored)."""
    forecasts: tuple[OriginForecast, ...] = field(repr=False)
    seconds: float = field(default=0.0, compare=False)

    def at_step(self, step: int) -> StepScores:
        """Scores of horizon step ``step`` (1-based)."""
        if not 1 <= step <= len(self.by_step):
            raise IndexError(f"step {step} outside 1..{len(self.by_step)}")
        return self.by_step[step - 1]

    def scores(self) -> dict[str, Any]:
        """JSON-ready scores (``None`` where a score is undefined)."""
        return {
            "mase": _finite_or_none(self.mase),
            "smape": _finite_or_none(self.smape),
            "coverage": _finite_or_none(self.coverage),
            "mase_at_horizon": _finite_or_none(self.mase_at_horizon),
            "coverage_at_horizon": _finite_or_none(self.coverage_at_horizon),
            "mase_no_change": _finite_or_none(self.mase_no_change),
            "mase_no_change_at_horizon": _finite_or_none(self.mase_no_change_at_horizon),
            "coverage_calibrated": _finite_or_none(self.coverage_calibrated),
            "coverage_calibrated_at_horizon": _finite_or_none(self.coverage_calibrated_at_horizon),
            "origins": self.origins,
            "failed_origins": self.failed_origins,
            "refits": self.refits,
            "by_step": [item.scores() for item in self.by_step],
        }


@dataclass(frozen=True)
class BacktestReport:
    horizon_steps: int
    step: pd.Timedelta
    level: float
    warmup: timedelta
    origin_every: pd.Timedelta
    results: tuple[ModelResult, ...]
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)

    @property
    def horizon(self) -> pd.Timedelta:
        return self.step * self.horizon_steps

    def result(self, model: ModelName | str) -> ModelResult:
        wanted = ModelName(model)
        for item in self.results:
            if item.model is wanted:
                return item
        raise KeyError(wanted.value)

    def to_dict(self) -> dict[str, Any]:
        """``{"horizon_s": ..., "models": {"arima": {"mase": ..., "smape": ..., "coverage": ...}}}``."""
        return {
            "horizon_s": self.horizon.total_seconds(),
            "horizon_steps": self.horizon_steps,
            "step_s": self.step.total_seconds(),
            "level": self.level,
            "warmup_s": self.warmup.total_seconds(),
            "origin_every_s": self.origin_every.total_seconds(),
            "calibration": {
                "method": "split-conformal, per step and side, on earlier origins' residuals",
                "window": self.calibration.window,
                "min_residuals": self.calibration.min_residuals,
            },
            "models": {item.model.value: item.scores() for item in self.results},
        }


def run_backtest(
    series: pd.Series,
    model_names: Sequence[ModelName | str],
    horizon_steps: int,
    level: float = 0.8,
    options: BacktestOptions | None = None,
    progress: BacktestProgress | None = None,
) -> BacktestReport:
    """Backtest each model on ``series`` (see the module docstring for the procedure); ``progress``
    hears of each model's origins as they are done, and of 1.0 when the model is scored."""
    opts = options or BacktestOptions()
    if horizon_steps < 1:
        raise ValueError(f"horizon_steps must be >= 1, got {horizon_steps}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    data = prepare_series(series, opts.prep)
    origins = _origins(data, horizon_steps, opts)
    scales = _origin_scales(data, origins)
    results = tuple(
        _run_model(ModelName(name), data, origins, scales, horizon_steps, level, opts, progress)
        for name in dict.fromkeys(ModelName(n) for n in model_names)
    )
    every = data.step * _origin_steps(data.step, opts)
    return BacktestReport(horizon_steps, data.step, level, opts.warmup, every, results, opts.calibration)


def backtest_forecasts(
    series: pd.Series,
    model: ModelName | str,
    horizon_steps: int,
    level: float = 0.8,
    options: BacktestOptions | None = None,
) -> tuple[OriginForecast, ...]:
    """Per-origin horizon-point forecasts of one model, e.g. to plot actuals against the band."""
    return run_backtest(series, [model], horizon_steps, level, options).results[0].forecasts


def _origins(data: RegularSeries, horizon: int, opts: BacktestOptions) -> range:
    warm = math.ceil(pd.Timedelta(opts.warmup) / data.step)
    every = _origin_steps(data.step, opts)
    season = _season(data)
    first = max(warm, season + 1)
    if first + horizon > len(data):
        raise ValueError(
            f"series too short for a backtest: {len(data)} points, warm-up needs {first} "
            f"plus a horizon of {horizon}"
        )
    return range(first, len(data) - horizon + 1, every)


def _origin_steps(step: pd.Timedelta, opts: BacktestOptions) -> int:
    if opts.origin_every is None:
        return math.ceil(pd.Timedelta(hours=1) / step) + 1
    return max(1, math.ceil(pd.Timedelta(opts.origin_every) / step))


def _season(data: RegularSeries) -> int:
    return max(1, round(pd.Timedelta(days=1) / data.step))


def _origin_scales(data: RegularSeries, origins: range) -> FloatArray:
    season = _season(data)
    diffs = np.abs(data.values[season:] - data.values[:-season])
    cumulative = np.concatenate(([0.0], np.cumsum(diffs)))
    # Seasonal differences available before origin o: those of points season..o-1.
    counts = np.array([o - season for o in origins], dtype=np.float64)
    sums = np.array([cumulative[o - season] for o in origins], dtype=np.float64)
    return np.asarray(sums / counts, dtype=np.float64)


def _run_model(
    name: ModelName,
    data: RegularSeries,
    origins: range,
    scales: FloatArray,
    horizon: int,
    level: float,
    opts: BacktestOptions,
    progress: BacktestProgress | None = None,
) -> ModelResult:
    started = time.perf_counter()
    frame = data.to_series()
    model = make_forecaster(name, opts.arima)
    fitted = False
    seen = 0
    refits = failed = 0
    rows: list[tuple[int, FloatArray, FloatArray, FloatArray]] = []
    for position, origin in enumerate(origins):
        if progress is not None:
            progress(name.value, position / len(origins))
        try:
            if not fitted:
                model.fit(frame.iloc[:origin])
                fitted = True
                refits += 1
            else:
                report = model.update(frame.iloc[seen:origin])
                if report.fit is not None:
                    refits += 1
            prediction = model.forecast(horizon, level)
        except ForecastError:
            failed += 1
            fitted = False
            continue
        finally:
            seen = origin
        rows.append(
            (
                position,
                np.array(prediction.mean),
                np.array(prediction.lower),
                np.array(prediction.upper),
            )
        )
    result = _score(name, data, origins, scales, horizon, level, opts, rows, failed, refits, started)
    if progress is not None:
        progress(name.value, 1.0)
    return result


def _score(
    name: ModelName,
    data: RegularSeries,
    origins: range,
    scales: FloatArray,
    horizon: int,
    level: float,
    opts: BacktestOptions,
    rows: list[tuple[int, FloatArray, FloatArray, FloatArray]],
    failed: int,
    refits: int,
    started: float,
) -> ModelResult:
    nan = float("nan")
    if not rows:
        return ModelResult(
            model=name,
            mase=nan,
            smape=nan,
            coverage=nan,
            mase_at_horizon=nan,
            coverage_at_horizon=nan,
            mase_no_change=nan,
            mase_no_change_at_horizon=nan,
            coverage_calibrated=nan,
            coverage_calibrated_at_horizon=nan,
            origins=0,
            failed_origins=failed,
            refits=refits,
            by_step=(),
            forecasts=(),
        )
    positions = np.array([row[0] for row in rows])
    starts = np.array([origins[p] for p in positions])
    actual = np.stack([data.values[s : s + horizon] for s in starts])
    mean = np.stack([row[1] for row in rows])
    lower = np.stack([row[2] for row in rows])
    upper = np.stack([row[3] for row in rows])
    scale = scales[positions][:, None]
    # "No change": the last value the model saw, for every step of the horizon.
    still = np.broadcast_to(data.values[starts - 1][:, None], actual.shape)
    cal_lower, cal_upper = _calibrated(starts, actual, mean, lower, upper, level, opts.calibration)
    forecasts = tuple(
        OriginForecast(
            origin=data.start + data.step * int(s),
            target=data.start + data.step * int(s + horizon - 1),
            actual=float(actual[i, -1]),
            mean=float(mean[i, -1]),
            lower=float(lower[i, -1]),
            upper=float(upper[i, -1]),
            calibrated_lower=float(cal_lower[i, -1]),
            calibrated_upper=float(cal_upper[i, -1]),
        )
        for i, s in enumerate(starts)
    )
    by_step = tuple(
        StepScores(
            step=k + 1,
            mase=mase(actual[:, k], mean[:, k], scale[:, 0]),
            mase_no_change=relative_mae(actual[:, k], mean[:, k], still[:, k]),
            coverage=coverage(actual[:, k], lower[:, k], upper[:, k]),
            coverage_calibrated=coverage(actual[:, k], cal_lower[:, k], cal_upper[:, k]),
        )
        for k in range(horizon)
    )
    return ModelResult(
        model=name,
        mase=mase(actual, mean, scale),
        smape=smape(actual, mean),
        coverage=coverage(actual, lower, upper),
        mase_at_horizon=by_step[-1].mase,
        coverage_at_horizon=by_step[-1].coverage,
        mase_no_change=relative_mae(actual, mean, still),
        mase_no_change_at_horizon=by_step[-1].mase_no_change,
        coverage_calibrated=coverage(actual, cal_lower, cal_upper),
        coverage_calibrated_at_horizon=by_step[-1].coverage_calibrated,
        origins=len(rows),
        failed_origins=failed,
        refits=refits,
        by_step=by_step,
        forecasts=forecasts,
        seconds=time.perf_counter() - started,
    )


def _calibrated(
    starts: npt.NDArray[np.int64],
    actual: FloatArray,
    mean: FloatArray,
    lower: FloatArray,
    upper: FloatArray,
    level: float,
    config: CalibrationConfig,
) -> tuple[FloatArray, FloatArray]:
    """Calibrated bounds per origin and step, each from residuals known before its origin only."""
    calibrator = IntervalCalibrator(level, config)
    cal_lower = lower.copy()
    cal_upper = upper.copy()
    # (index of the actual, row, step) of forecasts whose outcome the calibrator has not been given.
    pending: list[tuple[int, int, int]] = []
    for row, start in enumerate(int(s) for s in starts):
        # An outcome is known at an origin once the model has seen its point, i.e. it lies before.
        while pending and pending[0][0] < start:
            _, done, k = heapq.heappop(pending)
            calibrator.observe(
                k + 1,
                float(mean[done, k]),
                float(lower[done, k]),
                float(upper[done, k]),
                float(actual[done, k]),
            )
        for k in range(mean.shape[1]):
            cal_lower[row, k], cal_upper[row, k] = calibrator.interval(
                k + 1, float(mean[row, k]), float(lower[row, k]), float(upper[row, k])
            )
            heapq.heappush(pending, (start + k, row, k))
    return cal_lower, cal_upper


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
