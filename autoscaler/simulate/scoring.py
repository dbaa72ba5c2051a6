"""Scores of a run over the scored period (after the warm-up), as BENCHMARK.md defines them, and the
cost-at-equal-service-level comparison over a sweep of target utilizations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import numpy.typing as npt

from autoscaler.simulate.engine import RunResult

__all__ = ["SLO_UNSERVED_PCT", "Scores", "SloCost", "cost_at_slo", "score", "scored_slice"]

# Service level objective of the headline comparison: 99.9 % of the load served.
SLO_UNSERVED_PCT = 0.1


@dataclass(frozen=True, slots=True)
class Scores:
    overload_pct: float
    unserved_pct: float
    hot_pct: float
    pod_hours: float
    cost_vs_oracle: float
    mean_utilization: float
    scale_events: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def scored_slice(run: RunResult) -> slice:
    """Steps after the warm-up. Step k is the segment [t_k, t_k+1), so the last grid point only
    closes the final segment."""
    first = int(np.searchsorted(run.grid.times, run.grid.times[0] + run.scenario.warmup_s))
    return slice(first, len(run.grid.times) - 1)


def _above(
    start: npt.NDArray[np.float64], end: npt.NDArray[np.float64], level: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """For a load linear from `start` to `end` over a step and a constant `level`: the fraction of
    the step spent above the level and the mean excess over the step, both exact."""
    hi = np.maximum(start, end)
    lo = np.minimum(start, end)
    span = np.where(hi > lo, hi - lo, 1.0)
    fraction = np.where(lo >= level, 1.0, np.where(hi <= level, 0.0, (hi - level) / span))
    excess = np.where(
        lo >= level,
        (start + end) / 2 - level,
        np.where(hi <= level, 0.0, 0.5 * (hi - level) * fraction),
    )
    return fraction, excess


def score(run: RunResult, oracle_pod_hours: float) -> Scores:
    """Scores in continuous time: demand is linear within a step and the ready pods are constant,
    so time above capacity and unserved load are integrated exactly rather than sampled."""
    part = scored_slice(run)
    demand = run.grid.demand
    start = demand[part]
    end = demand[part.start + 1 : part.stop + 1]
    capacity = (run.ready[part] * run.scenario.capacity).astype(np.float64)
    # Float noise must not turn an exactly covered step into an overload.
    slack = 1e-9 * run.scenario.capacity
    over_level: npt.NDArray[np.float64] = capacity + slack
    hot_level: npt.NDArray[np.float64] = 0.9 * capacity + slack
    over_time, unserved = _above(start, end, over_level)
    hot_time, _ = _above(start, end, hot_level)
    offered = (start + end) / 2
    total = float(offered.sum())
    served_total = float((offered - unserved).sum())
    step_h = run.grid.step_s / 3600.0
    pod_hours = float(run.pods[part].sum()) * step_h
    cap_total = float(capacity.sum())
    desired = run.desired[max(0, part.start - 1) : part.stop]
    return Scores(
        overload_pct=100.0 * float(over_time.mean()),
        unserved_pct=100.0 * float(unserved.sum()) / total if total > 0 else 0.0,
        hot_pct=100.0 * float(hot_time.mean()),
        pod_hours=pod_hours,
        cost_vs_oracle=pod_hours / oracle_pod_hours if oracle_pod_hours > 0 else float("nan"),
        mean_utilization=served_total / cap_total if cap_total > 0 else 0.0,
        scale_events=int(np.count_nonzero(np.diff(desired))),
    )


@dataclass(frozen=True, slots=True)
class SloCost:
    """Pod-hours at which a policy's sweep frontier meets the objective, or None if it never does;
    `lowest_unserved_pct` is the best service level any sweep point reached."""

    pod_hours: float | None
    lowest_unserved_pct: float


def cost_at_slo(points: Sequence[tuple[float, Scores]]) -> SloCost:
    """`points` are (target utilization, scores) pairs. Between adjacent points that bracket the
    objective, pod-hours are interpolated linearly in unserved load; the cheapest crossing or
    meeting point is the cost."""
    ordered = sorted(points, key=lambda p: p[0])
    lowest = min(s.unserved_pct for _, s in ordered)
    if lowest > SLO_UNSERVED_PCT:
        return SloCost(None, lowest)
    candidates = [s.pod_hours for _, s in ordered if s.unserved_pct <= SLO_UNSERVED_PCT]
    for (_, a), (_, b) in pairwise(ordered):
        a_meets = a.unserved_pct <= SLO_UNSERVED_PCT
        if a_meets == (b.unserved_pct <= SLO_UNSERVED_PCT):
            continue
        fraction = (SLO_UNSERVED_PCT - a.unserved_pct) / (b.unserved_pct - a.unserved_pct)
        candidates.append(a.pod_hours + fraction * (b.pod_hours - a.pod_hours))
    return SloCost(min(candidates), lowest)
