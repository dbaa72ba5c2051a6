"""core/v1 Events on the workloads (Deployments, StatefulSets), the way `kubectl describe` shows
them."""

from __future__ import annotations

import logging
from enum import Enum

from autoscaler.kube import JsonObject, Kube, KubeError
from autoscaler.model import TargetRef
from autoscaler.timefmt import iso_utc

__all__ = ["COMPONENT", "EventKind", "Events", "event_body"]

log = logging.getLogger(__name__)
COMPONENT = "predictive-autoscaler"


class EventKind(Enum):
    NORMAL = "Normal"
    WARNING = "Warning"


def event_body(
    ref: TargetRef, kind: EventKind, reason: str, message: str, now: float, serial: int
) -> JsonObject:
    stamp = iso_utc(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{ref.name}.{int(now * 1000):x}{serial:04x}",
            "namespace": ref.namespace,
        },
        "involvedObject": {
            "apiVersion": "apps/v1",
            "kind": ref.kind.value,
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


class Events:
    """Writes Events. An Event that cannot be written is logged and dropped: explaining must never
    stop acting."""

    def __init__(self, kube: Kube) -> None:
        self._kube = kube
        self._serial = 0

    def emit(self, ref: TargetRef, kind: EventKind, reason: str, message: str, now: float) -> None:
        self._serial += 1
        log.info(
            "%s %s: %s",
            ref,
            reason,
            message,
            extra={"event": "k8s_event", "target": str(ref), "reason": reason},
        )
        try:
            self._kube.create_event(
                ref.namespace, event_body(ref, kind, reason, message, now, self._serial)
            )
        except KubeError as error:
            log.warning("could not record event on %s: %s", ref, error)
