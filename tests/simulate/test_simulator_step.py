"""A step-shaped trace replayed through the simulator with the HPA, against a replica timeline worked
out by hand below; and the simulated world's own rules (pods bill from creation, turn ready after the
start-up delay, leave newest first; metrics are a lagged window mean, capped for CPU traces).

The hand computation. Demand is 2/s, 5/s from t=300 s and 2/s again from t=900 s (trace step 15 s);
pod capacity 1/s at target utilization 0.5, so a pod should carry 0.5/s; start-up 60 s. A tick at t
sees the exact mean over (t-90, t-30] of the demand, linear between the 15 s points, i.e. the
trapezoid (½·D(t-90) + D(t-75) + D(t-60) + D(t-45) + ½·D(t-30)) / 4.

- t < 90: no sample yet, hold at the initial ceil(2/0.5) = 4 pods.
- t = 330: mean (1 + 2 + 2 + 2 + 2.5)/4 = 2.375, ratio 2.375/(4·0.5) = 1.1875 > 1.1 → ceil(4.75) = 5.
- t = 345: mean 12.5/4 = 3.125 over 4 ready of 5 → ratio 1.5625 > 1, so the not-ready pod counts as
  idle: 3.125/(5·0.5) = 1.25 → ceil(6.25) = 7 (limit: 2 × 5 = 10, the 330 s event is one period old).
- t = 360: mean 15.5/4 = 3.875, 4 ready of 7 → 3.875/3.5 = 1.107 > 1.1 → ceil(7.75) = 8.
- t = 375: mean 18.5/4 = 4.625, 4 ready of 8 → 4.625/4 = 1.156 → ceil(9.25) = 10.
- t ≥ 390: mean 5 over 10 pods → ratio 1.0 with the not-ready ones at 0 % → hold 10 (and ratio 1.0
  once all are ready at 435).
- Down: t = 930 sees 4.625 → ratio 0.925, within tolerance, proposal 10; t = 945, 960, 975 propose
  8, 7, 5 and 4 from t = 990. The last proposal of 10 (t = 930) leaves the 300 s window after
  t = 1230, so the count steps 10 → 8 (1230) → 7 (1245) → 5 (1260) → 4 (1275).
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from autoscaler.metrics import MetricKind
from autoscaler.simulate import Grid, Scenario, Trace, run, score

T0 = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp())


def step_trace(step_s: int = 15, end_s: int = 1800) -> Trace:
    times = np.arange(0, end_s + 1, step_s, dtype=np.int64)
    rate = np.where((times >= 300) & (times < 900), 5.0, 2.0)
    return Trace("step", times + T0, rate * step_s, step_s)


SCENARIO = Scenario(
    kind=MetricKind.REQUESTS,
    capacity=1.0,
    target_utilization=0.5,
    startup_delay_s=60,
    warmup_s=0,
)

EXPECTED_DESIRED = [(0, 4), (330, 5), (345, 7), (360, 8), (375, 10), (1230, 8), (1245, 7),
                    (1260, 5), (1275, 4)]  # fmt: skip
EXPECTED_READY = [(0, 4), (390, 5), (405, 7), (420, 8), (435, 10), (1230, 8), (1245, 7),
                  (1260, 5), (1275, 4)]  # fmt: skip


def changes(series: np.ndarray, times: np.ndarray) -> list[tuple[int, int]]:
    out = [(0, int(series[0]))]
    for k in range(1, len(series)):
        if series[k] != series[k - 1]:
            out.append((int(times[k]) - T0, int(series[k])))
    return out


def test_hpa_replica_timeline_on_a_step() -> None:
    result = run("hpa", Grid.over(step_trace(), 15), SCENARIO)
    times = result.grid.times
    assert changes(result.desired, times) == EXPECTED_DESIRED
    assert changes(result.ready, times) == EXPECTED_READY


def test_metrics_missing_until_the_first_window_is_visible() -> None:
    result = run("hpa", Grid.over(step_trace(), 15), SCENARIO)
    first_seen = int(np.argmax(~np.isnan(result.observed)))
    # Window (t-90, t-30] needs the point at t-90 >= start.
    assert int(result.grid.times[first_seen]) - T0 == 90
    # The first change records why it happened.
    assert result.changes[0].explain().startswith("scaled 4→5: scale-up")


def test_step_scores_match_the_timeline() -> None:
    grid = Grid.over(step_trace(), 15)
    oracle = run("oracle", grid, SCENARIO)
    hpa = run("hpa", grid, SCENARIO)
    oracle_hours = score(oracle, 1.0).pod_hours
    o = score(oracle, oracle_hours)
    s = score(hpa, oracle_hours)
    # 4 ready pods serve 4/s until 390 s. Demand ramps 2 → 5 over [285, 300), above 4/s for its
    # last 5 s, then stays at 5/s: overloaded 5 + 90 = 95 s of the 1800 s.
    assert s.overload_pct == pytest.approx(100 * 95 / 1800)
    assert o.overload_pct == 0.0
    assert o.cost_vs_oracle == 1.0


@pytest.mark.parametrize(
    ("kind", "expected_peak"),
    [
        pytest.param(MetricKind.REQUESTS, 5.0, id="requests-counted-uncapped"),
        pytest.param(MetricKind.CPU, 4.0, id="cpu-capped-at-ready-capacity"),
    ],
)
def test_saturation_depends_on_trace_kind(kind: MetricKind, expected_peak: float) -> None:
    # Never scale: min = max = 4 pods of capacity 1, demand peaks at 5.
    scenario = Scenario(kind=kind, capacity=1.0, target_utilization=0.5, startup_delay_s=60,
                        warmup_s=0, min_replicas=4, max_replicas=4)  # fmt: skip
    result = run("hpa", Grid.over(step_trace(), 15), scenario)
    assert np.nanmax(result.observed) == pytest.approx(expected_peak)


def test_pods_bill_from_creation_and_leave_newest_first() -> None:
    result = run("hpa", Grid.over(step_trace(), 15), SCENARIO)
    t = result.grid.times - T0

    def at(second: int) -> int:
        return int(np.searchsorted(t, second))

    # Created at 330, billed at once, ready 60 s later.
    assert (result.pods[at(330)], result.ready[at(330)]) == (5, 4)
    assert (result.pods[at(375)], result.ready[at(375)]) == (10, 4)
    # Removal takes the newest (here all ready) pods at once.
    assert (result.pods[at(1230)], result.ready[at(1230)]) == (8, 8)
