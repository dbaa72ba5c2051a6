"""One tick in a cluster: the reader's snapshot, the checks that only a cluster needs (annotations
that cannot be used, a Deployment an HPA already scales in `replicas` mode, a permission error that
must cool down), then `reconcile_once` on what is left, exactly as the simulator runs it.

Everything that must survive from tick to tick lives here: decision histories, what was already
reported (so an Event is written once per problem, not once per tick), and cool-downs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from autoscaler.actuator import ActOutcome, ClusterActuator, EventKind, Events
from autoscaler.cluster import ORIGINAL_MIN_KEY, ClusterSnapshot, ManagedTarget
from autoscaler.config import ScaleMode
from autoscaler.kube import Kube, KubeError
from autoscaler.model import Forecasts, LoadSnapshot, Target, TargetRef
from autoscaler.policy import Decision, Mode, Policy
from autoscaler.reconcile import (
    DecisionMemory,
    Forecaster,
    MetricsSource,
    Stages,
    TickReport,
    reconcile_once,
)

__all__ = ["Controller", "TickSummary"]

log = logging.getLogger(__name__)

# After a 403 a target is left alone this long: RBAC is fixed by a person, not by retrying.
FORBIDDEN_COOLDOWN_S = 300.0


class _Fixed:
    """The reader stage of a tick: the targets this tick's snapshot allows to act on."""

    def __init__(self, targets: Sequence[Target]) -> None:
        self._targets = targets

    def targets(self) -> Sequence[Target]:
        return self._targets


@dataclass(frozen=True, slots=True)
class TickSummary:
    acted: bool
    decisions: tuple[Decision, ...]
    outcomes: Mapping[TargetRef, ActOutcome]
    metrics_available: bool
    refused: tuple[TargetRef, ...]
    invalid: tuple[TargetRef, ...]
    # Opted-in targets left alone this tick after a permission error.
    cooling: tuple[TargetRef, ...] = ()
    loads: Mapping[TargetRef, LoadSnapshot] = field(default_factory=dict)
    forecasts: Mapping[TargetRef, Forecasts] = field(default_factory=dict)


_IDLE = TickSummary(False, (), {}, True, (), ())


class Controller:
    def __init__(
        self,
        kube: Kube,
        snapshot: Callable[[float], ClusterSnapshot],
        forget: Callable[[TargetRef], None],
        source: MetricsSource,
        forecaster: Forecaster,
        policy: Policy,
        *,
        dry_run: bool = False,
        may_act: Callable[[], bool] = lambda: True,
    ) -> None:
        self._kube = kube
        self._snapshot = snapshot
        self._forget = forget
        self._source = source
        self._forecaster = forecaster
        self._policy = policy
        self._dry_run = dry_run
        self._may_act = may_act
        self._events = Events(kube)
        self._memory = DecisionMemory()
        self._reported: dict[TargetRef, tuple[str, str]] = {}
        self._cooldown: dict[TargetRef, float] = {}
        self._footing: dict[TargetRef, tuple[Mode, tuple[str, ...]]] = {}

    def tick(self, now: float) -> TickSummary:
        if not self._may_act():
            # A follower keeps no opinions: when it leads it starts from what the cluster says.
            self._memory.keep_only(set())
            return _IDLE
        snapshot = self._snapshot(now)
        if not snapshot.synced:
            return _IDLE
        invalid = self._report_problems(snapshot, now)
        self._restore_stranded(snapshot, now)
        eligible: list[ManagedTarget] = []
        refused: list[TargetRef] = []
        cooling: list[TargetRef] = []
        for managed in snapshot.targets:
            ref = managed.target.state.ref
            if managed.settings.mode is ScaleMode.REPLICAS and managed.hpa is not None:
                self._report_once(
                    ref,
                    ("refused", managed.hpa.name),
                    EventKind.WARNING,
                    "RefusedHPAConflict",
                    f"HPA {managed.hpa.name} already scales this Deployment; mode replicas would fight "
                    f"it: set predictive-autoscaler.io/mode to hpa to move its floor instead",
                    now,
                )
                refused.append(ref)
                continue
            if managed.settings.mode is ScaleMode.HPA and managed.hpa is None:
                self._report_once(
                    ref,
                    ("no-hpa", ""),
                    EventKind.WARNING,
                    "NoHPA",
                    "mode hpa needs an HPA that targets this Deployment; none was found",
                    now,
                )
                refused.append(ref)
                continue
            if self._cooldown.get(ref, -1.0) > now:
                cooling.append(ref)
                continue
            self._reported.pop(ref, None)
            eligible.append(managed)

        by_ref = {m.target.state.ref: m for m in eligible}
        actuator = ClusterActuator(
            kube=self._kube,
            events=self._events,
            targets=by_ref,
            may_act=self._may_act,
            now=now,
            dry_run_all=self._dry_run,
            footing=self._footing,
        )
        stages = Stages(
            _Fixed([m.target for m in eligible]),
            self._source,
            self._forecaster,
            self._policy,
            actuator,
            actuator,
        )
        report: TickReport = reconcile_once(stages, self._memory, now)
        for ref, outcome in actuator.outcomes.items():
            if outcome is ActOutcome.FORBIDDEN:
                self._cooldown[ref] = now + FORBIDDEN_COOLDOWN_S
            elif outcome is ActOutcome.GONE:
                self._forget(ref)
        live = set(by_ref)
        for table in (self._footing, self._cooldown):
            for gone in [ref for ref in table if ref not in live and not self._cooling(ref, now)]:
                del table[gone]
        return TickSummary(
            True,
            report.decisions,
            dict(actuator.outcomes),
            report.metrics_available,
            tuple(refused),
            invalid,
            tuple(cooling),
            report.loads,
            report.forecasts,
        )

    def _restore_stranded(self, snapshot: ClusterSnapshot, now: float) -> None:
        """Give back the floors of HPAs whose Deployment left mode hpa (or was deleted): the owner's
        floor, kept in the HPA's annotation, is theirs again."""
        if self._dry_run:
            return
        for ref, hpa in snapshot.stranded:
            what = f"HPA {hpa.name} minReplicas {hpa.min_replicas}→{hpa.original_min}"
            try:
                self._kube.patch_hpa(
                    hpa.namespace,
                    hpa.name,
                    hpa.resource_version,
                    hpa.original_min,
                    {ORIGINAL_MIN_KEY: None},
                )
            except KubeError as error:
                # Conflict, outage or refusal: the next tick reads the HPA again and retries.
                log.info("cannot restore %s for %s: %s", what, ref, error)
                continue
            self._events.emit(
                ref,
                EventKind.NORMAL,
                "RestoredHPAFloor",
                f"set {what}: no longer scaled predictively in mode hpa, the owner's floor is back",
                now,
            )

    def _cooling(self, ref: TargetRef, now: float) -> bool:
        return self._cooldown.get(ref, -1.0) > now

    def _report_problems(self, snapshot: ClusterSnapshot, now: float) -> tuple[TargetRef, ...]:
        for problem in snapshot.problems:
            error = problem.error
            self._report_once(
                problem.ref,
                (error.key, error.value),
                EventKind.WARNING,
                "InvalidAnnotation",
                f"{error}; the Deployment is left as it is",
                now,
            )
        return tuple(p.ref for p in snapshot.problems)

    def _report_once(
        self,
        ref: TargetRef,
        key: tuple[str, str],
        kind: EventKind,
        reason: str,
        message: str,
        now: float,
    ) -> None:
        if self._reported.get(ref) == key:
            return
        self._reported[ref] = key
        log.warning("%s: %s", ref, message, extra={"event": reason, "target": str(ref)})
        self._events.emit(ref, kind, reason, message, now)
