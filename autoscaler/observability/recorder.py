"""The recorder in a cluster: what was decided and what became of it, for people.

Per decision, from the decision and the actuator's result: an Event for a change (`ScaledUp`,
`RaisedHPAFloor`, …), a dry run (`DryRun`: what would be set, told when that changes, not every tick)
or a refusal (`Forbidden`); an Event when the footing changes (predictive, reactive fallback, hold);
one decision log line, whose `outcome` is what became of the decision in the words the actuation
metric counts it by (`applied`, `unchanged`, `dry-run`, …); and the status annotation on the
workload, rewritten only when its substance changes. Workloads set aside get their Event once per
problem, not once per tick, and so does a workload whose tick broke, and one whose own series
selector Prometheus rejects (`InvalidAnnotation`, naming the key and the value, while it lasts).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from autoscaler.kube import Kube, KubeError
from autoscaler.model import Setpoint, Target, TargetRef
from autoscaler.observability.events import EventKind, Events
from autoscaler.patches import STATUS_KEY, annotation_patch
from autoscaler.policy import Decision, Mode
from autoscaler.stages import (
    ActOutcome,
    ActuationResult,
    Rejected,
    Release,
    SetAside,
    Stage,
    TickReport,
)
from autoscaler.workload_status import (
    LastChange,
    StatusError,
    decode_status,
    encode_status,
    forecast_fields,
)

__all__ = ["ClusterRecorder"]

log = logging.getLogger(__name__)

_FOOTING_REASON = {Mode.PREDICTIVE: "Predictive", Mode.REACTIVE: "Reactive", Mode.HOLD: "Holding"}
# Outcomes after which nothing is written on the workload, not even its status.
_NO_STATUS = (ActOutcome.DRY_RUN, ActOutcome.GONE, ActOutcome.FORBIDDEN, ActOutcome.NOT_LEADER)


def _same_status(old: str | None, new: str) -> bool:
    """Equal but for the time and the figures of the moment: rewriting the annotation every tick
    would wake every watcher of the Deployment for nothing."""
    if old is None:
        return False
    try:
        before = json.loads(old)
    except ValueError:
        return False
    after = json.loads(new)
    keys = ("target", "current", "mode", "reasons", "predictive", "reactive", "untrusted", "last")
    return isinstance(before, dict) and all(before.get(k) == after.get(k) for k in keys)


def _last_change(decision: Decision, result: ActuationResult, old: str | None) -> LastChange | None:
    """The change this decision wrote, else the one the status already tells: the status keeps the
    latest change after the Events that told it have expired."""
    setpoint = result.setpoint
    if result.outcome is ActOutcome.APPLIED and setpoint is not None:
        return LastChange(
            decision.at, setpoint.done_reason, setpoint.current, setpoint.wanted, decision.reasons
        )
    if old is None:
        return None
    try:
        return decode_status(old).last
    except StatusError:
        return None


def _footing(decision: Decision) -> tuple[Mode, tuple[str, ...]]:
    """What an Event about a change of footing compares: the mode and the fallback reasons."""
    fallbacks = tuple(r.value for r in decision.reasons if r.value.startswith("fallback"))
    return decision.mode, fallbacks


class ClusterRecorder:
    def __init__(
        self,
        kube: Kube,
        *,
        may_act: Callable[[], bool],
        dry_run: bool = False,
        on_record: Callable[[Target, Decision], None] | None = None,
        owns: Callable[[TargetRef], bool] = lambda ref: True,
    ) -> None:
        """`on_record` hears of every decision recorded, with its target (the telemetry's capacity);
        `owns` says whether this replica holds a workload's shard when its status is written."""
        self._kube = kube
        self._owns = owns
        self._on_record = on_record
        self._events = Events(kube)
        self._may_act = may_act
        self._dry_run = dry_run
        # What was last reported per workload set aside, so that a problem is told once.
        self._reported: dict[TargetRef, tuple[str, str]] = {}
        # Mode and fallback reasons last told per target.
        self._footing: dict[TargetRef, tuple[Mode, tuple[str, ...]]] = {}
        # The value last told per rejected annotation (target, key), while the rejection lasts.
        self._rejected: dict[tuple[TargetRef, str], str] = {}
        # What each dry-run target was last told it would set, while it keeps proposing it.
        self._proposed: dict[TargetRef, Setpoint] = {}

    def record(self, target: Target, decision: Decision, result: ActuationResult) -> None:
        ref = decision.ref
        now = decision.at
        self._reported.pop(ref, None)
        setpoint = result.setpoint
        explained = decision.explain(head=None if setpoint is None else setpoint.head)
        what = "" if setpoint is None else setpoint.describe()
        outcome = result.outcome
        # A real write moves the workload, so the next tick has nothing left to tell; a dry run
        # leaves it where it was and proposes the same again, which is no news. Any other outcome
        # ends the proposal, so proposing it again later is told again, as a write would be.
        proposed = self._proposed.pop(ref, None)
        if outcome is ActOutcome.DRY_RUN and setpoint is not None:
            self._proposed[ref] = setpoint
        if outcome is ActOutcome.APPLIED and setpoint is not None:
            self._events.emit(ref, EventKind.NORMAL, setpoint.done_reason, explained, now)
        elif outcome is ActOutcome.DRY_RUN and setpoint != proposed:
            self._events.emit(ref, EventKind.NORMAL, "DryRun", f"would set {what}: {explained}", now)
        elif outcome is ActOutcome.FORBIDDEN:
            message = f"cannot set {what}: {result.error}"
            self._events.emit(ref, EventKind.WARNING, "Forbidden", message, now)
        elif outcome is ActOutcome.CONFLICT:
            log.info("conflict on %s, retrying next tick: %s", ref, result.error)
        elif outcome is ActOutcome.UNAVAILABLE:
            log.warning("cannot set %s on %s: %s", what, ref, result.error)
        self._log(decision, explained, result)
        if self._on_record is not None:
            self._on_record(target, decision)
        footing = _footing(decision)
        if self._footing.get(ref) != footing:
            self._footing[ref] = footing
            kind = EventKind.WARNING if footing[0] is Mode.HOLD else EventKind.NORMAL
            self._events.emit(ref, kind, _FOOTING_REASON[footing[0]], explained, now)
        dry = self._dry_run or (target.scaling is not None and target.scaling.dry_run)
        if dry or outcome in _NO_STATUS:
            return
        current = None if target.scaling is None else target.scaling.status
        status = encode_status(decision, False, _last_change(decision, result, current))
        if _same_status(current, status) or not (self._may_act() and self._owns(ref)):
            return
        try:
            self._kube.patch(annotation_patch(ref, {STATUS_KEY: status}))
        except KubeError as error:
            log.info("status of %s not written: %s", ref, error)

    def _log(self, decision: Decision, explained: str, result: ActuationResult) -> None:
        log.info(
            "%s: %s",
            decision.ref,
            explained,
            extra={
                "event": "decision",
                "target": str(decision.ref),
                "mode": decision.mode.value,
                "reasons": [r.value for r in decision.reasons],
                "current": decision.current,
                "desired": decision.replicas,
                "outcome": result.outcome.value,
                "reactive": decision.reactive_replicas,
                "predictive": decision.predictive_replicas,
                "forecast": forecast_fields(decision),
            },
        )

    def set_aside(self, aside: SetAside, now: float) -> None:
        if not aside.reason or self._reported.get(aside.ref) == aside.key:
            return
        self._reported[aside.ref] = aside.key
        extra = {"event": aside.reason, "target": str(aside.ref)}
        log.warning("%s: %s", aside.ref, aside.message, extra=extra)
        self._events.emit(aside.ref, EventKind.WARNING, aside.reason, aside.message, now)

    def failed(self, target: Target, stage: Stage, error: Exception, now: float) -> None:
        ref = target.state.ref
        message = (
            f"{stage.value} failed ({type(error).__name__}: {error});"
            f" the {ref.kind.value} is held as it is"
        )
        log.error(
            "%s: %s",
            ref,
            message,
            exc_info=error,
            extra={"event": "target_failed", "target": str(ref), "stage": stage.value},
        )
        key = ("failed-" + stage.value, type(error).__name__)
        if self._reported.get(ref) != key:
            self._reported[ref] = key
            self._events.emit(ref, EventKind.WARNING, "TargetFailed", message, now)

    def released(self, release: Release, result: ActuationResult, now: float) -> None:
        what = "" if result.setpoint is None else result.setpoint.describe()
        if result.outcome is ActOutcome.APPLIED:
            message = f"set {what}: no longer scaled predictively in mode hpa, the owner's floor is back"
            self._events.emit(release.ref, EventKind.NORMAL, "RestoredHPAFloor", message, now)
        elif result.error is not None:
            # Conflict, outage or refusal: the next tick reads the HPA again and retries.
            log.info("cannot restore %s for %s: %s", what, release.ref, result.error)

    def rejected(self, rejection: Rejected, now: float) -> None:
        ref = rejection.ref
        told = (ref, rejection.key)
        if self._rejected.get(told) == rejection.value:
            return
        self._rejected[told] = rejection.value
        message = (
            f"annotation {rejection.key}={rejection.value!r}: rejected by Prometheus"
            f" ({rejection.error}); without its {rejection.kind.value} metric the {ref.kind.value} is"
            " scaled up on its other metrics, never down"
        )
        extra = {"event": "InvalidAnnotation", "target": str(ref), "key": rejection.key}
        log.warning("%s: %s", ref, message, extra=extra)
        self._events.emit(ref, EventKind.WARNING, "InvalidAnnotation", message, now)

    def finish(self, report: TickReport) -> None:
        kept = {d.ref for d in report.decisions} | set(report.cooling)
        for gone in [ref for ref in self._footing if ref not in kept]:
            del self._footing[gone]
        for gone in [ref for ref in self._proposed if ref not in kept]:
            del self._proposed[gone]
        self._forget_rejections(report)

    def _forget_rejections(self, report: TickReport) -> None:
        """A rejection is told again once it has gone away: when a tick that read the metrics of
        its target no longer reports it, or the target is no longer seen at all. A tick without
        metrics, or one that sets the target aside, says nothing about it."""
        if not report.metrics_available:
            return
        lasting = {(r.ref, r.key) for r in report.rejected}
        unread = {*report.refused, *report.invalid, *report.cooling, *report.stale}
        for told in [t for t in self._rejected if t not in lasting and t[0] not in unread]:
            del self._rejected[told]
