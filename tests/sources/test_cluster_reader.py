"""What the cluster reader makes of a workload's status: the pods that exist, which the HPA's
readiness rule counts (a pod not created yet is no pod to it); a StatefulSet's state (replicas,
requests, a rolling update from its revisions, not from a scale change); a Deployment and a
StatefulSet of one name in one namespace are two targets, each matched to the HPA that names its
kind."""

from __future__ import annotations

from typing import Any

import pytest

from autoscaler.config import PREFIX
from autoscaler.metrics import MetricKind
from autoscaler.model import TargetRef, WorkloadKind
from autoscaler.sources.cluster import build_snapshot
from tests.fakekube.builders import deployment, hpa


def _owner(
    kind: str, name: str, replicas: int, status: dict[str, Any] | None, requests: tuple[str, str | None]
) -> dict[str, Any]:
    obj = deployment(
        "shop",
        name,
        replicas=replicas,
        labels=None,
        annotations={PREFIX + "enabled": "true"},
        cpu_request=requests[0],
        memory_request=requests[1],
        image=f"{name}:1",
        kind=kind,
    )
    if status is not None:
        obj["status"] = status
    return obj


def _web(status: dict[str, Any] | None) -> dict[str, Any]:
    return _owner("Deployment", "web", 6, status, ("500m", None))


@pytest.mark.parametrize(
    ("status", "existing", "unready"),
    [
        pytest.param(
            {"replicas": 4, "readyReplicas": 3}, 4, 1, id="scaling-up-pods-not-created-yet-are-no-pods"
        ),
        pytest.param({"replicas": 7, "readyReplicas": 5}, 7, 2, id="rolling-update-surge-pods-exist"),
        pytest.param({"observedGeneration": 1}, 0, 0, id="omitted-count-is-zero"),
        pytest.param(None, None, 6, id="no-status-yet-stands-in-the-spec"),
    ],
)
def test_existing_pods_come_from_the_deployment_status(
    status: dict[str, Any] | None, existing: int | None, unready: int
) -> None:
    (target,) = build_snapshot([_web(status)], [], [], now=1_000_000.0).targets
    assert (target.state.existing_pods, target.state.unready_replicas) == (existing, unready)


def _db(status: dict[str, Any]) -> dict[str, Any]:
    return _owner("StatefulSet", "db", 3, status, ("250m", "1Gi"))


@pytest.mark.parametrize(
    ("status", "rolling"),
    [
        pytest.param(
            {"replicas": 3, "readyReplicas": 3, "currentReplicas": 3, "updatedReplicas": 3,
             "currentRevision": "db-1", "updateRevision": "db-1"},
            False,
            id="one-revision-settled",
        ),
        pytest.param(
            {"replicas": 3, "readyReplicas": 2, "currentReplicas": 2, "updatedReplicas": 1,
             "currentRevision": "db-1", "updateRevision": "db-2"},
            True,
            id="rolling-update-old-revision-still-current",
        ),
        pytest.param(
            {"replicas": 5, "readyReplicas": 3, "currentReplicas": 5, "updatedReplicas": 5,
             "currentRevision": "db-1", "updateRevision": "db-1"},
            False,
            id="scaling-up-is-no-rollout",
        ),
        pytest.param(
            {"replicas": 3, "readyReplicas": 3, "updatedReplicas": 1}, True,
            id="no-revisions-yet-counts-decide",
        ),
    ],
)  # fmt: skip
def test_a_statefulset_is_read_from_its_own_status(status: dict[str, Any], rolling: bool) -> None:
    (target,) = build_snapshot([], [], [], 1_000_000.0, statefulsets=[_db(status)]).targets
    state = target.state
    assert state.ref == TargetRef("shop", "db", WorkloadKind.STATEFULSET)
    assert (state.spec_replicas, state.ready_replicas) == (3, status["readyReplicas"])
    assert state.existing_pods == status["replicas"]
    assert state.rollout_in_progress is rolling
    assert state.pod_requests == {MetricKind.CPU: 0.25, MetricKind.MEMORY: 2.0**30}


def test_a_deployment_and_a_statefulset_of_one_name_are_two_targets_with_their_own_hpa() -> None:
    on = {PREFIX + "enabled": "true", PREFIX + "mode": "hpa"}
    objects = {
        key: [deployment("shop", "web", replicas=2, labels=None, annotations=on, cpu_request="500m",
                         memory_request=None, image="web:1", kind=kind)]
        for key, kind in (("deployments", "Deployment"), ("statefulsets", "StatefulSet"))
    }  # fmt: skip
    hpas = [
        hpa("shop", "web-deploy", "web", min_replicas=2, max_replicas=5, cpu_utilization=80,
            current_replicas=2),
        hpa("shop", "web-sts", "web", min_replicas=3, max_replicas=9, cpu_utilization=80,
            current_replicas=2, target_kind="StatefulSet"),
    ]  # fmt: skip
    snapshot = build_snapshot(
        objects["deployments"], hpas, [], 1_000_000.0, statefulsets=objects["statefulsets"]
    )
    by_kind = {t.state.ref.kind: t for t in snapshot.targets}
    assert set(by_kind) == {WorkloadKind.DEPLOYMENT, WorkloadKind.STATEFULSET}
    scaled_by = {
        kind: None if t.scaling is None or t.scaling.hpa is None else t.scaling.hpa.name
        for kind, t in by_kind.items()
    }
    assert scaled_by == {WorkloadKind.DEPLOYMENT: "web-deploy", WorkloadKind.STATEFULSET: "web-sts"}
    # Without its HPA, the StatefulSet is refused in mode hpa; the Deployment's HPA is not its own.
    alone = build_snapshot(objects["deployments"], hpas[:1], [], 1_000_000.0,
                           statefulsets=objects["statefulsets"])  # fmt: skip
    assert [t.state.ref.kind for t in alone.targets] == [WorkloadKind.DEPLOYMENT]
    (refused,) = alone.set_aside
    assert (refused.ref.kind, refused.reason) == (WorkloadKind.STATEFULSET, "NoHPA")
    assert "targets this StatefulSet" in refused.message
