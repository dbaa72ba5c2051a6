"""The controller's metrics (`autoscaler.observability.telemetry`), its endpoints and its logs,
without a cluster.

Covers: per-target series (load, forecast band, error, replicas by source, mode, reasons, lead time,
scale events) appear with a decision and go away when the target does, or when this replica stops
deciding (a follower); a StatefulSet's series (`deployment="statefulset/<name>"`) stay apart from
those of a Deployment of the same name, whose labels are as they always were; a predictive replica
count or a reason no longer in effect is removed, not left stale; every label value comes from an
enum or a target's name; controller series (tick duration, targets by state, actuation outcomes,
leader) exist from the start; Kubernetes API errors are counted by status code through the client's
hook (a lease that does not exist yet is no error); Prometheus queries are timed through the
source's hook; `/metrics` is served beside `/healthz` and `/readyz`; the `text` log format is one
readable line with the fields after it, `json` stays the default; `run --log-format` rejects
anything else; a forecaster seeded from a series indexed in microseconds (pandas 3's default)
forecasts at once.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry

from autoscaler.cli import main
from autoscaler.fitting import ModelState
from autoscaler.forecast_stage import ModelForecaster
from autoscaler.kube import Forbidden, Kind, connect
from autoscaler.metrics import BUILTIN_KINDS, METRICS, MetricKind, Scope, Signal, custom_metric
from autoscaler.model import (
    Bounds,
    ForecastQuality,
    Forecasts,
    LoadForecast,
    LoadSnapshot,
    Sample,
    Target,
    TargetConfig,
    TargetRef,
    WorkloadKind,
    WorkloadState,
)
from autoscaler.observability.health import HealthServer
from autoscaler.observability.logs import LogFormat, configure_logging
from autoscaler.observability.problems import MetricsCause
from autoscaler.observability.telemetry import Direction, ReplicaSource, Telemetry
from autoscaler.patches import scale_patch
from autoscaler.policy import Decision, Mode, Reason
from autoscaler.selectors import SeriesSelector
from autoscaler.sources.prometheus import PrometheusSettings, PrometheusSource
from autoscaler.stages import ActOutcome, MetricsUnavailable, Stage, Standing, TickReport
from tests.fakekube import FakeKube

NOW = 1_800_000_000.0
WEB = TargetRef("shop", "web")
API = TargetRef("blog", "api")


def decision(
    ref: TargetRef,
    *,
    current: int = 2,
    replicas: int = 4,
    mode: Mode = Mode.PREDICTIVE,
    reasons: tuple[Reason, ...] = (Reason.PREDICTIVE_SCALE_UP,),
    predictive: int | None = 4,
) -> Decision:
    return Decision(
        ref=ref,
        at=NOW,
        current=current,
        replicas=replicas,
        recommendation=replicas,
        reasons=reasons,
        metric=MetricKind.CPU,
        load=1.5,
        per_pod_target=0.35,
        mode=mode,
        reactive_replicas=3,
        predictive_replicas=predictive,
        forecast_metric=MetricKind.CPU if predictive is not None else None,
        forecast_peak=1.9 if predictive is not None else None,
        forecast_level=0.8,
        lead_s=150.0,
    )


def forecast() -> LoadForecast:
    return LoadForecast(
        kind=MetricKind.CPU,
        made_at=NOW - 300,
        step_s=300.0,
        times=(NOW - 100, NOW + 200),
        mean=(1.6, 1.8),
        upper=(1.9, 2.2),
        level=0.8,
        quality=ForecastQuality(checked=20, scaled_error=0.7, coverage=0.85, relative_error=0.12),
        lower=(1.3, 1.4),
    )


def summary(*decisions: Decision, applied: bool = True, acted: bool = True) -> TickReport:
    outcome = ActOutcome.APPLIED if applied else ActOutcome.UNCHANGED
    return TickReport(
        acted=acted,
        decisions=decisions,
        outcomes={d.ref: outcome for d in decisions},
        metrics_available=True,
        refused=(),
        invalid=(TargetRef("shop", "bad"),),
        loads={d.ref: LoadSnapshot.of(cpu=Sample(1.5, NOW - 30)) for d in decisions},
        forecasts={d.ref: Forecasts.of(cpu=forecast()) for d in decisions},
    )


def value(t: Telemetry, name: str, **labels: str) -> float | None:
    return t.registry.get_sample_value(name, labels)


def target_samples(t: Telemetry, ref: TargetRef) -> list[str]:
    found = []
    for family in t.registry.collect():
        for sample in family.samples:
            if sample.labels.get("namespace") == ref.namespace and (
                sample.labels.get("deployment") == ref.name
            ):
                found.append(sample.name)
    return found


def web(**labels: str) -> dict[str, str]:
    return {"namespace": "shop", "deployment": "web", **labels}


def test_a_decision_exports_the_target_series() -> None:
    t = Telemetry()
    t.tick_done(summary(decision(WEB)), 0.05, NOW)
    p = "predictive_autoscaler_"
    assert value(t, p + "load_cores", **web(kind="cpu")) == 1.5
    assert value(t, p + "forecast_mean_cores", **web(kind="cpu")) == 1.6
    assert value(t, p + "forecast_lower_cores", **web(kind="cpu")) == 1.3
    assert value(t, p + "forecast_upper_cores", **web(kind="cpu")) == 1.9
    assert value(t, p + "forecast_error_ratio", **web(kind="cpu")) == 0.7
    assert value(t, p + "forecast_coverage_ratio", **web(kind="cpu")) == 0.85
    assert value(t, p + "forecast_relative_error_ratio", **web(kind="cpu")) == 0.12
    assert value(t, p + "replicas", **web(source="current")) == 2
    assert value(t, p + "replicas", **web(source="reactive")) == 3
    assert value(t, p + "replicas", **web(source="predictive")) == 4
    assert value(t, p + "replicas", **web(source="final")) == 4
    assert value(t, p + "mode", **web(mode="predictive")) == 1
    assert value(t, p + "mode", **web(mode="reactive")) == 0
    assert value(t, p + "reason", **web(reason="predictive-scale-up")) == 1
    assert value(t, p + "lead_time_seconds", **web()) == 150
    assert value(t, p + "scale_events_total", **web(direction="up")) == 1
    assert value(t, p + "scale_events_total", **web(direction="down")) == 0
    assert value(t, p + "targets", state="active") == 1
    assert value(t, p + "targets", state="invalid") == 1
    assert value(t, p + "actuations_total", outcome="applied") == 1
    assert value(t, p + "tick_duration_seconds_count") == 1
    assert value(t, p + "last_tick_timestamp_seconds") == NOW


LOADS = {
    "cpu": ("cores", 1.5),
    "memory": ("bytes", 3.0e8),
    "requests": ("requests_per_second", 40.0),
    "inflight": ("", 6.0),  # declared: a unit of its own
}


@pytest.mark.parametrize(
    ("kind", "unit", "load"), [pytest.param(k, u, v, id=k) for k, (u, v) in LOADS.items()]
)
def test_each_unit_has_families_of_its_own(kind: str, unit: str, load: float) -> None:
    t = Telemetry()
    metric = MetricKind(kind)
    # Two of three replicas ready: capacity counts only those.
    state = WorkloadState(WEB, 3, 2, pod_requests={MetricKind.CPU: 0.5, MetricKind.MEMORY: 2e8})
    declared = {}
    if not metric.builtin:
        spec = custom_metric(kind, Signal.GAUGE, Scope.PODS, SeriesSelector("x"), "metric." + kind)
        declared = {metric: spec}
    resource = METRICS[metric].request_resource if metric.builtin else None
    per_pod = {} if resource else {metric: 10.0}
    config = TargetConfig((metric,), Bounds(1, 10), target_utilization=0.8, per_pod=per_pod,
                          custom=declared)  # fmt: skip
    report = TickReport(
        acted=True,
        decisions=(decision(WEB),),
        outcomes={WEB: ActOutcome.UNCHANGED},
        metrics_available=True,
        loads={WEB: LoadSnapshot({metric: Sample(load, NOW - 30)})},
    )
    t.target_seen(Target(state, config), decision(WEB))
    t.tick_done(report, 0.05, NOW)
    suffix = f"_{unit}" if unit else ""
    assert value(t, f"predictive_autoscaler_load{suffix}", **web(kind=kind)) == load
    others = [f"_{u}" for u, _ in LOADS.values() if u and u != unit] + ([""] if unit else [])
    for other in others:
        assert value(t, f"predictive_autoscaler_load{other}", **web(kind=kind)) is None
    capacity = {"cpu": 2 * 0.5 * 0.8, "memory": 2 * 2e8 * 0.8}.get(kind, 2 * 10.0)
    got = value(t, f"predictive_autoscaler_capacity{suffix}", **web(kind=kind))
    assert got == pytest.approx(capacity), "ready replicas (2, not 3) times the per-pod target"


def test_no_created_series_and_names_follow_the_conventions() -> None:
    t = Telemetry()
    t.tick_done(summary(decision(WEB)), 0.05, NOW)
    body = t.render()[0].decode()
    assert "_created" not in body
    units = ("_cores", "_bytes", "_requests_per_second", "_seconds", "_ratio")
    for family in t.registry.collect():
        if family.type == "counter":
            assert all(s.name.endswith("_total") for s in family.samples), family.name
        if family.type == "gauge" and ("share" in family.documentation or "error" in family.name):
            assert family.name.endswith("_ratio"), family.name
        if "seconds" in family.documentation.lower() or "duration" in family.name:
            assert family.name.endswith(("_seconds", "_timestamp_seconds")), family.name
        per_unit = family.name.startswith(
            tuple(f"predictive_autoscaler_{f}" for f in ("load", "capacity", "forecast_mean",
                                                           "forecast_lower", "forecast_upper"))
        )  # fmt: skip
        if per_unit and not family.name.endswith(units):
            assert "declares" in family.documentation, f"{family.name} has no unit"


def test_prometheus_errors_are_counted_by_cause_from_zero() -> None:
    t = Telemetry()
    name = "predictive_autoscaler_prometheus_errors_total"
    assert {value(t, name, cause=c.value) for c in MetricsCause} == {0.0}
    t.metrics_problem(MetricsCause.UNREACHABLE)
    assert value(t, name, cause="unreachable") == 1


def test_a_statefulset_and_a_deployment_of_one_name_keep_their_own_series() -> None:
    t = Telemetry()
    sts = TargetRef("shop", "web", WorkloadKind.STATEFULSET)
    t.tick_done(summary(decision(WEB, replicas=4), decision(sts, replicas=7)), 0.05, NOW)
    final = "predictive_autoscaler_replicas"
    assert value(t, final, **web(source="final")) == 4
    assert value(t, final, **web(deployment="statefulset/web", source="final")) == 7
    events = "predictive_autoscaler_scale_events_total"
    for labels in (web(direction="up"), web(deployment="statefulset/web", direction="up")):
        assert value(t, events, **labels) == 1
    t.tick_done(summary(decision(WEB, replicas=4)), 0.05, NOW + 30)
    assert value(t, final, **web(deployment="statefulset/web", source="final")) is None
    assert value(t, final, **web(source="final")) == 4, "the Deployment's series stay"


def test_a_target_that_goes_away_takes_its_series_with_it() -> None:
    t = Telemetry()
    t.tick_done(summary(decision(WEB), decision(API)), 0.05, NOW)
    assert target_samples(t, API)
    t.tick_done(summary(decision(WEB)), 0.05, NOW + 30)
    assert target_samples(t, API) == []
    assert target_samples(t, WEB)
    assert value(t, "predictive_autoscaler_targets", state="active") == 1


def test_a_follower_exports_no_target_series() -> None:
    t = Telemetry()
    t.tick_done(summary(decision(WEB)), 0.05, NOW)
    t.tick_done(TickReport(False, (), {}, True, (), ()), 0.001, NOW + 30)
    assert target_samples(t, WEB) == []
    assert value(t, "predictive_autoscaler_targets", state="active") == 0


def test_series_no_longer_in_effect_are_removed() -> None:
    t = Telemetry()
    t.tick_done(summary(decision(WEB)), 0.05, NOW)
    fallback = decision(
        WEB,
        mode=Mode.REACTIVE,
        reasons=(Reason.WITHIN_TOLERANCE, Reason.FALLBACK_POOR_ACCURACY),
        predictive=None,
        replicas=2,
    )
    t.tick_done(summary(fallback), 0.05, NOW + 30)
    assert value(t, "predictive_autoscaler_replicas", **web(source="predictive")) is None
    assert value(t, "predictive_autoscaler_reason", **web(reason="predictive-scale-up")) is None
    assert value(t, "predictive_autoscaler_reason", **web(reason="fallback-poor-accuracy")) == 1
    assert value(t, "predictive_autoscaler_mode", **web(mode="reactive")) == 1
    # The counter keeps counting while the target lives.
    assert value(t, "predictive_autoscaler_scale_events_total", **web(direction="up")) == 1


def test_label_values_are_bounded() -> None:
    t = Telemetry()
    t.tick_done(summary(decision(WEB), decision(API, current=5, replicas=3)), 0.05, NOW)
    t.query_done(0.01, answered=True)
    t.kube_error(Forbidden("no"))
    allowed = {
        "namespace": {"shop", "blog"},
        "deployment": {"web", "api"},
        "kind": {k.value for k in BUILTIN_KINDS},
        "source": {s.value for s in ReplicaSource},
        "mode": {m.value for m in Mode},
        "reason": {r.value for r in Reason},
        "direction": {d.value for d in Direction},
        "state": {s.value for s in Standing} | {s.value for s in ModelState},
        "stage": {s.value for s in Stage},
        "outcome": {o.value for o in ActOutcome} | {"ok", "error"},
        "code": {"0"},
        "cause": {c.value for c in MetricsCause},
        "le": None,  # histogram buckets: fixed at construction
    }
    for family in t.registry.collect():
        for sample in family.samples:
            for label, label_value in sample.labels.items():
                assert label in allowed, f"{sample.name} has an unexpected label {label}"
                values = allowed[label]
                assert values is None or label_value in values, f"{sample.name}{sample.labels}"


def test_registries_are_separate() -> None:
    first, second = Telemetry(), Telemetry(CollectorRegistry())
    first.tick_done(summary(decision(WEB)), 0.05, NOW)
    assert target_samples(second, WEB) == []


def test_kube_errors_are_counted_by_code(fake_kube: FakeKube, kubeconfig: Path) -> None:
    t = Telemetry()
    kube = connect(kubeconfig, user_agent="predictive-autoscaler/test", on_error=t.kube_error)
    fake_kube.add_deployment("shop", "web")
    assert kube.read_lease("default", "nobody-yet") is None
    assert value(t, "predictive_autoscaler_kube_api_errors_total", code="404") is None
    fake_kube.inject("PATCH", r"/scale$", 403, times=1)
    with pytest.raises(Forbidden):
        kube.patch(scale_patch(WEB, 3))
    fake_kube.inject("GET", r"/deployments", 503, times=1)
    with pytest.raises(Exception, match="list deployments"):
        kube.list(Kind.DEPLOYMENT, "shop")
    assert value(t, "predictive_autoscaler_kube_api_errors_total", code="403") == 1
    assert value(t, "predictive_autoscaler_kube_api_errors_total", code="503") == 1


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_prometheus_queries_are_timed() -> None:
    t = Telemetry()
    settings = PrometheusSettings(url=f"http://127.0.0.1:{closed_port()}")
    source = PrometheusSource(settings, sleep=lambda _: None, on_query=t.query_done)
    target = Target(
        WorkloadState(WEB, 2, 2, pod_requests={MetricKind.CPU: 0.5}),
        TargetConfig((MetricKind.CPU,), Bounds(1, 10)),
    )
    with pytest.raises(MetricsUnavailable):
        source.observe([target], NOW)
    source.close()
    name = "predictive_autoscaler_prometheus_query_duration_seconds_count"
    assert value(t, name, outcome="error") == settings.retries + 1
    assert value(t, name, outcome="ok") == 0


def test_metrics_are_served_beside_the_probes() -> None:
    t = Telemetry()
    t.tick_done(summary(decision(WEB)), 0.05, NOW)
    why = "stale view of shop: the deployments watch is failing (boom)"
    server = HealthServer(0, not_ready=lambda: why, metrics=t.render, host="127.0.0.1")
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        with urllib.request.urlopen(base + "/metrics", timeout=5) as answer:
            body = answer.read().decode()
            assert answer.headers["Content-Type"].startswith("text/plain; version=")
        assert (
            'predictive_autoscaler_replicas{deployment="web",namespace="shop",source="final"} 4.0'
            in body
        )
        with urllib.request.urlopen(base + "/healthz", timeout=5) as answer:
            assert answer.status == 200
        with pytest.raises(urllib.error.HTTPError) as not_ready:
            urllib.request.urlopen(base + "/readyz", timeout=5)
        assert not_ready.value.code == 503
        assert not_ready.value.read().decode() == why + "\n"
    finally:
        server.stop()


def test_a_scraper_that_gives_up_leaves_no_traceback_and_the_next_is_served(
    capfd: pytest.CaptureFixture[str],
) -> None:
    # A slow exposition (a large fleet) outlives a scraper's timeout: writing to the closed
    # connection must cost nothing but that answer, and print nothing into the JSON log.
    asked, hung_up = threading.Event(), threading.Event()
    large = b"# filler\n" * 1_000_000

    def metrics() -> tuple[bytes, str]:
        if not asked.is_set():
            asked.set()
            hung_up.wait(timeout=10)
            return large, "text/plain"
        return b"ok 1\n", "text/plain"

    server = HealthServer(0, not_ready=lambda: None, metrics=metrics, host="127.0.0.1")
    server.start()
    try:
        client = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        client.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert asked.wait(timeout=5)
        client.close()
        hung_up.set()
        base = f"http://127.0.0.1:{server.port}"
        with urllib.request.urlopen(base + "/metrics", timeout=5) as answer:
            assert answer.read() == b"ok 1\n"
    finally:
        server.stop()
    assert "Traceback" not in capfd.readouterr().err


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield root
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def log_one(root: logging.Logger, log_format: LogFormat | None) -> str:
    if log_format is None:
        configure_logging("info")
    else:
        configure_logging("info", log_format)
    stream = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    logging.getLogger("autoscaler.actuator").info(
        "shop/web: scaled 2→4: predictive-scale-up",
        extra={"event": "decision", "target": "shop/web", "reasons": ["predictive-scale-up"]},
    )
    return stream.getvalue()


def test_text_logs_are_one_readable_line(root_logger: logging.Logger) -> None:
    line = log_one(root_logger, LogFormat.TEXT)
    assert line.count("\n") == 1
    assert " INFO    autoscaler.actuator: shop/web: scaled 2→4: predictive-scale-up  " in line
    assert 'event="decision" target="shop/web" reasons=["predictive-scale-up"]' in line


def test_json_logs_stay_the_default(root_logger: logging.Logger) -> None:
    entry = json.loads(log_one(root_logger, None))
    assert entry["event"] == "decision"
    assert entry["reasons"] == ["predictive-scale-up"]
    assert entry["message"] == "shop/web: scaled 2→4: predictive-scale-up"


def test_run_rejects_an_unknown_log_format(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["run", "--prometheus-url", "http://127.0.0.1:1", "--log-format", "xml"])
    assert exited.value.code == 2
    assert "--log-format" in capsys.readouterr().err


@pytest.mark.parametrize("unit", ["s", "us", "ns"])
def test_seeding_works_whatever_the_index_unit(unit: Literal["s", "us", "ns"]) -> None:
    start = NOW - 86_400
    index = pd.date_range(pd.Timestamp(int(start), unit="s", tz="UTC"), periods=1440, freq="60s")
    history = pd.Series(20 + 5 * np.sin(np.arange(1440) / 240 * 2 * np.pi), index=index.as_unit(unit))
    stage = ModelForecaster()

    class Recorded:
        def recorded(self, ref: TargetRef, kind: MetricKind) -> pd.Series | None:
            return history

        def pending(self, ref: TargetRef, kind: MetricKind) -> bool:
            return False

    config = TargetConfig((MetricKind.REQUESTS,), Bounds(1, 50), per_pod={MetricKind.REQUESTS: 10.0})
    target = Target(WorkloadState(WEB, 2, 2), config)
    out = stage.forecast(target, LoadSnapshot(), NOW, Recorded())
    seeded = out.get(MetricKind.REQUESTS)
    assert seeded is not None, "the recorded past seeds a forecast at once"
    assert seeded.quality.checked > 0
