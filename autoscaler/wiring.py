"""Builds the stages of a controller once, and the `Controller` that runs them: `reconcile_once` on
every tick while this replica may act, and says what kept the metrics source from giving the tick
its data (`autoscaler.observability.problems`).

Everything that must survive from tick to tick lives in the stages (what was reported, cool-downs,
models, caches) and in the decision memory kept here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from autoscaler.actuation.actuator import ClusterActuator
from autoscaler.actuation.shards import OwnedReader
from autoscaler.kube import Kube
from autoscaler.metrics import MetricKind
from autoscaler.model import LoadSnapshot, Target, TargetRef
from autoscaler.observability.problems import MetricsCause, MetricsProblem, MetricsProblemLog
from autoscaler.observability.recorder import ClusterRecorder
from autoscaler.policy import Decision, Policy
from autoscaler.reconcile import DecisionMemory, Stages, reconcile_once
from autoscaler.sources.cluster import ClusterObjects, ClusterReader
from autoscaler.sources.prometheus import (
    PrometheusRejected,
    PrometheusTimeout,
    PrometheusUnreachable,
)
from autoscaler.stages import (
    Forecaster,
    MetricsSource,
    MetricsUnavailable,
    Rejected,
    TickReport,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Controller", "cluster_stages", "metrics_problems"]


def cluster_stages(
    kube: Kube,
    objects: ClusterObjects,
    source: MetricsSource,
    forecaster: Forecaster,
    policy: Policy,
    *,
    dry_run: bool = False,
    may_act: Callable[[], bool] = lambda: True,
    on_record: Callable[[Target, Decision], None] | None = None,
    owns: Callable[[TargetRef], bool] | None = None,
) -> Stages:
    """The stages of a controller in a cluster: `objects` (informers) read, Prometheus (or any
    source) measures, the Kubernetes API is written to. `on_record` hears of every decision
    recorded (the telemetry's capacity series). `owns`: whether this replica holds a workload's
    shard (`autoscaler.actuation.shards`); the tick sees only those, and writes only while it does."""
    reader = ClusterReader(objects)
    held = owns if owns is not None else (lambda ref: True)
    return Stages(
        reader=reader if owns is None else OwnedReader(reader, owns),
        source=source,
        forecaster=forecaster,
        policy=policy,
        actuator=ClusterActuator(kube, may_act=may_act, dry_run=dry_run, owns=held),
        recorder=ClusterRecorder(kube, may_act=may_act, dry_run=dry_run, on_record=on_record, owns=held),
    )


class _Watched:
    """The metrics source, keeping the error of its latest `observe` for the cause it names: the
    tick keeps only its words."""

    def __init__(self, source: MetricsSource) -> None:
        self.source = source
        self.failure: MetricsUnavailable | None = None

    def observe(self, targets: Sequence[Target], now: float) -> Mapping[TargetRef, LoadSnapshot]:
        self.failure = None
        try:
            return self.source.observe(targets, now)
        except MetricsUnavailable as error:
            self.failure = error
            raise

    def rejected(self) -> tuple[Rejected, ...]:
        return self.source.rejected()

    def recorded(self, ref: TargetRef, kind: MetricKind) -> pd.Series | None:
        return self.source.recorded(ref, kind)

    def pending(self, ref: TargetRef, kind: MetricKind) -> bool:
        return self.source.pending(ref, kind)


def _failure_cause(error: MetricsUnavailable) -> MetricsCause:
    """The cause of a whole tick's failure, by the class the transport raised (its words are its
    own and may change)."""
    if isinstance(error, PrometheusUnreachable):
        return MetricsCause.UNREACHABLE
    if isinstance(error, PrometheusTimeout):
        return MetricsCause.TIMEOUT
    if isinstance(error, PrometheusRejected):
        return MetricsCause.REJECTED
    return MetricsCause.SERVER_ERROR


def _listed(items: Sequence[str], most: int = 5) -> str:
    shown = ", ".join(items[:most])
    return shown if len(items) <= most else f"{shown} and {len(items) - most} more"


def metrics_problems(
    report: TickReport, failure: MetricsUnavailable | None
) -> tuple[MetricsProblem, ...]:
    """What kept the metrics source from giving this tick its data, one problem per cause: the
    whole tick's failure, or else the series workloads name that Prometheus rejected and the
    targets' metrics without a usable sample."""
    if not report.metrics_available:
        error: MetricsUnavailable = failure or MetricsUnavailable(report.metrics_error)
        cause = _failure_cause(error)
        detail = str(error) or type(error).__name__
        key: tuple[str, ...] = (type(error).__name__,)
        if isinstance(error, PrometheusRejected):
            which = "the credentials" if error.status in (401, 403) else "a built-in metric's query"
            detail = f"{which} (HTTP {error.status}): {error.detail}"
            key = (str(error.status), error.detail)
        return (MetricsProblem(cause, detail, key, debug=str(error), whole_tick=True),)
    problems = []
    rejected = {(r.ref, r.kind) for r in report.rejected}
    if report.rejected:
        named = [_rejected_text(r) for r in report.rejected]
        problems.append(
            MetricsProblem(
                MetricsCause.REJECTED,
                f"the series {len(named)} workload(s) name: {_listed(named)}",
                tuple(sorted(f"{r.ref} {r.key}" for r in report.rejected)),
                debug="; ".join(f"{r.ref} {r.key}={r.value!r}" for r in report.rejected),
            )
        )
    missing = []
    for decision in report.decisions:
        kinds = [k.value for k in decision.missing if (decision.ref, k) not in rejected]
        if kinds:
            missing.append(f"{decision.ref} ({', '.join(kinds)})")
    if missing:
        detail = f"no usable sample for {len(missing)} of {len(report.decisions)} target(s): "
        problems.append(
            MetricsProblem(MetricsCause.NO_DATA, detail + _listed(missing), tuple(sorted(missing)))
        )
    return tuple(problems)


def _rejected_text(rejection: Rejected) -> str:
    return f"{rejection.ref} {rejection.kind.value} ({rejection.key}: {rejection.error})"


class Controller:
    def __init__(
        self,
        stages: Stages,
        *,
        may_act: Callable[[], bool] = lambda: True,
        on_problem: Callable[[MetricsCause], None] | None = None,
    ) -> None:
        """`on_problem` hears once per tick of each cause that kept the tick from its data (the
        telemetry's counter)."""
        self._watched = _Watched(stages.source)
        self._stages = replace(stages, source=self._watched)
        self._may_act = may_act
        self._memory = DecisionMemory()
        self.problems = MetricsProblemLog(on_problem)

    def tick(self, now: float) -> TickReport:
        if not self._may_act():
            # A follower keeps no opinions: when it leads it starts from what the cluster says.
            self._memory.keep_only(set())
            return TickReport.idle()
        report = reconcile_once(self._stages, self._memory, now)
        if report.acted:  # a tick that read nothing says nothing of Prometheus
            self.problems.tick(metrics_problems(report, self._watched.failure), now)
        return report
