"""How fast the ARIMA forecaster is on this machine: prints figures, asserts nothing.

Run: ``OPENBLAS_NUM_THREADS=1 python bench/forecast_speed.py [--traces DIR] [--windows N] [--ticks N]``

For every 5-minute trace and for 1, 3 and 7 days of history it measures, over ``--windows`` history
windows spread along the trace:

* cold fit: a fresh model's ``fit`` (order selection over the whole grid, no warm start);
* warm refit: a second ``fit`` of the same model one hour later (warm starts, as the scheduled refits
  run live);
* update + forecast: ``update`` with one new point followed by ``forecast(12)``, the per-tick work.

and from these how many series one core keeps current at a 30-second tick: per series and tick one
update + forecast (an upper bound: a 5-minute series gets a new point only every tenth tick), plus the
warm refits every 6 hours spread over the ticks.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forecasting import ArimaConfig, make_forecaster

TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces"
DAYS = (1, 3, 7)
STEPS_PER_DAY = 288
TICK_S = 30.0
FORECAST_STEPS = 12


def _load(path: Path) -> pd.Series:
    frame = pd.read_csv(path)
    return pd.Series(
        frame["value"].to_numpy(dtype=float), index=pd.to_datetime(frame["timestamp"], utc=True)
    )


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def _measure(series: pd.Series, days: int, windows: int, ticks: int) -> dict[str, list[float]]:
    size = days * STEPS_PER_DAY
    # Leave room after each window for the update ticks and the one-hour-later refit.
    room = max(ticks, 12) + 1
    last_end = len(series) - room
    if last_end < size:
        return {}
    ends = np.linspace(size, last_end, num=windows, dtype=int)
    out: dict[str, list[float]] = {"cold": [], "warm": [], "tick": []}
    for end in ends:
        model = make_forecaster("arima", ArimaConfig())
        started = time.perf_counter()
        model.fit(series.iloc[end - size : end])
        out["cold"].append(time.perf_counter() - started)
        for i in range(ticks):
            started = time.perf_counter()
            model.update(series.iloc[end + i : end + i + 1])
            model.forecast(FORECAST_STEPS)
            out["tick"].append(time.perf_counter() - started)
        shifted = end + 12
        started = time.perf_counter()
        model.fit(series.iloc[shifted - size : shifted])
        out["warm"].append(time.perf_counter() - started)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--traces", type=Path, default=TRACES)
    parser.add_argument("--windows", type=int, default=5, help="history windows per trace and length")
    parser.add_argument("--ticks", type=int, default=24, help="update+forecast calls per window")
    args = parser.parse_args()
    if os.environ.get("OPENBLAS_NUM_THREADS") != "1":
        print("note: OPENBLAS_NUM_THREADS is not 1; a second BLAS thread only adds CPU time")

    files = sorted(p for p in args.traces.glob("*-5m.csv"))
    totals: dict[int, dict[str, list[float]]] = {d: {"cold": [], "warm": [], "tick": []} for d in DAYS}
    print(
        f"{'trace':<34}{'days':>5}{'cold fit p50/p95 s':>22}{'warm fit p50/p95 s':>22}"
        f"{'update+fc p50/p95 ms':>24}"
    )
    for path in files:
        series = _load(path)
        for days in DAYS:
            figures = _measure(series, days, args.windows, args.ticks)
            if not figures:
                print(f"{path.stem:<34}{days:>5}  (trace too short)")
                continue
            for key, values in figures.items():
                totals[days][key].extend(values)
            cold, warm, tick = figures["cold"], figures["warm"], figures["tick"]
            print(
                f"{path.stem:<34}{days:>5}"
                f"{statistics.median(cold):>12.3f}/{_percentile(cold, 95):<9.3f}"
                f"{statistics.median(warm):>12.3f}/{_percentile(warm, 95):<9.3f}"
                f"{statistics.median(tick) * 1e3:>12.2f}/{_percentile(tick, 95) * 1e3:<9.2f}"
            )

    refit_every_s = 6 * 3600.0
    print("\nall traces")
    print(
        f"{'days':>5}{'cold p50':>10}{'cold p95':>10}{'warm p50':>10}{'upd+fc p50 ms':>15}"
        f"{'upd+fc p95 ms':>15}{'series/core @30s':>18}"
    )
    for days in DAYS:
        cold, warm, tick = totals[days]["cold"], totals[days]["warm"], totals[days]["tick"]
        if not tick:
            continue
        per_tick = statistics.median(tick) + statistics.median(warm) * TICK_S / refit_every_s
        per_tick_p95 = _percentile(tick, 95) + _percentile(warm, 95) * TICK_S / refit_every_s
        print(
            f"{days:>5}{statistics.median(cold):>10.3f}{_percentile(cold, 95):>10.3f}"
            f"{statistics.median(warm):>10.3f}{statistics.median(tick) * 1e3:>15.2f}"
            f"{_percentile(tick, 95) * 1e3:>15.2f}"
            f"{int(TICK_S / per_tick):>10d} (p95 {int(TICK_S / per_tick_p95)})"
        )
    print(
        "\nseries/core: 30 s / (update+forecast + warm refit x 30 s / 6 h), one update per series per"
        " tick; a real 5-minute series has a new point every tenth tick, so this is a lower bound."
    )


if __name__ == "__main__":
    main()
