"""Cloud-style predictive scaling, as a peer to compare against (the simulator's `scheduled`).

Re-implemented from the public documentation of EC2 Auto Scaling predictive scaling: a forecast of
the load, hour by hour, is turned into a capacity schedule, and the capacity of each hour is put in
force `buffer_s` before the hour begins (the service's default buffer is 300 s). The schedule only
sets a floor: dynamic scaling (here the HPA's decision, the same code as the `hpa` baseline) runs on
top, and the larger count wins, so the forecast never scales anything in. The README lists where it
differs from the original.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from autoscaler.metrics import MetricKind
from autoscaler.model import TargetConfig
from autoscaler.policy.decision import Decision, Mode, PolicyInputs, Reason
from autoscaler.policy.hpa import HpaPolicy, pods_for

__all__ = ["ScheduledPolicy"]


@dataclass(frozen=True, slots=True)
class ScheduledPolicy:
    buffer_s: float = 300.0
    dynamic: HpaPolicy = field(default_factory=HpaPolicy)

    @property
    def name(self) -> str:
        return "scheduled"

    def memory_s(self, config: TargetConfig) -> float:
        return self.dynamic.memory_s(config)

    def decide(self, inputs: PolicyInputs) -> Decision:
        dynamic = self.dynamic.decide(inputs)
        if Reason.SCALING_DISABLED in dynamic.reasons:
            return dynamic
        state, config = inputs.target.state, inputs.target.config
        at = inputs.now + self.buffer_s
        best: tuple[int, float, MetricKind] | None = None  # (replicas, forecast load, metric)
        for kind in config.metrics:
            forecast = inputs.forecasts.get(kind)
            per_pod = config.per_pod_target(kind, state)
            point = None if forecast is None else forecast.at(at)
            if point is None or per_pod is None:
                continue
            # The epsilon keeps a load that is an exact multiple from costing one more pod.
            wanted = pods_for(point[0], per_pod)
            if best is None or wanted > best[0]:
                best = (wanted, point[0], kind)
        if best is None:
            return dynamic
        floor = config.bounds.clamp(best[0])
        if floor <= dynamic.replicas:
            return dynamic
        return dataclasses.replace(
            dynamic,
            replicas=floor,
            reasons=(Reason.PREDICTIVE_SCALE_UP, *dynamic.reasons),
            mode=Mode.PREDICTIVE,
            reactive_replicas=dynamic.replicas,
            predictive_replicas=floor,
            forecast_metric=best[2],
            forecast_peak=best[1],
            lead_s=self.buffer_s,
        )
