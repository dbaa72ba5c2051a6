"""`reconcile_once`, the tick shared by the controller and the simulator: a metrics outage makes every
target hold (never scale down blind) and the next tick acts again; a failed actuation is not counted
as a scale event; a target that disappears is forgotten; unchanged targets are not actuated; an
exception while forecasting or acting for one target holds that target only, and is handed to the
recorder; a workload's own series that the backend rejected is handed to the recorder and the report,
and its target is still decided."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from autoscaler.metrics import MetricKind
from autoscaler.model import (
    Bounds,
    Forecasts,
    LoadSnapshot,
    Sample,
    Target,
    TargetConfig,
    TargetRef,
    WorkloadState,
)
from autoscaler.policy import Decision, HpaPolicy, Reason
from autoscaler.reconcile import DecisionMemory, Stages, reconcile_once
from autoscaler.stages import (
    NO_HISTORY,
    ActOutcome,
    ActuationResult,
    Actuator,
    ClusterReader,
    MetricsSource,
    MetricsUnavailable,
    RecordedLoad,
    Recorder,
    Rejected,
    Snapshot,
    Stage,
    WithoutForecasts,
    WithoutHistory,
)

CONFIG = TargetConfig(metrics=(MetricKind.REQUESTS,), bounds=Bounds(1, 50),
                      per_pod={MetricKind.REQUESTS: 10.0})  # fmt: skip
A, B = TargetRef("ns", "a"), TargetRef("ns", "b")


@dataclass
class Cluster(ClusterReader, Actuator):
    replicas: dict[TargetRef, int]
    refuse: bool = False
    patches: list[tuple[TargetRef, int]] = field(default_factory=list)
    # Targets whose patch raises something nobody expected (a bug, say).
    explode: set[TargetRef] = field(default_factory=set)

    def snapshot(self, now: float) -> Snapshot:
        return Snapshot(
            tuple(Target(WorkloadState(ref, n, n), CONFIG) for ref, n in self.replicas.items())
        )

    def apply(self, decision: Decision, target: Target) -> ActuationResult:
        if not decision.changed:
            return ActuationResult(ActOutcome.UNCHANGED)
        self.patches.append((decision.ref, decision.replicas))
        if decision.ref in self.explode:
            raise RuntimeError("boom")
        if self.refuse:
            return ActuationResult(ActOutcome.UNAVAILABLE)
        self.replicas[decision.ref] = decision.replicas
        return ActuationResult(ActOutcome.APPLIED)


@dataclass
class Metrics(WithoutHistory, MetricsSource):
    rps: dict[TargetRef, float]
    down: bool = False
    rejecting: tuple[Rejected, ...] = ()

    def rejected(self) -> tuple[Rejected, ...]:
        return self.rejecting

    def observe(self, targets: Sequence[Target], now: float) -> Mapping[TargetRef, LoadSnapshot]:
        if self.down:
            raise MetricsUnavailable("prometheus unreachable")
        return {ref: LoadSnapshot.of(requests=Sample(v, now - 30)) for ref, v in self.rps.items()}


@dataclass
class Log(Recorder):
    seen: list[tuple[Decision, bool]] = field(default_factory=list)
    failures: list[tuple[TargetRef, Stage, str]] = field(default_factory=list)
    rejections: list[Rejected] = field(default_factory=list)

    def rejected(self, rejection: Rejected, now: float) -> None:
        self.rejections.append(rejection)

    def failed(self, target: Target, stage: Stage, error: Exception, now: float) -> None:
        self.failures.append((target.state.ref, stage, str(error)))

    def record(self, target: Target, decision: Decision, result: ActuationResult) -> None:
        self.seen.append((decision, result.applied))


def make(
    replicas: dict[TargetRef, int], rps: dict[TargetRef, float]
) -> tuple[Stages, Cluster, Metrics, Log]:
    cluster, metrics, log = Cluster(replicas), Metrics(rps), Log()
    stages = Stages(cluster, metrics, WithoutForecasts(), HpaPolicy(), cluster, log)
    return stages, cluster, metrics, log


def test_outage_holds_then_recovers() -> None:
    stages, cluster, metrics, _ = make({A: 10}, {A: 20.0})
    memory = DecisionMemory()
    metrics.down = True
    report = reconcile_once(stages, memory, 1000.0)
    assert not report.metrics_available
    assert report.metrics_error == "prometheus unreachable"
    assert report.decisions[0].reasons == (Reason.METRICS_MISSING,)
    assert report.decisions[0].missing == (MetricKind.REQUESTS,)
    assert report.decisions[0].explain() == "held at 10: metrics-missing (requests)"
    assert cluster.replicas[A] == 10
    assert cluster.patches == []
    metrics.down = False
    # Load would allow 2 pods, but the hold is remembered by the stabilization window.
    reconcile_once(stages, memory, 1015.0)
    assert cluster.replicas[A] == 10
    reconcile_once(stages, memory, 1301.0)
    assert cluster.replicas[A] == 2


def test_failed_actuation_is_not_a_scale_event() -> None:
    stages, cluster, _, log = make({A: 2}, {A: 60.0})
    cluster.refuse = True
    memory = DecisionMemory()
    reconcile_once(stages, memory, 1000.0)
    assert log.seen[-1][1] is False
    assert memory.histories[A].scale_events == ()
    cluster.refuse = False
    reconcile_once(stages, memory, 1015.0)
    assert cluster.replicas[A] == 6
    assert [e.delta for e in memory.histories[A].scale_events] == [4]


def test_unchanged_targets_are_not_patched_and_gone_ones_forgotten() -> None:
    stages, cluster, _, _ = make({A: 2, B: 3}, {A: 20.0, B: 30.0})
    memory = DecisionMemory()
    reconcile_once(stages, memory, 1000.0)
    assert cluster.patches == []
    assert set(memory.histories) == {A, B}
    del cluster.replicas[B]
    reconcile_once(stages, memory, 1015.0)
    assert set(memory.histories) == {A}


def test_one_targets_failure_is_its_own() -> None:
    stages, cluster, _, log = make({A: 2, B: 2}, {A: 60.0, B: 60.0})
    cluster.explode = {A}
    memory = DecisionMemory()
    report = reconcile_once(stages, memory, 1000.0)
    assert report.failed == {A: Stage.ACT}
    assert log.failures == [(A, Stage.ACT, "boom")]
    assert [d.ref for d in report.decisions] == [B]
    assert cluster.replicas == {A: 2, B: 6}
    assert A not in memory.histories, "a tick that broke records nothing"
    cluster.explode = set()
    reconcile_once(stages, memory, 1015.0)
    assert cluster.replicas[A] == 6


@dataclass
class Broken(WithoutForecasts):
    """A forecaster whose model for some targets raises."""

    explode: set[TargetRef] = field(default_factory=set)

    def forecast(
        self, target: Target, load: LoadSnapshot, now: float, past: RecordedLoad = NO_HISTORY
    ) -> Forecasts:
        if target.state.ref in self.explode:
            raise FloatingPointError("overflow in the model")
        return Forecasts()


def test_a_forecaster_failure_for_one_target_holds_that_target_only() -> None:
    stages, cluster, metrics, log = make({A: 2, B: 2}, {A: 60.0, B: 60.0})
    forecaster = Broken({A})
    stages = Stages(cluster, metrics, forecaster, HpaPolicy(), cluster, log)
    memory = DecisionMemory()
    report = reconcile_once(stages, memory, 1000.0)
    assert report.failed == {A: Stage.FORECAST}
    assert log.failures == [(A, Stage.FORECAST, "overflow in the model")]
    assert cluster.replicas == {A: 2, B: 6}
    assert A not in memory.histories
    forecaster.explode = set()
    reconcile_once(stages, memory, 1015.0)
    assert cluster.replicas[A] == 6


def test_a_rejected_series_is_handed_to_the_recorder_and_the_target_still_decided() -> None:
    stages, cluster, metrics, log = make({A: 2, B: 2}, {A: 60.0, B: 60.0})
    key = "predictive-autoscaler.io/requests-metric"
    rejection = Rejected(B, MetricKind.REQUESTS, key, 'x{a=~"b{1001}"}', "invalid repeat count")
    metrics.rejecting = (rejection,)
    memory = DecisionMemory()
    report = reconcile_once(stages, memory, 1000.0)
    assert report.rejected == (rejection,)
    assert log.rejections == [rejection]
    assert cluster.replicas == {A: 6, B: 6}
    metrics.down = True
    report = reconcile_once(stages, memory, 1015.0)
    assert report.rejected == (), "a source that did not answer rejected nothing"
    assert log.rejections == [rejection]
