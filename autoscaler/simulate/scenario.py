"""The simulated world's parameters (BENCHMARK.md, "The world being simulated"), with the defaults
every report uses unless a value is overridden."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from autoscaler.metrics import MetricKind
from autoscaler.simulate.trace import Trace

__all__ = ["Scenario", "ScenarioError", "default_scenario"]

DAY_S = 86_400


class ScenarioError(ValueError):
    """Scenario values that cannot describe a cluster, or a trace too short for them."""


@dataclass(frozen=True, slots=True)
class Scenario:
    kind: MetricKind
    capacity: float  # load units per second one ready pod serves at 100 % utilization
    target_utilization: float = 0.7
    startup_delay_s: int = 120
    min_replicas: int = 1
    max_replicas: int = 200
    warmup_s: int = 2 * DAY_S
    step_s: int = 15
    hpa_sync_s: int = 15
    # What Prometheus shows: the mean over `metric_window_s`, `metric_lag_s` after the fact.
    metric_window_s: int = 60
    metric_lag_s: int = 30

    def __post_init__(self) -> None:
        if self.kind not in (MetricKind.CPU, MetricKind.REQUESTS):
            raise ScenarioError(f"trace kind must be cpu or requests, not {self.kind.value}")
        if not self.capacity > 0:
            raise ScenarioError(f"capacity must be positive, got {self.capacity}")
        if not 0 < self.target_utilization <= 1:
            raise ScenarioError(f"target utilization must be in (0, 1], got {self.target_utilization}")
        if self.startup_delay_s < 0:
            raise ScenarioError(f"start-up delay must be >= 0, got {self.startup_delay_s}")
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise ScenarioError(
                f"replica bounds must satisfy 1 <= min <= max, got "
                f"{self.min_replicas}..{self.max_replicas}"
            )
        for name in ("hpa_sync_s", "metric_window_s", "metric_lag_s", "startup_delay_s"):
            if getattr(self, name) % self.step_s:
                raise ScenarioError(f"{name} must be a multiple of the {self.step_s} s step")

    def with_utilization(self, target_utilization: float) -> Scenario:
        return dataclasses.replace(self, target_utilization=target_utilization)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "capacity": self.capacity,
            "target_utilization": self.target_utilization,
            "startup_delay_s": self.startup_delay_s,
            "min_replicas": self.min_replicas,
            "max_replicas": self.max_replicas,
            "warmup_s": self.warmup_s,
            "step_s": self.step_s,
            "hpa_sync_s": self.hpa_sync_s,
            "metric_window_s": self.metric_window_s,
            "metric_lag_s": self.metric_lag_s,
        }


def default_scenario(trace: Trace, kind: MetricKind, **overrides: Any) -> Scenario:
    """BENCHMARK.md defaults: capacity such that the trace's p99 demand needs 20 pods."""
    if overrides.get("capacity") is None:
        p99 = float(np.percentile(trace.values / trace.step_s, 99))
        if p99 <= 0:
            raise ScenarioError(f"trace {trace.name} has no demand at its 99th percentile")
        overrides["capacity"] = p99 / 20.0
    values = {k: v for k, v in overrides.items() if v is not None}
    scenario = Scenario(kind=kind, **values)
    if trace.duration_s <= scenario.warmup_s:
        raise ScenarioError(
            f"trace {trace.name} covers {trace.duration_s / DAY_S:.2f} days, "
            f"not more than the {scenario.warmup_s / DAY_S:g}-day warm-up"
        )
    return scenario
