"""The writes the controller makes, as values built by pure functions: which object, and the JSON
merge patch to send. `autoscaler.kube` only sends them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from autoscaler.model import TargetRef, WorkloadKind

__all__ = [
    "ORIGINAL_MIN_KEY",
    "STATUS_KEY",
    "Patch",
    "Patched",
    "annotation_patch",
    "hpa_floor_patch",
    "scale_patch",
]

# On an HPA whose floor we raised: the floor its owner set.
ORIGINAL_MIN_KEY = "predictive-autoscaler.io/original-min-replicas"
# On a workload: the last decision, written by the controller and never read as configuration.
STATUS_KEY = "predictive-autoscaler.io/status"


class Patched(Enum):
    """The object a patch goes to."""

    SCALE = "deployments/scale"
    DEPLOYMENT = "deployments"
    STATEFULSET_SCALE = "statefulsets/scale"
    STATEFULSET = "statefulsets"
    HPA = "horizontalpodautoscalers"


# Where a workload's replicas and its annotations are written, by kind.
_SCALE = {WorkloadKind.DEPLOYMENT: Patched.SCALE, WorkloadKind.STATEFULSET: Patched.STATEFULSET_SCALE}
_WORKLOAD = {WorkloadKind.DEPLOYMENT: Patched.DEPLOYMENT, WorkloadKind.STATEFULSET: Patched.STATEFULSET}


@dataclass(frozen=True, slots=True)
class Patch:
    what: Patched
    namespace: str
    name: str
    body: Mapping[str, object]

    @property
    def description(self) -> str:
        return f"{self.what.value} {self.namespace}/{self.name}"


def scale_patch(ref: TargetRef, replicas: int, resource_version: str = "") -> Patch:
    """The workload's replicas, through its `scale` subresource; with a `resource_version`, only
    if the workload is still at it (409 otherwise): the count was decided from that view, so a
    change made meanwhile (someone else's scale, an opt-out, dry-run switched on) wins, and the
    next tick decides again from the new one."""
    body: dict[str, object] = {"spec": {"replicas": replicas}}
    if resource_version:
        body["metadata"] = {"resourceVersion": resource_version}
    return Patch(_SCALE[ref.kind], ref.namespace, ref.name, body)


def hpa_floor_patch(
    namespace: str, name: str, resource_version: str, floor: int, original: int | None
) -> Patch:
    """The HPA's floor and our note of its owner's (None: removed, the floor is theirs again), only
    if the HPA is still at `resource_version`: the floor is computed from what was read, so a
    concurrent edit must win (409)."""
    annotations = {ORIGINAL_MIN_KEY: None if original is None else str(original)}
    body = {
        "metadata": {"resourceVersion": resource_version, "annotations": annotations},
        "spec": {"minReplicas": floor},
    }
    return Patch(Patched.HPA, namespace, name, body)


def annotation_patch(ref: TargetRef, annotations: Mapping[str, str]) -> Patch:
    return Patch(
        _WORKLOAD[ref.kind], ref.namespace, ref.name, {"metadata": {"annotations": dict(annotations)}}
    )
