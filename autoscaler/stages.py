"""The stages of a tick, as ports: what each one is given and gives back, and the errors that cross
between them. `reconcile.reconcile_once` strings them together in one direction:

    reader ─> metrics source ─> forecaster ─> policy ─> actuator (through the scale mode) ─> recorder

A cluster plugs in informers, Prometheus, ARIMA models, the Kubernetes API and Events; the simulator
plugs in a simulated cluster, a trace-backed source and a list of changes. The policy and the tick are
the same in both. Stages are built once and given `now` on every call; none reads another's state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

import pandas as pd

from autoscaler.metrics import MetricKind
from autoscaler.model import Forecasts, HpaInfo, LoadSnapshot, Setpoint, Target, TargetRef
from autoscaler.policy import Decision

__all__ = [
    "NO_HISTORY",
    "ActOutcome",
    "ActuationResult",
    "Actuator",
    "ClusterReader",
    "Forecaster",
    "MetricsSource",
    "MetricsUnavailable",
    "RecordedLoad",
    "Recorder",
    "Rejected",
    "Release",
    "SetAside",
    "Snapshot",
    "Stage",
    "Standing",
    "TickReport",
    "WithoutForecasts",
    "WithoutHistory",
]


class MetricsUnavailable(Exception):
    """The metrics backend could not answer this tick; the policy holds and the next tick retries."""


# --- reader ----------------------------------------------------------------------------------------


class Standing(Enum):
    """Where an opted-in workload stands in a tick."""

    ACTIVE = "active"  # decided for
    REFUSED = "refused"  # its scale mode cannot act on it (mode replicas with an HPA, hpa without)
    INVALID = "invalid"  # annotations that cannot be used
    COOLING_DOWN = "cooling-down"  # left alone for a while after a permission error
    STALE_VIEW = "stale-view"  # held: the watch that covers it is failing or unconfirmed


@dataclass(frozen=True, slots=True)
class SetAside:
    """An opted-in workload that is not decided for this tick, and what to tell its owner."""

    ref: TargetRef
    standing: Standing
    # The Event to report, once while `key` stays the same; no reason, no Event.
    reason: str = ""
    message: str = ""
    key: tuple[str, str] = ("", "")


@dataclass(frozen=True, slots=True)
class Release:
    """A floor we raised on an HPA whose workload is no longer ours in mode hpa (opted out,
    switched mode, or deleted): it goes back to its owner's."""

    ref: TargetRef
    hpa: HpaInfo


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the reader says at the start of a tick. Until it is `synced` the tick acts on nothing: a
    half-filled cache would look like Deployments that lost their HPA."""

    targets: tuple[Target, ...]
    set_aside: tuple[SetAside, ...] = ()
    releases: tuple[Release, ...] = ()
    synced: bool = True


class Stage(Enum):
    """The part of a target's tick that went wrong, when one did."""

    FORECAST = "forecast"
    DECIDE = "decide"
    ACT = "act"
    RECORD = "record"


class ActOutcome(Enum):
    APPLIED = "applied"
    UNCHANGED = "unchanged"
    DRY_RUN = "dry-run"
    CONFLICT = "conflict"
    FORBIDDEN = "forbidden"
    GONE = "gone"
    UNAVAILABLE = "unavailable"
    NOT_LEADER = "not-leader"


@dataclass(frozen=True, slots=True)
class ActuationResult:
    """What the actuator did with a decision (or a release): the outcome, what it set, and the
    server's words where it refused."""

    outcome: ActOutcome
    setpoint: Setpoint | None = None
    error: str | None = None

    @property
    def applied(self) -> bool:
        """The workload now runs as decided (or already did)."""
        return self.outcome in (ActOutcome.APPLIED, ActOutcome.UNCHANGED)


class ClusterReader(Protocol):
    def snapshot(self, now: float) -> Snapshot: ...

    def learn(self, ref: TargetRef, result: ActuationResult, now: float) -> None:
        """What acting on `ref` showed about the cluster (gone, forbidden), for the next snapshot."""
        return None


# --- metrics and forecasts -------------------------------------------------------------------------


class RecordedLoad(Protocol):
    """The history port: a workload's recorded past, from which models are seeded."""

    def recorded(self, ref: TargetRef, kind: MetricKind) -> pd.Series | None:
        """The load of `ref` for `kind` on a regular grid, or None when nothing is recorded."""
        ...

    def pending(self, ref: TargetRef, kind: MetricKind) -> bool:
        """Whether the past of `ref` for `kind` is still to be read (a source reads a large fleet's
        history over several ticks): its model waits for it rather than starting from nothing."""
        ...


class WithoutHistory:
    """A source that keeps no past: models start from the first observation."""

    def recorded(self, ref: TargetRef, kind: MetricKind) -> pd.Series | None:
        return None

    def pending(self, ref: TargetRef, kind: MetricKind) -> bool:
        return False


NO_HISTORY = WithoutHistory()


@dataclass(frozen=True, slots=True)
class Rejected:
    """A series a workload names itself (annotation `key`, as written in `value`) that the backend
    refused to read although the grammar accepts it: the target goes without `kind` this tick."""

    ref: TargetRef
    kind: MetricKind
    key: str
    value: str
    error: str  # the backend's own words, short


class MetricsSource(RecordedLoad, Protocol):
    def observe(self, targets: Sequence[Target], now: float) -> Mapping[TargetRef, LoadSnapshot]:
        """Latest load per target; a target absent from the result has no usable metrics. Raises
        `MetricsUnavailable` when the backend cannot answer."""
        ...

    def rejected(self) -> tuple[Rejected, ...]:
        """The workloads' own series that the latest `observe` could not read because the backend
        rejected them (their targets went without that kind); none for a source whose series are
        all its own."""
        return ()


class Forecaster(Protocol):
    def forecast(
        self, target: Target, load: LoadSnapshot, now: float, past: RecordedLoad = NO_HISTORY
    ) -> Forecasts:
        """Takes this tick's observation of one target in and returns its latest forecasts; none
        for a metric means the policy falls back to reactive scaling there. A model for a target or
        metric seen for the first time starts from `past`. Called once per target and tick, so what
        goes wrong for one target is that target's alone."""
        ...

    def keep_only(self, refs: AbstractSet[TargetRef]) -> None:
        """Forget the models of targets the tick no longer saw."""
        return None


class WithoutForecasts:
    """The forecaster stage of a purely reactive controller, such as the HPA baseline."""

    def forecast(
        self, target: Target, load: LoadSnapshot, now: float, past: RecordedLoad = NO_HISTORY
    ) -> Forecasts:
        return _NO_FORECASTS

    def keep_only(self, refs: AbstractSet[TargetRef]) -> None:
        return None


_NO_FORECASTS = Forecasts()


@dataclass(frozen=True, slots=True)
class TickReport:
    """What a tick did, for telemetry and tests."""

    acted: bool
    decisions: tuple[Decision, ...]
    outcomes: Mapping[TargetRef, ActOutcome]
    metrics_available: bool
    refused: tuple[TargetRef, ...] = ()
    invalid: tuple[TargetRef, ...] = ()
    # Opted-in targets left alone this tick after a permission error.
    cooling: tuple[TargetRef, ...] = ()
    # What the decisions were made from (actual against forecast).
    loads: Mapping[TargetRef, LoadSnapshot] = field(default_factory=dict)
    forecasts: Mapping[TargetRef, Forecasts] = field(default_factory=dict)
    # Targets whose tick broke, and where; they are held as they are.
    failed: Mapping[TargetRef, Stage] = field(default_factory=dict)
    # Opted-in targets held because the view of them may be out of date.
    stale: tuple[TargetRef, ...] = ()
    # Why the metrics backend could not answer this tick (unreachable, rejected, ...), if it could not.
    metrics_error: str = ""
    # Series that workloads name and the metrics backend rejected this tick.
    rejected: tuple[Rejected, ...] = ()

    @classmethod
    def idle(cls) -> TickReport:
        """A tick that acted on nothing (not synced yet, or not the leader)."""
        return cls(False, (), {}, True)


# --- acting and telling ----------------------------------------------------------------------------


class Actuator(Protocol):
    def apply(self, decision: Decision, target: Target) -> ActuationResult:
        """Carry the decision's setpoint out (nothing to do when it is not needed)."""
        ...

    def release(self, release: Release, now: float) -> ActuationResult:
        """Give a raised HPA floor back to its owner."""
        return ActuationResult(ActOutcome.UNCHANGED)


class Recorder(Protocol):
    def record(self, target: Target, decision: Decision, result: ActuationResult) -> None:
        """Tell people what was decided and what became of it."""
        ...

    def set_aside(self, aside: SetAside, now: float) -> None:
        return None

    def failed(self, target: Target, stage: Stage, error: Exception, now: float) -> None:
        """Something broke while deciding, acting or recording for `target`; it is held as it is."""
        return None

    def released(self, release: Release, result: ActuationResult, now: float) -> None:
        return None

    def rejected(self, rejection: Rejected, now: float) -> None:
        """A series the workload names was rejected by the metrics backend; told on every tick it
        lasts, so the recorder decides how often to say it."""
        return None

    def finish(self, report: TickReport) -> None:
        """The tick is over; forget what belongs to workloads it no longer saw."""
        return None
