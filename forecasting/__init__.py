"""Load forecasting for the predictive autoscaler: a library of its own.

It depends on numpy, pandas and statsmodels only, and never on the controller, Kubernetes or
Prometheus code. Typical use::

    model = make_forecaster(ModelName.ARIMA)       # or "holt-winters", "seasonal-naive", "naive"
    model.fit(history)                             # pd.Series on a DatetimeIndex (UTC)
    ...                                            # every tick:
    model.update(latest)                           # new points only are used; refits when due
    forecast = model.forecast(steps=3, level=0.8)  # mean, lower, upper per step

    report = run_backtest(trace, ["arima", "naive"], horizon_steps=3, level=0.8)
    print(report.to_dict())                        # {"horizon_s": 900.0, "models": {...}}

    calibrator = IntervalCalibrator(level=0.8)     # interval calibration out of sample
    calibrator.observe(1, mean, lower, upper, y)   # a 1-step forecast's outcome, once known
    forecast = calibrator.calibrate(forecast)      # rescaled bounds, same mean

Every failure is a :class:`ForecastError` subclass whose ``retryable`` flag tells the caller whether
to fall back and retry next tick; no function returns a made-up value instead.
"""

from forecasting.arima import ArimaConfig
from forecasting.backtest import (
    BacktestOptions,
    BacktestReport,
    ModelResult,
    OriginForecast,
    StepScores,
    backtest_forecasts,
    run_backtest,
)
from forecasting.base import FitReport, Forecast, Forecaster, ModelName, RefitReason, UpdateReport
from forecasting.calibration import CalibrationConfig, IntervalCalibrator, Widening
from forecasting.errors import (
    FitFailedError,
    ForecastError,
    ForecastOutOfRangeError,
    GapTooLongError,
    InsufficientHistoryError,
    InvalidSeriesError,
    NotFittedError,
)
from forecasting.lifecycle import RefitPolicy
from forecasting.registry import make_forecaster, parse_model_names
from forecasting.series import (
    LongGapPolicy,
    PrepConfig,
    RegularSeries,
    prepare_series,
    steps_for_horizon,
)
from forecasting.transform import Scale

__all__ = [
    "ArimaConfig",
    "BacktestOptions",
    "BacktestReport",
    "CalibrationConfig",
    "FitFailedError",
    "FitReport",
    "Forecast",
    "ForecastError",
    "ForecastOutOfRangeError",
    "Forecaster",
    "GapTooLongError",
    "InsufficientHistoryError",
    "IntervalCalibrator",
    "InvalidSeriesError",
    "LongGapPolicy",
    "ModelName",
    "ModelResult",
    "NotFittedError",
    "OriginForecast",
    "PrepConfig",
    "RefitPolicy",
    "RefitReason",
    "RegularSeries",
    "Scale",
    "StepScores",
    "UpdateReport",
    "Widening",
    "backtest_forecasts",
    "make_forecaster",
    "parse_model_names",
    "prepare_series",
    "run_backtest",
    "steps_for_horizon",
]
