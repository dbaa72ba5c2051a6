"""Turning decisions into changes in the cluster, and telling people about them.

Mode `replicas` patches the Deployment's `scale` subresource, only when the target changes. Mode
`hpa` moves the HPA's `minReplicas` (see `policy/floor.py`), remembering the owner's floor in an
annotation on the HPA and restoring it, annotation removed, when the forecast falls. Dry-run
computes and explains everything (Events, logs) and writes nothing to the workload or its HPA.

Failures map to what helps: a conflict is retried on the next tick; a permission error is reported
with an Event and not retried for a while (a loop of 403s helps nobody); a workload that is gone is
forgotten; an unavailable API server leaves everything as it was.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum

from autoscaler.cluster import ORIGINAL_MIN_KEY, ManagedTarget
from autoscaler.config import STATUS_KEY, ScaleMode
from autoscaler.kube import Conflict, Forbidden, Gone, Kube, KubeError
from autoscaler.model import TargetRef
from autoscaler.policy import Decision, Mode
from autoscaler.policy.floor import hpa_floor

__all__ = ["ActOutcome", "ClusterActuator", "EventKind", "Events", "status_json"]

log = logging.getLogger(__name__)
COMPONENT = "predictive-autoscaler"


class EventKind(Enum):
    NORMAL = "Normal"
    WARNING = "Warning"


def _stamp(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Events:
    """core/v1 Events on Deployments, the way `kubectl describe` shows them. An Event that cannot
    be written is logged and dropped: explaining must never stop acting."""

    def __init__(self, kube: Kube) -> None:
        self._kube = kube
        self._serial = 0

    def emit(self, ref: TargetRef, kind: EventKind, reason: str, message: str, now: float) -> None:
        self._serial += 1
        stamp = _stamp(now)
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{ref.name}.{int(now * 1000):x}{self._serial:04x}",
                "namespace": ref.namespace,
            },
            "involvedObject": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "namespace": ref.namespace,
                "name": ref.name,
            },
            "reason": reason,
            "message": message[:1024],
            "type": kind.value,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": COMPONENT,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        log.info(
            "%s %s: %s",
            ref,
            reason,
            message,
            extra={"event": "k8s_event", "target": str(ref), "reason": reason},
        )
        try:
            self._kube.create_event(ref.namespace, event)
        except KubeError as error:
            log.warning("could not record event on %s: %s", ref, error)


def _forecast_fields(decision: Decision) -> dict[str, object] | None:
    """The forecast a decision rested on, for the status annotation and the decision log."""
    if decision.forecast_metric is None or decision.forecast_peak is None:
        return None
    return {
        "metric": decision.forecast_metric.value,
        "peak": round(decision.forecast_peak, 6),
        "level": decision.forecast_level,
        # The load the recent rise reaches by the end of the lead, where that drove the replicas.
        "risingTo": None if decision.trend_load is None else round(decision.trend_load, 6),
        "leadSeconds": decision.lead_s,
    }


def status_json(decision: Decision, dry_run: bool) -> str:
    """The last decision, as the status annotation holds it."""
    forecast = _forecast_fields(decision)
    return json.dumps(
        {
            "target": decision.replicas,
            "current": decision.current,
            "mode": decision.mode.value,
            "reasons": [r.value for r in decision.reasons],
            "reactive": decision.reactive_replicas,
            "predictive": decision.predictive_replicas,
            "forecast": forecast,
            "dryRun": dry_run,
            "time": _stamp(decision.at),
            "message": decision.explain(),
        },
        separators=(",", ":"),
        sort_keys=True,
    )


class ActOutcome(Enum):
    APPLIED = "applied"
    UNCHANGED = "unchanged"
    DRY_RUN = "dry-run"
    CONFLICT = "conflict"
    FORBIDDEN = "forbidden"
    GONE = "gone"
    UNAVAILABLE = "unavailable"
    NOT_LEADER = "not-leader"


@dataclass(slots=True)
class ClusterActuator:
    """The actuator and recorder stages of one tick in a cluster."""

    kube: Kube
    events: Events
    targets: Mapping[TargetRef, ManagedTarget]
    may_act: Callable[[], bool]
    now: float
    dry_run_all: bool = False
    # Mode and fallback reasons last reported per target, carried across ticks by the controller.
    footing: dict[TargetRef, tuple[Mode, tuple[str, ...]]] = field(default_factory=dict)
    outcomes: dict[TargetRef, ActOutcome] = field(default_factory=dict)

    def _dry(self, managed: ManagedTarget) -> bool:
        return self.dry_run_all or managed.settings.dry_run

    def _explain(self, decision: Decision, managed: ManagedTarget) -> str:
        """The decision in one line; in mode hpa it says what happens to the floor, since the HPA,
        not us, sets the replicas."""
        hpa = managed.hpa
        if managed.settings.mode is not ScaleMode.HPA or hpa is None:
            return decision.explain()
        floor = hpa_floor(decision, hpa.original_min, hpa.min_replicas, hpa.max_replicas)
        moved = f"{hpa.min_replicas}→{floor}" if floor != hpa.min_replicas else f"held at {floor}"
        return decision.explain(head=f"HPA {hpa.name} floor {moved}")

    def apply(self, decision: Decision) -> bool:
        managed = self.targets[decision.ref]
        outcome = self._act(decision, managed)
        self.outcomes[decision.ref] = outcome
        return outcome in (ActOutcome.APPLIED, ActOutcome.UNCHANGED)

    def _act(self, decision: Decision, managed: ManagedTarget) -> ActOutcome:
        ref = decision.ref
        if managed.settings.mode is ScaleMode.HPA and managed.hpa is not None:
            hpa = managed.hpa
            floor = hpa_floor(decision, hpa.original_min, hpa.min_replicas, hpa.max_replicas)
            if floor == hpa.min_replicas and (floor != hpa.original_min or not hpa.raised):
                return ActOutcome.UNCHANGED
            what = f"HPA {hpa.name} minReplicas {hpa.min_replicas}→{floor}"
        else:
            if not decision.changed:
                return ActOutcome.UNCHANGED
            floor = decision.replicas
            what = f"replicas {decision.current}→{decision.replicas}"
        if self._dry(managed):
            self.events.emit(
                ref,
                EventKind.NORMAL,
                "DryRun",
                f"would set {what}: {self._explain(decision, managed)}",
                self.now,
            )
            return ActOutcome.DRY_RUN
        if not self.may_act():
            return ActOutcome.NOT_LEADER
        try:
            if managed.settings.mode is ScaleMode.HPA and managed.hpa is not None:
                hpa = managed.hpa
                restoring = floor == hpa.original_min
                self.kube.patch_hpa(
                    hpa.namespace,
                    hpa.name,
                    hpa.resource_version,
                    floor,
                    {ORIGINAL_MIN_KEY: None if restoring else str(hpa.original_min)},
                )
                reason = (
                    "RestoredHPAFloor"
                    if restoring
                    else "RaisedHPAFloor"
                    if floor > hpa.min_replicas
                    else "LoweredHPAFloor"
                )
            else:
                self.kube.scale(ref.namespace, ref.name, floor)
                reason = "ScaledUp" if decision.replicas > decision.current else "ScaledDown"
        except Conflict as error:
            log.info("conflict on %s, retrying next tick: %s", ref, error)
            return ActOutcome.CONFLICT
        except Forbidden as error:
            self.events.emit(
                ref, EventKind.WARNING, "Forbidden", f"cannot set {what}: {error}", self.now
            )
            return ActOutcome.FORBIDDEN
        except Gone:
            return ActOutcome.GONE
        except KubeError as error:
            log.warning("cannot set %s on %s: %s", what, ref, error)
            return ActOutcome.UNAVAILABLE
        self.events.emit(ref, EventKind.NORMAL, reason, self._explain(decision, managed), self.now)
        return ActOutcome.APPLIED

    def record(self, decision: Decision, applied: bool) -> None:
        managed = self.targets[decision.ref]
        log.info(
            "%s: %s",
            decision.ref,
            self._explain(decision, managed),
            extra={
                "event": "decision",
                "target": str(decision.ref),
                "mode": decision.mode.value,
                "reasons": [r.value for r in decision.reasons],
                "current": decision.current,
                "desired": decision.replicas,
                "applied": applied,
                "reactive": decision.reactive_replicas,
                "predictive": decision.predictive_replicas,
                "forecast": _forecast_fields(decision),
            },
        )
        footing = mode_summary(decision)
        if self.footing.get(decision.ref) != footing:
            self.footing[decision.ref] = footing
            kind = EventKind.WARNING if footing[0] is Mode.HOLD else EventKind.NORMAL
            reason = {Mode.PREDICTIVE: "Predictive", Mode.REACTIVE: "Reactive", Mode.HOLD: "Holding"}
            message = self._explain(decision, managed)
            self.events.emit(decision.ref, kind, reason[footing[0]], message, self.now)
        if self._dry(managed) or self.outcomes.get(decision.ref) in (
            ActOutcome.GONE,
            ActOutcome.FORBIDDEN,
            ActOutcome.NOT_LEADER,
        ):
            return
        status = status_json(decision, dry_run=False)
        if _same_status(managed.status_annotation, status) or not self.may_act():
            return
        try:
            self.kube.annotate_deployment(
                decision.ref.namespace, decision.ref.name, {STATUS_KEY: status}
            )
        except KubeError as error:
            log.info("status of %s not written: %s", decision.ref, error)


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
    keys = ("target", "current", "mode", "reasons", "predictive", "reactive")
    return isinstance(before, dict) and all(before.get(k) == after.get(k) for k in keys)


def mode_summary(decision: Decision) -> tuple[Mode, tuple[str, ...]]:
    """What an Event about a change of footing compares: the mode and the fallback reasons."""
    fallbacks = tuple(r.value for r in decision.reasons if r.value.startswith("fallback"))
    return decision.mode, fallbacks
