"""The `phpa` peer's decision: the largest of the HPA's calculation and the models' predictions,
through the HPA's guards with PHPA's own 60-second rate limits."""

from __future__ import annotations

from autoscaler.metrics import MetricKind
from autoscaler.model import (
    Bounds,
    ForecastQuality,
    Forecasts,
    LoadForecast,
    LoadSnapshot,
    Sample,
    Target,
    TargetConfig,
    TargetRef,
    WorkloadState,
)
from autoscaler.policy import Decision, DecisionHistory, HpaPolicy, Mode, PolicyInputs, Reason
from autoscaler.policy.decision import ScaleEvent
from autoscaler.policy.phpa import PhpaPolicy

REQUESTS = MetricKind.REQUESTS
NOW = 10_000.0
REF = TargetRef("shop", "agent")
NO_HISTORY = DecisionHistory()
CONFIG = TargetConfig(metrics=(REQUESTS,), bounds=Bounds(1, 60), per_pod={REQUESTS: 10.0})


def predicted(replicas: int) -> Forecasts:
    load = (replicas * 10.0,)
    forecast = LoadForecast(REQUESTS, NOW, 15.0, (NOW,), load, load, 0.5, ForecastQuality(0, None, None))
    return Forecasts({REQUESTS: forecast})


def inputs(
    load: float | None,
    forecasts: Forecasts,
    spec: int = 5,
    history: DecisionHistory = NO_HISTORY,
) -> PolicyInputs:
    target = Target(WorkloadState(REF, spec_replicas=spec, ready_replicas=spec), CONFIG)
    snapshot = LoadSnapshot.of(requests=None if load is None else Sample(load, NOW - 30))
    return PolicyInputs(target, snapshot, history, NOW, forecasts)


def decide(load: float | None, forecasts: Forecasts, **kw: object) -> Decision:
    return PhpaPolicy().decide(inputs(load, forecasts, **kw))  # type: ignore[arg-type]


def test_a_larger_prediction_decides() -> None:
    decision = decide(50.0, predicted(8))
    assert (decision.replicas, decision.recommendation, decision.mode) == (8, 8, Mode.PREDICTIVE)
    assert decision.reasons == (Reason.PREDICTIVE_SCALE_UP,)
    assert decision.reactive_replicas == 5
    assert "within 15s lead" in decision.explain()


def test_a_smaller_prediction_leaves_the_hpas_calculation() -> None:
    decision = decide(90.0, predicted(3))
    assert (decision.replicas, decision.mode, decision.reasons) == (9, Mode.REACTIVE, (Reason.SCALE_UP,))


def test_without_a_prediction_it_is_the_hpa_calculation() -> None:
    assert decide(90.0, Forecasts()).replicas == 9


def test_scale_up_is_limited_per_60_seconds_not_per_15() -> None:
    # Five pods were added 30 s ago (5 → 10): PHPA's window still counts them, the HPA's has passed.
    history = DecisionHistory(scale_events=(ScaleEvent(NOW - 30, 5),))
    phpa = decide(400.0, Forecasts(), spec=10, history=history)
    hpa = HpaPolicy().decide(inputs(400.0, Forecasts(), spec=10, history=history))
    assert (phpa.replicas, phpa.reasons) == (10, (Reason.SCALE_UP, Reason.RATE_LIMITED))
    assert hpa.replicas == 20


def test_without_metrics_it_holds_whatever_the_models_predict() -> None:
    decision = decide(None, predicted(30))
    assert (decision.replicas, decision.mode) == (5, Mode.HOLD)
    assert decision.reasons == (Reason.METRICS_MISSING,)
