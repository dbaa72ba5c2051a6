"""End to end: `predictive-autoscaler run` as a process against the fake API server and a real
Prometheus, which both serves the workload's load (backfilled) and scrapes the controller's /metrics
every second.

Covers: /metrics, /healthz and /readyz on `--metrics-port`; every PromQL expression of every dashboard
panel and annotation (template variables substituted) parses and returns data from what Prometheus
scraped, except the panels listed in RARE with the reason they may be empty; every alert expression
parses, does not fire on a healthy controller, and every metric it reads has been scraped; the
decision log line carries target, replicas from and to, reasons and forecast.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from autoscaler.config import PREFIX
from tests.fakekube import FakeKube
from tests.grafana import alert_rules, dashboard_files, load_dashboard, queries, substitute
from tests.polling import eventually
from tests.promserver import Dataset, Pod, PromServer, Workload, backfill, free_port, require_binaries

NS = "shop"
NAME = "web"
JOB = "predictive-autoscaler"
VARIABLES = {
    "namespace": NS,
    "deployment": NAME,
    "metric": "cpu|memory|requests|hits",
    "declared": "hits",
    "__rate_interval": "1m",
    "datasource": "prometheus",
}

# (dashboard uid, panel title, refId) → why the query may return nothing in this run. Empty today:
# the run is staged so that every panel has data (a 409 on the first scale feeds the error panels, a
# hand-made scale-down the scale-event panels; mode and target-state series are exported for every
# value, at 0 where not in effect, and a decision always has a reason). A panel for a state this run
# cannot reach goes here.
RARE: dict[tuple[str, str, str], str] = {}
# Metrics an alert reads that this run need not produce, with the reason (empty, as above).
RARE_METRICS: dict[str, str] = {}


def _get(url: str, timeout_s: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as answer:
            return int(answer.status), answer.read().decode()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode()


class ScrapingProm(PromServer):
    """A PromServer whose config scrapes the controller every second. `honor_labels` keeps the
    controller's `namespace` label as it is, as a ServiceMonitor with honorLabels does."""

    def __init__(self, tsdb: Path, controller_port: int) -> None:
        super().__init__(tsdb)
        self.config.write_text(
            "global:\n"
            "  scrape_interval: 1s\n"
            "  evaluation_interval: 1h\n"
            "scrape_configs:\n"
            f"  - job_name: {JOB}\n"
            "    honor_labels: true\n"
            "    scrape_interval: 1s\n"
            "    scrape_timeout: 1s\n"
            "    static_configs:\n"
            f"      - targets: ['127.0.0.1:{controller_port}']\n"
        )

    def query(self, expr: str) -> dict[str, Any]:
        params = urllib.parse.urlencode({"query": expr})
        status, body = _get(f"{self.url}/api/v1/query?{params}", timeout_s=10)
        answer = json.loads(body)
        assert status == 200, f"{expr}: {body}"
        assert answer["status"] == "success", f"{expr}: {body}"
        data = answer["data"]
        assert isinstance(data, dict)
        return data

    def results(self, expr: str) -> list[Any]:
        data = self.query(expr)
        if data["resultType"] in ("vector", "matrix"):
            return list(data["result"])
        return [data["result"]]  # a scalar or string always has a value


@dataclass
class Running:
    prom: ScrapingProm
    metrics_url: str
    log_lines: list[str]


def one_day_of(anchor: float) -> Dataset:
    start = anchor - 86400
    pods = tuple(Pod(f"{NAME}-7d9f-{i}", f"{NAME}-7d9f", start, anchor + 1) for i in range(2))
    workload = Workload(NS, NAME, pods, 0.25, 200e6, 12.0)
    return Dataset(start, anchor, 30, (workload,), detailed=False)


@pytest.fixture
def running(fake_kube: FakeKube, kubeconfig: Path, tmp_path: Path) -> Iterator[Running]:
    require_binaries()
    # The load's last sample is now (on the source's one-minute grid), as a live cluster's would be.
    anchor = float(int(time.time()) // 60 * 60)
    tsdb = backfill(one_day_of(anchor), tmp_path / "prometheus")
    port = free_port()
    prom = ScrapingProm(tsdb, port)
    prom.start()
    fake_kube.add_deployment(
        NS,
        NAME,
        replicas=1,
        annotations={
            PREFIX + "enabled": "true",
            # Every unit the dashboards draw: cores, bytes, requests/s and a declared metric's own.
            PREFIX + "metrics": "cpu,memory,requests,hits",
            PREFIX + "target-requests-per-pod": "10",
            PREFIX + "metric.hits": 'counter per-pod 12 http_requests_total{code="200"}',
            PREFIX + "startup-seconds": "60",
        },
    )
    # The first scale is refused once: a conflict, retried on the next tick, counted as an error.
    fake_kube.inject("PATCH", r"/scale$", 409, times=1)
    process = subprocess.Popen(
        [
            sys.executable, "-m", "autoscaler", "run",
            "--kubeconfig", str(kubeconfig),
            "--prometheus-url", prom.url,
            "--interval", "1s",
            "--metrics-port", str(port),
            "--namespaces", NS,
            # Two shards, both held by this one replica: the shard panels have their series.
            "--shards", "2",
        ],
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    lines: list[str] = []
    assert process.stderr is not None
    stream = process.stderr
    reader = threading.Thread(target=lambda: lines.extend(stream), daemon=True)
    reader.start()
    try:
        yield Running(prom, f"http://127.0.0.1:{port}", lines)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(timeout=10)
        prom.stop()


def scraped(prom: ScrapingProm, expr: str, at_least: float) -> Callable[[], bool]:
    def check() -> bool:
        return any(float(r["value"][1]) >= at_least for r in prom.results(expr))

    return check


def test_dashboards_and_alerts_read_what_the_controller_exports(
    running: Running, fake_kube: FakeKube
) -> None:
    prom = running.prom
    labels = f'namespace="{NS}",deployment="{NAME}",direction="up"'
    events = f"predictive_autoscaler_scale_events_total{{{labels}}}"
    eventually(scraped(prom, events, 1), "the first scale-up to be scraped")

    status, body = _get(running.metrics_url + "/metrics")
    assert status == 200
    assert "predictive_autoscaler_tick_duration_seconds_bucket" in body
    assert _get(running.metrics_url + "/healthz")[0] == 200
    assert _get(running.metrics_url + "/readyz")[0] == 200

    # Someone scales the Deployment down by hand; the controller scales it up again, so the scale
    # event counter rises while Prometheus watches (an increase() needs two samples of a series).
    deployment = fake_kube.get_object("Deployment", NS, NAME)
    assert deployment is not None
    deployment["spec"]["replicas"] = 1
    fake_kube.put_object(deployment)
    eventually(scraped(prom, events, 2), "the second scale-up to be scraped")
    eventually(lambda: bool(prom.results(f"increase({events}[1m]) > 0")), "a rise within a minute")
    # Models are fitted beside the tick: the forecast panels have data once all four are adopted.
    fitted = 'predictive_autoscaler_models{state="fitted"}'
    eventually(scraped(prom, fitted, 4), "the models to be fitted and their forecasts scraped")
    eventually(scraped(prom, "predictive_autoscaler_model_fit_duration_seconds_count", 4), "fit times")

    empty: list[str] = []
    checked = 0
    for path in dashboard_files():
        for query in queries(load_dashboard(path)):
            expr = substitute(query.expr, VARIABLES)
            result = prom.results(expr)  # a parse error fails here
            checked += 1
            key = (query.dashboard, query.panel, query.ref_id)
            if not result and key not in RARE:
                empty.append(f"{query.dashboard} / {query.panel} / {query.ref_id}: {expr}")
    assert not empty, "queries without data:\n" + "\n".join(empty) + "".join(running.log_lines[-5:])
    assert checked >= 25

    for rule in alert_rules():
        fired = prom.results(rule.expr)
        assert not fired, f"{rule.name} fires on a healthy controller: {fired}" + "".join(
            running.log_lines[-8:]
        )
        for metric in sorted(set(re.findall(r"\b(predictive_autoscaler_\w+|up)\b", rule.expr))):
            if metric in RARE_METRICS:
                continue
            selector = f'up{{job="{JOB}"}}' if metric == "up" else metric
            assert prom.results(selector), f"{rule.name} reads {metric}, which was never scraped"

    decisions = [json.loads(line) for line in running.log_lines if '"event": "decision"' in line]
    assert decisions, "one JSON line per decision"
    scaled = [d for d in decisions if d["desired"] != d["current"]]
    assert scaled
    assert {"target", "current", "desired", "reasons", "mode", "forecast", "outcome"} <= set(scaled[0])
    assert scaled[0]["target"] == f"{NS}/{NAME}"
