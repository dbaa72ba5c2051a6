"""Scores of a run over the scored period (after the warm-up), as BENCHMARK.md defines them, and the
cost-at-equal-service-level comparison over a sweep of target utilizations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import pairwise
from typing import Any

import numpy as np

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
    first = int(np.searchsorted(run.grid.times, run.grid.times[0] + run.scenario.warmup_s))
    return slice(first, len(run.grid.times))


def score(run: RunResult, oracle_pod_hours: float) -> Scores:
    part = scored_slice(run)
    demand = run.grid.demand[part]
    capacity = run.ready[part] * run.scenario.capacity
    # Float noise must not turn an exactly covered step into an overload.
    slack = 1e-9 * run.scenario.capacity
    total = float(demand.sum())
    served = np.minimum(demand, capacity)
    step_h = run.grid.step_s / 3600.0
    pod_hours = float(run.pods[part].sum()) * step_h
    cap_total = float(capacity.sum())
    desired = run.desired[part.start - 1 if part.start > 0 else 0 :]
    return Scores(
        overload_pct=100.0 * float(np.mean(demand > capacity + slack)),
        unserved_pct=100.0 * float((demand - served).sum()) / total if total > 0 else 0.0,
        hot_pct=100.0 * float(np.mean(demand > 0.9 * capacity + slack)),
        pod_hours=pod_hours,
        cost_vs_oracle=pod_hours / oracle_pod_hours if oracle_pod_hours > 0 else float("nan"),
        mean_utilization=float(served.sum()) / cap_total if cap_total > 0 else 0.0,
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
