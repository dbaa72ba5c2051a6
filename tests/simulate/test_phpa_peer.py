"""The `phpa` peer through the simulator: on a rising load its linear model runs ahead of the HPA's
calculation; on a jump its 60-second rate limits
hold it back where the HPA's 15-second ones do not."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from autoscaler.metrics import MetricKind
from autoscaler.simulate import Grid, Scenario, Trace, run

T0 = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp())
HOUR = 3600
STEP = 300
SCENARIO = Scenario(
    kind=MetricKind.REQUESTS,
    capacity=1.0,
    target_utilization=0.5,
    startup_delay_s=120,
    warmup_s=0,
)


def trace(name: str, rate: np.ndarray) -> Trace:
    times = STEP * np.arange(len(rate), dtype=np.int64)
    return Trace(name, times + T0, rate * STEP, STEP)


def test_a_rising_load_finds_more_pods_ready_than_under_the_hpa() -> None:
    # 2 units/s for an hour, then up by 1 unit/s every 5 minutes for two hours.
    rate = np.concatenate([np.full(12, 2.0), 2.0 + np.arange(1, 25, dtype=float), np.full(12, 26.0)])
    grid = Grid.over(trace("ramp", rate), SCENARIO.step_s)
    ramp = (grid.times >= T0 + HOUR) & (grid.times < T0 + 3 * HOUR)
    phpa, hpa = run("phpa", grid, SCENARIO), run("hpa", grid, SCENARIO)
    assert phpa.ready[ramp].sum() > hpa.ready[ramp].sum()
    assert (phpa.ready[ramp] >= hpa.ready[ramp]).mean() > 0.9


def grew_faster_than_phpa_allows(pods: np.ndarray) -> bool:
    """Whether some 60 s saw more than the larger of doubling and 4 more pods."""
    earlier, later = pods[:-4], pods[4:]  # 4 steps of 15 s apart
    return bool((later > np.maximum(2 * earlier, earlier + 4)).any())


def test_a_jump_is_met_at_most_doubling_per_minute_where_the_hpa_goes_faster() -> None:
    rate = np.concatenate([np.full(12, 2.0), np.full(12, 60.0)])
    grid = Grid.over(trace("jump", rate), SCENARIO.step_s)
    phpa, hpa = run("phpa", grid, SCENARIO), run("hpa", grid, SCENARIO)
    assert phpa.pods.max() >= 100
    assert not grew_faster_than_phpa_allows(phpa.pods)
    assert grew_faster_than_phpa_allows(hpa.pods)
