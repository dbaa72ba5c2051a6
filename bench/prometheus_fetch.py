"""How long the Prometheus metrics source takes to fetch, against a real Prometheus: prints figures,
asserts nothing.

Run: ``OPENBLAS_NUM_THREADS=1 python bench/prometheus_fetch.py [--deployments N] [--days D] [--runs N]
[--startup-runs N]``

It backfills ``--deployments`` Deployments (two pods each, in ten namespaces) with cAdvisor cpu and
memory series, a request counter and the kube-state-metrics ownership series over ``--days`` days at
one-minute scrapes into a temporary TSDB (the generator of ``tests/promserver.py``), starts
``prometheus`` on it and measures, as medians:

* start-up (``--startup-runs`` runs): a fresh source's first tick, which fetches ``--days`` days of
  history for every target (batched per metric kind, in chunks), with and without
  ``Accept-Encoding: identity`` and with one or two queries in parallel;
* tick (``--runs`` runs): a later tick of the same source, which fetches only the window since the
  previous tick, one step later.

Needs ``prometheus`` and ``promtool`` (``scripts/ensure-prometheus``).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autoscaler.metrics import BUILTIN_KINDS, MetricKind
from autoscaler.model import Bounds, Target, TargetConfig, WorkloadState
from autoscaler.sources.prometheus import PrometheusSettings, PrometheusSource
from tests.promserver import MISSING_MESSAGE, Dataset, PromServer, backfill, bench_dataset

STEP_S = 60


def _targets(dataset: Dataset) -> list[Target]:
    config = TargetConfig(
        metrics=BUILTIN_KINDS, bounds=Bounds(1, 50), per_pod={MetricKind.REQUESTS: 10.0}
    )
    return [Target(WorkloadState(w.ref, 2, 2), config) for w in dataset.workloads]


def _timed_startup(
    settings: PrometheusSettings, targets: list[Target], now: float
) -> tuple[float, int, int]:
    source = PrometheusSource(settings)
    started = time.perf_counter()
    loads = source.observe(targets, now)
    elapsed = time.perf_counter() - started
    points = sum(r.points for r in source.last_fetches)
    source.close()
    if len(loads) != len(targets):
        raise SystemExit(f"only {len(loads)} of {len(targets)} targets had data")
    return elapsed, points, source.queries_made


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--deployments", type=int, default=200)
    parser.add_argument("--days", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=10, help="ticks to time")
    parser.add_argument("--startup-runs", type=int, default=3, help="start-up history fetches to time")
    args = parser.parse_args()
    if shutil.which("prometheus") is None or shutil.which("promtool") is None:
        raise SystemExit(MISSING_MESSAGE)

    anchor = float(int(time.time()) // 3600 * 3600)
    # An hour more data than history, so the oldest history point has a full rate window.
    data_days = args.days + 1 / 24
    dataset = bench_dataset(anchor, args.deployments, data_days)
    targets = _targets(dataset)
    history_s = args.days * 86400
    with tempfile.TemporaryDirectory(prefix="prometheus-bench-") as tmp:
        started = time.perf_counter()
        tsdb = backfill(dataset, Path(tmp))
        backfill_s = time.perf_counter() - started
        server = PromServer(tsdb)
        server.start()
        try:
            print(
                f"backfilled {args.deployments} Deployments (2 pods each) × {args.days:g} days"
                f" of 1-minute scrapes in {backfill_s:.1f} s"
            )
            # The start-up tick ends `runs` steps before the anchor so that later ticks have new data.
            first = anchor - args.runs * STEP_S
            for identity, parallel in ((True, 2), (False, 2), (True, 1)):
                settings = PrometheusSettings(
                    url=server.url,
                    history_s=history_s,
                    cache_s=history_s,
                    accept_identity_encoding=identity,
                    parallel_queries=parallel,
                )
                runs = [_timed_startup(settings, targets, first) for _ in range(args.startup_runs)]
                label = f"{'identity' if identity else 'gzip'}, {parallel} in parallel"
                median = statistics.median(r[0] for r in runs)
                print(
                    f"start-up history fetch ({label}): median {median:.2f} s"
                    f" (min {min(r[0] for r in runs):.2f}, max {max(r[0] for r in runs):.2f}),"
                    f" {runs[0][1]:,} points in {runs[0][2]} queries"
                )
            settings = PrometheusSettings(url=server.url, history_s=history_s, cache_s=history_s)
            source = PrometheusSource(settings)
            source.observe(targets, first)
            ticks: list[float] = []
            queries: list[int] = []
            for i in range(1, args.runs + 1):
                before = source.queries_made
                started = time.perf_counter()
                loads = source.observe(targets, first + i * STEP_S)
                ticks.append(time.perf_counter() - started)
                queries.append(source.queries_made - before)
                if len(loads) != len(targets):
                    raise SystemExit(f"only {len(loads)} of {len(targets)} targets had data")
            print(
                f"tick fetch for {len(targets)} targets: median {statistics.median(ticks) * 1000:.0f} ms"
                f" (min {min(ticks) * 1000:.0f}, max {max(ticks) * 1000:.0f}),"
                f" {statistics.median(queries):.0f} queries per tick"
            )
            source.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
