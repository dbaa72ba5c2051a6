"""Autoscaling quality on every shared trace, as BENCHMARK.md defines it: hpa / predictive / oracle
at the default scenario (headline 1), cost at equal service level over the utilization sweep
(headline 2, with the `scheduled` peer's cost beside them), and the default comparison again at
start-up delays of 30, 120 and 300 s.

Run: .venv/bin/python bench/quality.py [TRACE_NAME ...]   (names without .csv; default: all)
Long: each predictive run forecasts the whole trace (about 2 s per simulated day here)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from autoscaler.metrics import MetricKind
from autoscaler.simulate import default_scenario, load_trace, run_study
from autoscaler.simulate.report import ratios_against_hpa

FOLDER = Path(__file__).parents[2] / "shared" / "traces"
CPU_TRACES = {"alibaba-2018-cluster-cpu-5m", "nab-aws-asg-cpu-5m", "nab-aws-ec2-cpu-5f5533-5m"}
SWEEP = (0.5, 0.6, 0.7, 0.8, 0.9)
STARTUPS = (30, 120, 300)
POLICIES = ["hpa", "scheduled", "predictive", "oracle"]


def took(name: str, began: float) -> None:
    """Wall time goes to stderr: stdout carries only figures, identical from run to run."""
    print(f"{name}: {time.perf_counter() - began:.0f} s", file=sys.stderr, flush=True)


def fmt(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def main() -> None:
    wanted = set(sys.argv[1:])
    paths = [p for p in sorted(FOLDER.glob("*.csv")) if not wanted or p.stem in wanted]
    print("headline 1: default scenario (u*=0.7, start-up 120 s)")
    print(
        f"{'trace':<28} {'ov hpa':>7} {'ov pred':>7} {'ov ratio':>8} {'un hpa':>7} {'un pred':>7} "
        f"{'cost ratio':>10} | {'slo hpa':>8} {'slo pred':>8} {'slo ratio':>9} "
        f"{'lowest un hpa/pred':>18} | {'slo sched':>9} {'lowest un sched':>15}"
    )
    for path in paths:
        trace = load_trace(path)
        kind = MetricKind.CPU if trace.name in CPU_TRACES else MetricKind.REQUESTS
        began = time.perf_counter()
        study = run_study(trace, default_scenario(trace, kind), POLICIES, SWEEP)
        hpa, pred = study.scores_of("hpa"), study.scores_of("predictive")
        assert hpa is not None
        assert pred is not None
        ratios = ratios_against_hpa(study)["predictive"]
        slo = {s.policy: s.slo for s in study.sweep}
        oracle = study.oracle_pod_hours

        rel = {p: (None if c.pod_hours is None else c.pod_hours / oracle) for p, c in slo.items()}

        print(
            f"{trace.name:<28} {hpa.overload_pct:>7.3f} {pred.overload_pct:>7.3f} "
            f"{fmt(ratios['overload_ratio']):>8} {hpa.unserved_pct:>7.4f} {pred.unserved_pct:>7.4f} "
            f"{fmt(ratios['cost_ratio']):>10} | {fmt(rel['hpa']):>8} {fmt(rel['predictive']):>8} "
            f"{fmt(ratios.get('slo_cost_ratio')):>9} "
            f"{slo['hpa'].lowest_unserved_pct:>8.4f}/{slo['predictive'].lowest_unserved_pct:<9.4f} | "
            f"{fmt(rel['scheduled']):>9} {slo['scheduled'].lowest_unserved_pct:>15.4f}",
            flush=True,
        )
        took(trace.name, began)
    print("\nstart-up sweep at u*=0.7: overload_pct hpa -> predictive, pod-hours ratio")
    for path in paths:
        trace = load_trace(path)
        kind = MetricKind.CPU if trace.name in CPU_TRACES else MetricKind.REQUESTS
        cells = []
        for startup in STARTUPS:
            study = run_study(
                trace, default_scenario(trace, kind, startup_delay_s=startup), ["hpa", "predictive"]
            )
            hpa, pred = study.scores_of("hpa"), study.scores_of("predictive")
            assert hpa is not None
            assert pred is not None
            cells.append(
                f"{startup:>3}s: {hpa.overload_pct:6.3f} -> {pred.overload_pct:6.3f} "
                f"x{pred.pod_hours / hpa.pod_hours:5.3f}"
            )
        print(f"{trace.name:<28} " + "  ".join(cells), flush=True)


if __name__ == "__main__":
    main()
