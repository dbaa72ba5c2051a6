"""A PNG that shows a study at a glance: demand against each policy's ready capacity with overload
marked, the replica counts, and (with a sweep) the cost/service frontier."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: the controller and CI have no display

import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes

from autoscaler.simulate.scoring import SLO_UNSERVED_PCT
from autoscaler.simulate.study import Study

__all__ = ["write_plot"]

COLORS = {
    "crane": "tab:brown",
    "hpa": "tab:orange",
    "oracle": "tab:green",
    "phpa": "tab:pink",
    "predictive": "tab:blue",
    "scheduled": "tab:purple",
}
MAX_POINTS = 6000


def _bins(n: int) -> int:
    return max(1, -(-n // MAX_POINTS))


def _reduce(values: npt.NDArray[np.float64], size: int, how: str) -> npt.NDArray[np.float64]:
    """Downsample for drawing, keeping the extremes that matter: demand peaks, capacity dips."""
    if size == 1:
        return values
    pad = (-len(values)) % size
    filler = values[-1] if len(values) else 0.0
    blocks = np.concatenate([values, np.full(pad, filler)]).reshape(-1, size)
    reduced: npt.NDArray[np.float64] = blocks.max(axis=1) if how == "max" else blocks.min(axis=1)
    return reduced


def _load_panel(ax: Axes, study: Study, lo: int, hi: int, title: str) -> None:
    """Demand against each policy's ready capacity over steps [lo, hi), overload filled and
    marked by a rug per policy along the bottom."""
    grid = study.runs[0].grid
    size = _bins(hi - lo)
    times = (grid.times[lo:hi:size] * 1e9).astype("datetime64[ns]")
    demand = _reduce(grid.demand[lo:hi], size, "max")
    top = float(demand.max()) if len(demand) else 1.0
    for row, run_ in enumerate(study.runs):
        color = COLORS.get(run_.policy)
        full_cap = run_.ready[lo:hi].astype(np.float64) * study.scenario.capacity
        cap = _reduce(full_cap, size, "min")
        top = max(top, float(cap.max()))
        ax.step(
            times,
            cap,
            where="post",
            linewidth=0.8,
            color=color,
            label=f"{run_.policy} ready capacity",
        )
        # Judged at full resolution: a bin's peak demand against its lowest capacity would
        # show overload that never happened.
        slack = 1e-9 * study.scenario.capacity
        over_full = (grid.demand[lo:hi] > full_cap + slack).astype(np.float64)
        over = _reduce(over_full, size, "max") > 0
        ax.fill_between(times, cap, demand, where=over, color=color, alpha=0.6, step="post", linewidth=0)
        if over.any():
            ax.plot(
                times[over],
                np.full(int(over.sum()), -0.04 * (row + 1) * top),
                "|",
                color=color,
                markersize=6,
                label=f"{run_.policy} overload",
            )
    for run_ in study.runs:
        if run_.forecast_mean is None or run_.forecast_upper is None:
            continue
        # The band the predictive policy sized for: forecast mean up to the interval's upper bound.
        mean = _reduce(run_.forecast_mean[lo:hi], size, "max")
        upper = _reduce(run_.forecast_upper[lo:hi], size, "max")
        ax.fill_between(
            times,
            mean,
            upper,
            step="post",
            color=COLORS.get(run_.policy, "tab:blue"),
            alpha=0.2,
            linewidth=0,
            label=f"{run_.policy} forecast (mean to upper)",
        )
    ax.plot(times, demand, color="black", linewidth=0.6, label="demand", zorder=5)
    warmup_end = grid.times[0] + study.scenario.warmup_s
    if grid.times[lo] < warmup_end:
        end = np.datetime64(int(min(warmup_end, grid.times[hi - 1]) * 1e9), "ns")
        # matplotlib accepts datetime64 on a date axis; its stubs only say float.
        ax.axvspan(times[0], end, color="0.85", alpha=0.6, label="warm-up (not scored)")  # type: ignore[arg-type]
    ax.set_title(title)
    ax.set_ylabel("load units / s")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8, ncols=3)


def _worst_day(study: Study) -> tuple[int, int]:
    """The scored day on which the first non-oracle policy lost the most load."""
    grid = study.runs[0].grid
    day = 86_400 // grid.step_s
    first = int(np.searchsorted(grid.times, grid.times[0] + study.scenario.warmup_s))
    run_ = next((r for r in study.runs if r.policy != "oracle"), study.runs[0])
    lost = np.maximum(0.0, grid.demand - run_.ready * study.scenario.capacity)[first:]
    if len(lost) <= day:
        return first, len(grid.times)
    per_window = np.convolve(lost, np.ones(day), mode="valid")
    start = first + int(np.argmax(per_window))
    return start, start + day


def write_plot(study: Study, path: Path) -> None:
    if not study.runs:
        return
    grid = study.runs[0].grid
    sc = study.scenario
    rows = 4 if study.sweep else 3
    fig, axes = plt.subplots(rows, 1, figsize=(14, 4.0 * rows), squeeze=False)
    _load_panel(
        axes[0][0],
        study,
        0,
        len(grid.times),
        f"{study.trace.name}: demand vs ready capacity (filled and marked: overload); "
        f"start-up {sc.startup_delay_s}s, u*={sc.target_utilization:g}",
    )
    lo, hi = _worst_day(study)
    _load_panel(axes[1][0], study, lo, hi, "zoom: the scored day with the most unserved load")

    pods_ax = axes[2][0]
    size = _bins(len(grid.times))
    times = (grid.times[::size] * 1e9).astype("datetime64[ns]")
    for run_ in study.runs:
        pods_ax.step(
            times,
            _reduce(run_.pods.astype(np.float64), size, "max"),
            where="post",
            linewidth=0.8,
            color=COLORS.get(run_.policy),
            label=f"{run_.policy} pods",
        )
    pods_ax.set_ylabel("pods (billed)")
    pods_ax.set_title("pods per policy (starting or ready)")
    pods_ax.grid(alpha=0.3)
    pods_ax.legend(loc="upper right", fontsize=8)

    if study.sweep:
        ax = axes[3][0]
        for sweep in study.sweep:
            color = COLORS.get(sweep.policy)
            xs = [max(s.unserved_pct, 1e-4) for _, s in sweep.points]
            ys = [s.pod_hours / study.oracle_pod_hours for _, s in sweep.points]
            ax.plot(xs, ys, marker="o", color=color, label=sweep.policy)
            labelled = sweep.points if sweep.policy != "oracle" else ()
            for (u, _), x, y in zip(labelled, xs, ys, strict=False):
                ax.annotate(f"{u:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.axvline(
            SLO_UNSERVED_PCT,
            color="red",
            linestyle="--",
            linewidth=0.8,
            label=f"objective: {SLO_UNSERVED_PCT:g} % unserved",
        )
        ax.axhline(1.0, color="tab:green", linestyle=":", linewidth=0.8, label="oracle")
        ax.set_xscale("log")
        ax.set_xlabel("unserved load, % (log; 0 drawn at 1e-4)")
        ax.set_ylabel("pod-hours / oracle")
        ax.set_title("cost against service level over the target-utilization sweep (labels: u*)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
