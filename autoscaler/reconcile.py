"""One tick of the controller, the same in a cluster and in the simulator.

For every opted-in workload: read its state and config, fetch its load, decide, act, record. The stages
are protocols so that the simulator plugs in a trace-backed source and a simulated cluster while the
policy and this loop stay exactly what runs in production.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from autoscaler.model import Forecasts, LoadSnapshot, Target, TargetRef
from autoscaler.policy import Decision, DecisionHistory, Policy, PolicyInputs

__all__ = [
    "Actuator",
    "ClusterReader",
    "DecisionMemory",
    "Forecaster",
    "MetricsSource",
    "MetricsUnavailable",
    "Recorder",
    "Stages",
    "TickReport",
    "WithoutForecasts",
    "reconcile_once",
]


class MetricsUnavailable(Exception):
    """The metrics backend could not answer this tick; the policy holds and the next tick retries."""


class ClusterReader(Protocol):
    def targets(self) -> Sequence[Target]: ...


class MetricsSource(Protocol):
    def observe(self, targets: Sequence[Target], now: float) -> Mapping[TargetRef, LoadSnapshot]:
        """Latest load per target; a target absent from the result has no usable metrics."""
        ...


class Forecaster(Protocol):
    def forecasts(
        self, targets: Sequence[Target], loads: Mapping[TargetRef, LoadSnapshot], now: float
    ) -> Mapping[TargetRef, Forecasts]:
        """Takes this tick's observations in and returns the latest forecast per target; a target
        absent from the result has none (the policy then falls back to reactive scaling)."""
        ...


class WithoutForecasts:
    """The forecaster stage of a purely reactive controller, such as the HPA baseline."""

    def forecasts(
        self, targets: Sequence[Target], loads: Mapping[TargetRef, LoadSnapshot], now: float
    ) -> Mapping[TargetRef, Forecasts]:
        return {}


class Actuator(Protocol):
    def apply(self, decision: Decision) -> bool:
        """Carry the decision out (a no-op when nothing changes); True when the workload now runs
        as decided (or already did)."""
        ...


class Recorder(Protocol):
    def record(self, decision: Decision, applied: bool) -> None: ...


@dataclass(frozen=True, slots=True)
class Stages:
    reader: ClusterReader
    source: MetricsSource
    forecaster: Forecaster
    policy: Policy
    actuator: Actuator
    recorder: Recorder


@dataclass(slots=True)
class DecisionMemory:
    """Decision history per target, carried from tick to tick; forgotten with the target."""

    histories: dict[TargetRef, DecisionHistory] = field(default_factory=dict)

    def get(self, ref: TargetRef) -> DecisionHistory:
        return self.histories.get(ref) or _EMPTY

    def keep_only(self, refs: set[TargetRef]) -> None:
        for gone in [ref for ref in self.histories if ref not in refs]:
            del self.histories[gone]


_EMPTY = DecisionHistory()
_NO_LOAD = LoadSnapshot()
_NO_FORECASTS = Forecasts()


@dataclass(frozen=True, slots=True)
class TickReport:
    decisions: tuple[Decision, ...]
    metrics_available: bool
    # What the decisions were made from, kept for the observability stage (actual against forecast).
    loads: Mapping[TargetRef, LoadSnapshot] = field(default_factory=dict)
    forecasts: Mapping[TargetRef, Forecasts] = field(default_factory=dict)


def reconcile_once(stages: Stages, memory: DecisionMemory, now: float) -> TickReport:
    targets = stages.reader.targets()
    try:
        loads = stages.source.observe(targets, now)
        available = True
    except MetricsUnavailable:
        loads = {}
        available = False
    forecasts = stages.forecaster.forecasts(targets, loads, now)
    decisions: list[Decision] = []
    for target in targets:
        ref = target.state.ref
        history = memory.get(ref)
        inputs = PolicyInputs(
            target, loads.get(ref, _NO_LOAD), history, now, forecasts.get(ref, _NO_FORECASTS)
        )
        decision = stages.policy.decide(inputs)
        # Called on every decision: an actuator may have more to move than the replica count (the
        # floor of an HPA), and knows itself when there is nothing to do.
        applied = stages.actuator.apply(decision)
        memory.histories[ref] = history.after(
            decision,
            applied=applied,
            keep_s=stages.policy.memory_s(target.config),
            load=inputs.load,
        )
        stages.recorder.record(decision, applied)
        decisions.append(decision)
    if len(memory.histories) > len(targets):
        memory.keep_only({t.state.ref for t in targets})
    return TickReport(tuple(decisions), available, loads, forecasts)
