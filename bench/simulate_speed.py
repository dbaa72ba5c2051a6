"""Times `hpa` + `oracle` over the 28-day NASA August 1995 trace (target: under 20 s on 2 cores).
Run: .venv/bin/python bench/simulate_speed.py [TRACE]"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from autoscaler.metrics import MetricKind
from autoscaler.simulate import default_scenario, load_trace, run_study

DEFAULT = Path(__file__).parents[2] / "shared" / "traces" / "nasa-http-1995-aug-5m.csv"
REPEATS = 3


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    began = time.perf_counter()
    trace = load_trace(path)
    load_s = time.perf_counter() - began
    scenario = default_scenario(trace, MetricKind.REQUESTS)
    timings = []
    for _ in range(REPEATS):
        began = time.perf_counter()
        study = run_study(trace, scenario, ["hpa", "oracle"])
        timings.append(time.perf_counter() - began)
    steps = len(study.runs[0].grid.times)
    best = min(timings)
    print(
        f"trace {trace.name}: {trace.duration_s / 86400:.2f} days, {steps} simulated steps "
        f"of {scenario.step_s} s; load {load_s:.2f} s"
    )
    print(
        f"hpa + oracle: median {statistics.median(timings):.2f} s, best {best:.2f} s "
        f"over {REPEATS} runs ({best / steps * 1e6:.1f} us per step); target < 20 s"
    )


if __name__ == "__main__":
    main()
