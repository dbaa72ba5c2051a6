"""Crane's Effective HPA (EHPA), as a peer to compare against (the simulator's `crane`).

Re-implemented from the public source of gocrane/crane (`pkg/controller/ehpa`,
`pkg/metricprovider`): the EHPA writes an HPA whose metrics are the workload's own metric and, once
its prediction is ready, an External metric `crane_autoscaling_prediction` with an AverageValue
target equal to the own metric's per-pod target (a utilization target is converted to the value it
stands for). The metric adapter serves the largest predicted value within the prediction window
(3600 s in Crane's examples). The HPA then does the rest as it always does: per metric a proposal
(for an External AverageValue target: no change while `value / (target × current replicas)` is
within the tolerance, else `ceil(value / target)`), the largest proposal wins, then stabilization,
rate limits and bounds.

The forecast handed in (`autoscaler.simulate.crane`) carries the prediction; a metric without one
has no prediction metric in the HPA. Where the HPA holds (metrics missing, scaling disabled, replicas
outside the bounds) this holds the same way. Deviations: the adapter truncates the value to a whole
number in the metric's unit, which is not modelled (the simulated load has no natural unit); the
prediction is read on every sync rather than when the HPA's metrics client asks the adapter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from autoscaler.metrics import MetricKind
from autoscaler.model import LoadForecast, TargetConfig
from autoscaler.policy.decision import Decision, Mode, PolicyInputs, Reason
from autoscaler.policy.hpa import (
    DEFAULT_BEHAVIOR,
    HpaBehavior,
    normalize,
    pods_for,
    reactive_proposal,
    settle,
)

__all__ = ["CranePolicy", "peak_within"]


def peak_within(forecast: LoadForecast, start: float, end: float) -> float | None:
    """The largest prediction whose bucket ends within `[start, end]` (Crane's predicted samples are
    instants, each the value of the minute that ends there), or None where there is none."""
    step = forecast.step_s
    first = max(0, math.ceil((start - step - forecast.times[0]) / step))
    last = min(len(forecast.times) - 1, math.floor((end - step - forecast.times[0]) / step))
    if last < first:
        return None
    return max(forecast.upper[first : last + 1])


@dataclass(frozen=True, slots=True)
class _Prediction:
    replicas: int
    peak: float
    kind: MetricKind


@dataclass(frozen=True, slots=True)
class CranePolicy:
    window_s: float = 3600.0
    behavior: HpaBehavior = field(default=DEFAULT_BEHAVIOR)

    @property
    def name(self) -> str:
        return "crane"

    def memory_s(self, config: TargetConfig) -> float:
        return self.behavior.memory_s(config)

    def decide(self, inputs: PolicyInputs) -> Decision:
        state, config = inputs.target.state, inputs.target.config
        current = state.spec_replicas
        reactive = reactive_proposal(inputs, self.behavior)
        predicted = None if reactive.direct or reactive.holding else self._predicted(inputs)
        # The HPA keeps the first of equal proposals, and the own metric is listed first.
        wins = predicted if predicted is not None and predicted.replicas > reactive.replicas else None
        if wins is None:
            wanted = reactive.replicas
            final, guards = settle(reactive, config, self.behavior, inputs)
        else:
            # Never a hold or a direct count (they leave the prediction out): the HPA's guards.
            wanted = wins.replicas
            final, guards = normalize(wanted, current, config, self.behavior, inputs.history, inputs.now)
        mode = Mode.HOLD if reactive.holding else Mode.REACTIVE if wins is None else Mode.PREDICTIVE
        return Decision(
            ref=state.ref,
            at=inputs.now,
            current=current,
            replicas=final,
            recommendation=wanted,
            reasons=(reactive.reason if wins is None else Reason.PREDICTIVE_SCALE_UP, *guards),
            metric=reactive.metric,
            load=reactive.load,
            per_pod_target=reactive.per_pod_target,
            mode=mode,
            reactive_replicas=reactive.replicas,
            predictive_replicas=None if predicted is None else predicted.replicas,
            forecast_metric=None if wins is None else wins.kind,
            forecast_peak=None if wins is None else wins.peak,
            lead_s=None if wins is None else self.window_s,
            missing=reactive.missing,
            records=reactive.records,
        )

    def _predicted(self, inputs: PolicyInputs) -> _Prediction | None:
        """The largest proposal of the prediction metrics, as the HPA computes one for an External
        metric with an AverageValue target."""
        state, config = inputs.target.state, inputs.target.config
        current = state.spec_replicas
        best: _Prediction | None = None
        for kind in config.metrics:
            forecast = inputs.forecasts.get(kind)
            per_pod = config.per_pod_target(kind, state)
            if forecast is None or per_pod is None or per_pod <= 0:
                continue
            peak = peak_within(forecast, inputs.now, inputs.now + self.window_s)
            if peak is None:
                continue
            if config.within_tolerance(peak / (per_pod * current)):
                replicas = current
            else:
                replicas = pods_for(peak, per_pod)
            if best is None or replicas > best.replicas:
                best = _Prediction(replicas, peak, kind)
        return best
