"""Prints the HPA's figures on every trace in ../shared/traces beside the calibration figures of
BENCHMARK.md (an independent implementation of the same definitions), so a drift in the simulator
shows up as a number. Run: .venv/bin/python bench/hpa_calibration.py [TRACES_DIR]"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from autoscaler.metrics import MetricKind
from autoscaler.simulate import default_scenario, load_trace, run_study

SWEEP = (0.5, 0.6, 0.7, 0.8, 0.9)
CPU_TRACES = {"alibaba-2018-cluster-cpu-5m", "nab-aws-asg-cpu-5m", "nab-aws-ec2-cpu-5f5533-5m"}
# BENCHMARK.md: (cost_at_slo x oracle or None when not reached, overload_pct at u*=0.7)
REFERENCE: dict[str, tuple[str, str]] = {
    "nab-aws-ec2-cpu-5f5533-5m": ("1.08-1.09", "0"),
    "nab-nyc-taxi-30m": ("1.08-1.09", "0"),
    "alibaba-2018-cluster-cpu-5m": ("1.21", "-"),
    "nasa-http-1995-jul-5m": ("1.35-1.40", "0.6-0.9"),
    "nasa-http-1995-aug-5m": ("1.35-1.40", "0.6-0.9"),
    "nab-aws-asg-cpu-5m": ("1.66", "3.8"),
    "nab-aws-elb-requests-5m": ("not reached (2.2 % at 0.5)", "16.8"),
}


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parents[2] / "shared/traces"
    print(
        f"{'trace':<28} {'kind':<8} {'cost_at_slo':>24} {'reference':>27} "
        f"{'overload@0.7':>12} {'reference':>9}"
    )
    for path in sorted(folder.glob("*.csv")):
        trace = load_trace(path)
        kind = MetricKind.CPU if trace.name in CPU_TRACES else MetricKind.REQUESTS
        began = time.perf_counter()
        study = run_study(trace, default_scenario(trace, kind), ["hpa"], SWEEP)
        took = time.perf_counter() - began
        slo = study.sweep[0].slo
        ours = (
            f"{slo.pod_hours / study.oracle_pod_hours:.3f}"
            if slo.pod_hours is not None
            else f"not reached (lowest {slo.lowest_unserved_pct:.2f} %)"
        )
        ref_cost, ref_over = REFERENCE.get(trace.name, ("?", "?"))
        print(
            f"{trace.name:<28} {kind.value:<8} {ours:>24} {ref_cost:>27} "
            f"{study.scores[0].overload_pct:>12.2f} {ref_over:>9}",
            flush=True,
        )
        # Wall time to stderr: stdout carries only figures, identical from run to run.
        print(f"{trace.name}: {took:.1f} s", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
