"""Forecast accuracy of ARIMA on every shared trace at the two horizons BENCHMARK.md names ("Forecast
accuracy (backtests)"): the lead time the predictive policy provisions for (the simulator's default
start-up delay plus one control interval, on the step the forecasts are made at) and 30 minutes.

Per trace and horizon: MASE against the one-day seasonal naive, MASE against "no change", and the
share of actuals inside the 80 % interval, raw and after out-of-sample calibration (the definitions are
in ``forecasting/backtest.py``). One rolling-origin backtest per trace, at the 30-minute horizon, and
both horizons read off its per-step scores: ARIMA's forecast for step ``k`` and its interval do not
depend on how many steps follow, and the calibration keeps a residual window per step.

Steps: the backtest runs on the trace's own step. On the 5-minute traces that is the controller's
forecast bucket, and the lead time is one step. The NYC taxi trace has 30-minute steps, coarser than
the controller's bucket: there both horizons are its first step, one step of 30 minutes.

Run: .venv/bin/python bench/accuracy.py [TRACE_NAME ...]   (names without .csv; default: all)
Figures go to stdout, identical from run to run; wall times to stderr."""

from __future__ import annotations

import dataclasses
import sys
import time
from datetime import timedelta
from pathlib import Path

from autoscaler.backtest import trace_series
from autoscaler.forecast_stage import ForecastSettings
from autoscaler.simulate import Scenario, load_trace
from autoscaler.simulate.engine import PREDICTIVE_INTERVAL_S
from forecasting import ModelName, StepScores, run_backtest, steps_for_horizon

FOLDER = Path(__file__).parents[2] / "shared" / "traces"
LEVEL = 0.8
FAR = timedelta(minutes=30)
# The acceptance bar, counted at the lead-time horizon.
BAR_MASE_NO_CHANGE = 0.9
BAR_COVERAGE = (0.75, 0.85)


def lead_time() -> timedelta:
    """Start-up delay of the default scenario plus one tick of the predictive controller."""
    defaults = {f.name: f.default for f in dataclasses.fields(Scenario)}
    startup = defaults["startup_delay_s"]
    assert isinstance(startup, int)
    return timedelta(seconds=startup + PREDICTIVE_INTERVAL_S)


def took(name: str, began: float) -> None:
    """Wall time goes to stderr: stdout carries only figures, identical from run to run."""
    print(f"{name}: {time.perf_counter() - began:.0f} s", file=sys.stderr, flush=True)


def cells(scores: StepScores) -> str:
    return (
        f"{scores.mase:>7.3f} {scores.mase_no_change:>7.3f} "
        f"{scores.coverage:>7.3f} {scores.coverage_calibrated:>7.3f}"
    )


def main() -> None:
    wanted = set(sys.argv[1:])
    paths = [p for p in sorted(FOLDER.glob("*.csv")) if not wanted or p.stem in wanted]
    lead = lead_time()
    bucket_s = ForecastSettings().bucket_s
    print(
        f"ARIMA, {LEVEL:.0%} interval; lead time {lead.total_seconds():g} s (start-up + one "
        f"{PREDICTIVE_INTERVAL_S} s tick), controller bucket {bucket_s} s"
    )
    print(
        "mase-sn: MASE vs seasonal naive (1 day); mase-nc: MASE vs no change; cov: raw coverage; "
        "cal: calibrated coverage"
    )
    print(
        f"{'':<28} {'':>5} {'':>7} | {'at the lead time':^31} | {'at 30 min':^31} |"
        f"\n{'trace':<28} {'step':>5} {'steps':>7} | "
        f"{'mase-sn':>7} {'mase-nc':>7} {'cov':>7} {'cal':>7} | "
        f"{'mase-sn':>7} {'mase-nc':>7} {'cov':>7} {'cal':>7} | {'origins':>7}"
    )
    met_mase = met_coverage = 0
    for path in paths:
        began = time.perf_counter()
        trace = load_trace(path)
        step = timedelta(seconds=trace.step_s)
        near = steps_for_horizon(step, lead)
        far = steps_for_horizon(step, FAR)
        report = run_backtest(trace_series(trace), [ModelName.ARIMA], max(near, far), LEVEL)
        arima = report.result(ModelName.ARIMA)
        at_lead = arima.at_step(near)
        met_mase += at_lead.mase_no_change < BAR_MASE_NO_CHANGE
        met_coverage += BAR_COVERAGE[0] <= at_lead.coverage_calibrated <= BAR_COVERAGE[1]
        print(
            f"{trace.name:<28} {f'{trace.step_s // 60}min':>5} {f'{near} and {far}':>7} | "
            f"{cells(at_lead)} | {cells(arima.at_step(far))} | {arima.origins:>7}",
            flush=True,
        )
        took(trace.name, began)
    low, high = BAR_COVERAGE
    print(
        f"\nat the lead time: mase-nc < {BAR_MASE_NO_CHANGE} on {met_mase} of {len(paths)} traces; "
        f"calibrated coverage in {low:.2f}..{high:.2f} on {met_coverage} of {len(paths)}"
    )


if __name__ == "__main__":
    main()
