"""A simulation study: the chosen policies on one trace at the scenario's settings, optionally a sweep
of target utilizations, scored against the oracle and compared with the HPA."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from autoscaler.forecast_stage import ModelForecaster
from autoscaler.metrics import MetricKind
from autoscaler.simulate.engine import Grid, RunResult, run
from autoscaler.simulate.scenario import Scenario
from autoscaler.simulate.scoring import Scores, SloCost, cost_at_slo, score
from autoscaler.simulate.tape import ForecastTape
from autoscaler.simulate.trace import Trace

__all__ = ["BENCHMARK_SWEEP", "Study", "SweepResult", "run_study"]

# The target utilizations over which BENCHMARK.md measures the cost at equal service level.
BENCHMARK_SWEEP = (0.5, 0.6, 0.7, 0.8, 0.9)

# Called with (what is running, fraction done).
StudyProgress = Callable[[str, float], None]


@dataclass(frozen=True, slots=True)
class SweepResult:
    policy: str
    points: tuple[tuple[float, Scores], ...]  # (target utilization, scores)
    slo: SloCost


@dataclass(frozen=True, slots=True)
class Study:
    trace: Trace
    scenario: Scenario
    oracle_pod_hours: float
    runs: tuple[RunResult, ...]  # at the scenario's own settings, in the order asked for
    scores: tuple[Scores, ...]
    sweep: tuple[SweepResult, ...]

    def scores_of(self, policy: str) -> Scores | None:
        for run_, scores in zip(self.runs, self.scores, strict=True):
            if run_.policy == policy:
                return scores
        return None


def run_study(
    trace: Trace,
    scenario: Scenario,
    policies: Sequence[str],
    sweep: Sequence[float] = (),
    progress: StudyProgress | None = None,
    sweep_policies: Sequence[str] | None = None,
) -> Study:
    """`sweep_policies` (default: all of `policies`) are the ones run over the sweep."""
    grid = Grid.over(trace, scenario.step_s)
    # The oracle is the yardstick of every cost figure, asked for or not; it ignores utilization.
    oracle = run("oracle", grid, scenario)
    oracle_pod_hours = score(oracle, 1.0).pod_hours

    # Request-rate traces are observed uncapped, so the forecasts of one predictive run are the
    # forecasts of every other: record them once and replay (tape.py).
    tape: ForecastTape | None = None

    def simulate(name: str, at: Scenario) -> RunResult:
        nonlocal tape
        if name == "oracle":
            return oracle
        label = f"{name} u*={at.target_utilization:g}"
        tick = None if progress is None else (lambda f: progress(label, f))
        if name != "predictive" or scenario.kind is not MetricKind.REQUESTS:
            return run(name, grid, at, tick)
        if tape is None:
            tape = ForecastTape(ModelForecaster())
            return run(name, grid, at, tick, tape)
        return run(name, grid, at, tick, tape.replaying())

    runs = tuple(simulate(name, scenario) for name in policies)
    scores = tuple(score(r, oracle_pod_hours) for r in runs)
    sweeps: list[SweepResult] = []
    swept = policies if sweep_policies is None else [p for p in policies if p in sweep_policies]
    for name in swept if sweep else ():
        points: list[tuple[float, Scores]] = []
        for u in sweep:
            if u == scenario.target_utilization:
                # The default run already is this point.
                points.append((u, scores[list(policies).index(name)]))
            else:
                points.append((u, score(simulate(name, scenario.with_utilization(u)), oracle_pod_hours)))
        sweeps.append(SweepResult(name, tuple(points), cost_at_slo(points)))
    return Study(trace, scenario, oracle_pod_hours, runs, scores, tuple(sweeps))
