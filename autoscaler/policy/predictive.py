"""The predictive policy: replicas that carry the forecast load when new pods would be ready, never
fewer than the HPA would run now, and the HPA alone whenever the forecast cannot be trusted.

- Predictive part, per metric: the highest upper bound of the prediction interval over
  `[now, now + lead]`, divided by what one pod can carry at full capacity (its target divided by the
  target utilization). The interval already is the safety margin: dividing its upper bound by the
  target utilization as well counts the margin twice, which measured +27 % pod-hours over the HPA on
  NASA July for no gain in service a cheaper setting could not also buy. The lead is the pod start-up
  time (configured, else measured from recent pods, else a default) plus one tick, because a pod
  created now serves only from then on.
- Reactive part: the HPA's proposal on current load (`reactive_proposal`). The final proposal is the
  larger of the two, so a forecast can add pods ahead of load but can never remove pods the current
  load needs; in particular no metric (memory included) is ever scaled down on a forecast alone.
- Trust gate, per metric: a forecast is used only once enough of its predecessors have been scored
  and their error and coverage are acceptable; once rejected it is re-armed only past stricter
  thresholds (hysteresis), so the policy does not flap between modes.
- Guards, as the HPA: scale-down stabilization over the recorded proposals (which include the
  forecast, so the window also covers what is coming), rate limits, min/max bounds; plus a hold on
  missing metrics and no scale-down during a rollout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from autoscaler.model import ForecastQuality, LoadForecast, MetricKind, TargetConfig
from autoscaler.policy.decision import Decision, Mode, PolicyInputs, Reason
from autoscaler.policy.hpa import DEFAULT_BEHAVIOR, HpaBehavior, normalize, reactive_proposal

__all__ = ["PredictivePolicy", "TrustRules"]


@dataclass(frozen=True, slots=True)
class TrustRules:
    """When a metric's forecasts may drive replicas. Errors are scaled by the error of "no change"
    over the same horizon; coverage is the share of actuals at or under the upper bound."""

    min_checks: int = 12
    reject_error: float = 1.3
    rearm_error: float = 1.0
    reject_coverage: float = 0.6
    rearm_coverage: float = 0.7

    def verdict(self, quality: ForecastQuality, rejected_before: bool) -> Reason | None:
        """None when the forecast may be used, else the fallback reason."""
        if quality.checked < self.min_checks:
            return Reason.FALLBACK_SHORT_HISTORY
        error_limit = self.rearm_error if rejected_before else self.reject_error
        coverage_floor = self.rearm_coverage if rejected_before else self.reject_coverage
        if quality.scaled_error is not None and quality.scaled_error > error_limit:
            return Reason.FALLBACK_POOR_ACCURACY
        if quality.coverage is not None and quality.coverage < coverage_floor:
            return Reason.FALLBACK_POOR_ACCURACY
        return None


DEFAULT_TRUST = TrustRules()


@dataclass(frozen=True, slots=True)
class _Prediction:
    replicas: int
    kind: MetricKind
    peak: float
    level: float


@dataclass(frozen=True, slots=True)
class PredictivePolicy:
    behavior: HpaBehavior = DEFAULT_BEHAVIOR
    trust: TrustRules = DEFAULT_TRUST
    interval_s: float = 30.0
    # Start-up assumed until one is configured or measured: long enough for a typical service.
    default_startup_s: float = 120.0

    @property
    def name(self) -> str:
        return "predictive"

    def memory_s(self, config: TargetConfig) -> float:
        return self.behavior.memory_s(config)

    def lead_s(self, inputs: PolicyInputs) -> float:
        configured = inputs.target.config.startup_s
        measured = inputs.target.state.measured_startup_s
        startup = (
            configured
            if configured is not None
            else measured
            if measured is not None
            else self.default_startup_s
        )
        return startup + self.interval_s

    def decide(self, inputs: PolicyInputs) -> Decision:
        state = inputs.target.state
        config = inputs.target.config
        current = state.spec_replicas
        now = inputs.now
        reactive = reactive_proposal(inputs, self.behavior)
        lead = self.lead_s(inputs)

        untrusted = set(inputs.history.untrusted)
        fallbacks: list[Reason] = []
        best: _Prediction | None = None
        if not reactive.holding:
            for kind in config.metrics:
                forecast = inputs.forecasts.get(kind)
                per_pod = config.per_pod_target(kind, state)
                if forecast is None or per_pod is None:
                    fallbacks.append(Reason.FALLBACK_NO_FORECAST)
                    continue
                capacity = per_pod / config.target_utilization
                prediction, fallback = self._predict(forecast, capacity, now, lead, kind in untrusted)
                if fallback is Reason.FALLBACK_POOR_ACCURACY:
                    untrusted.add(kind)
                elif fallback is None:
                    untrusted.discard(kind)
                if prediction is None:
                    fallbacks.append(fallback or Reason.FALLBACK_NO_FORECAST)
                elif best is None or prediction.replicas > best.replicas:
                    best = prediction

        proposal = reactive.replicas
        first = reactive.reason
        mode = Mode.HOLD if reactive.holding else Mode.REACTIVE
        if best is not None:
            mode = Mode.PREDICTIVE
            if best.replicas > max(reactive.replicas, current):
                proposal, first = best.replicas, Reason.PREDICTIVE_SCALE_UP
            elif best.replicas > reactive.replicas:
                proposal, first = best.replicas, Reason.FORECAST_HOLDS

        final, guards = normalize(proposal, current, config, self.behavior, inputs.history, now)
        reasons = [first, *dict.fromkeys(fallbacks), *guards]
        if state.rollout_in_progress and final < current:
            final = current
            reasons.append(Reason.ROLLOUT_IN_PROGRESS)
        return Decision(
            ref=state.ref,
            at=now,
            current=current,
            replicas=final,
            recommendation=proposal,
            reasons=tuple(reasons),
            metric=reactive.metric,
            load=reactive.load,
            per_pod_target=reactive.per_pod_target,
            mode=mode,
            reactive_replicas=reactive.replicas,
            predictive_replicas=None if best is None else best.replicas,
            forecast_metric=None if best is None else best.kind,
            forecast_peak=None if best is None else best.peak,
            forecast_level=None if best is None else best.level,
            lead_s=lead,
            untrusted=frozenset(untrusted),
        )

    def _predict(
        self, forecast: LoadForecast, capacity: float, now: float, lead: float, rejected: bool
    ) -> tuple[_Prediction | None, Reason | None]:
        verdict = self.trust.verdict(forecast.quality, rejected)
        if verdict is not None:
            return None, verdict
        # A bucket's forecast is its mean: on a rise the load at the end of the lead is above its
        # bucket's mean, so half a bucket more brings in the next bucket that bounds it.
        peak = forecast.peak_upper(now, now + lead + forecast.step_s / 2)
        if peak is None:
            return None, Reason.FALLBACK_STALE_FORECAST
        replicas = math.ceil(peak / capacity - 1e-9)
        return _Prediction(replicas, forecast.kind, peak, forecast.level), None
