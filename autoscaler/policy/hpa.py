"""The Kubernetes HPA (autoscaling/v2) decision, as its controller computes it.

Used twice: as the `hpa` baseline the simulator scores against, and as the reactive part of the
predictive policy. It follows the upstream replica calculator and
`normalizeDesiredReplicasWithBehaviors`:

1. per metric, `ceil(ready × ratio)` with `ratio = per-pod average over ready pods / target`, no change
   within the tolerance; on a scale-up with not-ready pods, those count as 0 % and the proposal is
   recomputed over all pods (dropped if that reverses the direction or lands in the tolerance);
   the largest proposal across metrics wins, and a metric that cannot be read blocks a scale-down;
2. stabilization: the proposal is limited to the lowest proposal in the scale-up window and the
   highest in the scale-down window;
3. rate limits: per period, the larger of the policies' allowances (defaults: up 100 % or 4 pods per
   15 s, down 100 % per 15 s), counted from the replicas the period started with;
4. min/max bounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

from autoscaler.metrics import MetricKind
from autoscaler.model import TargetConfig, WorkloadState
from autoscaler.policy.decision import Decision, DecisionHistory, Mode, PolicyInputs, Reason

__all__ = [
    "DEFAULT_BEHAVIOR",
    "HpaBehavior",
    "HpaPolicy",
    "MetricProposal",
    "ReactiveProposal",
    "RuleKind",
    "ScalingRule",
    "limit_change",
    "normalize",
    "propose_for_metric",
    "reactive_proposal",
]


class RuleKind(Enum):
    PODS = "Pods"
    PERCENT = "Percent"


@dataclass(frozen=True, slots=True)
class ScalingRule:
    kind: RuleKind
    value: int
    period_s: float


@dataclass(frozen=True, slots=True)
class HpaBehavior:
    """`spec.behavior` with the upstream defaults; scale-down stabilization comes from the target's
    config because users set it per workload."""

    tolerance: float = 0.1
    scale_up_stabilization_s: float = 0.0
    scale_up_rules: tuple[ScalingRule, ...] = (
        ScalingRule(RuleKind.PERCENT, 100, 15.0),
        ScalingRule(RuleKind.PODS, 4, 15.0),
    )
    scale_down_rules: tuple[ScalingRule, ...] = (ScalingRule(RuleKind.PERCENT, 100, 15.0),)
    # A metric older than this is treated as missing: acting on it would be acting blind.
    max_sample_age_s: float = 180.0
    # Longest look-back of the rules and the scale-up window, fixed at construction (read each tick).
    longest_s: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        periods = [r.period_s for r in self.scale_up_rules + self.scale_down_rules]
        object.__setattr__(self, "longest_s", max([self.scale_up_stabilization_s, *periods]))

    def memory_s(self, config: TargetConfig) -> float:
        """Decision history the windows and rate limits look back over."""
        return max(config.scale_down_stabilization_s, self.longest_s)


DEFAULT_BEHAVIOR = HpaBehavior()


@dataclass(frozen=True, slots=True)
class MetricProposal:
    replicas: int
    within_tolerance: bool
    unready_damped: bool


def propose_for_metric(
    current: int, ready: int, unready: int, load: float, per_pod_target: float, tolerance: float
) -> MetricProposal:
    """Replicas for one metric from its aggregate load over the ready pods (`ready` ≥ 1)."""
    ratio = load / (ready * per_pod_target)
    if unready > 0 and ratio > 1.0:
        # Not-ready pods count as idle: a pod that is still starting must not trigger a second
        # scale-up for load it will soon take.
        total = ready + unready
        damped = load / (total * per_pod_target)
        if abs(1.0 - damped) <= tolerance or damped < 1.0:
            return MetricProposal(current, within_tolerance=False, unready_damped=True)
        return MetricProposal(
            max(current, math.ceil(damped * total)), within_tolerance=False, unready_damped=True
        )
    if abs(1.0 - ratio) <= tolerance:
        return MetricProposal(current, within_tolerance=True, unready_damped=False)
    return MetricProposal(math.ceil(ratio * ready), within_tolerance=False, unready_damped=False)


def _limit(
    rules: tuple[ScalingRule, ...], current: int, history: DecisionHistory, now: float, up: bool
) -> int:
    best: int | None = None
    for rule in rules:
        added, removed = history.replicas_changed_since(now - rule.period_s)
        if up:
            start = current - added + removed
            allowed = (
                start + rule.value
                if rule.kind is RuleKind.PODS
                else math.ceil(start * (1.0 + rule.value / 100.0))
            )
            best = allowed if best is None else max(best, allowed)
        else:
            start = current + removed - added
            allowed = (
                start - rule.value
                if rule.kind is RuleKind.PODS
                else math.ceil(start * (1.0 - rule.value / 100.0))
            )
            best = allowed if best is None else min(best, allowed)
    if best is None:
        return current
    return max(best, current) if up else min(best, current)


def normalize(
    proposal: int,
    current: int,
    config: TargetConfig,
    behavior: HpaBehavior,
    history: DecisionHistory,
    now: float,
) -> tuple[int, tuple[Reason, ...]]:
    """Stabilization, rate limits and bounds applied to a proposal; returns the final count and the
    guards that changed it."""
    reasons: list[Reason] = []
    recs = history.recommendations
    up_cutoff = now - behavior.scale_up_stabilization_s
    down_cutoff = now - config.scale_down_stabilization_s
    up_floor = min((r.replicas for r in recs if r.at > up_cutoff), default=proposal)
    down_ceiling = max((r.replicas for r in recs if r.at > down_cutoff), default=proposal)
    up_floor = min(up_floor, proposal)
    down_ceiling = max(down_ceiling, proposal)
    stabilized = min(max(current, up_floor), down_ceiling)
    if stabilized != proposal:
        reasons.append(Reason.HELD_BY_STABILIZATION)
    final, limits = limit_change(stabilized, current, config, behavior, history, now)
    return final, (*reasons, *limits)


def limit_change(
    wanted: int,
    current: int,
    config: TargetConfig,
    behavior: HpaBehavior,
    history: DecisionHistory,
    now: float,
) -> tuple[int, tuple[Reason, ...]]:
    """Rate limits and min/max bounds applied to a count that is already stabilized; returns the
    final count and the guard that changed it, if one did."""
    bounds = config.bounds
    if wanted > current:
        limit = _limit(behavior.scale_up_rules, current, history, now, up=True)
        final = max(bounds.minimum, min(wanted, bounds.maximum, limit))
    elif wanted < current:
        limit = _limit(behavior.scale_down_rules, current, history, now, up=False)
        final = min(bounds.maximum, max(wanted, bounds.minimum, limit))
    else:
        final = bounds.clamp(wanted)
    if final < wanted:
        return final, (Reason.CLAMPED_TO_MAX if final == bounds.maximum else Reason.RATE_LIMITED,)
    if final > wanted:
        return final, (Reason.CLAMPED_TO_MIN if final == bounds.minimum else Reason.RATE_LIMITED,)
    return final, ()


@dataclass(frozen=True, slots=True)
class ReactiveProposal:
    """The HPA's metric step: replicas for the current load, before any guard."""

    replicas: int
    reason: Reason
    metric: MetricKind | None = None
    load: float | None = None
    per_pod_target: float | None = None
    # The configured metrics without a usable sample this tick.
    missing: tuple[MetricKind, ...] = ()

    @property
    def holding(self) -> bool:
        return self.reason is Reason.METRICS_MISSING


def _measure(
    kind: MetricKind,
    inputs: PolicyInputs,
    state: WorkloadState,
    config: TargetConfig,
    behavior: HpaBehavior,
) -> tuple[float, float] | None:
    sample = inputs.load.get(kind)
    per_pod = config.per_pod_target(kind, state)
    if (
        sample is None
        or per_pod is None
        or state.ready_replicas < 1
        or inputs.now - sample.at > behavior.max_sample_age_s
    ):
        return None
    return sample.value, per_pod


def reactive_proposal(inputs: PolicyInputs, behavior: HpaBehavior) -> ReactiveProposal:
    """Largest per-metric proposal; a hold at the current count when no metric can be read or a
    scale-down would rest on partial information."""
    state = inputs.target.state
    config = inputs.target.config
    current = state.spec_replicas
    best: tuple[MetricProposal, MetricKind, float, float] | None = None
    missing: list[MetricKind] = []
    for kind in config.metrics:
        measured = _measure(kind, inputs, state, config, behavior)
        if measured is None:
            missing.append(kind)
            continue
        load, per_pod = measured
        proposal = propose_for_metric(
            current,
            state.ready_replicas,
            state.unready_replicas,
            load,
            per_pod,
            behavior.tolerance,
        )
        if best is None or proposal.replicas > best[0].replicas:
            best = (proposal, kind, load, per_pod)

    if best is None:
        return ReactiveProposal(current, Reason.METRICS_MISSING, missing=tuple(missing))
    proposal, kind, load, per_pod = best
    if missing and proposal.replicas < current:
        # Never scale down on partial information: hold what runs now.
        return ReactiveProposal(
            current, Reason.METRICS_MISSING, kind, load, per_pod, missing=tuple(missing)
        )
    if proposal.within_tolerance:
        reason = Reason.WITHIN_TOLERANCE
    elif proposal.unready_damped and proposal.replicas == current:
        reason = Reason.UNREADY_PODS_DAMPED
    elif proposal.replicas > current:
        reason = Reason.SCALE_UP
    elif proposal.replicas < current:
        reason = Reason.SCALE_DOWN
    else:
        reason = Reason.WITHIN_TOLERANCE
    return ReactiveProposal(proposal.replicas, reason, kind, load, per_pod, tuple(missing))


@dataclass(frozen=True, slots=True)
class HpaPolicy:
    behavior: HpaBehavior = DEFAULT_BEHAVIOR

    @property
    def name(self) -> str:
        return "hpa"

    def memory_s(self, config: TargetConfig) -> float:
        return self.behavior.memory_s(config)

    def decide(self, inputs: PolicyInputs) -> Decision:
        current = inputs.target.state.spec_replicas
        reactive = reactive_proposal(inputs, self.behavior)
        final, guards = normalize(
            reactive.replicas,
            current,
            inputs.target.config,
            self.behavior,
            inputs.history,
            inputs.now,
        )
        return Decision(
            ref=inputs.target.state.ref,
            at=inputs.now,
            current=current,
            replicas=final,
            recommendation=reactive.replicas,
            reasons=(reactive.reason, *guards),
            metric=reactive.metric,
            load=reactive.load,
            per_pod_target=reactive.per_pod_target,
            mode=Mode.HOLD if reactive.holding else Mode.REACTIVE,
            reactive_replicas=reactive.replicas,
            missing=reactive.missing,
        )
