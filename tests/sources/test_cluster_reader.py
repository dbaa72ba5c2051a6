"""What the cluster reader makes of a Deployment's status: the pods that exist, which the HPA's
readiness rule counts (a pod not created yet is no pod to it)."""

from __future__ import annotations

from typing import Any

import pytest

from autoscaler.config import PREFIX
from autoscaler.sources.cluster import build_snapshot
from tests.fakekube.builders import deployment


def _web(status: dict[str, Any] | None) -> dict[str, Any]:
    obj = deployment(
        "shop",
        "web",
        replicas=6,
        labels=None,
        annotations={PREFIX + "enabled": "true"},
        cpu_request="500m",
        memory_request=None,
        image="web:1",
    )
    if status is not None:
        obj["status"] = status
    return obj


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
