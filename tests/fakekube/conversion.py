"""Conversion between a served version and the shape objects are stored in.

HPAs are stored as autoscaling/v2 and also served as autoscaling/v1; Events are stored as core/v1
and also served as events.k8s.io/v1 — one object, visible through both APIs, as on a real cluster.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from tests.fakekube.resources import HPA_STORAGE, Resource, storage_version
from tests.fakekube.store import Obj

# Where autoscaling/v1 keeps the v2 metrics it has no field for, so a v1 round trip loses nothing.
HPA_METRICS_ANNOTATION = "autoscaling.alpha.kubernetes.io/metrics"

# core/v1 Event field -> events.k8s.io/v1 Event field
_EVENT_RENAMES = {
    "involvedObject": "regarding",
    "message": "note",
    "reportingComponent": "reportingController",
    "source": "deprecatedSource",
    "firstTimestamp": "deprecatedFirstTimestamp",
    "lastTimestamp": "deprecatedLastTimestamp",
    "count": "deprecatedCount",
}
_EVENT_SHARED = (
    "metadata",
    "reason",
    "type",
    "action",
    "related",
    "reportingInstance",
    "eventTime",
    "series",
)


def to_stored(resource: Resource, obj: Obj) -> Obj:
    stored = storage_version(resource.storage)
    if resource.storage == HPA_STORAGE and resource.version == "v1":
        obj = _hpa_v1_to_v2(obj)
    elif resource.storage == "events" and resource.group == "events.k8s.io":
        obj = _rename(obj, {new: old for old, new in _EVENT_RENAMES.items()})
    else:
        obj = copy.deepcopy(obj)
    obj["apiVersion"], obj["kind"] = stored.api_version, stored.kind
    return obj


def to_served(resource: Resource, obj: Obj) -> Obj:
    if resource.storage == HPA_STORAGE and resource.version == "v1":
        obj = _hpa_v2_to_v1(obj)
    elif resource.storage == "events" and resource.group == "events.k8s.io":
        obj = _rename(obj, _EVENT_RENAMES)
        obj.setdefault("eventTime", None)  # a non-omitempty MicroTime: the real server sends null
    else:
        obj = copy.deepcopy(obj)
    obj["apiVersion"], obj["kind"] = resource.api_version, resource.kind
    return obj


def _rename(obj: Obj, renames: dict[str, str]) -> Obj:
    out: Obj = {}
    for key, value in obj.items():
        if key in renames:
            out[renames[key]] = copy.deepcopy(value)
        elif key in _EVENT_SHARED or key in renames.values():
            out[key] = copy.deepcopy(value)
    return out


def _is_cpu_utilization(metric: dict[str, Any]) -> bool:
    resource = metric.get("resource") or {}
    target = resource.get("target") or {}
    return (
        metric.get("type") == "Resource"
        and resource.get("name") == "cpu"
        and target.get("type") == "Utilization"
    )


def _hpa_v2_to_v1(obj: Obj) -> Obj:
    out = copy.deepcopy({k: v for k, v in obj.items() if k in ("metadata",)})
    spec = obj.get("spec") or {}
    v1_spec = {
        k: copy.deepcopy(spec[k]) for k in ("scaleTargetRef", "minReplicas", "maxReplicas") if k in spec
    }
    others = []
    for metric in spec.get("metrics") or []:
        if _is_cpu_utilization(metric) and "targetCPUUtilizationPercentage" not in v1_spec:
            v1_spec["targetCPUUtilizationPercentage"] = metric["resource"]["target"].get(
                "averageUtilization"
            )
        else:
            others.append(metric)
    if others:
        annotations = out.setdefault("metadata", {}).setdefault("annotations", {})
        annotations[HPA_METRICS_ANNOTATION] = json.dumps(others)
    out["spec"] = v1_spec
    status = obj.get("status") or {}
    v1_status: dict[str, Any] = {
        "currentReplicas": status.get("currentReplicas", 0),
        "desiredReplicas": status.get("desiredReplicas", 0),
    }
    for key in ("lastScaleTime", "observedGeneration"):
        if key in status:
            v1_status[key] = status[key]
    for metric in status.get("currentMetrics") or []:
        resource = metric.get("resource") or {}
        if metric.get("type") == "Resource" and resource.get("name") == "cpu":
            utilization = (resource.get("current") or {}).get("averageUtilization")
            if utilization is not None:
                v1_status["currentCPUUtilizationPercentage"] = utilization
    out["status"] = v1_status
    return out


def _hpa_v1_to_v2(obj: Obj) -> Obj:
    out = copy.deepcopy({k: v for k, v in obj.items() if k in ("metadata",)})
    annotations = (out.get("metadata") or {}).get("annotations") or {}
    others = json.loads(annotations.pop(HPA_METRICS_ANNOTATION, "[]"))
    spec = obj.get("spec") or {}
    v2_spec = {
        k: copy.deepcopy(spec[k]) for k in ("scaleTargetRef", "minReplicas", "maxReplicas") if k in spec
    }
    metrics = []
    if spec.get("targetCPUUtilizationPercentage") is not None:
        target = {"type": "Utilization", "averageUtilization": spec["targetCPUUtilizationPercentage"]}
        metrics.append({"type": "Resource", "resource": {"name": "cpu", "target": target}})
    metrics += others
    if metrics:
        v2_spec["metrics"] = metrics
    out["spec"] = v2_spec
    status = obj.get("status") or {}
    v2_status = {
        k: status[k]
        for k in ("currentReplicas", "desiredReplicas", "lastScaleTime", "observedGeneration")
        if k in status
    }
    if status.get("currentCPUUtilizationPercentage") is not None:
        current = {"averageUtilization": status["currentCPUUtilizationPercentage"]}
        v2_status["currentMetrics"] = [
            {"type": "Resource", "resource": {"name": "cpu", "current": current}}
        ]
    out["status"] = v2_status
    return out
