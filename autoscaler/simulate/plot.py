"""A PNG that tells a study's story: the headline figures of the report, the cost/service frontier
of the sweep, the forecast band and ready capacity over the steepest recurring ramp, and the whole
trace with every policy's overload marked.

matplotlib is an optional extra (`predictive-autoscaler[plot]`): the controller's image leaves it out,
so it is imported only when a picture is drawn, and `require_plotting` lets a command refuse early."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from autoscaler.simulate.engine import RunResult
from autoscaler.simulate.report import headline
from autoscaler.simulate.scoring import SLO_UNSERVED_PCT
from autoscaler.simulate.study import Study

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "PANEL_TITLES",
    "PlottingUnavailable",
    "Ramp",
    "find_ramp",
    "render",
    "require_plotting",
    "write_plot",
]

COLORS = {
    "crane": "tab:brown",
    "hpa": "tab:orange",
    "oracle": "tab:green",
    "phpa": "tab:pink",
    "predictive": "tab:blue",
    "scheduled": "tab:purple",
}
MAX_POINTS = 6000
# Each panel's title starts with its name, so a reader (and a test) can tell them apart.
PANEL_TITLES = {
    "headline": "Headline",
    "frontier": "Cost against service level",
    "ramp": "Steepest ramp",
    "trace": "Whole trace",
}
# The ramp is the largest rise of the demand's hourly mean over two hours that the day before also
# showed at the same time of day: a rise over one lead time would pick a single noisy step, and a
# one-off spike is a ramp no forecast can see coming, whatever its quality.
RAMP_SMOOTH_S = 3600
RAMP_RISE_S = 2 * 3600
DAY_S = 86_400
RAMP_MARGIN_S = 2 * 3600
# Where an unserved share of exactly 0 is drawn on the frontier's log axis.
ZERO_UNSERVED_PCT = 1e-4
INSTALL_HINT = "install predictive-autoscaler[plot] (pip install 'predictive-autoscaler[plot]')"


class PlottingUnavailable(Exception):
    """matplotlib is not installed."""


def require_plotting() -> None:
    """Raises PlottingUnavailable, with the one line to show, when pictures cannot be drawn."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlottingUnavailable(f"drawing needs matplotlib: {INSTALL_HINT}") from None


def _new_figure(width: float, height: float) -> Figure:
    require_plotting()
    from matplotlib.figure import Figure

    # A Figure of its own, not pyplot's: no backend to choose (savefig draws with Agg), nothing
    # global to close.
    return Figure(figsize=(width, height), layout="constrained")


@dataclass(frozen=True, slots=True)
class Ramp:
    """Steps [lo, hi) to zoom on; the rise itself spans [rise_lo, rise_hi)."""

    lo: int
    hi: int
    rise_lo: int
    rise_hi: int


def find_ramp(study: Study) -> Ramp:
    """The scored span over which the demand's hourly mean rose the most, counting a rise only as far
    as the same span of the day before rose too, with margins either side. Without a day before
    (a short trace), the plain largest rise. Deterministic: the earliest span wins a tie."""
    grid = study.runs[0].grid
    count = len(grid.times)
    first = int(np.searchsorted(grid.times, grid.times[0] + study.scenario.warmup_s))
    smooth = max(1, RAMP_SMOOTH_S // grid.step_s)
    rise = max(1, RAMP_RISE_S // grid.step_s)
    day = DAY_S // grid.step_s
    margin = RAMP_MARGIN_S // grid.step_s
    if count < smooth + rise + 1:
        return Ramp(first, count, first, count)
    mean = np.convolve(grid.demand, np.ones(smooth) / smooth, mode="valid")  # mean[i]: [i, i + smooth)
    # gain[i]: the hourly mean ending at step i + smooth + rise against the one ending `rise` earlier.
    gain = mean[rise:] - mean[:-rise]
    ends = np.arange(len(gain)) + smooth  # the step at which each rise begins
    recurring = np.minimum(gain[day:], gain[:-day]) if len(gain) > day else np.empty(0)
    scored_recurring = ends[day:] >= first
    if scored_recurring.any():
        candidates, offset = np.where(scored_recurring, recurring, -np.inf), day
    else:
        candidates, offset = np.where(ends >= first, gain, -np.inf), 0
    start = int(ends[int(np.argmax(candidates)) + offset])
    end = min(count, start + rise)
    return Ramp(max(first, start - margin), min(count, end + margin), start, end)


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


def _times(study: Study, lo: int, hi: int, size: int) -> npt.NDArray[np.datetime64]:
    grid = study.runs[0].grid
    return (grid.times[lo:hi:size] * 1e9).astype("datetime64[ns]")


def _at(study: Study, k: int) -> np.datetime64:
    return np.datetime64(int(study.runs[0].grid.times[k] * 1e9), "ns")


def _shade(ax: Axes, study: Study, lo: int, hi: int, color: str, alpha: float, label: str) -> None:
    """Steps [lo, hi] of the grid shaded across the panel's height."""
    # matplotlib takes datetime64 on a date axis; its stubs say float.
    ax.axvspan(_at(study, lo), _at(study, hi), color=color, alpha=alpha, label=label)  # type: ignore[arg-type]


def _run_of(study: Study, policy: str) -> RunResult | None:
    return next((r for r in study.runs if r.policy == policy), None)


def _shown(study: Study) -> list[RunResult]:
    """The runs whose capacity is drawn as a line: the headline pair when they ran, else all but
    the oracle, whose capacity is the demand rounded up and would hide it."""
    pair = [r for r in (_run_of(study, "predictive"), _run_of(study, "hpa")) if r is not None]
    return pair or [r for r in study.runs if r.policy != "oracle"] or list(study.runs)


def _legend_below(ax: Axes, ncols: int) -> None:
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=ncols, fontsize=8, frameon=False)


def _headline_panel(ax: Axes, study: Study) -> None:
    head = headline(study)
    sc = study.scenario
    swept = any(row.cost_at_slo_vs_oracle is not None for row in head.rows)
    columns = ["policy", "load unserved, %", "pod-hours", "pod-hours\n/ oracle's"]
    if swept:
        columns.append(f"pod-hours / oracle's at the objective\n(≤ {SLO_UNSERVED_PCT:g} % unserved)")
    cells = [
        [row.policy, row.unserved_pct, row.pod_hours, row.cost_vs_oracle]
        + ([row.cost_at_slo_vs_oracle or "–"] if swept else [])
        for row in head.rows
    ]
    ax.axis("off")
    if cells:
        table = ax.table(
            cellText=cells,
            colLabels=columns,
            loc="center",
            cellLoc="center",
            colWidths=[0.14, 0.16, 0.14, 0.14, 0.3][: len(columns)],
        )
        table.auto_set_font_size(False)
        table.set_fontsize(11)
        table.scale(1.0, 1.5)
        for (r, _), cell in table.get_celld().items():
            if r == 0:
                cell.set_text_props(weight="bold")
                cell.set_height(cell.get_height() * 1.6)
            cell.set_edgecolor("0.8")
        for r, row in enumerate(head.rows, start=1):
            table[r, 0].get_text().set_color(COLORS.get(row.policy, "black"))
    scored_days = (study.trace.duration_s - sc.warmup_s) / 86_400
    ax.set_title(
        f"{PANEL_TITLES['headline']}: {study.trace.name}, {scored_days:.1f} days scored, "
        f"pod start-up {sc.startup_delay_s} s, target utilization {sc.target_utilization:g}",
        fontsize=13,
        weight="bold",
    )
    if head.ratios:
        names = {
            "overload_ratio": "time overloaded",
            "unserved_ratio": "load unserved",
            "cost_ratio": "pod-hours",
            "slo_cost_ratio": "pod-hours at the objective",
        }
        ratios = ",  ".join(f"{names.get(name, name)} × {value}" for name, value in head.ratios)
        ax.text(
            0.5, 0.0, f"predictive / hpa:  {ratios}", transform=ax.transAxes, ha="center", fontsize=10
        )


def _frontier_panel(ax: Axes, study: Study) -> None:
    for sweep in study.sweep:
        color = COLORS.get(sweep.policy)
        xs = [max(s.unserved_pct, ZERO_UNSERVED_PCT) for _, s in sweep.points]
        ys = [s.pod_hours / study.oracle_pod_hours for _, s in sweep.points]
        ax.plot(xs, ys, marker="o", color=color, label=sweep.policy)
        if sweep.policy != "oracle":
            for (u, _), x, y in zip(sweep.points, xs, ys, strict=True):
                ax.annotate(f"{u:g}", (x, y), textcoords="offset points", xytext=(5, 3), fontsize=8)
        if sweep.slo.pod_hours is not None and sweep.policy != "oracle":
            ax.plot(
                [SLO_UNSERVED_PCT],
                [sweep.slo.pod_hours / study.oracle_pod_hours],
                marker="*",
                markersize=14,
                color=color,
                markeredgecolor="black",
                linestyle="none",
                label=f"{sweep.policy} at the objective",
            )
    ax.axvline(
        SLO_UNSERVED_PCT,
        color="red",
        linestyle="--",
        linewidth=0.8,
        label=f"objective: {SLO_UNSERVED_PCT:g} % unserved",
    )
    ax.axhline(
        1.0, color=COLORS["oracle"], linestyle=":", linewidth=1.0, label="oracle (physical limit)"
    )
    ax.set_xscale("log")
    ax.margins(x=0.1)
    ax.set_xlabel(f"load unserved, % (log scale; 0 drawn at {ZERO_UNSERVED_PCT:g})")
    ax.set_ylabel("pod-hours / oracle's")
    ax.set_title(f"{PANEL_TITLES['frontier']} (labels: target utilization)")
    ax.grid(alpha=0.3, which="both")
    _legend_below(ax, 2)


def _capacity(run_: RunResult, study: Study, lo: int, hi: int) -> npt.NDArray[np.float64]:
    return run_.ready[lo:hi].astype(np.float64) * study.scenario.capacity


def _ramp_panel(ax: Axes, study: Study, ramp: Ramp) -> None:
    grid = study.runs[0].grid
    lo, hi = ramp.lo, ramp.hi
    times = _times(study, lo, hi, 1)
    _shade(ax, study, ramp.rise_lo, ramp.rise_hi - 1, "gold", 0.15, "the ramp")
    ours = _run_of(study, "predictive")
    if ours is not None and ours.forecast_mean is not None and ours.forecast_upper is not None:
        color = COLORS["predictive"]
        mean = ours.forecast_mean[lo:hi]
        ax.fill_between(
            times,
            mean,
            ours.forecast_upper[lo:hi],
            step="post",
            color=color,
            alpha=0.35,
            linewidth=0,
            label="predictive forecast: mean to upper bound",
        )
        ax.step(times, mean, where="post", color=color, linewidth=0.8, linestyle="--")
    # Drawn widest first, so that where two policies had the same capacity both stay visible.
    shown = _shown(study)
    for order, run_ in enumerate(reversed(shown)):
        under = order == 0 and len(shown) > 1
        ax.step(
            times,
            _capacity(run_, study, lo, hi),
            where="post",
            linewidth=3.2 if under else 1.4,
            alpha=0.55 if under else 1.0,
            color=COLORS.get(run_.policy),
            label=f"{run_.policy} ready capacity",
        )
    ax.plot(times, grid.demand[lo:hi], color="black", linewidth=1.0, label="demand", zorder=5)
    ax.set_title(f"{PANEL_TITLES['ramp']} that the day before also had: forecast band and capacity")
    from matplotlib.dates import DateFormatter

    # The day on every tick: the default repeats a bare hour once the window spans midnight.
    ax.xaxis.set_major_formatter(DateFormatter("%b %d %H:%M"))  # type: ignore[no-untyped-call]
    ax.set_xlabel("UTC")
    ax.set_ylabel("load units / s")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    _legend_below(ax, 3)


def _trace_panel(ax: Axes, study: Study, ramp: Ramp) -> None:
    grid = study.runs[0].grid
    count = len(grid.times)
    size = _bins(count)
    times = _times(study, 0, count, size)
    demand = _reduce(grid.demand, size, "max")
    top = float(demand.max()) if len(demand) else 1.0
    # The headline policy last, on top.
    for run_ in reversed(_shown(study)):
        cap = _reduce(_capacity(run_, study, 0, count), size, "min")
        ax.step(times, cap, where="post", linewidth=0.7, color=COLORS.get(run_.policy),
                label=f"{run_.policy} ready capacity")  # fmt: skip
    ax.plot(times, demand, color="black", linewidth=0.5, label="demand", zorder=5)
    marked = [r for r in study.runs if r.policy != "oracle"]
    for row, run_ in enumerate(marked):
        # Judged at full resolution: a bin's peak demand against its lowest capacity would show
        # overload that never happened.
        slack = 1e-9 * study.scenario.capacity
        over_full = (grid.demand > _capacity(run_, study, 0, count) + slack).astype(np.float64)
        over = _reduce(over_full, size, "max") > 0
        level = -0.06 * (row + 1) * top
        ax.plot(times[over], np.full(int(over.sum()), level), "|", color=COLORS.get(run_.policy),
                markersize=7, label=f"{run_.policy} overloaded")  # fmt: skip
    warmup_end = grid.times[0] + study.scenario.warmup_s
    if warmup_end > grid.times[0]:
        end = min(int(np.searchsorted(grid.times, warmup_end)), count - 1)
        _shade(ax, study, 0, end, "0.85", 0.6, "warm-up (not scored)")
    _shade(ax, study, ramp.lo, ramp.hi - 1, "gold", 0.35, "zoomed above")
    ax.set_ylim(bottom=-0.06 * (len(marked) + 1) * top)
    ax.set_title(
        f"{PANEL_TITLES['trace']}: demand against ready capacity; ticks below zero mark overload"
    )
    ax.set_ylabel("load units / s")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False)


def render(study: Study) -> Figure:
    """The picture of a study (which must have runs): headline, frontier (with a sweep), ramp, trace."""
    fig = _new_figure(15, 16 if study.sweep else 14)
    cells = fig.add_gridspec(3, 2, height_ratios=[0.8, 2.3, 1.7], width_ratios=[1.0, 1.3])
    _headline_panel(fig.add_subplot(cells[0, :]), study)
    ramp = find_ramp(study)
    if study.sweep:
        _frontier_panel(fig.add_subplot(cells[1, 0]), study)
        _ramp_panel(fig.add_subplot(cells[1, 1]), study, ramp)
    else:
        _ramp_panel(fig.add_subplot(cells[1, :]), study, ramp)
    _trace_panel(fig.add_subplot(cells[2, :]), study, ramp)
    return fig


def write_plot(study: Study, path: Path) -> None:
    if not study.runs:
        return
    render(study).savefig(path, dpi=100)
