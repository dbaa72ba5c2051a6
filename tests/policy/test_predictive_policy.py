"""The predictive policy on hand-built inputs, one named case per reason path: predictive scale-up
ahead of a ramp, from the forecast or from the rise the samples show, and of load that recurs daily
even when the forecast is not trusted; a forecast holding pods the
reactive part would drop, and releasing them when it drops; held by stabilization; clamped by
bounds; fallback for no forecast, short history, poor accuracy (error, error as a share of the load,
coverage against the interval's level) and a stale forecast; rejection with hysteresis and re-arm;
hold on missing metrics; no memory scale-down on a forecast; no scale-down during a rollout; the
lead time from configured, measured or default start-up; and the one-line explanation."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import pytest

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
from autoscaler.policy import DecisionHistory, Mode, PolicyInputs, PredictivePolicy, Reason
from autoscaler.policy.decision import Observation, Recommendation
from autoscaler.workload_status import encode_status

NOW = 2_000_000.0
REF = TargetRef("shop", "web")
GOOD = ForecastQuality(checked=48, scaled_error=0.7, coverage=0.85)
DEFAULT_BOUNDS = Bounds(1, 100)
R = MetricKind.REQUESTS


def forecast(
    uppers: list[float],
    quality: ForecastQuality = GOOD,
    kind: MetricKind = R,
    start: float = NOW - 200,
    step: float = 300.0,
    level: float = 0.8,
) -> LoadForecast:
    """Buckets of `step` seconds from `start` (by default the current bucket began 200 s ago, so
    the first two overlap the default 150 s lead); means a little below the uppers."""
    times = tuple(start + i * step for i in range(len(uppers)))
    return LoadForecast(kind, start, step, times, tuple(u * 0.8 for u in uppers), tuple(uppers),
                        level, quality)  # fmt: skip


@dataclass(frozen=True)
class Case:
    load: float | None  # current aggregate load; a pod should carry 1.0
    current: int
    fc: LoadForecast | None
    want: int
    reasons: tuple[Reason, ...]
    mode: Mode
    bounds: Bounds = DEFAULT_BOUNDS
    recs: tuple[tuple[float, int], ...] = ()
    untrusted: frozenset[MetricKind] = frozenset()
    want_untrusted: frozenset[MetricKind] = frozenset()
    rollout: bool = False
    kind: MetricKind = R
    # (seconds before the current sample, value) of the samples earlier ticks saw.
    seen: tuple[tuple[float, float], ...] = ()


def decide(case: Case) -> tuple[int, tuple[Reason, ...], Mode, frozenset[MetricKind]]:
    if case.kind is MetricKind.MEMORY:
        config = TargetConfig(metrics=(case.kind,), bounds=case.bounds, target_utilization=1.0)
        state = WorkloadState(REF, case.current, case.current, pod_requests={MetricKind.MEMORY: 1.0},
                              rollout_in_progress=case.rollout)  # fmt: skip
        load = LoadSnapshot.of(memory=None if case.load is None else Sample(case.load, NOW - 30))
        forecasts = Forecasts.of(memory=case.fc)
    else:
        config = TargetConfig(
            metrics=(R,), bounds=case.bounds, per_pod={MetricKind.REQUESTS: 1.0}, target_utilization=1.0
        )
        state = WorkloadState(REF, case.current, case.current, rollout_in_progress=case.rollout)
        load = LoadSnapshot.of(requests=None if case.load is None else Sample(case.load, NOW - 30))
        forecasts = Forecasts.of(requests=case.fc)
    history = DecisionHistory(
        tuple(Recommendation(NOW - ago, n) for ago, n in case.recs),
        (),
        case.untrusted,
        tuple(Observation(NOW - 30 - ago, case.kind, v) for ago, v in case.seen),
    )
    d = PredictivePolicy().decide(PolicyInputs(Target(state, config), load, history, NOW, forecasts))
    return d.replicas, d.reasons, d.mode, d.untrusted


CASES = [
    pytest.param(
        Case(4.0, 4, forecast([4.2, 7.5]), 8, (Reason.PREDICTIVE_SCALE_UP,), Mode.PREDICTIVE),
        id="predictive-scale-up-ahead-of-ramp",
    ),
    pytest.param(
        Case(2.0, 10, forecast([6.5, 6.0]), 7, (Reason.FORECAST_HOLDS,), Mode.PREDICTIVE),
        id="forecast-holds-pods-load-will-need",
    ),
    pytest.param(
        Case(
            5.0,
            10,
            forecast([5.0, 5.0]),
            10,
            (Reason.SCALE_DOWN, Reason.HELD_BY_STABILIZATION),
            Mode.PREDICTIVE,
            recs=((120, 10),),
        ),
        id="scale-down-held-by-stabilization",
    ),
    pytest.param(
        Case(5.0, 10, forecast([5.0, 5.0]), 5, (Reason.SCALE_DOWN,), Mode.PREDICTIVE, recs=((200, 10),)),
        id="trusted-forecast-shortens-the-window-to-the-lead",
    ),
    pytest.param(
        Case(
            5.0,
            10,
            None,
            10,
            (Reason.SCALE_DOWN, Reason.FALLBACK_NO_FORECAST, Reason.HELD_BY_STABILIZATION),
            Mode.REACTIVE,
            recs=((200, 10),),
        ),
        id="without-a-forecast-the-full-window-holds",
    ),
    pytest.param(
        Case(
            5.0,
            10,
            forecast([5.0, 5.0], kind=MetricKind.MEMORY),
            10,
            (Reason.SCALE_DOWN, Reason.HELD_BY_STABILIZATION),
            Mode.PREDICTIVE,
            recs=((200, 10),),
            kind=MetricKind.MEMORY,
        ),
        id="memory-keeps-the-full-window-under-a-trusted-forecast",
    ),
    pytest.param(
        Case(
            4.0,
            4,
            forecast([4.0, 30.0]),
            8,
            (Reason.PREDICTIVE_SCALE_UP, Reason.RATE_LIMITED),
            Mode.PREDICTIVE,
        ),
        id="scale-up-rate-limited",
    ),
    pytest.param(
        Case(
            4.0,
            6,
            forecast([4.0, 30.0]),
            9,
            (Reason.PREDICTIVE_SCALE_UP, Reason.CLAMPED_TO_MAX),
            Mode.PREDICTIVE,
            bounds=Bounds(2, 9),
        ),
        id="clamped-by-max",
    ),
    pytest.param(
        Case(4.0, 4, None, 4, (Reason.WITHIN_TOLERANCE, Reason.FALLBACK_NO_FORECAST), Mode.REACTIVE),
        id="fallback-no-forecast",
    ),
    pytest.param(
        Case(
            4.0,
            4,
            forecast([9.0, 9.0], ForecastQuality(5, 0.5, 0.9)),
            4,
            (Reason.WITHIN_TOLERANCE, Reason.FALLBACK_SHORT_HISTORY),
            Mode.REACTIVE,
        ),
        id="fallback-short-history",
    ),
    pytest.param(
        Case(
            4.0,
            4,
            forecast([9.0, 9.0], ForecastQuality(48, 1.6, 0.9)),
            4,
            (Reason.WITHIN_TOLERANCE, Reason.FALLBACK_POOR_ACCURACY),
            Mode.REACTIVE,
            want_untrusted=frozenset({R}),
        ),
        id="fallback-poor-accuracy-error",
    ),
    pytest.param(
        Case(
            4.0,
            4,
            forecast([9.0, 9.0], ForecastQuality(48, 0.8, 0.4)),
            4,
            (Reason.WITHIN_TOLERANCE, Reason.FALLBACK_POOR_ACCURACY),
            Mode.REACTIVE,
            want_untrusted=frozenset({R}),
        ),
        id="fallback-poor-accuracy-coverage",
    ),
    pytest.param(
        Case(
            4.0,
            4,
            forecast([9.0, 9.0], ForecastQuality(48, 0.8, 0.9, relative_error=0.4)),
            4,
            (Reason.WITHIN_TOLERANCE, Reason.FALLBACK_POOR_ACCURACY),
            Mode.REACTIVE,
            want_untrusted=frozenset({R}),
        ),
        id="fallback-poor-accuracy-relative-error",
    ),
    pytest.param(
        Case(
            4.0,
            4,
            forecast([4.0, 4.0]),
            6,
            (Reason.PREDICTIVE_SCALE_UP,),
            Mode.PREDICTIVE,
            # 3.4 → 4.0 over the last 60 s: 0.01/s, carried on from the 4.0 sample (30 s old) to the
            # end of the 150 s lead → 5.8.
            seen=((60, 3.4), (30, 3.7)),
        ),
        id="predictive-scale-up-on-a-rising-trend",
    ),
    pytest.param(
        Case(
            4.0,
            4,
            forecast([4.0, 4.0]),
            4,
            (Reason.WITHIN_TOLERANCE,),
            Mode.PREDICTIVE,
            seen=((60, 4.6), (30, 4.3)),
        ),
        id="falling-load-has-no-trend",
    ),
    pytest.param(
        Case(
            4.0,
            4,
            forecast([4.0, 4.0], ForecastQuality(48, 1.6, 0.9)),
            4,
            (Reason.WITHIN_TOLERANCE, Reason.FALLBACK_POOR_ACCURACY),
            Mode.REACTIVE,
            want_untrusted=frozenset({R}),
            seen=((60, 3.4), (30, 3.7)),
        ),
        id="no-trend-while-the-forecast-is-rejected",
    ),
    pytest.param(
        Case(
            4.0,
            10,
            forecast([4.0, 4.0]),
            4,
            (Reason.SCALE_DOWN,),
            Mode.PREDICTIVE,
            recs=((240, 4), (120, 4)),
        ),
        id="forecast-lift-released-when-the-forecast-drops",
    ),
    pytest.param(
        Case(
            4.0,
            4,
            forecast([9.0, 9.0], ForecastQuality(48, 1.2, 0.9)),
            4,
            (Reason.WITHIN_TOLERANCE, Reason.FALLBACK_POOR_ACCURACY),
            Mode.REACTIVE,
            untrusted=frozenset({R}),
            want_untrusted=frozenset({R}),
        ),
        id="rejected-stays-rejected-until-clearly-better",
    ),
    pytest.param(
        Case(
            4.0,
            4,
            forecast([4.2, 7.5], ForecastQuality(48, 0.9, 0.9)),
            8,
            (Reason.PREDICTIVE_SCALE_UP,),
            Mode.PREDICTIVE,
            untrusted=frozenset({R}),
        ),
        id="re-armed-when-accuracy-recovers",
    ),
    pytest.param(
        Case(
            4.0,
            4,
            forecast([4.0, 7.9], ForecastQuality(48, 1.1, 0.9)),
            8,
            (Reason.PREDICTIVE_SCALE_UP,),
            Mode.PREDICTIVE,
        ),
        id="trusted-stays-trusted-inside-hysteresis",
    ),
    pytest.param(
        Case(
            4.0,
            4,
            forecast([9.0], start=NOW - 600),
            4,
            (Reason.WITHIN_TOLERANCE, Reason.FALLBACK_STALE_FORECAST),
            Mode.REACTIVE,
        ),
        id="fallback-stale-forecast",
    ),
    pytest.param(
        Case(None, 6, forecast([1.0, 1.0]), 6, (Reason.METRICS_MISSING,), Mode.HOLD),
        id="hold-on-missing-metrics",
    ),
    pytest.param(
        Case(
            6.0,
            6,
            forecast([0.5, 0.5], kind=MetricKind.MEMORY),
            6,
            (Reason.WITHIN_TOLERANCE,),
            Mode.PREDICTIVE,
            kind=MetricKind.MEMORY,
        ),
        id="no-memory-scale-down-on-forecast",
    ),
    pytest.param(
        Case(
            2.0,
            10,
            forecast([2.0, 2.0]),
            10,
            (Reason.SCALE_DOWN, Reason.ROLLOUT_IN_PROGRESS),
            Mode.PREDICTIVE,
            rollout=True,
        ),
        id="no-scale-down-during-rollout",
    ),
]


@pytest.mark.parametrize("case", CASES)
def test_predictive_decision(case: Case) -> None:
    assert decide(case) == (case.want, case.reasons, case.mode, case.want_untrusted)


@pytest.mark.parametrize(
    ("configured", "measured", "lead", "want"),
    [
        pytest.param(None, None, 150.0, 4, id="default-startup-misses-late-peak"),
        pytest.param(None, 400.0, 430.0, 12, id="measured-startup-reaches-it"),
        pytest.param(400.0, 30.0, 430.0, 12, id="configured-wins-over-measured"),
    ],
)
def test_lead_time(configured: float | None, measured: float | None, lead: float, want: int) -> None:
    # Buckets of 60 s from now: the peak sits in the bucket starting at now + 300 s.
    fc = forecast([4.0, 4.0, 4.0, 4.0, 4.0, 12.0, 4.0, 4.0], start=NOW, step=60)
    config = TargetConfig(metrics=(R,), bounds=DEFAULT_BOUNDS, per_pod={MetricKind.REQUESTS: 1.0},
                          target_utilization=1.0, startup_s=configured)  # fmt: skip
    state = WorkloadState(REF, 4, 4, measured_startup_s=measured)
    inputs = PolicyInputs(
        Target(state, config), LoadSnapshot.of(requests=Sample(4.0, NOW - 30)), DecisionHistory(),
        NOW, Forecasts.of(requests=fc),
    )  # fmt: skip
    policy = PredictivePolicy(interval_s=30.0)
    assert policy.lead_s(inputs) == lead
    d = policy.decide(inputs)
    assert d.predictive_replicas == want
    assert d.lead_s == lead


def test_explanation_shows_forecast_and_lead() -> None:
    config = TargetConfig(
        metrics=(R,), bounds=DEFAULT_BOUNDS, per_pod={MetricKind.REQUESTS: 50.0}, target_utilization=1.0
    )
    state = WorkloadState(REF, 4, 4)
    inputs = PolicyInputs(
        Target(state, config), LoadSnapshot.of(requests=Sample(200.0, NOW - 30)), DecisionHistory(),
        NOW, Forecasts.of(requests=forecast([210.0, 340.0])),
    )  # fmt: skip
    line = PredictivePolicy().decide(inputs).explain()
    assert line == (
        "scaled 4→7: predictive-scale-up; requests load 200 at 50/pod; "
        "forecast requests 80% ≤ 340 within 150s lead → 7, reactive 4"
    )


def test_explanation_shows_the_rise_and_where_a_rate_window_puts_it() -> None:
    # A 120 s rate describes the minute before its time stamp: the rise is carried from there.
    config = TargetConfig(
        metrics=(R,), bounds=DEFAULT_BOUNDS, per_pod={MetricKind.REQUESTS: 50.0}, target_utilization=1.0
    )
    history = DecisionHistory(seen=(Observation(NOW - 90, R, 170.0),))
    inputs = PolicyInputs(
        Target(WorkloadState(REF, 4, 4), config),
        LoadSnapshot.of(requests=Sample(200.0, NOW - 30, window_s=120.0)), history, NOW,
        Forecasts.of(requests=forecast([210.0, 220.0])),
    )  # fmt: skip
    decision = PredictivePolicy().decide(inputs)
    assert decision.trend_load == pytest.approx(200.0 + 0.5 * 240)
    # The status annotation carries the same figures as the line.
    shown = json.loads(encode_status(decision, dry_run=False))["forecast"]
    assert shown == {"metric": "requests", "peak": 220.0, "level": 0.8, "risingTo": 320.0,
                        "leadSeconds": 150.0}  # fmt: skip
    assert decision.explain() == (
        "scaled 4→7: predictive-scale-up; requests load 200 at 50/pod; "
        "forecast requests 80% ≤ 220, rising to 320 within 150s lead → 7, reactive 4"
    )


def test_forecast_upper_bound_is_sized_at_full_capacity() -> None:
    # Target 0.7 of a 1.0/s pod: the reactive part wants load/0.7, the forecast's upper bound only
    # has to fit at 100 % (the interval is the margin).
    config = TargetConfig(metrics=(R,), bounds=DEFAULT_BOUNDS, per_pod={MetricKind.REQUESTS: 0.7},
                          target_utilization=0.7)  # fmt: skip
    state = WorkloadState(REF, 6, 6)
    inputs = PolicyInputs(
        Target(state, config), LoadSnapshot.of(requests=Sample(4.2, NOW - 30)), DecisionHistory(),
        NOW, Forecasts.of(requests=forecast([4.2, 6.6])),
    )  # fmt: skip
    d = PredictivePolicy().decide(inputs)
    assert (d.reactive_replicas, d.predictive_replicas, d.replicas) == (6, 7, 7)


@pytest.mark.parametrize(
    ("level", "coverage", "trusted", "relative_error"),
    [
        pytest.param(0.5, 0.5, True, None, id="50pct-interval-covering-half-is-near-its-75pct-promise"),
        pytest.param(0.8, 0.5, False, None, id="80pct-interval-covering-half-breaks-its-90pct-promise"),
        pytest.param(0.8, 0.65, True, None, id="80pct-interval-a-little-short-is-kept"),
        pytest.param(
            0.5, 0.1, True, 0.01, id="forecast-within-1pct-of-the-load-is-kept-whatever-its-coverage"
        ),
        pytest.param(0.5, 0.1, True, 0.08, id="forecast-8pct-off-is-within-the-hpa-tolerance-and-kept"),
        pytest.param(0.5, 0.1, False, 0.15, id="forecast-15pct-off-with-poor-coverage-is-rejected"),
    ],
)
def test_coverage_is_judged_against_the_level(
    level: float, coverage: float, trusted: bool, relative_error: float | None
) -> None:
    quality = ForecastQuality(48, 0.8, coverage, relative_error)
    fc = forecast([4.2, 7.5], quality, level=level)
    replicas, reasons, mode, _ = decide(Case(4.0, 4, fc, 0, (), Mode.PREDICTIVE))
    assert (mode is Mode.PREDICTIVE) == trusted
    assert (Reason.FALLBACK_POOR_ACCURACY in reasons) == (not trusted)
    assert replicas == (8 if trusted else 4)


def test_history_keeps_each_sample_once_and_forgets_old_ones() -> None:
    history = DecisionHistory()
    for tick in range(12):
        now = NOW + 15 * tick
        # A source that scrapes every 30 s hands out each sample on two ticks.
        sample = Sample(1.0 + tick // 2, NOW - 30 + 30 * (tick // 2))
        decision = PredictivePolicy().decide(
            PolicyInputs(
                Target(
                    WorkloadState(REF, 4, 4),
                    TargetConfig(
                        metrics=(R,), bounds=DEFAULT_BOUNDS, per_pod={MetricKind.REQUESTS: 1.0}
                    ),
                ),
                LoadSnapshot.of(requests=sample),
                history,
                now,
            )
        )
        history = history.after(
            decision, applied=True, keep_s=100.0, load=LoadSnapshot.of(requests=sample)
        )
    # Six distinct samples were handed out; the last tick (now + 165 s) keeps the last 100 s.
    assert [(o.at - NOW, o.value) for o in history.seen] == [(90.0, 5.0), (120.0, 6.0)]


POOR = ForecastQuality(checked=48, scaled_error=2.0, coverage=0.2)


@pytest.mark.parametrize(
    ("recurring", "want", "first", "mode"),
    [
        # 9 came at this time on most days: up ahead of it (as far as the rate limit lets, 3 → 7).
        pytest.param((3.0, 9.0), 7, Reason.RECURRING_LOAD, Mode.PREDICTIVE, id="lifts-ahead"),
        # What recurs is within what the load needs now: the HPA's answer, as without it.
        pytest.param((2.0, 2.5), 3, Reason.WITHIN_TOLERANCE, Mode.REACTIVE, id="below-the-load"),
    ],
)
def test_load_that_recurs_daily_lifts_replicas_whether_or_not_the_model_is_trusted(
    recurring: tuple[float, float], want: int, first: Reason, mode: Mode
) -> None:
    untrusted = dataclasses.replace(forecast([3.0, 3.0], quality=POOR), recurring=recurring)
    replicas, reasons, got_mode, _ = decide(Case(3.0, 3, untrusted, want, (), Mode.REACTIVE))
    assert replicas == want
    assert reasons[0] is first
    assert Reason.FALLBACK_POOR_ACCURACY in reasons
    assert got_mode is mode


def test_explanation_names_recurring_load_without_an_interval_level() -> None:
    untrusted = dataclasses.replace(forecast([3.0, 3.0], quality=POOR), recurring=(3.0, 9.0))
    config = TargetConfig(metrics=(R,), bounds=DEFAULT_BOUNDS, per_pod={R: 1.0}, target_utilization=1.0)
    state = WorkloadState(REF, 3, 3)
    inputs = PolicyInputs(
        Target(state, config), LoadSnapshot.of(requests=Sample(3.0, NOW - 30)), DecisionHistory(),
        NOW, Forecasts.of(requests=untrusted),
    )  # fmt: skip
    text = PredictivePolicy().decide(inputs).explain()
    assert text.startswith("scaled 3→7: recurring-load, fallback-poor-accuracy")
    assert "recurring requests 9 within 150s lead → 9, reactive 3" in text


@pytest.mark.parametrize(
    ("quality", "untrusted"),
    [pytest.param(GOOD, frozenset(), id="trusted"), pytest.param(POOR, frozenset({R}), id="untrusted")],
)
def test_decision_carries_each_scored_forecast_error_trusted_or_not(
    quality: ForecastQuality, untrusted: frozenset[MetricKind]
) -> None:
    config = TargetConfig(metrics=(R,), bounds=DEFAULT_BOUNDS, per_pod={R: 50.0}, target_utilization=1.0)
    inputs = PolicyInputs(
        Target(WorkloadState(REF, 4, 4), config), LoadSnapshot.of(requests=Sample(200.0, NOW - 30)),
        DecisionHistory(), NOW, Forecasts.of(requests=forecast([210.0, 340.0], quality=quality)),
    )  # fmt: skip
    decision = PredictivePolicy().decide(inputs)
    assert decision.forecast_errors == ((R, quality.scaled_error),)
    assert decision.untrusted == untrusted
