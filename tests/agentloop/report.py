"""What a run comes to: the comparison table and the picture.

* p95 latency: of the requests answered (a rejection is counted apart, not as a fast answer);
* rejected requests: every request no pod answered (429, 503, no ready pod, connection, timeout);
* pod-seconds: the time pods were ready (reported Ready until stopped) within the replayed span, the
  cost side;
* pods ready when the ramp began, and when the controller first asked for more pods than the base.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.agentloop.balancer import Outcome
from tests.agentloop.loadgen import RequestRecord
from tests.agentloop.loop import RunResult
from tests.agentloop.pods import PodRecord

__all__ = ["Summary", "format_table", "plot_runs", "ready_at", "summarize"]


@dataclass(frozen=True, slots=True)
class Summary:
    name: str
    requests: int
    p95_latency_s: float | None
    rejected: int
    ready_pod_seconds: float
    ready_at_ramp: int
    desired_at_ramp: int
    first_scale_up_s: float | None  # relative to the ramp
    first_scale_up_why: str  # the controller's mode and reasons for it
    rejected_by_cause: dict[str, int]

    @property
    def rejected_pct(self) -> float:
        return 100.0 * self.rejected / self.requests if self.requests else 0.0


def p95(values: Sequence[float]) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=float), 95)) if values else None


def ready_at(pods: Sequence[PodRecord], at: float) -> int:
    """Pods reported ready at epoch second `at`."""
    return sum(
        1
        for p in pods
        if p.reported_ready is not None
        and p.reported_ready <= at
        and (p.stopped is None or p.stopped > at)
    )


def ready_pod_seconds(pods: Sequence[PodRecord], start: float, end: float) -> float:
    """Seconds pods were ready within [start, end] (epoch), summed over pods."""
    total = 0.0
    for p in pods:
        if p.reported_ready is None:
            continue
        until = end if p.stopped is None else min(p.stopped, end)
        total += max(0.0, until - max(p.reported_ready, start))
    return total


def summarize(run: RunResult) -> Summary:
    requests = run.requests
    answered = [r.latency_s for r in requests if r.outcome is Outcome.OK]
    rejected = sum(1 for r in requests if r.outcome is Outcome.REJECTED)
    base = run.scenario.base_pods
    first = next((d for d in run.decisions if d.desired > max(d.current, base)), None)
    before_ramp = [m for m in run.moments if m.at <= 0.0]
    desired_at_ramp = before_ramp[-1].desired if before_ramp else base
    causes = Counter(r.cause for r in requests if r.outcome is Outcome.REJECTED)
    return Summary(
        name=run.name,
        requests=len(requests),
        p95_latency_s=p95(answered),
        rejected=rejected,
        ready_pod_seconds=ready_pod_seconds(
            run.pods, run.ramp_at + run.start_s, run.ramp_at + run.end_s
        ),
        ready_at_ramp=ready_at(run.pods, run.ramp_at),
        desired_at_ramp=desired_at_ramp,
        first_scale_up_s=None if first is None else first.at,
        first_scale_up_why="-" if first is None else f"{first.mode}: {', '.join(first.reasons)}",
        rejected_by_cause=dict(causes.most_common()),
    )


def format_table(summaries: Sequence[Summary]) -> str:
    def seconds(value: float | None, signed: bool = False) -> str:
        if value is None:
            return "-"
        return f"{value:+.0f}" if signed else f"{value:.2f}"

    rows: list[tuple[str, list[str]]] = [
        ("requests", [str(s.requests) for s in summaries]),
        ("p95 latency of answered (s)", [seconds(s.p95_latency_s) for s in summaries]),
        ("rejected requests", [f"{s.rejected} ({s.rejected_pct:.1f}%)" for s in summaries]),
        ("  of which (answer)", [_causes(s.rejected_by_cause) for s in summaries]),
        ("pod-seconds of ready pods", [f"{s.ready_pod_seconds:.0f}" for s in summaries]),
        ("pods ready when the ramp began", [str(s.ready_at_ramp) for s in summaries]),
        ("pods desired when the ramp began", [str(s.desired_at_ramp) for s in summaries]),
        ("first scale-up (s from the ramp)", [seconds(s.first_scale_up_s, True) for s in summaries]),
        ("  decided as", [s.first_scale_up_why for s in summaries]),
    ]
    label_w = max(len(label) for label, _ in rows)
    widths = [max(len(s.name), *(len(cells[i]) for _, cells in rows)) for i, s in enumerate(summaries)]
    lines = [" " * label_w + "".join(f"  {s.name:>{w}}" for s, w in zip(summaries, widths, strict=True))]
    for label, cells in rows:
        lines.append(
            f"{label:<{label_w}}" + "".join(f"  {c:>{w}}" for c, w in zip(cells, widths, strict=True))
        )
    return "\n".join(lines)


def _causes(causes: dict[str, int]) -> str:
    return ", ".join(f"{cause} {count}" for cause, count in causes.items()) or "-"


# --- the picture -----------------------------------------------------------------------------------

BIN_S = 5.0


def _bins(run: RunResult) -> np.ndarray:
    return np.arange(math.floor(run.start_s), math.ceil(run.end_s) + BIN_S, BIN_S)


def offered_rps(run: RunResult) -> tuple[np.ndarray, np.ndarray]:
    edges = _bins(run)
    counts, _ = np.histogram([r.arrival for r in run.requests], bins=edges)
    return edges[:-1] + BIN_S / 2, counts / BIN_S


def rejected_per_bin(run: RunResult) -> tuple[np.ndarray, np.ndarray]:
    edges = _bins(run)
    counts, _ = np.histogram(
        [r.arrival for r in run.requests if r.outcome is Outcome.REJECTED], bins=edges
    )
    return edges[:-1] + BIN_S / 2, counts.astype(float)


def p95_over_time(requests: Sequence[RequestRecord], edges: np.ndarray) -> np.ndarray:
    """p95 latency of the requests answered that arrived in each bin (NaN where none was)."""
    out = np.full(len(edges) - 1, np.nan)
    arrivals = np.array([r.arrival for r in requests if r.outcome is Outcome.OK])
    latencies = np.array([r.latency_s for r in requests if r.outcome is Outcome.OK])
    for i in range(len(edges) - 1):
        inside = latencies[(arrivals >= edges[i]) & (arrivals < edges[i + 1])]
        if inside.size:
            out[i] = float(np.percentile(inside, 95))
    return out


def plot_runs(runs: Sequence[RunResult], out: Path) -> None:
    """One column per run: offered load, in-flight per pod, replicas, p95 latency, rejections."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = 5
    fig, axes = plt.subplots(
        rows, len(runs), figsize=(6.2 * len(runs), 12.5), sharex=True, sharey="row", squeeze=False
    )
    for col, run in enumerate(runs):
        summary = summarize(run)
        ax = axes[:, col]
        t, rps = offered_rps(run)
        ax[0].step(t, rps, where="mid", color="tab:blue")
        ax[0].set_title(
            f"{run.name}: {summary.rejected} rejected ({summary.rejected_pct:.1f}%), "
            f"p95 {summary.p95_latency_s or 0:.1f} s, {summary.ready_at_ramp} pods ready at the ramp",
            fontsize=10,
        )
        if run.inflight_per_pod:
            times, values = zip(*run.inflight_per_pod, strict=True)
            ax[1].plot(times, values, color="tab:purple", lw=0.8, label="mean over scraped pods")
        target = _inflight_target(run)
        if target is not None:
            ax[1].axhline(target, color="grey", ls=":", lw=1, label=f"target {target:g}")
        ax[1].axhline(
            run.scenario.agent.concurrency, color="tab:red", ls=":", lw=1, label="generation slots"
        )
        ax[1].legend(loc="upper left", fontsize=8)
        moments = run.moments
        ax[2].step([m.at for m in moments], [m.desired for m in moments], where="post",
                   color="tab:orange", label="desired (spec.replicas)")  # fmt: skip
        ax[2].step([m.at for m in moments], [m.ready for m in moments], where="post",
                   color="tab:green", label="ready")  # fmt: skip
        ax[2].legend(loc="upper left", fontsize=8)
        edges = _bins(run)
        ax[3].step(edges[:-1] + BIN_S / 2, p95_over_time(run.requests, edges), where="mid",
                   color="tab:brown")  # fmt: skip
        t, rejected = rejected_per_bin(run)
        ax[4].bar(t, rejected, width=BIN_S * 0.9, color="tab:red")
        for a in ax:
            a.axvline(0.0, color="black", ls="--", lw=1)
            a.grid(alpha=0.3)
        ax[2].annotate("ramp begins", (0.0, 0.97), xycoords=("data", "axes fraction"),
                       ha="right", va="top", fontsize=8, rotation=90)  # fmt: skip
        ax[-1].set_xlabel("seconds from the start of the morning ramp")
    labels = (
        "offered load (requests/s)",
        "in flight per pod",
        "pods",
        f"p95 latency (s, per {BIN_S:g} s)",
        f"rejected (per {BIN_S:g} s)",
    )
    for row, label in enumerate(labels):
        axes[row, 0].set_ylabel(label)
    fig.suptitle("Agent pods scaled by the controller: predictive (with history) vs reactive (none)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _inflight_target(run: RunResult) -> float | None:
    for key, value in run.scenario.annotations.items():
        if key.endswith("/metric.inflight"):
            return float(value.split()[2])
    return None
