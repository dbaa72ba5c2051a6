"""The simulated cluster and what Prometheus would show of it, as the stages `reconcile_once` expects.

`SimCluster` is one Deployment: pods bill from creation and turn ready `startup_delay` later; a change
of the desired count creates or removes pods at once (newest first, which with a fixed start-up delay
is also not-ready first). `SimMetrics` serves the aggregate load a scrape would report: the mean over
the metric window, visible after the lag, and for CPU traces capped at what the ready pods could serve.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence

from autoscaler.metrics import MetricKind
from autoscaler.model import Bounds, LoadSnapshot, Sample, Target, TargetConfig, TargetRef, WorkloadState
from autoscaler.policy import Decision
from autoscaler.simulate.scenario import Scenario
from autoscaler.stages import (
    ActOutcome,
    ActuationResult,
    Actuator,
    ClusterReader,
    MetricsSource,
    Recorder,
    Snapshot,
    Stage,
    WithoutHistory,
)

__all__ = ["SimCluster", "SimMetrics", "SimRecorder", "target_config"]


def target_config(scenario: Scenario) -> TargetConfig:
    """The annotations a user would set to get the scenario's target utilization."""
    bounds = Bounds(scenario.min_replicas, scenario.max_replicas)
    if scenario.kind is MetricKind.CPU:
        return TargetConfig(
            metrics=(MetricKind.CPU,),
            bounds=bounds,
            target_utilization=scenario.target_utilization,
        )
    return TargetConfig(
        metrics=(MetricKind.REQUESTS,),
        bounds=bounds,
        target_utilization=scenario.target_utilization,
        per_pod={MetricKind.REQUESTS: scenario.target_utilization * scenario.capacity},
    )


class SimCluster(ClusterReader, Actuator):
    """One Deployment; `now` is advanced by the engine's manual clock."""

    def __init__(self, ref: TargetRef, scenario: Scenario, initial_replicas: int, start: float):
        self.ref = ref
        self.now = start
        self._delay = scenario.startup_delay_s
        self._config = target_config(scenario)
        # A CPU trace's capacity is what a pod requests, so that utilization is of the request.
        self._requests = {MetricKind.CPU: scenario.capacity} if scenario.kind is MetricKind.CPU else {}
        # Creation times, oldest first; the initial pods are ready at the start.
        self._created: list[float] = [start - self._delay] * initial_replicas
        self._first_new_pod: float | None = None

    @property
    def pods(self) -> int:
        return len(self._created)

    @property
    def ready(self) -> int:
        return bisect_right(self._created, self.now - self._delay)

    def snapshot(self, now: float) -> Snapshot:
        first = self._first_new_pod
        state = WorkloadState(
            ref=self.ref,
            spec_replicas=len(self._created),
            ready_replicas=self.ready,
            pod_requests=self._requests,
            # Known once a pod this run created has turned ready, as a controller would see it.
            measured_startup_s=(
                float(self._delay) if first is not None and self.now >= first + self._delay else None
            ),
        )
        return Snapshot((Target(state, self._config),))

    def apply(self, decision: Decision, target: Target) -> ActuationResult:
        wanted = decision.replicas
        have = len(self._created)
        if wanted > have:
            self._created.extend([self.now] * (wanted - have))
            if self._first_new_pod is None:
                self._first_new_pod = self.now
        elif wanted < have:
            del self._created[wanted:]
        return ActuationResult(ActOutcome.APPLIED if wanted != have else ActOutcome.UNCHANGED)


class SimMetrics(WithoutHistory, MetricsSource):
    """Aggregate load as a scrape would show it at the engine's current step.

    `signal` is filled by the engine step by step: the demand itself for request-rate traces (counted at
    the load balancer, never capped), the load actually served for CPU traces (a saturated pod cannot
    use more CPU than it has).
    """

    def __init__(self, ref: TargetRef, scenario: Scenario, signal: list[float]):
        self._ref = ref
        self._kind = scenario.kind
        self._window = scenario.metric_window_s // scenario.step_s
        self._lag = scenario.metric_lag_s // scenario.step_s
        self._lag_s = float(scenario.metric_lag_s)
        self._window_s = float(scenario.metric_window_s)
        self._signal = signal
        self.step = 0
        self._seen: tuple[int, float | None] = (-1, None)

    def latest(self) -> float | None:
        """Mean of the signal over the window that ended `lag` ago. The signal is linear between
        steps, so the trapezoid rule over the window's end points is its exact mean."""
        if self._seen[0] == self.step:
            return self._seen[1]
        end = self.step - self._lag + 1
        begin = end - self._window - 1
        value = None
        if begin >= 0:
            signal = self._signal
            inner = sum(signal[begin + 1 : end - 1])
            value = (inner + 0.5 * (signal[begin] + signal[end - 1])) / self._window
        # The engine reads it for the timeline and the tick reads it again: compute once per step.
        self._seen = (self.step, value)
        return value

    def observe(self, targets: Sequence[Target], now: float) -> Mapping[TargetRef, LoadSnapshot]:
        value = self.latest()
        if value is None:
            return {}
        sample = Sample(value, now - self._lag_s, self._window_s)
        return {self._ref: LoadSnapshot({self._kind: sample})}


class SimRecorder(Recorder):
    """Keeps the decisions that changed the replica count, for reports and the timeline."""

    def __init__(self) -> None:
        self.changes: list[Decision] = []

    def record(self, target: Target, decision: Decision, result: ActuationResult) -> None:
        if decision.changed and result.applied:
            self.changes.append(decision)

    def failed(self, target: Target, stage: Stage, error: Exception, now: float) -> None:
        # A simulation reports figures, not Events: an error there is a bug to see, not to hold on.
        raise error
