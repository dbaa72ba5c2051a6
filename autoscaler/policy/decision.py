"""What a policy gets and gives back: its inputs, the `Decision`, the reasons behind it, and the
decision history a policy needs to stabilize and rate-limit itself (kept by the reconcile loop, passed
back in, never read from a clock or a global)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol, TypeVar

from autoscaler.metrics import MetricKind
from autoscaler.model import Forecasts, LoadSnapshot, Target, TargetConfig, TargetRef

__all__ = [
    "Decision",
    "DecisionHistory",
    "Mode",
    "Observation",
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
    PREDICTIVE_SCALE_UP = "predictive-scale-up"
    FORECAST_HOLDS = "forecast-holds"
    # Load came at this time of day on most recent days: pods for it ahead, trusted model or not.
    RECURRING_LOAD = "recurring-load"
    FALLBACK_NO_FORECAST = "fallback-no-forecast"
    # No forecast yet because the metric's model is still being fitted beside the tick.
    FALLBACK_MODEL_FITTING = "fallback-model-fitting"
    FALLBACK_SHORT_HISTORY = "fallback-short-history"
    FALLBACK_POOR_ACCURACY = "fallback-poor-accuracy"
    FALLBACK_STALE_FORECAST = "fallback-stale-forecast"
    ROLLOUT_IN_PROGRESS = "rollout-in-progress"
    SCALING_DISABLED = "scaling-disabled"


class Mode(Enum):
    """Which part of the policy set the target."""

    PREDICTIVE = "predictive"
    REACTIVE = "reactive"
    HOLD = "hold"


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


@dataclass(frozen=True, slots=True)
class Observation:
    """A load sample the policy was given; the recent ones show which way the load is moving."""

    at: float
    kind: MetricKind
    value: float


Entry = TypeVar("Entry", Recommendation, ScaleEvent, Observation)


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
    # Metrics whose forecasts the trust gate currently rejects (it re-arms with hysteresis).
    untrusted: frozenset[MetricKind] = frozenset()
    # The samples earlier decisions were made from, oldest first, each sample once.
    seen: tuple[Observation, ...] = ()

    def after(
        self,
        decision: Decision,
        *,
        applied: bool,
        keep_s: float,
        load: LoadSnapshot | None = None,
    ) -> DecisionHistory:
        """The history with this decision (and the samples it was made from) added and anything
        older than `keep_s` dropped, so it stays bounded however long the controller runs."""
        now = decision.at
        cutoff = now - keep_s
        recs = _unexpired(self.recommendations, cutoff)
        if decision.records:
            recs += (Recommendation(now, decision.recommendation),)
        events = _unexpired(self.scale_events, cutoff)
        if applied and decision.replicas != decision.current:
            events += (ScaleEvent(now, decision.replicas - decision.current),)
        seen = _unexpired(self.seen, cutoff)
        for kind, sample in () if load is None else load.items():
            last = self.latest_seen(kind)
            # A source may hand out the same sample on several ticks; it is one observation.
            if sample is not None and (last is None or sample.at > last.at):
                seen += (Observation(sample.at, kind, sample.value),)
        return DecisionHistory(recs, events, decision.untrusted, seen)

    def latest_seen(self, kind: MetricKind) -> Observation | None:
        for observation in reversed(self.seen):
            if observation.kind is kind:
                return observation
        return None

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


NO_FORECASTS = Forecasts()


@dataclass(frozen=True, slots=True)
class PolicyInputs:
    target: Target
    load: LoadSnapshot
    history: DecisionHistory
    now: float
    forecasts: Forecasts = NO_FORECASTS


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
    mode: Mode = Mode.REACTIVE
    reactive_replicas: int | None = None
    predictive_replicas: int | None = None
    forecast_metric: MetricKind | None = None
    forecast_peak: float | None = None
    forecast_level: float | None = None
    # The load extrapolated along its current rise to the end of the lead, where that drove replicas.
    trend_load: float | None = None
    lead_s: float | None = None
    untrusted: frozenset[MetricKind] = frozenset()
    # Per metric with scored forecasts, their error over that of "no change" (what the trust gate
    # judged), so that people can see how close a metric is to being trusted or distrusted.
    forecast_errors: tuple[tuple[MetricKind, float], ...] = ()
    # Configured metrics that had no usable sample (none, NaN, too old, Prometheus unreachable).
    missing: tuple[MetricKind, ...] = ()
    # Whether `recommendation` enters the stabilization windows: as in the HPA, a tick that could
    # not compute one (metrics missing) or that did not consult the metrics (replicas outside the
    # bounds, scaling disabled) records nothing.
    records: bool = True

    @property
    def changed(self) -> bool:
        return self.replicas != self.current

    def explain(self, head: str | None = None) -> str:
        """One line a person can read in `kubectl describe` or a log. `head` replaces what was done
        ("scaled 2→6", "held at 2") where the replicas are not what moves (mode hpa moves a floor)."""
        if head is None:
            done = f"scaled {self.current}→{self.replicas}"
            head = done if self.changed else f"held at {self.current}"
        why = ", ".join(self._reason_text(r) for r in self.reasons)
        if self.metric is None or self.load is None:
            return f"{head}: {why}"
        basis = f"{self.metric.value} load {self.load:.4g}"
        if self.per_pod_target is not None:
            basis += f" at {self.per_pod_target:.4g}/pod"
        if self.forecast_peak is None or self.forecast_metric is None:
            return f"{head}: {why}; {basis}, proposal {self.recommendation}"
        level = f"{self.forecast_level:.0%} ≤ " if self.forecast_level is not None else ""
        rising = "" if self.trend_load is None else f", rising to {self.trend_load:.4g}"
        ahead = "recurring" if Reason.RECURRING_LOAD in self.reasons else "forecast"
        return (
            f"{head}: {why}; {basis}; {ahead} {self.forecast_metric.value} {level}"
            f"{self.forecast_peak:.4g}{rising} within {self.lead_s:.0f}s lead → "
            f"{self.predictive_replicas}, reactive {self.reactive_replicas}"
        )

    def _reason_text(self, reason: Reason) -> str:
        if reason is Reason.METRICS_MISSING and self.missing:
            return f"{reason.value} ({', '.join(kind.value for kind in self.missing)})"
        return reason.value


class Policy(Protocol):
    """A pure decision rule: no I/O, no clock reads, no logging."""

    @property
    def name(self) -> str: ...

    def decide(self, inputs: PolicyInputs) -> Decision: ...

    def memory_s(self, config: TargetConfig) -> float:
        """How much decision history the policy looks back over."""
        ...
