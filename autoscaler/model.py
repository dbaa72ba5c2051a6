"""Values that flow between the stages of a tick: what a workload is, what was observed, how it is
configured. Times are seconds since the Unix epoch (float): one clock read per tick is passed down, and
the simulator's manual clock produces the same type."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

__all__ = [
    "Bounds",
    "LoadSnapshot",
    "MetricKind",
    "Sample",
    "Target",
    "TargetConfig",
    "TargetRef",
    "WorkloadState",
]


class MetricKind(Enum):
    """What load is measured in. Loads are always the aggregate over all pods of a workload."""

    CPU = "cpu"  # cores
    MEMORY = "memory"  # bytes
    REQUESTS = "requests"  # requests per second


@dataclass(frozen=True, slots=True)
class TargetRef:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class Bounds:
    minimum: int
    maximum: int

    def __post_init__(self) -> None:
        if self.minimum < 0 or self.maximum < self.minimum:
            raise ValueError(f"invalid replica bounds [{self.minimum}, {self.maximum}]")

    def clamp(self, replicas: int) -> int:
        return min(self.maximum, max(self.minimum, replicas))


@dataclass(frozen=True, slots=True)
class WorkloadState:
    """What the cluster says about one Deployment at the start of a tick.

    `pod_requests` maps a resource metric to what one pod requests (cores, bytes); utilization targets
    are percentages of it, as in the HPA.
    """

    ref: TargetRef
    spec_replicas: int
    ready_replicas: int
    pod_cpu_request: float | None = None
    pod_memory_request: float | None = None
    rollout_in_progress: bool = False

    @property
    def unready_replicas(self) -> int:
        return max(0, self.spec_replicas - self.ready_replicas)


@dataclass(frozen=True, slots=True)
class Sample:
    """One observed aggregate load value and the time it describes (not the time it was read)."""

    value: float
    at: float

    def __post_init__(self) -> None:
        if not math.isfinite(self.value) or self.value < 0:
            raise ValueError(f"load sample must be finite and non-negative, got {self.value}")


@dataclass(frozen=True, slots=True)
class LoadSnapshot:
    """The latest observation per metric kind; `None` means the source has no usable value."""

    cpu: Sample | None = None
    memory: Sample | None = None
    requests: Sample | None = None

    def get(self, kind: MetricKind) -> Sample | None:
        if kind is MetricKind.CPU:
            return self.cpu
        if kind is MetricKind.MEMORY:
            return self.memory
        return self.requests


@dataclass(frozen=True, slots=True)
class TargetConfig:
    """How one workload is to be scaled (from annotations in a cluster, from the scenario in the
    simulator).

    `target_utilization` is a fraction of the pod's request for CPU and memory;
    `target_requests_per_pod` is the request rate one pod should carry.
    """

    metrics: tuple[MetricKind, ...]
    bounds: Bounds
    target_utilization: float = 0.7
    target_requests_per_pod: float | None = None
    scale_down_stabilization_s: float = 300.0

    def __post_init__(self) -> None:
        if not self.metrics:
            raise ValueError("at least one metric is required")
        if not 0.0 < self.target_utilization <= 1.0:
            raise ValueError(f"target utilization must be in (0, 1], got {self.target_utilization}")
        if MetricKind.REQUESTS in self.metrics and not (
            self.target_requests_per_pod is not None and self.target_requests_per_pod > 0
        ):
            raise ValueError("the requests metric needs a positive target_requests_per_pod")
        if self.scale_down_stabilization_s < 0:
            raise ValueError("scale-down stabilization must be non-negative")

    def per_pod_target(self, kind: MetricKind, state: WorkloadState) -> float | None:
        """Load one pod should carry for `kind`, or None when the workload lacks the request it
        would be a percentage of."""
        if kind is MetricKind.REQUESTS:
            return self.target_requests_per_pod
        request = state.pod_cpu_request if kind is MetricKind.CPU else state.pod_memory_request
        if request is None or request <= 0:
            return None
        return request * self.target_utilization


@dataclass(frozen=True, slots=True)
class Target:
    """An opted-in workload as the reader hands it to a tick: its state and its parsed config."""

    state: WorkloadState
    config: TargetConfig
