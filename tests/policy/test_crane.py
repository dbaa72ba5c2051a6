"""The `crane` peer's decision: the prediction as a second, External AverageValue metric inside the
HPA's calculation, the larger proposal winning, then the HPA's own guards."""

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
from autoscaler.policy.crane import CranePolicy, peak_within
from autoscaler.policy.decision import Recommendation

REQUESTS = MetricKind.REQUESTS
MINUTE = 60.0
NOW = 100_000 * MINUTE + 15.0
REF = TargetRef("shop", "agent")
NO_HISTORY = DecisionHistory()
CONFIG = TargetConfig(metrics=(REQUESTS,), bounds=Bounds(1, 60), per_pod={REQUESTS: 10.0})


def prediction(*loads: float, start: float = NOW - 15.0) -> Forecasts:
    """One predicted load per minute, the first for the minute that begins at `start`."""
    times = tuple(start + i * MINUTE for i in range(len(loads)))
    forecast = LoadForecast(
        REQUESTS, start, MINUTE, times, loads, loads, 0.5, ForecastQuality(0, None, None)
    )
    return Forecasts({REQUESTS: forecast})


def flat(load: float, minutes: int = 120) -> Forecasts:
    return prediction(*([load] * minutes))


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
    return CranePolicy().decide(inputs(load, forecasts, **kw))  # type: ignore[arg-type]


def hpa(load: float | None, **kw: object) -> Decision:
    return HpaPolicy().decide(inputs(load, Forecasts(), **kw))  # type: ignore[arg-type]


def test_a_larger_prediction_metric_decides() -> None:
    decision = decide(50.0, flat(90.0))
    assert (decision.replicas, decision.recommendation, decision.mode) == (9, 9, Mode.PREDICTIVE)
    assert decision.reasons == (Reason.PREDICTIVE_SCALE_UP,)
    assert (decision.reactive_replicas, decision.predictive_replicas) == (5, 9)
    assert (decision.forecast_metric, decision.forecast_peak, decision.lead_s) == (
        REQUESTS,
        90.0,
        3600.0,
    )
    assert "within 3600s lead" in decision.explain()


def test_the_largest_prediction_of_the_coming_hour_counts_and_no_later_one() -> None:
    # A surge 50 minutes ahead is within the window; one 70 minutes ahead is not yet.
    soon = [50.0] * 120
    soon[50] = 80.0
    later = [50.0] * 120
    later[70] = 80.0
    assert decide(50.0, prediction(*soon)).replicas == 8
    decision = decide(50.0, prediction(*later))
    assert (decision.replicas, decision.predictive_replicas, decision.mode) == (5, 5, Mode.REACTIVE)


def test_the_window_holds_the_minutes_that_end_within_the_hour() -> None:
    forecast = flat(1.0).get(REQUESTS)
    assert forecast is not None
    # Minute i ends at start + (i + 1) min: the one ending just before now is out.
    start = forecast.times[0]
    assert peak_within(forecast, start + MINUTE, start + 61 * MINUTE) == 1.0
    assert peak_within(forecast, start + 200 * MINUTE, start + 260 * MINUTE) is None


def test_a_smaller_prediction_leaves_the_hpas_answer() -> None:
    decision = decide(90.0, flat(30.0))
    assert decision.replicas == 9
    assert decision.reasons == (Reason.SCALE_UP,)
    assert decision.mode is Mode.REACTIVE
    assert decision.predictive_replicas == 3
    assert decision.forecast_peak is None


def test_a_prediction_within_the_tolerance_proposes_the_current_count() -> None:
    # 54 over 5 pods of 10 is a ratio of 1.08, 56 one of 1.12: the HPA's tolerance is 0.1.
    assert decide(50.0, flat(54.0)).predictive_replicas == 5
    assert decide(50.0, flat(56.0)).predictive_replicas == 6
    # Within the tolerance the prediction still proposes the current count, above a lower load's.
    decision = decide(20.0, flat(54.0))
    assert (decision.replicas, decision.mode) == (5, Mode.PREDICTIVE)
    assert hpa(20.0).replicas == 2


def test_the_prediction_holds_pods_through_a_dip_of_the_actual_load() -> None:
    # The HPA would scale 8 pods down to 2; the prediction of 80 keeps 8.
    decision = decide(20.0, flat(80.0), spec=8)
    assert hpa(20.0, spec=8).replicas == 2
    assert (decision.replicas, decision.mode) == (8, Mode.PREDICTIVE)


def test_the_hpas_guards_apply_to_the_prediction_metric() -> None:
    # The scale-up rule allows at most double (or 4 more) per 15 s.
    assert decide(20.0, flat(400.0), spec=2).replicas == 6
    assert decide(50.0, flat(1_000.0)).replicas == 10
    # The scale-down window keeps the highest recent recommendation.
    history = DecisionHistory(recommendations=(Recommendation(NOW - 60, 9),))
    decision = decide(30.0, flat(70.0), spec=9, history=history)
    assert decision.recommendation == 7
    assert decision.replicas == 9
    assert decision.reasons == (Reason.PREDICTIVE_SCALE_UP, Reason.HELD_BY_STABILIZATION)


def test_without_a_prediction_it_is_the_hpa() -> None:
    for load in (10.0, 50.0, 90.0, 400.0):
        assert decide(load, Forecasts()) == hpa(load)


def test_holds_stay_the_hpas() -> None:
    surge = flat(500.0)
    assert decide(None, surge) == hpa(None)
    assert decide(50.0, surge, spec=0) == hpa(50.0, spec=0)
    assert decide(50.0, surge, spec=80) == hpa(50.0, spec=80)
    held = decide(None, surge)
    assert (held.replicas, held.mode, held.reasons) == (5, Mode.HOLD, (Reason.METRICS_MISSING,))
