"""`backtest --prometheus-url … --target NS/DEPLOY`: "try before you enable" on a Deployment's own
history. The load Prometheus holds for it becomes a trace; the report then shows how well the
forecast models predict that load (at the controller's 5-minute buckets) and what the HPA, the
predictive policy and the perfect-foresight oracle would have done with it in the simulator, which
runs the controller's own decision code."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autoscaler.backtest import backtest_trace
from autoscaler.backtest import to_json as forecast_json
from autoscaler.backtest import to_text as forecast_text
from autoscaler.backtest import write_plot as write_forecast_plot
from autoscaler.metrics import MetricKind
from autoscaler.model import TargetRef
from autoscaler.selectors import SeriesSelector
from autoscaler.simulate import POLICIES, Scenario, Study, Trace, run_study
from autoscaler.simulate.report import to_json as study_json
from autoscaler.simulate.report import to_text as study_text
from autoscaler.simulate.study import StudyProgress
from autoscaler.sources.prometheus import PrometheusSource
from autoscaler.timefmt import iso_utc
from forecasting import BacktestReport, ModelName

__all__ = [
    "FORECAST_STEP_S",
    "HistoryError",
    "HistoryLoad",
    "HistoryReport",
    "load_history",
    "run_report",
    "to_json",
    "to_text",
    "write_plots",
]

# The controller forecasts per 5-minute bucket (forecast_stage), so accuracy is scored at that step.
FORECAST_STEP_S = 300
# More missing than this and the replay would mostly show our interpolation, not the service's load.
MAX_MISSING_SHARE = 0.2
# What the simulator can replay: CPU is observed capped at capacity, requests are not.
REPLAYABLE = (MetricKind.REQUESTS, MetricKind.CPU)


class HistoryError(ValueError):
    """Prometheus holds no usable load for the target over the window asked for."""


@dataclass(frozen=True, slots=True)
class HistoryLoad:
    ref: TargetRef
    kind: MetricKind
    source_url: str
    trace: Trace  # at the source's step, gaps interpolated
    interpolated_share: float  # of the trace's points, filled in by interpolation


@dataclass(frozen=True, slots=True)
class HistoryReport:
    load: HistoryLoad
    forecast_trace: Trace  # the load in FORECAST_STEP_S buckets
    forecast: BacktestReport
    study: Study


def _as_trace(series: pd.Series, name: str, step_s: int) -> tuple[Trace, float]:
    """The rate series as a trace (load units per step); interior gaps are interpolated."""
    known = np.flatnonzero(series.notna().to_numpy())
    if len(known) < 2:
        raise HistoryError(f"{name}: fewer than two points in Prometheus")
    window = series.iloc[known[0] : known[-1] + 1]
    missing = float(window.isna().mean())
    if missing > MAX_MISSING_SHARE:
        raise HistoryError(
            f"{name}: {missing:.0%} of the points from {iso_utc(window.index[0].timestamp())} to "
            f"{iso_utc(window.index[-1].timestamp())} are missing (at most "
            f"{MAX_MISSING_SHARE:.0%} can be filled in); pick a window with --days and --end"
        )
    rates = window.interpolate(method="linear").to_numpy(dtype=np.float64)
    times = np.array([int(stamp.timestamp()) for stamp in window.index], dtype=np.int64)
    return Trace(name=name, times=times, values=rates * step_s, step_s=step_s), missing


def load_history(
    source: PrometheusSource,
    ref: TargetRef,
    start: float,
    end: float,
    *,
    kind: MetricKind | None = None,
    selector: SeriesSelector | None = None,
) -> HistoryLoad:
    """The target's load over [start, end]: `kind`, or else request rate when Prometheus has it and
    CPU when it has not. Prometheus errors propagate (typed: `PrometheusError`)."""
    kinds = (kind,) if kind is not None else REPLAYABLE
    series = source.fetch_history(ref, kinds, start, end, selector=selector)
    chosen = next((k for k in kinds if k in series and series[k].notna().any()), None)
    if chosen is None:
        wanted = " or ".join(k.value for k in kinds)
        raise HistoryError(
            f"Prometheus has no {wanted} load for {ref} from {iso_utc(start)} to {iso_utc(end)}: "
            "check the name, the window and what the cluster exports (README, 'Metrics')"
        )
    step_s = source.settings.step_s
    trace, missing = _as_trace(series[chosen], f"{ref} {chosen.value}", step_s)
    return HistoryLoad(ref, chosen, source.settings.url, trace, missing)


def _coarsen(trace: Trace, step_s: int) -> Trace:
    """The trace in `step_s` buckets (a whole multiple of its own step), summing each bucket."""
    if step_s <= trace.step_s:
        return trace
    factor = step_s // trace.step_s
    aligned = trace.times - trace.times % step_s
    frame = pd.DataFrame({"t": aligned, "v": trace.values})
    sums = frame.groupby("t")["v"].agg(["sum", "count"])
    # Partial buckets at either end would read as a dip in load.
    full = sums[sums["count"] == factor]
    return Trace(
        name=trace.name,
        times=full.index.to_numpy(dtype=np.int64),
        values=full["sum"].to_numpy(dtype=np.float64),
        step_s=step_s,
    )


def run_report(
    load: HistoryLoad,
    models: tuple[ModelName, ...],
    horizon: timedelta,
    level: float,
    scenario: Scenario,
    progress: StudyProgress | None = None,
) -> HistoryReport:
    """`progress` hears of the forecasts (`forecast <model>`), then of each simulated policy
    (`simulate <policy> u*=…`), each with the fraction of it done."""
    coarse = _coarsen(load.trace, FORECAST_STEP_S)
    forecast = backtest_trace(coarse, models, horizon, level, progress)
    simulated = None if progress is None else (lambda run, done: progress(f"simulate {run}", done))
    study = run_study(load.trace, scenario, POLICIES, progress=simulated)
    return HistoryReport(load, coarse, forecast, study)


def to_json(report: HistoryReport) -> dict[str, Any]:
    load = report.load
    return {
        "target": str(load.ref),
        "prometheus": load.source_url,
        "kind": load.kind.value,
        "window": {
            "start": iso_utc(load.trace.start),
            "end": iso_utc(load.trace.end),
            "step_s": load.trace.step_s,
            "interpolated_share": load.interpolated_share,
        },
        "forecast": forecast_json(report.forecast_trace, report.forecast),
        "simulation": study_json(report.study),
    }


def to_text(report: HistoryReport) -> str:
    load = report.load
    lines = [
        f"target    {load.ref} from {load.source_url}: {load.kind.value} load, "
        f"{iso_utc(load.trace.start)} .. {iso_utc(load.trace.end)} at {load.trace.step_s} s, "
        f"{load.interpolated_share:.1%} of points interpolated",
    ]
    if load.kind is MetricKind.CPU:
        lines.append(
            "          cpu is what the pods used, capped by what they had: demand beyond that "
            "never shows, so the replay understates what was unserved"
        )
    lines += [
        "",
        f"Forecast accuracy ({FORECAST_STEP_S // 60}-minute buckets, as the controller forecasts)",
        forecast_text(report.forecast_trace, report.forecast).rstrip("\n"),
        "",
        "What each policy would have done with this load (simulated)",
        study_text(report.study).rstrip("\n"),
    ]
    return "\n".join(lines) + "\n"


def forecast_plot_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}-forecast{path.suffix or '.png'}")


def write_plots(report: HistoryReport, path: Path) -> tuple[Path, Path]:
    """The simulation at `path` and the forecasts beside it (`NAME-forecast.png`)."""
    from autoscaler.simulate.plot import write_plot as write_study_plot

    write_study_plot(report.study, path)
    beside = forecast_plot_path(path)
    write_forecast_plot(report.forecast_trace, report.forecast, beside)
    return path, beside
