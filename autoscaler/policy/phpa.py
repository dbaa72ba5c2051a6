"""The predictive-horizontal-pod-autoscaler (PHPA), as a peer to compare against (the simulator's
`phpa`).

Re-implemented from its public source and documentation (jthomperoo/predictive-horizontal-pod-
autoscaler): each sync the HPA's own calculation gives a replica count; models fitted on the history
of those counts predict the next one (`autoscaler.simulate.phpa` keeps that history and hands the
prediction in as the forecast); the decision type `maximum` takes the largest of the calculation
and the predictions; the result then goes through the HPA's stabilization and rate limits with
PHPA's own defaults (up: 100 % or 4 pods per 60 s; down: 100 % per 60 s; scale-down stabilization
300 s). Where it differs from the original is listed in the README.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from autoscaler.model import TargetConfig
from autoscaler.policy.decision import Decision, Mode, PolicyInputs, Reason
from autoscaler.policy.hpa import (
    HpaBehavior,
    RuleKind,
    ScalingRule,
    pods_for,
    reactive_proposal,
    settle,
)

__all__ = ["PHPA_BEHAVIOR", "PhpaPolicy"]

PHPA_BEHAVIOR = HpaBehavior(
    scale_up_rules=(ScalingRule(RuleKind.PERCENT, 100, 60.0), ScalingRule(RuleKind.PODS, 4, 60.0)),
    scale_down_rules=(ScalingRule(RuleKind.PERCENT, 100, 60.0),),
)


@dataclass(frozen=True, slots=True)
class PhpaPolicy:
    """The forecasts it is given carry the models' predicted replica count as the load that many
    pods carry at the metric's per-pod target (forecasts are load, the models predict replicas)."""

    behavior: HpaBehavior = field(default=PHPA_BEHAVIOR)

    @property
    def name(self) -> str:
        return "phpa"

    def memory_s(self, config: TargetConfig) -> float:
        return self.behavior.memory_s(config)

    def decide(self, inputs: PolicyInputs) -> Decision:
        state, config = inputs.target.state, inputs.target.config
        reactive = reactive_proposal(inputs, self.behavior)
        # (replicas, the load they stand for, how far ahead the models predicted)
        predicted: tuple[int, float, float] | None = None
        for kind in config.metrics if not (reactive.direct or reactive.holding) else ():
            forecast = inputs.forecasts.get(kind)
            per_pod = config.per_pod_target(kind, state)
            point = None if forecast is None else forecast.at(inputs.now)
            if forecast is None or point is None or per_pod is None:
                continue
            # The epsilon undoes the float noise of replicas × per-pod target ÷ per-pod target.
            replicas = pods_for(point[0], per_pod)
            if predicted is None or replicas > predicted[0]:
                predicted = (replicas, point[0], forecast.step_s)
        model_wins = predicted is not None and predicted[0] > reactive.replicas
        wanted = predicted[0] if model_wins and predicted is not None else reactive.replicas
        final, guards = settle(
            dataclasses.replace(reactive, replicas=wanted), config, self.behavior, inputs
        )
        mode = Mode.PREDICTIVE if model_wins else Mode.REACTIVE
        if reactive.holding:
            mode = Mode.HOLD
        return Decision(
            ref=state.ref,
            at=inputs.now,
            current=state.spec_replicas,
            replicas=final,
            recommendation=wanted,
            reasons=(Reason.PREDICTIVE_SCALE_UP if model_wins else reactive.reason, *guards),
            metric=reactive.metric,
            load=reactive.load,
            per_pod_target=reactive.per_pod_target,
            mode=mode,
            reactive_replicas=reactive.replicas,
            predictive_replicas=None if predicted is None else predicted[0],
            forecast_metric=reactive.metric if model_wins else None,
            forecast_peak=predicted[1] if model_wins and predicted is not None else None,
            lead_s=predicted[2] if model_wins and predicted is not None else None,
            missing=reactive.missing,
            records=reactive.records,
        )
