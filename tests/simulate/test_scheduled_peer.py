"""The `scheduled` peer through the simulator: a load that jumps at 09:00 every day is met with ready
pods on the second day, where the HPA only reacts to it."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from autoscaler.metrics import MetricKind
from autoscaler.simulate import Grid, Scenario, Trace, run

T0 = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp())
DAY = 86_400
STEP = 300
SCENARIO = Scenario(
    kind=MetricKind.REQUESTS,
    capacity=1.0,
    target_utilization=0.5,
    startup_delay_s=120,
    warmup_s=0,
)


def morning_rush(days: int) -> Trace:
    """2 load units/s, and 20 from 09:00 to 10:00 each day."""
    times = np.arange(0, days * DAY, STEP, dtype=np.int64)
    hour = (times % DAY) // 3600
    rate = np.where(hour == 9, 20.0, 2.0)
    return Trace("morning-rush", times + T0, rate * STEP, STEP)


def ready_at(policy: str, grid: Grid, seconds: int) -> int:
    result = run(policy, grid, SCENARIO)
    (k,) = np.flatnonzero(grid.times == T0 + seconds)
    return int(result.ready[k])


def test_the_second_morning_is_met_with_ready_pods() -> None:
    grid = Grid.over(morning_rush(2), SCENARIO.step_s)
    rush = DAY + 9 * 3600
    # 20 units/s at 0.5 of a pod's capacity is 40 pods; the schedule's mean of the hour is a little
    # less (the trace ramps into the hour over its last five minutes before it).
    assert ready_at("scheduled", grid, rush) >= 36
    # The HPA has only reacted to the first minutes of the ramp.
    assert ready_at("hpa", grid, rush) < 25
    # The first morning there is no past day to learn from: the peer is the HPA.
    assert ready_at("scheduled", grid, 9 * 3600) == ready_at("hpa", grid, 9 * 3600)
