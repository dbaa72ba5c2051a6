"""How much a better forecast could still buy: the shipped predictive policy, decision code unchanged,
driven by perfect forecasts (the simulated demand itself, in 15 s buckets, scored as never wrong),
against the HPA at equal service level (cost at the objective over the utilization sweep,
BENCHMARK.md). `bench/quality.py` gives the same comparison with the real forecaster; the gap between
the two is what forecasting can still win, and what stays is the decision code's own cost (the
reactive floor, its tolerance and windows, and the trend on samples).

Run: .venv/bin/python bench/foresight.py [TRACE_NAME ...]   (names without .csv; default: all)
No model is fitted, so it takes a fraction of quality.py's time (about 4 s per simulated day)."""

from __future__ import annotations

import sys
import time
from collections.abc import Set as AbstractSet

import numpy as np
from quality import CPU_TRACES, FOLDER, SWEEP, fmt

from autoscaler.metrics import MetricKind
from autoscaler.model import ForecastQuality, Forecasts, LoadForecast, LoadSnapshot, Target, TargetRef
from autoscaler.simulate import Grid, default_scenario, load_trace, run, run_study, score
from autoscaler.simulate.scoring import Scores, cost_at_slo
from autoscaler.simulate.tape import ForecastTape
from autoscaler.stages import NO_HISTORY, RecordedLoad

# Long enough for any lead the sweep uses (start-up 120 s plus a tick, plus half a bucket).
HORIZON_S = 1800
NEVER_WRONG = ForecastQuality(checked=1000, scaled_error=0.0, coverage=1.0, relative_error=0.0)


class Foresight:
    """A `Forecaster` that knows the future: per 15 s bucket, the highest demand within it, which is
    exactly what pods must carry there (the oracle sizes for the same)."""

    def __init__(self, grid: Grid, kind: MetricKind) -> None:
        demand = grid.demand
        self._peak = np.maximum(demand, np.append(demand[1:], demand[-1]))
        self._start = float(grid.times[0])
        self._step = grid.step_s
        self._kind = kind

    def forecast(
        self, target: Target, load: LoadSnapshot, now: float, past: RecordedLoad = NO_HISTORY
    ) -> Forecasts:
        first = round((now - self._start) / self._step)
        count = HORIZON_S // self._step
        ahead = self._peak[first : first + count]
        values = tuple(float(v) for v in np.pad(ahead, (0, count - len(ahead)), mode="edge"))
        times = tuple(now + i * self._step for i in range(count))
        forecast = LoadForecast(
            self._kind, now, float(self._step), times, values, values, 0.5, NEVER_WRONG
        )
        return Forecasts({self._kind: forecast})

    def keep_only(self, refs: AbstractSet[TargetRef]) -> None:
        return None


def main() -> None:
    wanted = set(sys.argv[1:])
    paths = [p for p in sorted(FOLDER.glob("*.csv")) if not wanted or p.stem in wanted]
    print("cost at the objective (unserved <= 0.1 %), x oracle pod-hours; sweep u* " + str(SWEEP))
    print(f"{'trace':<28} {'hpa':>6} {'pred, perfect forecasts':>24} {'vs hpa':>7}")
    for path in paths:
        trace = load_trace(path)
        kind = MetricKind.CPU if trace.name in CPU_TRACES else MetricKind.REQUESTS
        began = time.perf_counter()
        scenario = default_scenario(trace, kind)
        study = run_study(trace, scenario, ["hpa"], SWEEP)
        oracle = study.oracle_pod_hours
        grid = Grid.over(trace, scenario.step_s)
        ahead: list[tuple[float, Scores]] = []
        for u in SWEEP:
            tape = ForecastTape(Foresight(grid, kind))
            at = scenario.with_utilization(u)
            ahead.append((u, score(run("predictive", grid, at, tape=tape), oracle)))
        costs = [study.sweep[0].slo.pod_hours, cost_at_slo(ahead).pod_hours]
        rel = [None if c is None else c / oracle for c in costs]
        ratio = None if costs[0] is None or costs[1] is None else costs[1] / costs[0]
        print(
            f"{trace.name:<28} {fmt(rel[0]):>6} {fmt(rel[1]):>24} {fmt(ratio):>7}",
            flush=True,
        )
        print(f"{trace.name}: {time.perf_counter() - began:.0f} s", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
