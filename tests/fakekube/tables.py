"""`meta.k8s.io/v1` Tables, the server-side printing `kubectl get` asks for.

Without them kubectl falls back to NAME and AGE only, so the columns here follow the real server's
printers for the kinds the controller touches."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from tests.fakekube.resources import Resource
from tests.fakekube.selectors import selector_string
from tests.fakekube.store import Obj

Column = tuple[str, str, int, Callable[[Obj], Any]]  # name, type, priority, cell


def wants_table(accept: str) -> bool:
    return any("as=Table" in part and "g=meta.k8s.io" in part for part in accept.split(","))


def human_age(created: str | None, now: datetime | None = None) -> str:
    """The age format of `kubectl get` (duration.HumanDuration)."""
    if not created:
        return "<unknown>"
    try:
        then = datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "<unknown>"
    seconds = int(((now or datetime.now(UTC)) - then).total_seconds())
    if seconds < -1:
        return "<invalid>"
    seconds = max(seconds, 0)
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    years = days // 365
    if years < 8:
        return f"{years}y{days % 365}d" if days % 365 else f"{years}y"
    return f"{years}y"


def _name(obj: Obj) -> Any:
    return obj["metadata"]["name"]


def _age(obj: Obj) -> Any:
    return human_age(obj["metadata"].get("creationTimestamp"))


def _spec(obj: Obj) -> dict[str, Any]:
    return obj.get("spec") or {}


def _status(obj: Obj) -> dict[str, Any]:
    return obj.get("status") or {}


def _containers(obj: Obj) -> list[dict[str, Any]]:
    return list(((_spec(obj).get("template") or {}).get("spec") or {}).get("containers") or [])


def _selector(obj: Obj) -> str:
    return selector_string(_spec(obj).get("selector")) or "<none>"


def _hpa_reference(obj: Obj) -> str:
    ref = _spec(obj).get("scaleTargetRef") or {}
    return f"{ref.get('kind', '')}/{ref.get('name', '')}"


def _hpa_targets(obj: Obj) -> str:
    current = {
        (m.get("resource") or {}).get("name"): ((m.get("resource") or {}).get("current") or {})
        for m in _status(obj).get("currentMetrics") or []
        if m.get("type") == "Resource"
    }
    shown = []
    for metric in _spec(obj).get("metrics") or []:
        resource = metric.get("resource") or {}
        target = resource.get("target") or {}
        if metric.get("type") == "Resource" and target.get("type") == "Utilization":
            now = current.get(resource.get("name"), {}).get("averageUtilization")
            now_text = f"{now}%" if now is not None else "<unknown>"
            shown.append(f"{resource.get('name')}: {now_text}/{target.get('averageUtilization')}%")
        else:
            shown.append(f"{metric.get('type', '')}: <unknown>")
    if "targetCPUUtilizationPercentage" in _spec(obj):  # autoscaling/v1
        now = _status(obj).get("currentCPUUtilizationPercentage")
        now_text = f"{now}%" if now is not None else "<unknown>"
        shown.append(f"cpu: {now_text}/{_spec(obj)['targetCPUUtilizationPercentage']}%")
    return ", ".join(shown) or "<none>"


def _pod_ready(obj: Obj) -> str:
    statuses = _status(obj).get("containerStatuses") or []
    total = len(_spec(obj).get("containers") or [])
    return f"{sum(1 for s in statuses if s.get('ready'))}/{total}"


def _pod_restarts(obj: Obj) -> int:
    return sum(int(s.get("restartCount", 0)) for s in _status(obj).get("containerStatuses") or [])


def _event_object(obj: Obj) -> str:
    ref = obj.get("involvedObject") or obj.get("regarding") or {}
    return f"{str(ref.get('kind', '')).lower()}/{ref.get('name', '')}"


def _event_last_seen(obj: Obj) -> str:
    stamp = obj.get("lastTimestamp") or obj.get("deprecatedLastTimestamp") or obj.get("eventTime")
    if isinstance(stamp, str) and "." in stamp:
        stamp = stamp.split(".")[0] + "Z"
    return human_age(stamp if isinstance(stamp, str) else obj["metadata"].get("creationTimestamp"))


COLUMNS: dict[str, list[Column]] = {
    "deployments": [
        ("Name", "string", 0, _name),
        (
            "Ready",
            "string",
            0,
            lambda o: f"{_status(o).get('readyReplicas', 0)}/{_spec(o).get('replicas', 1)}",
        ),
        ("Up-to-date", "integer", 0, lambda o: _status(o).get("updatedReplicas", 0)),
        ("Available", "integer", 0, lambda o: _status(o).get("availableReplicas", 0)),
        ("Age", "string", 0, _age),
        ("Containers", "string", 1, lambda o: ",".join(c.get("name", "") for c in _containers(o))),
        ("Images", "string", 1, lambda o: ",".join(c.get("image", "") for c in _containers(o))),
        ("Selector", "string", 1, _selector),
    ],
    "statefulsets": [
        ("Name", "string", 0, _name),
        (
            "Ready",
            "string",
            0,
            lambda o: f"{_status(o).get('readyReplicas', 0)}/{_spec(o).get('replicas', 1)}",
        ),
        ("Age", "string", 0, _age),
        ("Containers", "string", 1, lambda o: ",".join(c.get("name", "") for c in _containers(o))),
        ("Images", "string", 1, lambda o: ",".join(c.get("image", "") for c in _containers(o))),
    ],
    "horizontalpodautoscalers": [
        ("Name", "string", 0, _name),
        ("Reference", "string", 0, _hpa_reference),
        ("Targets", "string", 0, _hpa_targets),
        ("MinPods", "string", 0, lambda o: _spec(o).get("minReplicas", 1)),
        ("MaxPods", "integer", 0, lambda o: _spec(o).get("maxReplicas", 0)),
        ("Replicas", "integer", 0, lambda o: _status(o).get("currentReplicas", 0)),
        ("Age", "string", 0, _age),
    ],
    "pods": [
        ("Name", "string", 0, _name),
        ("Ready", "string", 0, _pod_ready),
        ("Status", "string", 0, lambda o: _status(o).get("phase", "Unknown")),
        ("Restarts", "string", 0, _pod_restarts),
        ("Age", "string", 0, _age),
        ("IP", "string", 1, lambda o: _status(o).get("podIP", "<none>")),
        ("Node", "string", 1, lambda o: _spec(o).get("nodeName", "<none>")),
    ],
    "leases": [
        ("Name", "string", 0, _name),
        ("Holder", "string", 0, lambda o: _spec(o).get("holderIdentity", "")),
        ("Age", "string", 0, _age),
    ],
    "namespaces": [
        ("Name", "string", 0, _name),
        ("Status", "string", 0, lambda o: _status(o).get("phase", "")),
        ("Age", "string", 0, _age),
    ],
    "events": [
        ("Last Seen", "string", 0, _event_last_seen),
        ("Type", "string", 0, lambda o: o.get("type", "")),
        ("Reason", "string", 0, lambda o: o.get("reason", "")),
        ("Object", "string", 0, _event_object),
        ("Message", "string", 0, lambda o: o.get("message", o.get("note", ""))),
    ],
}
GENERIC: list[Column] = [("Name", "string", 0, _name), ("Age", "string", 0, _age)]


def table(resource: Resource, objects: list[Obj], resource_version: int, include_object: str) -> Obj:
    columns = COLUMNS.get(resource.plural, GENERIC)
    rows = []
    for obj in objects:
        row: Obj = {"cells": [cell(obj) for _, _, _, cell in columns]}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            }
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": str(resource_version)},
        "columnDefinitions": [
            {
                "name": name,
                "type": kind,
                "format": "name" if name == "Name" else "",
                "description": name,
                "priority": priority,
            }
            for name, kind, priority, _ in columns
        ],
        "rows": rows,
    }
