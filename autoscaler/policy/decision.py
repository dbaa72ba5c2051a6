"""What a policy gets and gives back: its inputs, the `Decision`, the reasons behind it, and the
decision history a policy needs to stabilize and rate-limit itself (kept by the reconcile loop, passed
back in, never read from a clock or a global)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol, TypeVar

from autoscaler.model import LoadSnapshot, MetricKind, Target, TargetConfig, TargetRef

__all__ = [
    "Decision",
    "DecisionHistory",
    "Policy",
    "PolicyInputs",
    "Reason",
    "Recommendation",
    "ScaleEvent",
]


class Reason(Enum):
    """Why a decision came out as it did. Several can apply; they are listed in the order they
    acted (the metric-based proposal first, then the guards that changed it)."""

    SCALE_UP = "scale-up"
    SCALE_DOWN = "scale-down"
    WITHIN_TOLERANCE = "within-tolerance"
    UNREADY_PODS_DAMPED = "unready-pods-damped"
    HELD_BY_STABILIZATION = "held-by-stabilization"
    RATE_LIMITED = "rate-limited"
    CLAMPED_TO_MIN = "clamped-to-min"
    CLAMPED_TO_MAX = "clamped-to-max"
    METRICS_MISSING = "metrics-missing"


@dataclass(frozen=True, slots=True)
class Recommendation:
    """A tick's proposal before stabilization; the window guards are computed over these."""

    at: float
    replicas: int


@dataclass(frozen=True, slots=True)
class ScaleEvent:
    """A change that was applied; rate limits count the replicas added or removed per period."""

    at: float
    delta: int


Entry = TypeVar("Entry", Recommendation, ScaleEvent)


def _unexpired(entries: tuple[Entry, ...], cutoff: float) -> tuple[Entry, ...]:
    # Entries are appended in time order, so the expired ones are a prefix.
    first = 0
    while first < len(entries) and entries[first].at <= cutoff:
        first += 1
    return entries[first:] if first else entries


@dataclass(frozen=True, slots=True)
class DecisionHistory:
    recommendations: tuple[Recommendation, ...] = ()
    scale_events: tuple[ScaleEvent, ...] = ()

    def after(self, decision: Decision, *, applied: bool, keep_s: float) -> DecisionHistory:
        """The history with this decision added and anything older than `keep_s` dropped, so it
        stays bounded however long the controller runs."""
        now = decision.at
        cutoff = now - keep_s
        recs = (*_unexpired(self.recommendations, cutoff), Recommendation(now, decision.recommendation))
        events = _unexpired(self.scale_events, cutoff)
        if applied and decision.replicas != decision.current:
            events += (ScaleEvent(now, decision.replicas - decision.current),)
        return DecisionHistory(recs, events)

    def replicas_changed_since(self, since: float) -> tuple[int, int]:
        """(added, removed) over the events strictly after `since`."""
        added = removed = 0
        for event in self.scale_events:
            if event.at > since:
                if event.delta > 0:
                    added += event.delta
                else:
                    removed -= event.delta
        return added, removed


@dataclass(frozen=True, slots=True)
class PolicyInputs:
    target: Target
    load: LoadSnapshot
    history: DecisionHistory
    now: float


@dataclass(frozen=True, slots=True)
class Decision:
    """The replica count a policy wants for one workload, and everything needed to explain it."""

    ref: TargetRef
    at: float
    current: int
    replicas: int
    recommendation: int
    reasons: tuple[Reason, ...]
    metric: MetricKind | None = None
    load: float | None = None
    per_pod_target: float | None = None

    @property
    def changed(self) -> bool:
        return self.replicas != self.current

    def explain(self) -> str:
        """One line a person can read in `kubectl describe` or a log."""
        head = f"scaled {self.current}→{self.replicas}" if self.changed else f"held at {self.current}"
        why = ", ".join(r.value for r in self.reasons)
        if self.metric is None or self.load is None:
            return f"{head}: {why}"
        basis = f"{self.metric.value} load {self.load:.4g}"
        if self.per_pod_target is not None:
            basis += f" at {self.per_pod_target:.4g}/pod"
        return f"{head}: {why}; {basis}, proposal {self.recommendation}"


class Policy(Protocol):
    """A pure decision rule: no I/O, no clock reads, no logging."""

    @property
    def name(self) -> str: ...

    def decide(self, inputs: PolicyInputs) -> Decision: ...

    def memory_s(self, config: TargetConfig) -> float:
        """How much decision history the policy looks back over."""
        ...
