"""Build a forecaster from its name (the CLI's ``--model`` values)."""

from __future__ import annotations

from forecasting.arima import ArimaConfig, ArimaForecaster
from forecasting.base import Forecaster, ModelName
from forecasting.baselines import HoltWintersForecaster, NaiveForecaster, SeasonalNaiveForecaster

__all__ = ["make_forecaster", "parse_model_names"]


def make_forecaster(name: ModelName | str, arima: ArimaConfig | None = None) -> Forecaster:
    """A fresh, unfitted model with default settings (``arima`` overrides ARIMA's)."""
    model = ModelName(name)
    if model is ModelName.ARIMA:
        return ArimaForecaster(arima)
    if model is ModelName.HOLT_WINTERS:
        return HoltWintersForecaster()
    if model is ModelName.SEASONAL_NAIVE:
        return SeasonalNaiveForecaster()
    return NaiveForecaster()


def parse_model_names(text: str) -> tuple[ModelName, ...]:
    """``"arima,naive"`` -> ``(ModelName.ARIMA, ModelName.NAIVE)``; raises ``ValueError`` naming the
    valid choices on an unknown name."""
    names: list[ModelName] = []
    for part in text.split(","):
        item = part.strip()
        if not item:
            continue
        try:
            model = ModelName(item)
        except ValueError:
            valid = ", ".join(m.value for m in ModelName)
            raise ValueError(f"unknown model {item!r}; choose from {valid}") from None
        if model not in names:
            names.append(model)
    if not names:
        raise ValueError("no model named")
    return tuple(names)
