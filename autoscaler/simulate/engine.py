"""Runs a policy over a trace on the simulated cluster, through `reconcile_once` with a manual clock,
so that what is backtested is exactly what runs in a cluster. The oracle, which no controller can be,
is computed directly from the demand it foresees."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from autoscaler.forecast_stage import ModelForecaster
from autoscaler.metrics import MetricKind
from autoscaler.model import TargetRef
from autoscaler.policy import Decision, HpaPolicy, Policy, PredictivePolicy
from autoscaler.policy.crane import CranePolicy
from autoscaler.policy.hpa import pods_for
from autoscaler.policy.phpa import PhpaPolicy
from autoscaler.policy.scheduled import ScheduledPolicy
from autoscaler.reconcile import DecisionMemory, Stages, reconcile_once
from autoscaler.simulate.crane import DspForecaster
from autoscaler.simulate.phpa import ReplicaModels
from autoscaler.simulate.scenario import Scenario
from autoscaler.simulate.schedule import HourlyProfileForecaster
from autoscaler.simulate.tape import ForecastTape
from autoscaler.simulate.trace import Trace
from autoscaler.simulate.world import SimCluster, SimMetrics, SimRecorder
from autoscaler.stages import WithoutForecasts

__all__ = ["POLICIES", "Grid", "RunResult", "run"]

POLICIES = ("hpa", "crane", "phpa", "scheduled", "predictive", "oracle")
# The predictive controller ticks as often as the HPA syncs: at 30 s its reactive floor reacted later
# than the HPA and lost load on every ramp the forecast did not foresee (measured on a daily wave).
PREDICTIVE_INTERVAL_S = 15

Progress = Callable[[float], None]
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Grid:
    """The simulated time steps over a trace and the demand (load units/s) at each of them."""

    trace: Trace
    step_s: int
    times: FloatArray
    demand: FloatArray

    @classmethod
    def over(cls, trace: Trace, step_s: int) -> Grid:
        count = trace.duration_s // step_s + 1
        times = trace.start + step_s * np.arange(count, dtype=np.float64)
        return cls(trace, step_s, times, trace.rate_at(times))


@dataclass(frozen=True, slots=True)
class RunResult:
    policy: str
    scenario: Scenario
    grid: Grid
    ready: IntArray
    pods: IntArray
    desired: IntArray
    observed: FloatArray  # what the policy saw at each step (NaN where nothing was visible)
    changes: tuple[Decision, ...]
    # The forecast in force for each step's bucket (NaN without one): mean and interval upper bound.
    forecast_mean: FloatArray | None = None
    forecast_upper: FloatArray | None = None


def _needed(grid: Grid, scenario: Scenario) -> IntArray:
    """Pods that serve all demand of each step at 100 %. Demand is linear within a step and pods
    change only at step boundaries, so a step needs what its higher end needs (the epsilon
    absorbs float noise in D/c)."""
    peak = np.maximum(grid.demand, np.append(grid.demand[1:], grid.demand[-1]))
    raw = np.ceil(peak / scenario.capacity - 1e-9).astype(np.int64)
    needed: IntArray = np.maximum(raw, scenario.min_replicas)
    return needed


def _initial_replicas(grid: Grid, scenario: Scenario) -> int:
    per_pod = scenario.capacity * scenario.target_utilization
    wanted = pods_for(float(grid.demand[0]), per_pod)
    return min(scenario.max_replicas, max(scenario.min_replicas, wanted))


def _run_controller(
    name: str,
    policy: Policy,
    grid: Grid,
    scenario: Scenario,
    interval_s: int,
    progress: Progress | None,
    tape: ForecastTape | None = None,
) -> RunResult:
    ref = TargetRef("simulation", grid.trace.name)
    start = float(grid.times[0])
    step = grid.step_s
    count = len(grid.times)
    demand: list[float] = grid.demand.tolist()
    capacity = scenario.capacity
    saturates = scenario.kind is MetricKind.CPU

    signal: list[float] = []
    cluster = SimCluster(ref, scenario, _initial_replicas(grid, scenario), start)
    metrics = SimMetrics(ref, scenario, signal)
    recorder = SimRecorder()
    stages = Stages(cluster, metrics, tape or WithoutForecasts(), policy, cluster, recorder)
    fc_mean = np.full(count, np.nan) if tape is not None else None
    fc_upper = np.full(count, np.nan) if tape is not None else None
    memory = DecisionMemory()

    every = max(1, interval_s // step)
    ready = np.empty(count, dtype=np.int64)
    pods = np.empty(count, dtype=np.int64)
    observed = np.full(count, np.nan)
    report_every = max(1, count // 100)
    for k in range(count):
        now = start + k * step
        cluster.now = now
        metrics.step = k
        seen = metrics.latest()
        if seen is not None:
            observed[k] = seen
        if k % every == 0:
            reconcile_once(stages, memory, now)
        if tape is not None and fc_mean is not None and fc_upper is not None:
            forecasts = tape.last.get(ref)
            latest = None if forecasts is None else forecasts.get(scenario.kind)
            point = None if latest is None else latest.at(now)
            if point is not None:
                fc_mean[k], fc_upper[k] = point
        r = cluster.ready
        ready[k] = r
        pods[k] = cluster.pods
        d = demand[k]
        signal.append(min(d, r * capacity) if saturates else d)
        if progress is not None and k % report_every == 0:
            progress(k / count)
    if progress is not None:
        progress(1.0)
    return RunResult(
        name,
        scenario,
        grid,
        ready,
        pods,
        pods.copy(),
        observed,
        tuple(recorder.changes),
        fc_mean,
        fc_upper,
    )


def _run_oracle(grid: Grid, scenario: Scenario) -> RunResult:
    need = _needed(grid, scenario)
    lead = scenario.startup_delay_s // grid.step_s
    # Pods alive at t: everything that must be ready at any instant of [t, t + start-up delay].
    ahead = np.concatenate([need, np.zeros(lead, dtype=np.int64)])
    pods = sliding_window_view(ahead, lead + 1).max(axis=1)
    # Ready at t: pods alive since t - delay (newest go first, so the oldest survive the dips).
    behind = np.concatenate([np.full(lead, pods[0], dtype=np.int64), pods])
    ready = sliding_window_view(behind, lead + 1).min(axis=1)
    return RunResult("oracle", scenario, grid, ready, pods, pods.copy(), np.full(len(pods), np.nan), ())


def run(
    name: str,
    grid: Grid,
    scenario: Scenario,
    progress: Progress | None = None,
    tape: ForecastTape | None = None,
) -> RunResult:
    """Simulate one named policy. Unknown names are a caller error (the CLI validates them).

    `tape` (predictive only) records the forecasts, or replays ones recorded on the same trace; see
    `tape.py` for when that is exact."""
    if name == "oracle":
        result = _run_oracle(grid, scenario)
        if progress is not None:
            progress(1.0)
        return result
    if name == "hpa":
        return _run_controller(name, HpaPolicy(), grid, scenario, scenario.hpa_sync_s, progress)
    if name == "crane":
        return _run_controller(
            name,
            CranePolicy(),
            grid,
            scenario,
            scenario.hpa_sync_s,
            progress,
            ForecastTape(DspForecaster()),
        )
    if name == "phpa":
        return _run_controller(
            name,
            PhpaPolicy(),
            grid,
            scenario,
            scenario.hpa_sync_s,
            progress,
            ForecastTape(ReplicaModels(sync_s=scenario.hpa_sync_s)),
        )
    if name == "scheduled":
        return _run_controller(
            name,
            ScheduledPolicy(),
            grid,
            scenario,
            scenario.hpa_sync_s,
            progress,
            ForecastTape(HourlyProfileForecaster()),
        )
    if name == "predictive":
        return _run_controller(
            name,
            PredictivePolicy(interval_s=PREDICTIVE_INTERVAL_S),
            grid,
            scenario,
            PREDICTIVE_INTERVAL_S,
            progress,
            tape if tape is not None else ForecastTape(ModelForecaster()),
        )
    raise ValueError(f"unknown policy {name!r}; known: {', '.join(POLICIES)}")
