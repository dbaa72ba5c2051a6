"""What the real API server does per kind: defaulting, status handling, validation, and the
status a deployment or statefulset controller would write."""

from __future__ import annotations

import copy
import json
import math
import re
from datetime import UTC, datetime
from typing import Any

from tests.fakekube import errors
from tests.fakekube.resources import HPA_STORAGE, Resource
from tests.fakekube.selectors import selector_matches, selector_string
from tests.fakekube.store import Obj

DEPLOYMENTS = "deployments.apps"
STATEFULSETS = "statefulsets.apps"
# The kinds with replicas, a `scale` subresource and a controller that writes their status.
WORKLOADS = {DEPLOYMENTS, STATEFULSETS}

# Kinds whose main endpoint ignores status (it changes only through /status), as on a real server.
HAS_STATUS_SUBRESOURCE = {DEPLOYMENTS, STATEFULSETS, HPA_STORAGE, "pods", "namespaces"}
TRACKS_GENERATION = {DEPLOYMENTS, STATEFULSETS, HPA_STORAGE}
# What an update of a StatefulSet's spec may change (the real strategy's message names them).
_STATEFULSET_MUTABLE = (
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
)
_STATEFULSET_FORBIDDEN = (
    "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
    "'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"
)
# Their strategies refuse a PUT without metadata.resourceVersion, so a lock cannot be stolen blindly.
REQUIRES_RESOURCE_VERSION_ON_UPDATE = {"leases.coordination.k8s.io"}
_OMITTED_WHEN_EMPTY = ("labels", "annotations", "finalizers", "ownerReferences")

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN_HELP = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character"
)
_LABEL_HELP = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character"
)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def initial_status(storage: str) -> dict[str, Any] | None:
    if storage == HPA_STORAGE:
        # desiredReplicas is not omitempty in autoscaling/v2, so a fresh HPA carries it as 0.
        return {"desiredReplicas": 0}
    if storage == "pods":
        return {"phase": "Pending", "qosClass": "BestEffort"}
    if storage == "namespaces":
        return {"phase": "Active"}
    if storage == DEPLOYMENTS:
        return {}
    if storage == STATEFULSETS:
        # Unlike a Deployment's, these two counts are not omitempty: a fresh object shows them as 0.
        return {"replicas": 0, "availableReplicas": 0}
    return None


def apply_defaults(storage: str, obj: Obj) -> None:
    meta = obj.get("metadata") or {}
    for key in _OMITTED_WHEN_EMPTY:
        if key in meta and not meta[key]:
            del meta[key]  # omitempty maps and slices: an emptied one vanishes from the JSON
    spec = obj.get("spec")
    if storage == DEPLOYMENTS and isinstance(spec, dict):
        if spec.get("replicas") is None:
            spec["replicas"] = 1
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        spec.setdefault(
            "strategy",
            {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
        )
        pod_spec = (spec.get("template") or {}).get("spec")
        if isinstance(pod_spec, dict):
            _pod_spec_defaults(pod_spec)
    elif storage == STATEFULSETS and isinstance(spec, dict):
        if spec.get("replicas") is None:
            spec["replicas"] = 1
        spec.setdefault("podManagementPolicy", "OrderedReady")
        spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault(
            "persistentVolumeClaimRetentionPolicy", {"whenDeleted": "Retain", "whenScaled": "Retain"}
        )
        pod_spec = (spec.get("template") or {}).get("spec")
        if isinstance(pod_spec, dict):
            _pod_spec_defaults(pod_spec)
    elif storage == HPA_STORAGE and isinstance(spec, dict):
        if spec.get("minReplicas") is None:
            spec["minReplicas"] = 1
        if not spec.get("metrics"):
            target = {"type": "Utilization", "averageUtilization": 80}
            spec["metrics"] = [{"type": "Resource", "resource": {"name": "cpu", "target": target}}]
    elif storage == "pods" and isinstance(spec, dict):
        _pod_spec_defaults(spec)
    elif storage == "namespaces":
        obj.setdefault("spec", {"finalizers": ["kubernetes"]})
        obj.setdefault("status", {"phase": "Active"})
        labels = obj.setdefault("metadata", {}).setdefault("labels", {})
        labels.setdefault("kubernetes.io/metadata.name", obj["metadata"].get("name", ""))


def _pod_spec_defaults(pod_spec: dict[str, Any]) -> None:
    pod_spec.setdefault("restartPolicy", "Always")
    pod_spec.setdefault("terminationGracePeriodSeconds", 30)
    pod_spec.setdefault("dnsPolicy", "ClusterFirst")
    pod_spec.setdefault("schedulerName", "default-scheduler")
    for container in pod_spec.get("containers") or []:
        if isinstance(container, dict):
            container.setdefault("imagePullPolicy", "IfNotPresent")
            container.setdefault("terminationMessagePath", "/dev/termination-log")
            container.setdefault("terminationMessagePolicy", "File")


def _require_int(path: str, value: Any, kind: str) -> None:
    # A wrongly typed field fails decoding in the real server, before validation: 400, not 422.
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        got = type(value).__name__
        raise errors.bad_request(
            f"json: cannot unmarshal {got} into Go struct field {kind}.{path} of type int32"
        )


def validate(resource: Resource, obj: Obj, old: Obj | None) -> None:
    """Raise 400 for undecodable fields and 422 Invalid with field causes, as the real server does."""
    meta = obj.get("metadata") or {}
    name = meta.get("name", "")
    causes: list[tuple[str, Any, str]] = []
    if resource.storage == "namespaces":
        if not _LABEL.match(name) or len(name) > 63:
            causes.append(("metadata.name", name, _LABEL_HELP))
    elif not _SUBDOMAIN.match(name) or len(name) > 253:
        causes.append(("metadata.name", name, _SUBDOMAIN_HELP))
    spec = obj.get("spec") or {}
    if resource.storage == DEPLOYMENTS:
        _require_int("spec.replicas", spec.get("replicas"), "DeploymentSpec")
        causes += _deployment_causes(spec, (old or {}).get("spec"))
    elif resource.storage == STATEFULSETS:
        _require_int("spec.replicas", spec.get("replicas"), "StatefulSetSpec")
        causes += _pod_owner_causes("statefulset", spec)
    elif resource.storage == HPA_STORAGE:
        _require_int("spec.minReplicas", spec.get("minReplicas"), "HorizontalPodAutoscalerSpec")
        _require_int("spec.maxReplicas", spec.get("maxReplicas"), "HorizontalPodAutoscalerSpec")
        causes += _hpa_causes(spec)
    elif resource.storage == "leases.coordination.k8s.io":
        duration = spec.get("leaseDurationSeconds")
        _require_int("spec.leaseDurationSeconds", duration, "LeaseSpec")
        if duration is not None and duration <= 0:
            causes.append(("spec.leaseDurationSeconds", duration, "must be greater than 0"))
    elif resource.storage == "pods" and not spec.get("containers"):
        causes.append(("spec.containers", [], "Required value"))
    if causes:
        raise errors.invalid(resource.group, resource.kind, name, causes)
    if resource.storage == STATEFULSETS and old is not None:
        old_spec = old.get("spec") or {}
        frozen = {k: v for k, v in spec.items() if k not in _STATEFULSET_MUTABLE}
        if frozen != {k: v for k, v in old_spec.items() if k not in _STATEFULSET_MUTABLE}:
            raise errors.forbidden_field(
                resource.group, resource.kind, name, "spec", _STATEFULSET_FORBIDDEN
            )


def _pod_owner_causes(kind: str, spec: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """What a Deployment and a StatefulSet validate alike: replicas, selector, pod template."""
    causes: list[tuple[str, Any, str]] = []
    replicas = spec.get("replicas", 1)
    if replicas < 0:
        causes.append(("spec.replicas", replicas, "must be greater than or equal to 0"))
    selector = spec.get("selector")
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    if not selector or not selector_string(selector):
        causes.append(("spec.selector", selector, f"empty selector is invalid for {kind}"))
    elif not selector_matches(selector, labels):
        causes.append(
            ("spec.template.metadata.labels", labels, "`selector` does not match template `labels`")
        )
    if not (template.get("spec") or {}).get("containers"):
        causes.append(("spec.template.spec.containers", [], "Required value"))
    return causes


def _deployment_causes(
    spec: dict[str, Any], old_spec: dict[str, Any] | None
) -> list[tuple[str, Any, str]]:
    causes = _pod_owner_causes("deployment", spec)
    if old_spec is not None and old_spec.get("selector") != spec.get("selector"):
        causes.append(("spec.selector", spec.get("selector"), "field is immutable"))
    return causes


def _hpa_causes(spec: dict[str, Any]) -> list[tuple[str, Any, str]]:
    causes: list[tuple[str, Any, str]] = []
    low, high = spec.get("minReplicas", 1), spec.get("maxReplicas")
    if high is None or high < 1:
        causes.append(("spec.maxReplicas", high, "must be greater than or equal to 1"))
    elif low < 1:
        causes.append(("spec.minReplicas", low, "must be greater than or equal to 1"))
    elif high < low:
        causes.append(("spec.maxReplicas", high, "must be greater than or equal to `minReplicas`"))
    ref = spec.get("scaleTargetRef") or {}
    if not ref.get("kind") or not ref.get("name"):
        causes.append(("spec.scaleTargetRef", ref, "kind and name are required"))
    return causes


def validate_scale(name: str, scale: Obj) -> int:
    replicas = (scale.get("spec") or {}).get("replicas", 0)  # omitempty: absent means 0
    _require_int("spec.replicas", replicas, "ScaleSpec")
    if replicas < 0:
        raise errors.invalid(
            "autoscaling",
            "Scale",
            name,
            [("spec.replicas", replicas, "must be greater than or equal to 0")],
        )
    return int(replicas)


def scale_of(workload: Obj) -> Obj:
    """The `scale` subresource of a Deployment or a StatefulSet."""
    meta = workload["metadata"]
    spec = workload.get("spec") or {}
    replicas = spec.get("replicas", 1)
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
        },
        # ScaleSpec.replicas is omitempty, so a workload scaled to zero shows an empty spec.
        "spec": {"replicas": replicas} if replicas else {},
        "status": {
            "replicas": (workload.get("status") or {}).get("replicas", 0),
            "selector": selector_string(spec.get("selector")),
        },
    }


def _max_unavailable(spec: dict[str, Any], replicas: int) -> int:
    value = ((spec.get("strategy") or {}).get("rollingUpdate") or {}).get("maxUnavailable", "25%")
    if isinstance(value, str) and value.endswith("%"):
        return math.floor(int(value[:-1]) * replicas / 100)
    return int(value)


def deployment_status(deployment: Obj, ready: int, now: datetime) -> dict[str, Any]:
    """The status the deployment controller settles on once `ready` pods of the wanted ones are ready."""
    spec = deployment.get("spec") or {}
    name = deployment["metadata"]["name"]
    wanted = spec.get("replicas", 1)
    ready = max(0, min(ready, wanted))
    old = deployment.get("status") or {}
    counts = {
        "replicas": wanted,
        "updatedReplicas": wanted,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "unavailableReplicas": wanted - ready,
    }
    # The replica counts are omitempty int32s: zero is absent from the real server's JSON.
    status: dict[str, Any] = {"observedGeneration": deployment["metadata"].get("generation", 1)}
    status.update({key: value for key, value in counts.items() if value})
    available = ready >= wanted - _max_unavailable(spec, wanted)
    replica_set = f'ReplicaSet "{name}-{_hash(name)}"'
    wanted_conditions = [
        (
            "Available",
            "True" if available else "False",
            "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
            "Deployment has minimum availability."
            if available
            else "Deployment does not have minimum availability.",
        ),
        (
            "Progressing",
            "True",
            "NewReplicaSetAvailable" if ready == wanted else "ReplicaSetUpdated",
            f"{replica_set} has successfully progressed."
            if ready == wanted
            else f"{replica_set} is progressing.",
        ),
    ]
    previous = {c.get("type"): c for c in old.get("conditions") or []}
    conditions = []
    for kind, state, reason, message in wanted_conditions:
        before = previous.get(kind)
        stamp = rfc3339(now)
        condition = {
            "type": kind,
            "status": state,
            "lastUpdateTime": stamp,
            "lastTransitionTime": stamp,
            "reason": reason,
            "message": message,
        }
        if before is not None:
            if before.get("status") == state:
                condition["lastTransitionTime"] = before.get("lastTransitionTime", stamp)
            if (before.get("reason"), before.get("message")) == (reason, message):
                condition["lastUpdateTime"] = before.get("lastUpdateTime", stamp)
        conditions.append(condition)
    status["conditions"] = conditions
    return status


def statefulset_status(statefulset: Obj, ready: int) -> dict[str, Any]:
    """The status the statefulset controller settles on once `ready` pods of the wanted ones are
    ready. Its revisions name the pod template: a changed template is the update revision, and it
    becomes the current one once every pod is ready, which is when a rolling update is over."""
    spec = statefulset.get("spec") or {}
    name = statefulset["metadata"]["name"]
    wanted = spec.get("replicas", 1)
    ready = max(0, min(ready, wanted))
    old = statefulset.get("status") or {}
    template = json.dumps(spec.get("template") or {}, sort_keys=True)
    update_revision = f"{name}-{_hash(name + template)}"
    current_revision = old.get("currentRevision") or update_revision
    if ready >= wanted:
        current_revision = update_revision
    if current_revision == update_revision:
        current, updated = wanted, wanted
    else:
        # Mid rolling update: the ready pods run the new template, the others still the old one.
        current, updated = wanted - ready, ready
    status: dict[str, Any] = {
        "observedGeneration": statefulset["metadata"].get("generation", 1),
        "replicas": wanted,
        "availableReplicas": ready,
        "currentRevision": current_revision,
        "updateRevision": update_revision,
        "collisionCount": 0,
    }
    # These counts are omitempty int32s: zero is absent from the real server's JSON.
    counts = {"readyReplicas": ready, "currentReplicas": current, "updatedReplicas": updated}
    status.update({key: value for key, value in counts.items() if value})
    return status


def _hash(name: str) -> str:
    # A stable stand-in for the pod-template-hash suffix of the deployment's ReplicaSet.
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    value = sum(ord(c) * 31**i for i, c in enumerate(name))
    return "".join(alphabet[(value >> (5 * i)) % len(alphabet)] for i in range(10))


def ready_replicas(deployment: Obj) -> int:
    return int((deployment.get("status") or {}).get("readyReplicas", 0))


def strip_for_compare(obj: Obj) -> Obj:
    """The object without what every write changes, to spot no-op updates (which keep the version)."""
    out = copy.deepcopy(obj)
    out.get("metadata", {}).pop("resourceVersion", None)
    out.get("metadata", {}).pop("managedFields", None)
    return out
