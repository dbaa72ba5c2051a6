"""Complete, valid objects for seeding: what a manifest author would write, plus the status the
cluster's controllers would have reported."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from tests.fakekube.kinds import rfc3339
from tests.fakekube.store import Obj


def deployment(
    namespace: str,
    name: str,
    *,
    replicas: int,
    labels: Mapping[str, str] | None,
    annotations: Mapping[str, str] | None,
    cpu_request: str | None,
    memory_request: str | None,
    image: str,
    kind: str = "Deployment",
) -> Obj:
    """A pod owner: a Deployment, or a StatefulSet, whose pods are named by the headless Service of
    its own name."""
    pod_labels = {"app": name, **(labels or {})}
    requests = {
        key: value
        for key, value in (("cpu", cpu_request), ("memory", memory_request))
        if value is not None
    }
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "resources": {"requests": requests} if requests else {},
    }
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": dict(pod_labels)}
    if annotations:
        meta["annotations"] = dict(annotations)
    obj: Obj = {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": meta,
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": pod_labels}, "spec": {"containers": [container]}},
        },
    }
    if kind == "StatefulSet":
        obj["spec"]["serviceName"] = name
    return obj


def hpa(
    namespace: str,
    name: str,
    deployment: str,
    *,
    min_replicas: int,
    max_replicas: int,
    cpu_utilization: int,
    current_replicas: int | None,
    target_kind: str = "Deployment",
) -> Obj:
    target = {"type": "Utilization", "averageUtilization": cpu_utilization}
    status: dict[str, Any] = {"desiredReplicas": current_replicas or 0}
    if current_replicas is not None:
        status["currentReplicas"] = current_replicas
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": target_kind, "name": deployment},
            "minReplicas": min_replicas,
            "maxReplicas": max_replicas,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": target}}],
        },
        "status": status,
    }


def pod(
    namespace: str,
    name: str,
    *,
    labels: Mapping[str, str],
    ready: bool,
    created_at: datetime | None,
    ready_at: datetime | None,
    phase: str,
) -> Obj:
    created = created_at or datetime.now(UTC)
    became_ready = ready_at or created
    ready_text = "True" if ready else "False"
    conditions = [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": rfc3339(created)},
        {"type": "Initialized", "status": "True", "lastTransitionTime": rfc3339(created)},
        {"type": "ContainersReady", "status": ready_text, "lastTransitionTime": rfc3339(became_ready)},
        {"type": "Ready", "status": ready_text, "lastTransitionTime": rfc3339(became_ready)},
    ]
    container_name = labels.get("app", "app")
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": dict(labels),
            "creationTimestamp": rfc3339(created),
        },
        "spec": {
            "containers": [{"name": container_name, "image": "registry.local/app:1.0"}],
            "nodeName": "node-1",
        },
        "status": {
            "phase": phase,
            "conditions": conditions,
            "startTime": rfc3339(created),
            "containerStatuses": [
                {
                    "name": container_name,
                    "ready": ready,
                    "restartCount": 0,
                    "started": phase == "Running",
                    "image": "registry.local/app:1.0",
                    "imageID": "",
                    "state": {"running": {"startedAt": rfc3339(created)}}
                    if phase == "Running"
                    else {"waiting": {}},
                }
            ],
        },
    }
