"""Cost at equal service level (BENCHMARK.md): interpolation between the sweep points that bracket the
objective, the cheapest point when all meet it, "not reached" with the lowest unserved load when none
does, and a non-monotone frontier taking its cheapest crossing."""

from __future__ import annotations

import pytest

from autoscaler.simulate.scoring import Scores, cost_at_slo


def pt(u: float, unserved: float, pod_hours: float) -> tuple[float, Scores]:
    return u, Scores(0.0, unserved, 0.0, pod_hours, 1.0, 0.5, 0)


@pytest.mark.parametrize(
    ("points", "want_cost", "want_lowest"),
    [
        pytest.param(
            [pt(0.5, 0.0, 200), pt(0.7, 0.05, 150), pt(0.9, 0.3, 110)],
            150 + (0.05 / 0.25) * (110 - 150),
            0.0,
            id="interpolated-crossing",
        ),
        pytest.param(
            [pt(0.9, 0.3, 110), pt(0.5, 0.0, 200), pt(0.7, 0.05, 150)],
            150 + (0.05 / 0.25) * (110 - 150),
            0.0,
            id="order-of-points-irrelevant",
        ),
        pytest.param([pt(0.5, 0.0, 200), pt(0.9, 0.01, 120)], 120, 0.0, id="all-meet-cheapest"),
        pytest.param([pt(0.5, 2.2, 200), pt(0.9, 9.0, 120)], None, 2.2, id="not-reached"),
        pytest.param(
            [pt(0.5, 0.0, 200), pt(0.6, 0.2, 170), pt(0.7, 0.05, 150), pt(0.8, 0.4, 130)],
            150 + (0.05 / 0.35) * (130 - 150),
            0.0,
            id="non-monotone-cheapest-crossing",
        ),
        pytest.param([pt(0.5, 0.1, 200), pt(0.7, 0.3, 150)], 200, 0.1, id="exactly-at-objective"),
    ],
)
def test_cost_at_slo(
    points: list[tuple[float, Scores]], want_cost: float | None, want_lowest: float
) -> None:
    got = cost_at_slo(points)
    if want_cost is None:
        assert got.pod_hours is None
    else:
        assert got.pod_hours == pytest.approx(want_cost)
    assert got.lowest_unserved_pct == want_lowest
