"""Invariants of the simulator on every real trace in the shared traces folder. On whole traces: the
oracle is never overloaded and is its own cost yardstick; the HPA never costs less than the oracle. On
the first 5 days of each (2 of them warm-up; the brute force is memory-hungry): served plus unserved
load equals demand and pod-hours equal the integral of the pod count, both checked against a
brute-force integration at 1-second resolution (midpoint rule)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autoscaler.metrics import MetricKind
from autoscaler.simulate import Grid, Trace, default_scenario, load_trace, run, score
from autoscaler.simulate.scoring import scored_slice
from tests.conftest import TRACES_DIR

CPU_TRACES = {"alibaba-2018-cluster-cpu-5m", "nab-aws-asg-cpu-5m", "nab-aws-ec2-cpu-5f5533-5m"}
DAYS = 5


def first_days(trace: Trace, days: int) -> Trace:
    keep = int(np.searchsorted(trace.times, trace.start + days * 86_400))
    return Trace(trace.name, trace.times[:keep], trace.values[:keep], trace.step_s)


TRACE_FILES = sorted(p.name for p in TRACES_DIR.glob("*.csv"))


def test_every_shared_trace_is_covered(traces_dir: Path) -> None:
    assert len(TRACE_FILES) >= 7, TRACE_FILES


@pytest.mark.parametrize("filename", TRACE_FILES)
def test_simulator_invariants(traces_dir: Path, filename: str) -> None:
    full = load_trace(traces_dir / filename)
    trace = first_days(full, DAYS)
    kind = MetricKind.CPU if trace.name in CPU_TRACES else MetricKind.REQUESTS
    scenario = default_scenario(trace, kind)
    grid = Grid.over(trace, scenario.step_s)
    oracle = run("oracle", grid, scenario)
    hpa = run("hpa", grid, scenario)
    oracle_hours = score(oracle, 1.0).pod_hours
    o = score(oracle, oracle_hours)
    h = score(hpa, oracle_hours)

    assert o.overload_pct == 0.0
    assert o.unserved_pct == 0.0
    assert o.cost_vs_oracle == 1.0
    assert h.cost_vs_oracle >= 1.0

    # Brute force: demand and capacity at every second of the scored period.
    part = scored_slice(hpa)
    t0 = grid.times[part.start]
    # Midpoints of each second: exact for demand that is linear within a second.
    seconds = np.arange(t0, grid.times[part.stop], 1.0) + 0.5
    demand = trace.rate_at(seconds)
    step_index = ((seconds - grid.times[0]) // grid.step_s).astype(int)
    capacity = hpa.ready[step_index] * scenario.capacity
    served = np.minimum(demand, capacity).sum()
    unserved = np.maximum(0.0, demand - capacity).sum()
    assert served + unserved == pytest.approx(demand.sum(), rel=1e-12)
    assert h.unserved_pct == pytest.approx(100 * unserved / demand.sum(), abs=1e-3)
    assert h.mean_utilization == pytest.approx(served / capacity.sum(), rel=1e-3)
    pod_seconds = hpa.pods[step_index].sum()
    assert h.pod_hours == pytest.approx(pod_seconds / 3600, rel=1e-9)
    oracle_pod_seconds = oracle.pods[step_index].sum()
    assert o.pod_hours == pytest.approx(oracle_pod_seconds / 3600, rel=1e-9)


@pytest.mark.parametrize("filename", TRACE_FILES)
def test_whole_trace_oracle_is_the_limit_and_hpa_costs_more(traces_dir: Path, filename: str) -> None:
    trace = load_trace(traces_dir / filename)
    kind = MetricKind.CPU if trace.name in CPU_TRACES else MetricKind.REQUESTS
    scenario = default_scenario(trace, kind)
    grid = Grid.over(trace, scenario.step_s)
    oracle = run("oracle", grid, scenario)
    oracle_hours = score(oracle, 1.0).pod_hours
    o = score(oracle, oracle_hours)
    h = score(run("hpa", grid, scenario), oracle_hours)
    assert (o.overload_pct, o.unserved_pct, o.cost_vs_oracle) == (0.0, 0.0, 1.0)
    assert h.cost_vs_oracle >= 1.0
