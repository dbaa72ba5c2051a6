"""Autoscaling quality on every shared trace, as BENCHMARK.md defines it, for every policy the
simulator has (hpa, the peers crane / phpa / scheduled, predictive, oracle):

1. at the default scenario (u*=0.7, start-up 120 s): unserved load and pod-hours per policy;
2. at equal service level: each policy's cost_at_slo over the utilization sweep (× oracle), or the
   lowest unserved load of the sweep where the objective is not reached; the cheapest non-oracle
   policy of each trace is marked;
3. hpa → predictive at start-up delays of 30, 120 and 300 s (`--startup`, it is the slow part).

Each trace's study is also drawn (load, replicas and the cost/service frontier of every policy) to
`--plots` (default out/quality/TRACE.png).

Run: .venv/bin/python bench/quality.py [--jobs 2] [--startup] [TRACE_NAME ...]
     (names without .csv; default: all). Traces run in `--jobs` processes; figures print in trace
order on stdout, identical from run to run; wall times go to stderr.
Long: each predictive run forecasts the whole trace (about 2 s per simulated day here)."""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from autoscaler.metrics import MetricKind
from autoscaler.simulate import default_scenario, load_trace, run_study
from autoscaler.simulate.plot import write_plot
from autoscaler.simulate.study import Study

FOLDER = Path(__file__).parents[2] / "shared" / "traces"
CPU_TRACES = {"alibaba-2018-cluster-cpu-5m", "nab-aws-asg-cpu-5m", "nab-aws-ec2-cpu-5f5533-5m"}
SWEEP = (0.5, 0.6, 0.7, 0.8, 0.9)
STARTUPS = (30, 120, 300)
POLICIES = ["hpa", "crane", "phpa", "scheduled", "predictive", "oracle"]
PEERS = [p for p in POLICIES if p != "oracle"]


def fmt(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def kind_of(name: str) -> MetricKind:
    return MetricKind.CPU if name in CPU_TRACES else MetricKind.REQUESTS


def _slo_cells(study: Study) -> list[str]:
    """Per policy: cost_at_slo × oracle, or the lowest unserved % in parentheses; `*` marks the
    cheapest policy where any reaches the objective, else the one that lost least."""
    slo = {s.policy: s.slo for s in study.sweep}
    reached = {p: c.pod_hours for p, c in slo.items() if p in PEERS and c.pod_hours is not None}
    best = (
        min(reached, key=lambda p: reached[p])
        if reached
        else min(PEERS, key=lambda p: slo[p].lowest_unserved_pct)
    )
    cells = []
    for policy in PEERS:
        cost = slo[policy].pod_hours
        text = (
            f"({slo[policy].lowest_unserved_pct:.2f}%)"
            if cost is None
            else f"{cost / study.oracle_pod_hours:.3f}"
        )
        cells.append(f"{text}{'*' if policy == best else ' '}")
    return cells


def study_trace(name: str, plots: Path | None) -> tuple[str, str, float]:
    """The two table rows of one trace and the wall seconds it took."""
    began = time.perf_counter()
    trace = load_trace(FOLDER / f"{name}.csv")
    study = run_study(trace, default_scenario(trace, kind_of(name)), POLICIES, SWEEP)
    defaults = []
    for policy in PEERS:
        scores = study.scores_of(policy)
        assert scores is not None
        defaults.append(f"{scores.unserved_pct:7.4f} {scores.cost_vs_oracle:5.3f}")
    if plots is not None:
        plots.mkdir(parents=True, exist_ok=True)
        write_plot(study, plots / f"{name}.png")
    return (
        f"{name:<28} " + " | ".join(defaults),
        f"{name:<28} " + " ".join(f"{cell:>10}" for cell in _slo_cells(study)),
        time.perf_counter() - began,
    )


def startup_row(name: str) -> str:
    trace = load_trace(FOLDER / f"{name}.csv")
    cells = []
    for startup in STARTUPS:
        scenario = default_scenario(trace, kind_of(name), startup_delay_s=startup)
        study = run_study(trace, scenario, ["hpa", "predictive"])
        hpa, pred = study.scores_of("hpa"), study.scores_of("predictive")
        assert hpa is not None
        assert pred is not None
        cells.append(
            f"{startup:>3}s: {hpa.overload_pct:6.3f} -> {pred.overload_pct:6.3f} "
            f"x{pred.pod_hours / hpa.pod_hours:5.3f}"
        )
    return f"{name:<28} " + "  ".join(cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("traces", nargs="*", help="trace names without .csv (default: all)")
    parser.add_argument("--jobs", type=int, default=2, help="traces studied at once")
    parser.add_argument("--plots", type=Path, default=Path("out/quality"), help="plot folder")
    parser.add_argument("--no-plots", action="store_true", help="draw nothing")
    parser.add_argument("--startup", action="store_true", help="also sweep the start-up delay")
    args = parser.parse_args()
    known = sorted(p.stem for p in FOLDER.glob("*.csv"))
    unknown = sorted(set(args.traces) - set(known))
    if unknown:
        parser.error(f"unknown trace {', '.join(unknown)} (known: {', '.join(known)})")
    names = [n for n in known if not args.traces or n in args.traces]
    plots = None if args.no_plots else args.plots

    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(study_trace, names, [plots] * len(names)))
    columns = " | ".join(f"{p:>13}" for p in PEERS)
    print("at the default scenario (u*=0.7, start-up 120 s): unserved % and cost x oracle")
    print(f"{'trace':<28} {columns}")
    for row, _, _ in results:
        print(row)
    print("\ncost at equal service level (unserved <= 0.1 %): cost_at_slo x oracle, or (lowest")
    print("unserved % of the sweep) where not reached; * the cheapest, or where none reaches it")
    print("the one that lost least")
    print(f"{'trace':<28} " + " ".join(f"{p:>10}" for p in PEERS))
    for _, row, _ in results:
        print(row)
    for name, (_, _, seconds) in zip(names, results, strict=True):
        print(f"{name}: {seconds:.0f} s", file=sys.stderr)
    if args.startup:
        print("\nstart-up sweep at u*=0.7: overload_pct hpa -> predictive, pod-hours ratio")
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            for row in pool.map(startup_row, names):
                print(row, flush=True)


if __name__ == "__main__":
    main()
