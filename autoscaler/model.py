"""Values that flow between the stages of a tick: what a workload is, what was observed, how it is
configured. Times are seconds since the Unix epoch (float): one clock read per tick is passed down, and
the simulator's manual clock produces the same type."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

__all__ = [
    "Bounds",
    "ForecastQuality",
    "Forecasts",
    "LabelMatcher",
    "LoadForecast",
    "LoadSnapshot",
    "MatchOp",
    "MetricKind",
    "RequestSelector",
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


T = TypeVar("T")


def _pick(kind: MetricKind, cpu: T, memory: T, requests: T) -> T:
    if kind is MetricKind.CPU:
        return cpu
    if kind is MetricKind.MEMORY:
        return memory
    return requests


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
    # Median seconds recent new pods took from creation to Ready; None until one was seen.
    measured_startup_s: float | None = None

    @property
    def unready_replicas(self) -> int:
        return max(0, self.spec_replicas - self.ready_replicas)


@dataclass(frozen=True, slots=True)
class Sample:
    """One observed aggregate load value and the time it describes (not the time it was read)."""

    value: float
    at: float
    # The span the value averages over, ending at `at` (a rate's window; 0 for a gauge read at `at`).
    window_s: float = 0.0

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
        return _pick(kind, self.cpu, self.memory, self.requests)


@dataclass(frozen=True, slots=True)
class ForecastQuality:
    """How the forecasts already made for one target and metric compared with what happened.

    `checked` counts scored forecasts in the rolling window; `scaled_error` is their mean absolute
    error over that of "no change since the last observation", or over a small share of the load
    where that is larger (below 1 beats "no change"); `coverage` is the share of actuals at or under
    the upper bound the policy scales for; `relative_error` is their mean absolute error as a share of
    the mean load (how far off a forecast typically is, whatever "no change" would have done).
    """

    checked: int
    scaled_error: float | None
    coverage: float | None
    relative_error: float | None = None


@dataclass(frozen=True, slots=True)
class LoadForecast:
    """Aggregate load expected over the coming buckets for one metric of one target.

    Point `i` is the mean load over the bucket `[times[i], times[i] + step_s)`; `upper` is the upper
    bound of the model's prediction interval at `level`, `lower` its lower bound (empty where the
    producer has none: only the upper bound drives replicas, the lower one is shown to people).
    """

    kind: MetricKind
    made_at: float
    step_s: float
    times: tuple[float, ...]
    mean: tuple[float, ...]
    upper: tuple[float, ...]
    level: float
    quality: ForecastQuality
    lower: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not len(self.times) == len(self.mean) == len(self.upper) > 0:
            raise ValueError("a forecast needs matching, non-empty times, mean and upper")
        if self.lower and len(self.lower) != len(self.times):
            raise ValueError("a forecast's lower bound must match its times")

    def at(self, t: float) -> tuple[float, float] | None:
        """(mean, upper) of the bucket holding `t`, or None outside the forecast."""
        if t < self.times[0] or t >= self.times[-1] + self.step_s:
            return None
        i = int((t - self.times[0]) // self.step_s)
        return self.mean[i], self.upper[i]

    def band_at(self, t: float) -> tuple[float, float | None, float] | None:
        """(mean, lower, upper) of the bucket holding `t`, or None outside the forecast."""
        if t < self.times[0] or t >= self.times[-1] + self.step_s:
            return None
        i = int((t - self.times[0]) // self.step_s)
        return self.mean[i], self.lower[i] if self.lower else None, self.upper[i]

    def peak_upper(self, start: float, end: float) -> float | None:
        """Highest upper bound of the buckets that overlap `[start, end]`; None when the forecast
        does not reach `end` (it is too old or too short to cover the lead time)."""
        if self.times[-1] + self.step_s < end:
            return None
        peak: float | None = None
        for t, upper in zip(self.times, self.upper, strict=True):
            if t + self.step_s > start and t <= end:
                peak = upper if peak is None else max(peak, upper)
        return peak


@dataclass(frozen=True, slots=True)
class Forecasts:
    """The latest forecast per metric kind for one target; None where there is none."""

    cpu: LoadForecast | None = None
    memory: LoadForecast | None = None
    requests: LoadForecast | None = None

    def get(self, kind: MetricKind) -> LoadForecast | None:
        return _pick(kind, self.cpu, self.memory, self.requests)


class MatchOp(Enum):
    EQUAL = "="
    NOT_EQUAL = "!="
    REGEX = "=~"
    NOT_REGEX = "!~"


@dataclass(frozen=True, slots=True)
class LabelMatcher:
    """One label matcher of a request-rate selector; the value is kept unescaped and escaped only
    when a query is built."""

    name: str
    op: MatchOp
    value: str


@dataclass(frozen=True, slots=True)
class RequestSelector:
    """Which counter measures a workload's requests: a metric name and label matchers, never free
    PromQL. The target's own namespace and pods are always added when the query is built."""

    metric: str
    matchers: tuple[LabelMatcher, ...] = ()


@dataclass(frozen=True, slots=True)
class TargetConfig:
    """How one workload is to be scaled (from annotations in a cluster, from the scenario in the
    simulator).

    `target_utilization` is a fraction of the pod's request for CPU and memory;
    `target_requests_per_pod` is the request rate one pod should carry, taken to be the same fraction
    of what it can carry at most (the predictive part sizes forecast upper bounds at full capacity).
    """

    metrics: tuple[MetricKind, ...]
    bounds: Bounds
    target_utilization: float = 0.7
    target_requests_per_pod: float | None = None
    scale_down_stabilization_s: float = 300.0
    # Pod start-up time to plan ahead for; None means measured from the pods themselves.
    startup_s: float | None = None
    # Level of the prediction interval whose upper bound replicas are sized for.
    confidence: float = 0.5
    # The request counter for this workload; None means the metrics source's default.
    requests_selector: RequestSelector | None = None

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
        if self.startup_s is not None and self.startup_s < 0:
            raise ValueError("start-up time must be non-negative")
        if not 0.5 <= self.confidence < 1.0:
            raise ValueError(f"confidence must be in [0.5, 1), got {self.confidence}")

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
