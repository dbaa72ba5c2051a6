"""The step-by-step timeline of a study as CSV, for anyone who wants to check a score by hand."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from autoscaler.metrics import MetricKind
from autoscaler.simulate.study import Study
from autoscaler.timefmt import iso_utc

__all__ = ["write_timeline"]


def _scraped(study: Study) -> np.ndarray:
    """The demand as a scrape shows it (window mean, late by the lag), before any saturation."""
    sc = study.scenario
    window = sc.metric_window_s // sc.step_s
    lag = sc.metric_lag_s // sc.step_s
    demand = study.runs[0].grid.demand if study.runs else np.empty(0)
    # Trapezoid weights: the exact mean of a signal that is linear between steps.
    weights = np.ones(window + 1) / window
    weights[0] = weights[-1] = 0.5 / window
    means = np.convolve(demand, weights, mode="full")[: len(demand)]
    shown = np.full(len(demand), np.nan)
    first = window + lag
    if first < len(demand):
        shown[first:] = means[window : len(demand) - lag]
    return shown


def write_timeline(study: Study, path: Path) -> None:
    """One row per simulated step: time, demand, what a scrape shows, and per policy ready and
    desired replicas (and, for CPU traces, the saturated load that policy saw)."""
    if not study.runs:
        return
    grid = study.runs[0].grid
    cpu = study.scenario.kind is MetricKind.CPU
    header = ["time", "demand", "observed"]
    for r in study.runs:
        header += [f"{r.policy}_ready", f"{r.policy}_desired"]
        if cpu and r.policy != "oracle":
            header.append(f"{r.policy}_observed")
    shown = _scraped(study)
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(header)
        for k, t in enumerate(grid.times.tolist()):
            row: list[str] = [
                iso_utc(t),
                f"{grid.demand[k]:.6g}",
                "" if np.isnan(shown[k]) else f"{shown[k]:.6g}",
            ]
            for r in study.runs:
                row += [str(r.ready[k]), str(r.desired[k])]
                if cpu and r.policy != "oracle":
                    seen = r.observed[k]
                    row.append("" if np.isnan(seen) else f"{seen:.6g}")
            out.writerow(row)
