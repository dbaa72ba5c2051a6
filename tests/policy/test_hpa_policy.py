"""The HPA decision (autoscaler/v2 semantics) on hand-built inputs.

Covers: no change within the tolerance; scale-up limited by the default behavior policies (percent and
pods, counted from the replicas the period started with); scale-down held by the stabilization window
and released after it; min/max clamps; hold when metrics are
missing or stale; a missing metric blocks scale-down; the largest proposal across metrics wins; the
one-line explanation. The Kubernetes rules case by case (readiness, tolerances, rounding, select
policies, bounds, what is recorded) are in `test_hpa_fidelity.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from autoscaler.metrics import MetricKind
from autoscaler.model import Bounds, LoadSnapshot, Sample, Target, TargetConfig, TargetRef, WorkloadState
from autoscaler.policy import Decision, DecisionHistory, HpaPolicy, PolicyInputs, Reason
from autoscaler.policy.decision import Recommendation, ScaleEvent

NOW = 1_000_000.0
REF = TargetRef("shop", "web")
DEFAULT_BOUNDS = Bounds(1, 100)


@dataclass(frozen=True)
class Case:
    spec: int
    ready: int
    load: float | None  # requests/s; per-pod target is 1.0
    want: int
    reasons: tuple[Reason, ...]
    bounds: Bounds = DEFAULT_BOUNDS
    recs: tuple[tuple[float, int], ...] = ()  # (seconds ago, replicas)
    events: tuple[tuple[float, int], ...] = ()  # (seconds ago, delta)
    sample_age: float = 30.0


def decide(case: Case) -> tuple[int, tuple[Reason, ...]]:
    config = TargetConfig(
        metrics=(MetricKind.REQUESTS,), bounds=case.bounds, per_pod={MetricKind.REQUESTS: 1.0}
    )
    state = WorkloadState(REF, spec_replicas=case.spec, ready_replicas=case.ready)
    load = (
        LoadSnapshot()
        if case.load is None
        else LoadSnapshot.of(requests=Sample(case.load, NOW - case.sample_age))
    )
    history = DecisionHistory(
        tuple(Recommendation(NOW - ago, n) for ago, n in case.recs),
        tuple(ScaleEvent(NOW - ago, d) for ago, d in case.events),
    )
    decision = HpaPolicy().decide(PolicyInputs(Target(state, config), load, history, NOW))
    return decision.replicas, decision.reasons


CASES = [
    pytest.param(Case(4, 4, 4.3, 4, (Reason.WITHIN_TOLERANCE,)), id="within-tolerance-no-change"),
    pytest.param(Case(4, 4, 3.7, 4, (Reason.WITHIN_TOLERANCE,)), id="within-tolerance-below"),
    pytest.param(Case(4, 4, 6.0, 6, (Reason.SCALE_UP,)), id="plain-scale-up"),
    pytest.param(
        Case(10, 10, 100.0, 20, (Reason.SCALE_UP, Reason.RATE_LIMITED)),
        id="scale-up-limited-by-percent-policy",
    ),
    pytest.param(
        Case(2, 2, 50.0, 6, (Reason.SCALE_UP, Reason.RATE_LIMITED)),
        id="scale-up-limited-by-pods-policy",
    ),
    pytest.param(
        Case(20, 20, 100.0, 20, (Reason.SCALE_UP, Reason.RATE_LIMITED), events=((10, 10),)),
        id="scale-up-limit-counts-changes-in-period",
    ),
    pytest.param(
        Case(20, 20, 100.0, 40, (Reason.SCALE_UP, Reason.RATE_LIMITED), events=((15, 10),)),
        id="event-one-period-old-no-longer-counts",
    ),
    pytest.param(
        Case(10, 10, 5.0, 10, (Reason.SCALE_DOWN, Reason.HELD_BY_STABILIZATION), recs=((100, 10),)),
        id="scale-down-held-by-stabilization-window",
    ),
    pytest.param(
        Case(
            10, 10, 5.0, 6, (Reason.SCALE_DOWN, Reason.HELD_BY_STABILIZATION), recs=((301, 10), (200, 6))
        ),
        id="scale-down-to-highest-recommendation-in-window",
    ),
    pytest.param(
        Case(10, 10, 5.0, 5, (Reason.SCALE_DOWN,), recs=((301, 10),)),
        id="scale-down-after-window-expires",
    ),
    pytest.param(
        Case(3, 3, 0.1, 3, (Reason.SCALE_DOWN, Reason.CLAMPED_TO_MIN), bounds=Bounds(3, 10)),
        id="clamped-to-min",
    ),
    pytest.param(
        Case(6, 6, 12.0, 8, (Reason.SCALE_UP, Reason.CLAMPED_TO_MAX), bounds=Bounds(1, 8)),
        id="clamped-to-max",
    ),
    pytest.param(Case(5, 5, None, 5, (Reason.METRICS_MISSING,)), id="metrics-missing-holds"),
    pytest.param(
        Case(5, 5, 1.0, 5, (Reason.METRICS_MISSING,), sample_age=600),
        id="stale-metrics-hold",
    ),
    pytest.param(Case(5, 0, 1.0, 5, (Reason.METRICS_MISSING,)), id="no-ready-pods-holds"),
]


@pytest.mark.parametrize("case", CASES)
def test_hpa_decision(case: Case) -> None:
    assert decide(case) == (case.want, case.reasons)


def _two_metric(cpu_cores: float, rps: float | None) -> Decision:
    """8 ready pods of 1 core at 50 % and 10 requests/s each, on the loads given."""
    config = TargetConfig(
        metrics=(MetricKind.CPU, MetricKind.REQUESTS),
        bounds=Bounds(1, 100),
        target_utilization=0.5,
        per_pod={MetricKind.REQUESTS: 10.0},
    )
    state = WorkloadState(REF, spec_replicas=8, ready_replicas=8, pod_requests={MetricKind.CPU: 1.0})
    load = LoadSnapshot.of(
        cpu=Sample(cpu_cores, NOW - 30),
        requests=None if rps is None else Sample(rps, NOW - 30),
    )
    return HpaPolicy().decide(PolicyInputs(Target(state, config), load, DecisionHistory(), NOW))


@pytest.mark.parametrize(
    ("cpu", "rps", "want"),
    [
        pytest.param(6.0, 80.0, (12, (Reason.SCALE_UP,)), id="cpu-wins"),
        pytest.param(2.0, 150.0, (15, (Reason.SCALE_UP,)), id="requests-win"),
        pytest.param(2.0, None, (8, (Reason.METRICS_MISSING,)), id="missing-metric-blocks-down"),
        pytest.param(8.0, None, (16, (Reason.SCALE_UP,)), id="missing-metric-allows-up"),
    ],
)
def test_largest_proposal_across_metrics(
    cpu: float, rps: float | None, want: tuple[int, tuple[Reason, ...]]
) -> None:
    d = _two_metric(cpu, rps)
    assert (d.replicas, d.reasons) == want


def test_a_hold_on_a_missing_metric_names_it() -> None:
    d = _two_metric(2.0, None)
    assert d.missing == (MetricKind.REQUESTS,)
    assert d.explain() == "held at 8: metrics-missing (requests); cpu load 2 at 0.5/pod, proposal 8"


def test_explanation_names_change_reason_and_load() -> None:
    config = TargetConfig(
        metrics=(MetricKind.REQUESTS,), bounds=Bounds(1, 50), per_pod={MetricKind.REQUESTS: 2.0}
    )
    state = WorkloadState(REF, spec_replicas=4, ready_replicas=4)
    load = LoadSnapshot.of(requests=Sample(14.0, NOW - 30))
    d = HpaPolicy().decide(PolicyInputs(Target(state, config), load, DecisionHistory(), NOW))
    assert d.explain() == "scaled 4→7: scale-up; requests load 14 at 2/pod, proposal 7"


def test_history_stays_bounded() -> None:
    policy = HpaPolicy()
    config = TargetConfig(
        metrics=(MetricKind.REQUESTS,), bounds=Bounds(1, 50), per_pod={MetricKind.REQUESTS: 1.0}
    )
    history = DecisionHistory()
    replicas = 4
    for tick in range(1000):
        now = NOW + 15 * tick
        load = 4.0 + 3.0 * (tick % 7)
        state = WorkloadState(REF, spec_replicas=replicas, ready_replicas=replicas)
        inputs = PolicyInputs(
            Target(state, config), LoadSnapshot.of(requests=Sample(load, now - 30)), history, now
        )
        decision = policy.decide(inputs)
        history = history.after(decision, applied=True, keep_s=policy.memory_s(config))
        replicas = decision.replicas
    # 300 s of 15 s ticks, and nothing older.
    assert len(history.recommendations) == 20
    assert all(r.at > now - 300 for r in history.recommendations)
