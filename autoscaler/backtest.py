"""`backtest` on a trace: the forecasting library's rolling-origin backtest, shown as a table, as JSON
and as a plot of actuals against each model's forecasts with its interval band."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from autoscaler.simulate.trace import Trace
from forecasting import BacktestReport, ModelName, run_backtest, steps_for_horizon

__all__ = ["backtest_trace", "to_json", "to_text", "write_plot"]


def trace_series(trace: Trace) -> pd.Series:
    """The trace as load units per second on its own time grid."""
    index = pd.to_datetime(trace.times, unit="s")
    return pd.Series(trace.values / trace.step_s, index=index, name=trace.name)


def backtest_trace(
    trace: Trace,
    models: tuple[ModelName, ...],
    horizon: timedelta,
    level: float,
    progress: Callable[[str, float], None] | None = None,
) -> BacktestReport:
    """`progress` hears `("forecast <model>", fraction of its origins done)` as each model runs."""
    steps = steps_for_horizon(timedelta(seconds=trace.step_s), horizon)
    per_model = None if progress is None else (lambda model, done: progress(f"forecast {model}", done))
    return run_backtest(trace_series(trace), models, steps, level, progress=per_model)


def to_json(trace: Trace, report: BacktestReport) -> dict[str, Any]:
    return {"trace": trace.name, **report.to_dict()}


def to_text(trace: Trace, report: BacktestReport) -> str:
    lines = [
        f"trace     {trace.name}: {len(trace.times)} points of {trace.step_s} s",
        f"backtest  horizon {report.horizon.total_seconds():g} s ({report.horizon_steps} steps), "
        f"{report.level:.0%} interval, origins every "
        f"{report.origin_every.total_seconds() / 60:g} min after "
        f"{report.warmup.total_seconds() / 86_400:g} days",
        "",
    ]
    header = ["model", "mase", "mase-nc", "smape", "coverage", "cal-cov", "mase@h", "mase-nc@h",
              "coverage@h", "cal-cov@h", "origins", "failed", "refits", "seconds"]  # fmt: skip
    rows = [
        [
            r.model.value,
            f"{r.mase:.3f}",
            f"{r.mase_no_change:.3f}",
            f"{r.smape:.3f}",
            f"{r.coverage:.3f}",
            f"{r.coverage_calibrated:.3f}",
            f"{r.mase_at_horizon:.3f}",
            f"{r.mase_no_change_at_horizon:.3f}",
            f"{r.coverage_at_horizon:.3f}",
            f"{r.coverage_calibrated_at_horizon:.3f}",
            str(r.origins),
            str(r.failed_origins),
            str(r.refits),
            f"{r.seconds:.1f}",
        ]
        for r in report.results
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    lines += [
        "",
        "mase < 1 beats 'same time yesterday'; mase-nc < 1 beats 'no change' (the last value carried "
        "forward) on the same points;",
        "coverage is the share of actuals inside the interval; cal-cov after calibrating it on the "
        f"last {report.calibration.window} earlier residuals of each step",
        "(all steps 1..h; @h: the horizon step alone)",
    ]
    return "\n".join(lines) + "\n"


def write_plot(trace: Trace, report: BacktestReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report.results
    fig, axes = plt.subplots(len(results), 1, figsize=(14, 3.4 * len(results)), squeeze=False)
    series = trace_series(trace)
    for ax, result in zip((row[0] for row in axes), results, strict=True):
        points = result.forecasts
        if points:
            first, last = points[0].target, points[-1].target
            shown = series[(series.index >= first) & (series.index <= last)]
            ax.plot(shown.index, shown.to_numpy(), color="black", linewidth=0.5, label="actual")
            targets = [p.target for p in points]
            ax.fill_between(
                targets,
                [p.lower for p in points],
                [p.upper for p in points],
                color="tab:blue",
                alpha=0.25,
                label=f"{report.level:.0%} interval",
            )
            ax.plot(targets, [p.mean for p in points], color="tab:blue", linewidth=0.8,
                    marker=".", markersize=2, label="forecast")  # fmt: skip
        ax.set_title(
            f"{result.model.value}: forecast {report.horizon.total_seconds() / 60:g} min ahead "
            f"(MASE {result.mase:.2f}, coverage {result.coverage:.0%})"
        )
        ax.set_ylabel("load units / s")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
