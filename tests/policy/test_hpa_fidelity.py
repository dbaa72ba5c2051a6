"""The reactive part against the Kubernetes HPA controller, rule by rule, as its source code has them
(pkg/controller/podautoscaler: `reconcileAutoscaler` and `normalizeDesiredReplicasWithBehaviors` in
horizontal.go, `GetResourceReplicas`, `calcPlainMetricReplicas` and `groupPods` in
replica_calculator.go, `GetResourceUtilizationRatio` in metrics/utilization.go).

Units: a pod requests 2 cores (or 2 GiB) and the utilization target is 50 %, so each pod should carry
1 core; the per-pod request-rate target is 1/s. Loads are totals over the pods.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from autoscaler.metrics import MetricKind
from autoscaler.model import (
    Bounds,
    LoadSnapshot,
    Sample,
    SelectPolicy,
    Target,
    TargetConfig,
    TargetRef,
    WorkloadState,
)
from autoscaler.policy import Decision, DecisionHistory, HpaPolicy, PolicyInputs, Reason
from autoscaler.policy.decision import Recommendation, ScaleEvent
from autoscaler.policy.hpa import HpaBehavior, RuleKind, ScalingRule
from autoscaler.reconcile import DecisionMemory

NOW = 1_000_000.0
WIDE = Bounds(1, 100)
REF = TargetRef("shop", "agent")
CPU, MEMORY, REQUESTS = MetricKind.CPU, MetricKind.MEMORY, MetricKind.REQUESTS
UP, DOWN, KEEP = Reason.SCALE_UP, Reason.SCALE_DOWN, Reason.WITHIN_TOLERANCE
LIMITED, STABILIZED = Reason.RATE_LIMITED, Reason.HELD_BY_STABILIZATION
TO_MIN, TO_MAX, MISSING = Reason.CLAMPED_TO_MIN, Reason.CLAMPED_TO_MAX, Reason.METRICS_MISSING
DAMPED, DISABLED = Reason.UNREADY_PODS_DAMPED, Reason.SCALING_DISABLED


def rules(*specs: tuple[RuleKind, int, float]) -> tuple[ScalingRule, ...]:
    return tuple(ScalingRule(kind, value, period) for kind, value, period in specs)


@dataclass(frozen=True)
class Case:
    spec: int
    ready: int
    loads: dict[MetricKind, float | None]  # the configured metrics; None for no sample
    want: int
    reasons: tuple[Reason, ...]
    existing: int | None = None  # pods that exist; None: as many as spec
    bounds: Bounds = WIDE
    behavior: HpaBehavior = field(default_factory=HpaBehavior)
    tolerances: tuple[float, float] = (0.1, 0.1)  # (down, up)
    select: tuple[SelectPolicy, SelectPolicy] = (SelectPolicy.MAX, SelectPolicy.MAX)  # (down, up)
    recs: tuple[tuple[float, int], ...] = ()  # (seconds ago, replicas)
    events: tuple[tuple[float, int], ...] = ()  # (seconds ago, delta)
    sample_age: float = 30.0


def decide(case: Case) -> Decision:
    config = TargetConfig(
        metrics=tuple(case.loads),
        bounds=case.bounds,
        target_utilization=0.5,
        per_pod={REQUESTS: 1.0} if REQUESTS in case.loads else {},
        scale_down_tolerance=case.tolerances[0],
        scale_up_tolerance=case.tolerances[1],
        scale_down_select=case.select[0],
        scale_up_select=case.select[1],
    )
    state = WorkloadState(
        REF,
        spec_replicas=case.spec,
        ready_replicas=case.ready,
        pod_requests={CPU: 2.0, MEMORY: 2.0},
        existing_pods=case.existing,
    )
    samples = {
        kind: None if value is None else Sample(value, NOW - case.sample_age)
        for kind, value in case.loads.items()
    }
    history = DecisionHistory(
        tuple(Recommendation(NOW - ago, n) for ago, n in case.recs),
        tuple(ScaleEvent(NOW - ago, d) for ago, d in case.events),
    )
    policy = HpaPolicy(case.behavior)
    return policy.decide(PolicyInputs(Target(state, config), LoadSnapshot(samples), history, NOW))


ASYMMETRIC = (0.2, 0.05)
UP_10_PERCENT = HpaBehavior(scale_up_rules=rules((RuleKind.PERCENT, 10, 60.0)))
DOWN_10_PERCENT = HpaBehavior(scale_down_rules=rules((RuleKind.PERCENT, 10, 60.0)))
DOWN_2_PODS = HpaBehavior(scale_down_rules=rules((RuleKind.PODS, 2, 60.0)))
DOWN_HALF_OR_ONE = rules((RuleKind.PERCENT, 50, 15.0), (RuleKind.PODS, 1, 15.0))

CASES = [
    # --- the usage ratio and the tolerances ---------------------------------------------------------
    pytest.param(Case(10, 10, {CPU: 11.0}, 10, (KEEP,)), id="cpu-ratio-at-upper-edge-is-within"),
    pytest.param(Case(10, 10, {CPU: 11.2}, 12, (UP,)), id="cpu-ratio-past-upper-edge-scales-up"),
    pytest.param(Case(10, 10, {CPU: 9.0}, 10, (KEEP,)), id="cpu-ratio-at-lower-edge-is-within"),
    pytest.param(Case(10, 10, {CPU: 8.8}, 9, (DOWN,)), id="cpu-ratio-past-lower-edge-scales-down"),
    pytest.param(
        Case(10, 10, {CPU: 11.19}, 10, (KEEP,)), id="cpu-utilization-in-whole-percent-55.95-is-55"
    ),
    pytest.param(Case(10, 10, {REQUESTS: 11.19}, 12, (UP,)), id="requests-ratio-not-truncated"),
    pytest.param(Case(10, 10, {REQUESTS: 11.0}, 10, (KEEP,)), id="requests-upper-edge-inclusive"),
    pytest.param(
        Case(10, 10, {REQUESTS: 10.6}, 11, (UP,), tolerances=ASYMMETRIC), id="up-tolerance-of-its-own"
    ),
    pytest.param(
        Case(10, 10, {REQUESTS: 8.2}, 10, (KEEP,), tolerances=ASYMMETRIC),
        id="down-tolerance-of-its-own-within",
    ),
    pytest.param(
        Case(10, 10, {REQUESTS: 7.9}, 8, (DOWN,), tolerances=ASYMMETRIC),
        id="down-tolerance-of-its-own-past",
    ),
    pytest.param(Case(4, 4, {MEMORY: 6.0}, 6, (UP,)), id="memory-utilization-scales-up"),
    # --- pods that are not ready: CPU only -----------------------------------------------------
    pytest.param(Case(10, 5, {CPU: 6.0}, 10, (DAMPED,)), id="cpu-unready-pods-idle-on-scale-up-hold"),
    pytest.param(Case(6, 3, {CPU: 9.0}, 9, (UP,)), id="cpu-unready-pods-idle-still-scales-up"),
    pytest.param(Case(4, 2, {CPU: 4.2}, 4, (DAMPED,)), id="cpu-damped-ratio-within-tolerance-holds"),
    pytest.param(Case(10, 5, {CPU: 2.0}, 2, (DOWN,)), id="cpu-unready-pods-left-out-on-scale-down"),
    pytest.param(
        Case(10, 5, {CPU: 6.0}, 10, (DOWN, STABILIZED), existing=5, recs=((15, 10),)),
        id="cpu-pods-not-created-yet-do-not-damp",
    ),
    pytest.param(Case(4, 2, {CPU: 3.0}, 4, (DAMPED,)), id="cpu-same-load-damped"),
    pytest.param(Case(4, 2, {MEMORY: 3.0}, 3, (DOWN,)), id="memory-unready-pods-count-as-they-report"),
    pytest.param(
        Case(10, 5, {REQUESTS: 6.0}, 6, (DOWN,)), id="requests-unready-pods-count-as-they-report"
    ),
    pytest.param(Case(6, 3, {REQUESTS: 9.0}, 9, (UP,)), id="requests-scale-up-over-every-running-pod"),
    # --- missing metrics -----------------------------------------------------------------------
    pytest.param(
        Case(8, 8, {CPU: 2.0, REQUESTS: None}, 8, (MISSING,)), id="missing-metric-blocks-scale-down"
    ),
    pytest.param(
        Case(8, 8, {CPU: 12.0, REQUESTS: None}, 12, (UP,)), id="missing-metric-allows-scale-up"
    ),
    pytest.param(
        Case(8, 8, {CPU: 8.0, REQUESTS: None}, 8, (KEEP,)),
        id="missing-metric-with-an-equal-proposal-is-no-hold",
    ),
    pytest.param(Case(5, 5, {CPU: None}, 5, (MISSING,)), id="all-metrics-missing-holds"),
    pytest.param(Case(5, 5, {CPU: 1.0}, 5, (MISSING,), sample_age=600), id="stale-sample-is-missing"),
    pytest.param(Case(5, 0, {CPU: 1.0}, 5, (MISSING,)), id="no-ready-pod-holds"),
    # --- rate limits, rounding and select policies ---------------------------------------------
    pytest.param(
        Case(15, 15, {REQUESTS: 1.0}, 13, (DOWN, LIMITED), behavior=DOWN_10_PERCENT),
        id="percent-scale-down-truncates",
    ),
    pytest.param(
        Case(15, 15, {REQUESTS: 100.0}, 17, (UP, LIMITED), behavior=UP_10_PERCENT),
        id="percent-scale-up-rounds-up",
    ),
    pytest.param(
        Case(10, 10, {REQUESTS: 1.0}, 8, (DOWN, LIMITED), behavior=DOWN_2_PODS),
        id="pods-scale-down-rule",
    ),
    pytest.param(
        Case(8, 8, {REQUESTS: 1.0}, 8, (DOWN, LIMITED), behavior=DOWN_2_PODS, events=((30, -2),)),
        id="scale-down-limit-counts-removals-in-period",
    ),
    pytest.param(Case(10, 10, {REQUESTS: 100.0}, 20, (UP, LIMITED)), id="select-max-up-default"),
    pytest.param(
        Case(10, 10, {REQUESTS: 100.0}, 14, (UP, LIMITED), select=(SelectPolicy.MAX, SelectPolicy.MIN)),
        id="select-min-up",
    ),
    pytest.param(
        Case(4, 4, {REQUESTS: 10.0}, 4, (UP, LIMITED), select=(SelectPolicy.MAX, SelectPolicy.DISABLED)),
        id="select-disabled-up",
    ),
    pytest.param(
        Case(
            10,
            10,
            {REQUESTS: 1.0},
            5,
            (DOWN, LIMITED),
            behavior=HpaBehavior(scale_down_rules=DOWN_HALF_OR_ONE),
        ),
        id="select-max-down-default",
    ),
    pytest.param(
        Case(
            10,
            10,
            {REQUESTS: 1.0},
            9,
            (DOWN, LIMITED),
            behavior=HpaBehavior(scale_down_rules=DOWN_HALF_OR_ONE),
            select=(SelectPolicy.MIN, SelectPolicy.MAX),
        ),
        id="select-min-down",
    ),
    pytest.param(
        Case(
            10,
            10,
            {REQUESTS: 1.0},
            10,
            (DOWN, LIMITED),
            select=(SelectPolicy.DISABLED, SelectPolicy.MAX),
        ),
        id="select-disabled-down",
    ),
    # --- replicas outside the bounds, zero -----------------------------------------------------
    pytest.param(
        Case(2, 2, {REQUESTS: 100.0}, 5, (TO_MIN,), bounds=Bounds(5, 20)),
        id="below-min-goes-straight-to-min",
    ),
    pytest.param(
        Case(2, 2, {REQUESTS: None}, 5, (TO_MIN,), bounds=Bounds(5, 20)),
        id="below-min-needs-no-metrics",
    ),
    pytest.param(
        Case(30, 30, {REQUESTS: 100.0}, 20, (TO_MAX,), bounds=Bounds(1, 20)),
        id="above-max-goes-straight-to-max",
    ),
    pytest.param(
        Case(40, 40, {REQUESTS: 40.0}, 10, (TO_MAX,), bounds=Bounds(1, 10), behavior=DOWN_2_PODS),
        id="above-max-not-rate-limited",
    ),
    pytest.param(Case(0, 0, {REQUESTS: 5.0}, 0, (DISABLED,)), id="zero-replicas-disables-scaling"),
    pytest.param(
        Case(6, 6, {REQUESTS: 12.0}, 8, (UP, TO_MAX), bounds=Bounds(1, 8)), id="scale-up-capped-at-max"
    ),
    pytest.param(
        Case(3, 3, {REQUESTS: 0.1}, 3, (DOWN, TO_MIN), bounds=Bounds(3, 10)),
        id="scale-down-floored-at-min",
    ),
    # --- stabilization -------------------------------------------------------------------------
    pytest.param(
        Case(10, 10, {REQUESTS: 5.0}, 10, (DOWN, STABILIZED), recs=((100, 10),)),
        id="scale-down-held-by-window",
    ),
    pytest.param(
        Case(10, 10, {REQUESTS: 5.0}, 6, (DOWN, STABILIZED), recs=((301, 10), (200, 6))),
        id="scale-down-to-highest-recommendation-in-window",
    ),
    pytest.param(Case(10, 10, {REQUESTS: 5.0}, 5, (DOWN,), recs=((301, 10),)), id="window-expired"),
    pytest.param(
        Case(
            5,
            5,
            {REQUESTS: 10.0},
            5,
            (UP, STABILIZED),
            recs=((30, 5),),
            behavior=HpaBehavior(scale_up_stabilization_s=60.0),
        ),
        id="scale-up-window-takes-the-lowest",
    ),
]


@pytest.mark.parametrize("case", CASES)
def test_the_hpa_rule(case: Case) -> None:
    decision = decide(case)
    assert (decision.replicas, decision.reasons) == (case.want, case.reasons)


@pytest.mark.parametrize(
    ("case", "records"),
    [
        pytest.param(Case(10, 10, {CPU: 8.8}, 9, (DOWN,)), True, id="computed-proposal-recorded"),
        pytest.param(Case(5, 5, {CPU: None}, 5, (MISSING,)), False, id="hold-records-nothing"),
        pytest.param(
            Case(8, 8, {CPU: 2.0, REQUESTS: None}, 8, (MISSING,)),
            False,
            id="blocked-scale-down-records-nothing",
        ),
        pytest.param(
            Case(2, 2, {CPU: 9.0}, 5, (TO_MIN,), bounds=Bounds(5, 20)),
            False,
            id="below-min-records-nothing",
        ),
        pytest.param(Case(0, 0, {CPU: 5.0}, 0, (DISABLED,)), False, id="disabled-records-nothing"),
    ],
)
def test_what_enters_the_window(case: Case, records: bool) -> None:
    decision = decide(case)
    assert decision.records is records
    history = DecisionHistory().after(decision, applied=True, keep_s=600)
    assert len(history.recommendations) == (1 if records else 0)


def test_holds_do_not_stretch_the_scale_down_window() -> None:
    """Ten replicas recommended, then six minutes without metrics: the window of 300 s has nothing
    left in it, so the first computed scale-down goes through at once, as the HPA does."""
    policy = HpaPolicy()
    config = TargetConfig(metrics=(REQUESTS,), bounds=Bounds(1, 100), per_pod={REQUESTS: 1.0})
    target = Target(WorkloadState(REF, spec_replicas=10, ready_replicas=10), config)
    history = DecisionHistory()
    for t in range(0, 390, 15):
        at = NOW + t
        load = LoadSnapshot.of(requests=Sample(10.0, at - 30)) if t == 0 else LoadSnapshot()
        decision = policy.decide(PolicyInputs(target, load, history, at))
        assert decision.replicas == 10
        history = history.after(decision, applied=True, keep_s=policy.memory_s(config))
    at = NOW + 390
    decision = policy.decide(
        PolicyInputs(target, LoadSnapshot.of(requests=Sample(5.0, at - 30)), history, at)
    )
    assert (decision.replicas, decision.reasons) == (5, (DOWN,))


def test_the_count_found_is_the_first_recommendation() -> None:
    """The HPA records the current count when it first sees a target, so a workload found at 10 is not
    scaled down within the window, whatever the load says; after it, the load decides."""
    config = TargetConfig(metrics=(REQUESTS,), bounds=WIDE, per_pod={REQUESTS: 1.0})
    target = Target(WorkloadState(REF, spec_replicas=10, ready_replicas=10), config)
    history = DecisionMemory().get(REF, 10, NOW)
    policy = HpaPolicy()

    def at(t: float) -> Decision:
        load = LoadSnapshot.of(requests=Sample(5.0, t - 30))
        return policy.decide(PolicyInputs(target, load, history, t))

    assert (at(NOW + 15).replicas, at(NOW + 15).reasons) == (10, (DOWN, STABILIZED))
    assert (at(NOW + 301).replicas, at(NOW + 301).reasons) == (5, (DOWN,))
