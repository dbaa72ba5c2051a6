"""The `scheduled` peer: a capacity schedule from a forecast, in force `buffer_s` ahead, as a floor
under the HPA's own decision."""

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
from autoscaler.policy import Decision, DecisionHistory, Mode, PolicyInputs, Reason
from autoscaler.policy.scheduled import ScheduledPolicy

REQUESTS = MetricKind.REQUESTS
HOUR = 3600.0
NOW = 1_000 * HOUR - 600.0  # ten minutes before an hour begins
REF = TargetRef("shop", "agent")
CONFIG = TargetConfig(metrics=(REQUESTS,), bounds=Bounds(1, 30), per_pod={REQUESTS: 10.0})


def schedule(this_hour: float, next_hour: float) -> Forecasts:
    start = NOW - NOW % HOUR
    forecast = LoadForecast(
        REQUESTS,
        start,
        HOUR,
        (start, start + HOUR),
        (this_hour, next_hour),
        (this_hour, next_hour),
        0.5,
        ForecastQuality(0, None, None),
    )
    return Forecasts({REQUESTS: forecast})


def decide(load: float, forecasts: Forecasts, now: float = NOW, spec: int = 5) -> Decision:
    target = Target(WorkloadState(REF, spec_replicas=spec, ready_replicas=spec), CONFIG)
    snapshot = LoadSnapshot.of(requests=Sample(load, now - 30))
    return ScheduledPolicy().decide(PolicyInputs(target, snapshot, DecisionHistory(), now, forecasts))


def test_the_next_hours_capacity_is_in_force_from_the_buffer_before_it() -> None:
    early = decide(50.0, schedule(50.0, 200.0), now=NOW - 120)  # 12 minutes before the hour
    within_buffer = decide(50.0, schedule(50.0, 200.0), now=NOW + 360)  # 4 minutes before it
    assert (early.replicas, early.mode) == (5, Mode.REACTIVE)
    assert (within_buffer.replicas, within_buffer.mode) == (20, Mode.PREDICTIVE)
    assert within_buffer.reasons[0] is Reason.PREDICTIVE_SCALE_UP
    assert within_buffer.reactive_replicas == 5


def test_the_schedule_never_scales_in_below_what_the_load_needs() -> None:
    decision = decide(90.0, schedule(10.0, 10.0))
    assert (decision.replicas, decision.mode) == (9, Mode.REACTIVE)


def test_without_a_schedule_it_is_the_hpa() -> None:
    decision = decide(90.0, Forecasts())
    assert (decision.replicas, decision.reasons) == (9, (Reason.SCALE_UP,))


def test_the_schedule_stays_within_the_bounds() -> None:
    decision = decide(50.0, schedule(50.0, 1_000.0), now=NOW + 360)
    assert decision.replicas == 30


def test_a_workload_scaled_to_zero_is_left_alone() -> None:
    decision = decide(50.0, schedule(500.0, 500.0), spec=0)
    assert (decision.replicas, decision.reasons) == (0, (Reason.SCALING_DISABLED,))
