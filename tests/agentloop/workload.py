"""The Deployment the loop scales, its pods' names, and how Prometheus knows its pods.

Two scrape jobs feed Prometheus, and the backfilled history carries the same labels as what they
scrape, so that the past and the present of a pod are one series (no double count across the seam,
no many-to-many join):

* `agents`: every ready agent pod, found through file-based service discovery with the target
  labels `namespace` and `pod` (as a PodMonitor gives them); `instance` is set to the pod's name,
  so a series does not depend on the port the pod happened to get;
* `kube-state-metrics`: the pod runner's ownership series, `kube_pod_owner` and
  `kube_replicaset_owner`, with their own `namespace` and `pod` labels kept (`honor_labels`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["AGENTS_JOB", "KSM_INSTANCE", "KSM_JOB", "Workload", "ownership_series", "series_text"]

AGENTS_JOB = "agents"
KSM_JOB = "kube-state-metrics"
KSM_INSTANCE = "kube-state-metrics"


@dataclass(frozen=True, slots=True)
class Workload:
    namespace: str = "support"
    name: str = "chat-agent"
    # The pod-template hash: one ReplicaSet for the whole run (scaling never rolls out).
    template_hash: str = "7c9d6b5f4"

    @property
    def replicaset(self) -> str:
        return f"{self.name}-{self.template_hash}"

    @property
    def labels(self) -> dict[str, str]:
        return {"app": self.name}

    def pod(self, suffix: str) -> str:
        return f"{self.replicaset}-{suffix}"

    def first_pods(self, count: int) -> tuple[str, ...]:
        """The pods the Deployment ran on the days before, which a run starts with again."""
        return tuple(self.pod(f"base{i}") for i in range(count))


def series_text(name: str, labels: Mapping[str, str]) -> str:
    """`name{k="v",...}` in exposition format (values here never need escaping)."""
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def ownership_series(
    workload: Workload, pods: Iterable[str], extra: Mapping[str, str] | None = None
) -> list[str]:
    """kube-state-metrics' series that join `pods` to the Deployment through its ReplicaSet."""
    more = dict(extra or {})
    lines = [
        series_text(
            "kube_pod_owner",
            {
                "namespace": workload.namespace,
                "pod": pod,
                "owner_kind": "ReplicaSet",
                "owner_name": workload.replicaset,
                "owner_is_controller": "true",
                **more,
            },
        )
        for pod in pods
    ]
    lines.append(
        series_text(
            "kube_replicaset_owner",
            {
                "namespace": workload.namespace,
                "replicaset": workload.replicaset,
                "owner_kind": "Deployment",
                "owner_name": workload.name,
                "owner_is_controller": "true",
                **more,
            },
        )
    )
    return lines
