"""Metric kinds as data: one table says, per kind, its unit, whether its series is a counter (the
load is its rate) or a gauge (the load is its value), how its per-pod target is derived, and which
per-pod series measure it. Loads are always the aggregate over all pods of a workload.

Everything kind-specific elsewhere reads this table: the annotation parser (names), the cluster
reader (which pod resource request a utilization target refers to), the policy (per-pod targets),
the query builder (the series, rated or not) and the Prometheus source (the window a sample
averages over). Adding a kind is one entry here, with its series.

A workload may also declare metrics of its own (`predictive-autoscaler.io/metric.<name>`): each is a
`MetricSpec` made by `custom_metric`, carried in that workload's config, and from there read by the
same code as the built-in kinds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar

from autoscaler.selectors import LabelMatcher, MatchOp, SeriesSelector

__all__ = [
    "BUILTIN_KINDS",
    "METRICS",
    "MetricKind",
    "MetricSpec",
    "Scope",
    "Signal",
    "custom_metric",
]


class MetricKind:
    """What load is measured in: a built-in kind (`MetricKind.CPU`, `.MEMORY`, `.REQUESTS`; the table
    below gives each its unit) or a metric a workload declares under a name of its own.

    One instance per name, so kinds compare (and are matched with `is`) like the members of an enum,
    whichever code made them; the names a cluster can bring are bounded by its annotations."""

    __slots__ = ("value",)
    value: str
    _interned: ClassVar[dict[str, MetricKind]] = {}
    CPU: ClassVar[MetricKind]
    MEMORY: ClassVar[MetricKind]
    REQUESTS: ClassVar[MetricKind]

    def __new__(cls, value: str) -> MetricKind:
        existing = cls._interned.get(value)
        if existing is None:
            if not isinstance(value, str) or not value:
                raise ValueError(f"a metric kind needs a name, got {value!r}")
            existing = object.__new__(cls)
            object.__setattr__(existing, "value", value)
            cls._interned[value] = existing
        return existing

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("MetricKind is immutable")

    def __reduce__(self) -> tuple[type[MetricKind], tuple[str]]:
        return (MetricKind, (self.value,))

    def __repr__(self) -> str:
        return f"MetricKind({self.value!r})"

    @property
    def builtin(self) -> bool:
        return self in METRICS


MetricKind.CPU = MetricKind("cpu")
MetricKind.MEMORY = MetricKind("memory")
MetricKind.REQUESTS = MetricKind("requests")


class Scope(Enum):
    """Which series a load sums."""

    # The workload's own pods' series, joined to it through pod ownership (the HPA's Pods metric).
    PODS = "per-pod"
    # Every matching series in the workload's namespace, wherever it comes from: a total such as a
    # queue's depth, which replicas divide (the HPA's External metric with an AverageValue target).
    NAMESPACE = "total"


class Signal(Enum):
    """How a series carries load."""

    COUNTER = "counter"  # monotonic: the load is its rate over the rate window
    GAUGE = "gauge"  # a level: the load is its value at the time it was read


@dataclass(frozen=True, slots=True)
class MetricSpec:
    kind: MetricKind
    unit: str
    signal: Signal
    # The pod resource whose request a utilization target is a percentage of (as in the HPA); None
    # when the per-pod target is configured as an amount of this kind's unit.
    request_resource: str | None
    # The per-pod series; None when each workload names its own (with a controller-wide default).
    series: SeriesSelector | None
    # The annotation that sets the per-pod target, for a kind not measured against a request.
    per_pod_annotation: str | None = None
    # The annotation naming the workload's own series, for a kind without series of its own; the
    # controller's flag of the same name gives the default.
    selector_annotation: str | None = None
    # Memory is not given back when demand falls: a forecast never shortens its scale-down window.
    falls_with_load: bool = True
    # The HPA counts pods that are not ready as idle on a scale-up, and leaves them out on a
    # scale-down, for CPU only: a starting pod burns CPU that is not load. For every other kind a
    # running pod counts with what it reports, ready or not.
    damps_unready: bool = False
    scope: Scope = Scope.PODS

    @property
    def averages_over_rate_window(self) -> bool:
        return self.signal is Signal.COUNTER


# cAdvisor also exports a pod-level cgroup (container="") and the pause container ("POD").
_CONTAINERS = (
    LabelMatcher("container", MatchOp.NOT_EQUAL, ""),
    LabelMatcher("container", MatchOp.NOT_EQUAL, "POD"),
)

METRICS: Mapping[MetricKind, MetricSpec] = {
    spec.kind: spec
    for spec in (
        MetricSpec(
            MetricKind.CPU,
            "cores",
            Signal.COUNTER,
            request_resource="cpu",
            series=SeriesSelector("container_cpu_usage_seconds_total", _CONTAINERS),
            damps_unready=True,
        ),
        MetricSpec(
            MetricKind.MEMORY,
            "bytes",
            Signal.GAUGE,
            request_resource="memory",
            series=SeriesSelector("container_memory_working_set_bytes", _CONTAINERS),
            falls_with_load=False,
        ),
        MetricSpec(
            MetricKind.REQUESTS,
            "requests/s",
            Signal.COUNTER,
            request_resource=None,
            series=None,
            per_pod_annotation="target-requests-per-pod",
            selector_annotation="requests-metric",
        ),
    )
}

BUILTIN_KINDS: tuple[MetricKind, ...] = tuple(METRICS)


def custom_metric(
    name: str, signal: Signal, scope: Scope, series: SeriesSelector, annotation: str
) -> MetricSpec:
    """The spec of a metric a workload declares: its per-pod target is an amount of its own unit,
    set in the same annotation (`annotation`, which also names it in Events)."""
    kind = MetricKind(name)
    if kind in METRICS:
        raise ValueError(f"{name!r} is a built-in metric")
    return MetricSpec(
        kind,
        unit=name,
        signal=signal,
        request_resource=None,
        series=series,
        selector_annotation=annotation,
        scope=scope,
    )
