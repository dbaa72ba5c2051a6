"""The Kubernetes HPA (autoscaling/v2) decision, as its controller computes it.

Used twice: as the `hpa` baseline the simulator scores against, and as the reactive part of the
predictive policy. It follows the upstream controller (`reconcileAutoscaler`), replica calculator
and `normalizeDesiredReplicasWithBehaviors`:

0. replicas 0 means autoscaling is disabled (nothing is computed or changed); replicas outside
   min/max go straight to the bound, without consulting the metrics or the behavior; neither
   records a recommendation;
1. per metric, the usage ratio against the target: for a utilization target (cpu, memory) in whole
   percent of the pods' request, as the HPA computes it; no change while the ratio is within the
   tolerances, inclusive at both edges (down 0.1, up 0.1 by default, configurable apart), else
   `ceil(pods × ratio)`. For CPU, pods that exist but are not ready count as 0 % on a scale-up
   (the proposal is recomputed over all of them and dropped if that reverses the direction or lands
   in the tolerance) and are left out on a scale-down; for every other kind a pod counts with what
   it reports, ready or not. The largest proposal across metrics wins; a metric that cannot be read
   blocks a scale-down, and a tick that cannot compute a proposal records nothing;
2. stabilization: the proposal is limited to the lowest proposal in the scale-up window and the
   highest in the scale-down window;
3. rate limits: per period, counted from the replicas the period started with; `selectPolicy` Max
   (the default: the largest change the rules allow), Min (the smallest) or Disabled; defaults up
   100 % or 4 pods per 15 s, down 100 % per 15 s; a percent scale-up rounds up, a percent
   scale-down truncates;
4. min/max bounds.

Per-pod detail the aggregate load cannot carry is a deliberate difference (README, "The reactive
part and the Kubernetes HPA").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

from autoscaler.metrics import MetricKind
from autoscaler.model import SelectPolicy, TargetConfig, WorkloadState
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
    "pods_for",
    "propose_for_metric",
    "reactive_proposal",
    "settle",
]

# What float arithmetic may leave above a whole number of pods.
_ROUNDING = 1e-9


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
    """`spec.behavior` with the upstream defaults; what users set per workload (scale-down
    stabilization, tolerances, select policies) comes from the target's config."""

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
    current: int,
    ready: int,
    unready: int,
    load: float,
    per_pod_target: float,
    config: TargetConfig,
    *,
    request: float | None = None,
    damps_unready: bool = False,
) -> MetricProposal:
    """Replicas for one metric from its aggregate load (`ready` ≥ 1). `request` is what one pod
    requests where the target is a utilization of it; `damps_unready` is the HPA's CPU rule."""

    def ratio_over(pods: int) -> float:
        if request is None:
            return load / (pods * per_pod_target)
        # Whole percent of the request, as the HPA computes utilization (the epsilon keeps a
        # value that is exactly whole from landing a hair below it).
        utilization = math.floor(100.0 * load / (pods * request) + _ROUNDING)
        return utilization / (100.0 * per_pod_target / request)

    # Under the CPU rule only ready pods are measured; otherwise every pod counts as it reports.
    pods = ready if damps_unready else ready + unready
    ratio = ratio_over(pods)
    if damps_unready and unready > 0 and ratio > 1.0:
        # Not-ready pods count as idle: a pod that is still starting must not trigger a second
        # scale-up for load it will soon take.
        total = ready + unready
        damped = ratio_over(total)
        if config.within_tolerance(damped) or damped < 1.0:
            return MetricProposal(current, within_tolerance=False, unready_damped=True)
        return MetricProposal(
            max(current, math.ceil(damped * total)), within_tolerance=False, unready_damped=True
        )
    if config.within_tolerance(ratio):
        return MetricProposal(current, within_tolerance=True, unready_damped=False)
    return MetricProposal(math.ceil(ratio * pods), within_tolerance=False, unready_damped=False)


def _allowance(rule: ScalingRule, start: int, up: bool) -> int:
    if rule.kind is RuleKind.PODS:
        return start + rule.value if up else start - rule.value
    if up:
        # Rounded up, or a small workload could never grow by a percentage.
        return math.ceil(start * (1.0 + rule.value / 100.0))
    return int(start * (1.0 - rule.value / 100.0))  # truncated, as the HPA converts it


def _limit(
    rules: tuple[ScalingRule, ...],
    select: SelectPolicy,
    current: int,
    history: DecisionHistory,
    now: float,
    up: bool,
) -> int:
    if select is SelectPolicy.DISABLED or not rules:
        return current
    allowed = []
    for rule in rules:
        added, removed = history.replicas_changed_since(now - rule.period_s)
        allowed.append(_allowance(rule, current - added + removed, up))
    # Max takes the largest change: the highest count up, the lowest down; Min the smallest.
    largest_change = (max if up else min)(allowed)
    smallest_change = (min if up else max)(allowed)
    limit = largest_change if select is SelectPolicy.MAX else smallest_change
    return max(limit, current) if up else min(limit, current)


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


def pods_for(load: float, per_pod: float) -> int:
    """The whole pods that carry `load` at `per_pod` each. A quotient a rounding error above a whole
    number (4.000000000001) is that number: float division must not cost a pod."""
    return math.ceil(load / per_pod - _ROUNDING)


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
        limit = _limit(behavior.scale_up_rules, config.scale_up_select, current, history, now, up=True)
        final = max(bounds.minimum, min(wanted, bounds.maximum, limit))
    elif wanted < current:
        limit = _limit(
            behavior.scale_down_rules, config.scale_down_select, current, history, now, up=False
        )
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
    # Set without consulting the metrics (replicas outside the bounds, scaling disabled): no
    # stabilization or rate limit applies, and nothing is recorded.
    direct: bool = False

    @property
    def holding(self) -> bool:
        return self.reason in (Reason.METRICS_MISSING, Reason.SCALING_DISABLED)

    @property
    def records(self) -> bool:
        """Whether the HPA would record this proposal as a recommendation."""
        return not (self.direct or self.reason is Reason.METRICS_MISSING)


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
    bounds = config.bounds
    if current == 0:
        # Someone scaled the workload to zero: to the HPA (whose minimum is at least 1 here) that
        # means autoscaling is off until they scale it up again.
        return ReactiveProposal(0, Reason.SCALING_DISABLED, direct=True)
    if current > bounds.maximum:
        return ReactiveProposal(bounds.maximum, Reason.CLAMPED_TO_MAX, direct=True)
    if current < bounds.minimum:
        return ReactiveProposal(bounds.minimum, Reason.CLAMPED_TO_MIN, direct=True)
    best: tuple[MetricProposal, MetricKind, float, float] | None = None
    missing: list[MetricKind] = []
    for kind in config.metrics:
        measured = _measure(kind, inputs, state, config, behavior)
        if measured is None:
            missing.append(kind)
            continue
        load, per_pod = measured
        spec = config.spec(kind)
        proposal = propose_for_metric(
            current,
            state.ready_replicas,
            state.unready_replicas,
            load,
            per_pod,
            config,
            request=None if spec.request_resource is None else state.pod_requests.get(kind),
            damps_unready=spec.damps_unready,
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


def settle(
    reactive: ReactiveProposal,
    config: TargetConfig,
    behavior: HpaBehavior,
    inputs: PolicyInputs,
) -> tuple[int, tuple[Reason, ...]]:
    """The count the HPA sets for a proposal: a direct one as it is, a hold at the current count,
    any other through stabilization, rate limits and bounds (`normalize`)."""
    current = inputs.target.state.spec_replicas
    if reactive.direct:
        return reactive.replicas, ()
    if reactive.holding:
        return current, ()
    return normalize(reactive.replicas, current, config, behavior, inputs.history, inputs.now)


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
        final, guards = settle(reactive, inputs.target.config, self.behavior, inputs)
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
            records=reactive.records,
        )
