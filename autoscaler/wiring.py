"""Builds the stages of a controller once, and the `Controller` that runs them: `reconcile_once` on
every tick while this replica may act.

Everything that must survive from tick to tick lives in the stages (what was reported, cool-downs,
models, caches) and in the decision memory kept here.
"""

from __future__ import annotations

from collections.abc import Callable

from autoscaler.actuation.actuator import ClusterActuator
from autoscaler.kube import Kube
from autoscaler.observability.recorder import ClusterRecorder
from autoscaler.policy import Policy
from autoscaler.reconcile import DecisionMemory, Stages, reconcile_once
from autoscaler.sources.cluster import ClusterObjects, ClusterReader
from autoscaler.stages import Forecaster, MetricsSource, TickReport

__all__ = ["Controller", "cluster_stages"]


def cluster_stages(
    kube: Kube,
    objects: ClusterObjects,
    source: MetricsSource,
    forecaster: Forecaster,
    policy: Policy,
    *,
    dry_run: bool = False,
    may_act: Callable[[], bool] = lambda: True,
) -> Stages:
    """The stages of a controller in a cluster: `objects` (informers) read, Prometheus (or any
    source) measures, the Kubernetes API is written to."""
    return Stages(
        reader=ClusterReader(objects),
        source=source,
        forecaster=forecaster,
        policy=policy,
        actuator=ClusterActuator(kube, may_act=may_act, dry_run=dry_run),
        recorder=ClusterRecorder(kube, may_act=may_act, dry_run=dry_run),
    )


class Controller:
    def __init__(self, stages: Stages, *, may_act: Callable[[], bool] = lambda: True) -> None:
        self._stages = stages
        self._may_act = may_act
        self._memory = DecisionMemory()

    def tick(self, now: float) -> TickReport:
        if not self._may_act():
            # A follower keeps no opinions: when it leads it starts from what the cluster says.
            self._memory.keep_only(set())
            return TickReport.idle()
        return reconcile_once(self._stages, self._memory, now)
