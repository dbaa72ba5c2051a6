"""Values that flow between the stages of a tick: what a workload is, what was observed, how it is
configured. Times are seconds since the Unix epoch (float): one clock read per tick is passed down, and
the simulator's manual clock produces the same type."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, Self, TypeVar

from autoscaler.metrics import METRICS, MetricKind, MetricSpec
from autoscaler.selectors import SeriesSelector

__all__ = [
    "Bounds",
    "ByKind",
    "ForecastQuality",
    "Forecasts",
    "HpaInfo",
    "Knob",
    "LoadForecast",
    "LoadSnapshot",
    "Sample",
    "ScaleMode",
    "Scaling",
    "SelectPolicy",
    "Setpoint",
    "Target",
    "TargetConfig",
    "TargetRef",
    "WorkloadKind",
    "WorkloadState",
]


V = TypeVar("V")


class WorkloadKind(Enum):
    """The kinds of workload the controller scales, as the API names them (`kind`, and the
    `scaleTargetRef.kind` of an HPA)."""

    DEPLOYMENT = "Deployment"
    STATEFULSET = "StatefulSet"


@dataclass(frozen=True, slots=True)
class TargetRef:
    """One workload: a Deployment and a StatefulSet of the same name in one namespace are two."""

    namespace: str
    name: str
    kind: WorkloadKind = WorkloadKind.DEPLOYMENT

    @property
    def workload(self) -> str:
        """The workload within its namespace: a Deployment by its bare name, as every log line and
        metric label named it before other kinds were scaled, any other kind as kubectl writes it
        (`statefulset/db`); names cannot hold a slash, so the two never collide."""
        if self.kind is WorkloadKind.DEPLOYMENT:
            return self.name
        return f"{self.kind.value.lower()}/{self.name}"

    def __str__(self) -> str:
        return f"{self.namespace}/{self.workload}"


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
    """What the cluster says about one workload at the start of a tick; utilization targets are
    percentages of `pod_requests`, as in the HPA."""

    ref: TargetRef
    spec_replicas: int
    ready_replicas: int
    # What one pod requests of the resource each kind is a utilization of (cores, bytes), by kind.
    pod_requests: Mapping[MetricKind, float] = field(default_factory=dict)
    rollout_in_progress: bool = False
    # Median seconds recent new pods took from creation to Ready; None until one was seen.
    measured_startup_s: float | None = None
    # Pods that exist (not failed, not being deleted), ready or not; None where the reader cannot
    # count them, which then stands in `spec_replicas`.
    existing_pods: int | None = None

    @property
    def unready_replicas(self) -> int:
        """Pods that exist and are not ready (a pod not created yet is no pod to the HPA)."""
        existing = self.spec_replicas if self.existing_pods is None else self.existing_pods
        return max(0, existing - self.ready_replicas)


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


class ByKind(Generic[V]):
    """One value per metric kind, fixed once made; a kind left out (or given as None) has none."""

    __slots__ = ("_values",)
    _values: Mapping[MetricKind, V]

    def __init__(self, values: Mapping[MetricKind, V | None] | None = None) -> None:
        # A plain dict: nothing hands it out, and `__setattr__` below keeps the whole immutable.
        present = {k: v for k, v in (values or {}).items() if v is not None}
        object.__setattr__(self, "_values", present)

    @classmethod
    def of(cls, **by_name: V | None) -> Self:
        """By kind name: `LoadSnapshot.of(requests=Sample(...))`."""
        return cls({MetricKind(name): value for name, value in by_name.items()})

    def get(self, kind: MetricKind) -> V | None:
        return self._values.get(kind)

    def kinds(self) -> tuple[MetricKind, ...]:
        """The kinds that have a value, in the order they were given."""
        return tuple(self._values)

    def items(self) -> tuple[tuple[MetricKind, V], ...]:
        return tuple(self._values.items())

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and dict(self._values) == dict(other._values)

    def __hash__(self) -> int:
        return hash(tuple(self._values.items()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{k.value}={v!r}" for k, v in self._values.items())
        return f"{type(self).__name__}({inner})"


class LoadSnapshot(ByKind[Sample]):
    """The latest observation per metric kind; a kind left out has no usable value."""

    __slots__ = ()


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
    # Per bucket, the load the same time of day reached on most of the recent days, at today's
    # level; empty without days enough to tell (see `autoscaler.forecast_stage`).
    recurring: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not len(self.times) == len(self.mean) == len(self.upper) > 0:
            raise ValueError("a forecast needs matching, non-empty times, mean and upper")
        if self.lower and len(self.lower) != len(self.times):
            raise ValueError("a forecast's lower bound must match its times")
        if self.recurring and len(self.recurring) != len(self.times):
            raise ValueError("a forecast's recurring load must match its times")

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
        return self._peak(self.upper, start, end)

    def peak_recurring(self, start: float, end: float) -> float | None:
        """Highest recurring load of the buckets that overlap `[start, end]`, as `peak_upper`;
        None also where there is none."""
        return self._peak(self.recurring, start, end) if self.recurring else None

    def _peak(self, values: tuple[float, ...], start: float, end: float) -> float | None:
        if self.times[-1] + self.step_s < end:
            return None
        peak: float | None = None
        for t, value in zip(self.times, values, strict=True):
            if t + self.step_s > start and t <= end:
                peak = value if peak is None else max(peak, value)
        return peak


class Forecasts(ByKind[LoadForecast]):
    """The latest forecast per metric kind for one target; a kind left out has none. `fitting`
    names the kinds left out because their model is still being fitted (beside the tick), so that
    the policy can say so instead of "no forecast"."""

    __slots__ = ("fitting",)
    fitting: frozenset[MetricKind]

    def __init__(
        self,
        values: Mapping[MetricKind, LoadForecast | None] | None = None,
        fitting: frozenset[MetricKind] = frozenset(),
    ) -> None:
        super().__init__(values)
        object.__setattr__(self, "fitting", fitting)

    def __eq__(self, other: object) -> bool:
        return super().__eq__(other) and isinstance(other, Forecasts) and self.fitting == other.fitting

    def __hash__(self) -> int:
        return hash((super().__hash__(), self.fitting))


class SelectPolicy(Enum):
    """Which of the scaling rules' allowances a direction takes (the HPA's
    `spec.behavior.*.selectPolicy`): the largest change, the smallest, or none at all."""

    MAX = "Max"
    MIN = "Min"
    DISABLED = "Disabled"


@dataclass(frozen=True, slots=True)
class TargetConfig:
    """How one workload is to be scaled (from annotations in a cluster, from the scenario in the
    simulator).

    `target_utilization` is a fraction of the pod's request for the kinds measured against a request
    (cpu, memory); `per_pod` holds, for the other kinds (requests), the load one pod should carry,
    taken to be the same fraction of what it can carry at most (the predictive part sizes forecast
    upper bounds at full capacity).
    """

    metrics: tuple[MetricKind, ...]
    bounds: Bounds
    target_utilization: float = 0.7
    per_pod: Mapping[MetricKind, float] = field(default_factory=dict)
    scale_down_stabilization_s: float = 300.0
    # No change while 1 − down ≤ usage ratio ≤ 1 + up (the HPA's per-direction tolerances).
    scale_up_tolerance: float = 0.1
    scale_down_tolerance: float = 0.1
    scale_up_select: SelectPolicy = SelectPolicy.MAX
    scale_down_select: SelectPolicy = SelectPolicy.MAX
    # Pod start-up time to plan ahead for; None means measured from the pods themselves.
    startup_s: float | None = None
    # Level of the prediction interval whose upper bound replicas are sized for.
    confidence: float = 0.5
    # The series this workload names for the kinds that have none of their own (the request
    # counter); a kind left out uses the metrics source's default.
    selectors: Mapping[MetricKind, SeriesSelector] = field(default_factory=dict)
    # The metrics this workload declares itself, by kind (each also listed in `metrics`).
    custom: Mapping[MetricKind, MetricSpec] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.metrics:
            raise ValueError("at least one metric is required")
        for kind in self.metrics:
            if kind not in METRICS and kind not in self.custom:
                raise ValueError(f"metric {kind.value!r} is neither built in nor declared")
        if not 0.0 < self.target_utilization <= 1.0:
            raise ValueError(f"target utilization must be in (0, 1], got {self.target_utilization}")
        for kind in self.metrics:
            amount = self.per_pod.get(kind)
            if self.spec(kind).request_resource is None and not (amount is not None and amount > 0):
                raise ValueError(f"the {kind.value} metric needs a positive per-pod target")
        if self.scale_down_stabilization_s < 0:
            raise ValueError("scale-down stabilization must be non-negative")
        if self.scale_up_tolerance < 0.0 or not 0.0 <= self.scale_down_tolerance < 1.0:
            raise ValueError("tolerances must be non-negative, and the scale-down one below 1")
        if self.startup_s is not None and self.startup_s < 0:
            raise ValueError("start-up time must be non-negative")
        if not 0.5 <= self.confidence < 1.0:
            raise ValueError(f"confidence must be in [0.5, 1), got {self.confidence}")

    def spec(self, kind: MetricKind) -> MetricSpec:
        """What `kind` is for this workload: the built-in table's entry, or its own declaration."""
        builtin = METRICS.get(kind)
        return builtin if builtin is not None else self.custom[kind]

    def within_tolerance(self, ratio: float) -> bool:
        """Whether a usage ratio is close enough to 1 to leave the count alone (inclusive)."""
        return 1.0 - self.scale_down_tolerance <= ratio <= 1.0 + self.scale_up_tolerance

    def per_pod_target(self, kind: MetricKind, state: WorkloadState) -> float | None:
        """Load one pod should carry for `kind`, or None when the workload lacks the request it
        would be a percentage of."""
        if self.spec(kind).request_resource is None:
            return self.per_pod.get(kind)
        request = state.pod_requests.get(kind)
        if request is None or request <= 0:
            return None
        return request * self.target_utilization


class ScaleMode(Enum):
    """What the controller moves: the workload's replicas, or the floor of the HPA that scales it.
    Each has its strategy in `autoscaler.modes`."""

    REPLICAS = "replicas"
    HPA = "hpa"


@dataclass(frozen=True, slots=True)
class HpaInfo:
    """The HPA that scales a workload, with the floor its owner set (before we raised it)."""

    namespace: str
    name: str
    resource_version: str
    min_replicas: int
    max_replicas: int
    # The floor the user set, remembered in an annotation while ours is in place.
    original_min: int
    raised: bool


@dataclass(frozen=True, slots=True)
class Scaling:
    """How a workload in a cluster is scaled: the mode its annotations chose, the HPA that targets
    it, and what the last tick wrote on it."""

    mode: ScaleMode
    dry_run: bool = False
    hpa: HpaInfo | None = None
    resource_version: str = ""
    # The status annotation as it is on the workload now.
    status: str | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """An opted-in workload as the reader hands it to a tick: its state, its parsed config, and
    (in a cluster) how it is scaled; without `scaling` its replicas are set directly."""

    state: WorkloadState
    config: TargetConfig
    scaling: Scaling | None = None


class Knob(Enum):
    """What a decision moves on the workload."""

    REPLICAS = "replicas"
    HPA_FLOOR = "hpa-floor"


@dataclass(frozen=True, slots=True)
class Setpoint:
    """What a decision sets, as its scale mode computes it: a replica count, or the floor of the
    HPA that scales the workload (`hpa` names it)."""

    knob: Knob
    current: int
    wanted: int
    # Whether anything must be written (a floor back at the owner's still has our annotation).
    needed: bool
    hpa: str | None = None
    # Mode hpa: the floor goes back to its owner's, and our annotation with it.
    restoring: bool = False

    def describe(self) -> str:
        """What is written, for Events: `replicas 2→6`, `HPA web minReplicas 2→7`."""
        if self.knob is Knob.REPLICAS:
            return f"replicas {self.current}→{self.wanted}"
        return f"HPA {self.hpa} minReplicas {self.current}→{self.wanted}"

    @property
    def head(self) -> str | None:
        """What an explanation starts with where the replicas are not what moves (mode hpa)."""
        if self.knob is Knob.REPLICAS:
            return None
        moved = (
            f"{self.current}→{self.wanted}" if self.wanted != self.current else f"held at {self.wanted}"
        )
        return f"HPA {self.hpa} floor {moved}"

    @property
    def done_reason(self) -> str:
        """The Event reason once the write went through."""
        if self.knob is Knob.REPLICAS:
            return "ScaledUp" if self.wanted > self.current else "ScaledDown"
        if self.restoring:
            return "RestoredHPAFloor"
        return "RaisedHPAFloor" if self.wanted > self.current else "LoweredHPAFloor"
