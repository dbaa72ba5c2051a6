"""What the controller says when Prometheus fails it: a real Prometheus behind the fault proxy
(`tests.faultproxy`), the real source, the fake API server, the controller's telemetry, a manual clock.

Covers: each fault (unreachable, timeout, error status, rejected query, answer without data) gives
one warning line at info level naming its cause, once for the whole tick however many Deployments
hold, and not again on the next tick while it lasts; each tick counts it in
`predictive_autoscaler_prometheus_errors_total{cause}` on `/metrics`; the end of a fault is one info
line; a selector a workload names that Prometheus rejects names the workload, its annotation and
Prometheus' words, the selector text only at debug; the decision log's `outcome` is the word the
actuation metric counts the decision by (a hold is `unchanged` in both).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from autoscaler.config import PREFIX
from autoscaler.kube import Kube, connect
from autoscaler.model import TargetRef
from autoscaler.observability.telemetry import Telemetry
from autoscaler.policy import HpaPolicy
from autoscaler.sources.prometheus import PrometheusSettings, PrometheusSource
from autoscaler.stages import WithoutForecasts
from autoscaler.wiring import Controller, cluster_stages
from tests.fakekube import FakeKube
from tests.faultproxy import Fault, FaultProxy
from tests.promserver import PromEnv
from tests.test_controller import Listed

TARGETS = (TargetRef("shop", "web"), TargetRef("shop", "api"), TargetRef("blog", "api"))
ANNOTATIONS = {
    PREFIX + "enabled": "true",
    PREFIX + "metrics": "cpu,requests",
    PREFIX + "target-requests-per-pod": "5",
    PREFIX + "startup-seconds": "60",
}
PROBLEMS = "autoscaler.observability.problems"


@pytest.fixture
def proxy(prometheus: PromEnv) -> Iterator[FaultProxy]:
    with FaultProxy(prometheus.url) as running:
        yield running


@pytest.fixture
def kube(kubeconfig: Path) -> Kube:
    return connect(kubeconfig, user_agent="predictive-autoscaler/test")


@pytest.fixture
def telemetry() -> Telemetry:
    return Telemetry()


@pytest.fixture
def controller(
    fake_kube: FakeKube, kube: Kube, proxy: FaultProxy, telemetry: Telemetry
) -> Iterator[Controller]:
    for ref in TARGETS:
        fake_kube.add_deployment(ref.namespace, ref.name, replicas=3, annotations=ANNOTATIONS)
    settings = PrometheusSettings(url=proxy.url, timeout_s=1.0, retries=0, step_s=60, history_s=3600.0,
                                  cache_s=3600.0)  # fmt: skip
    source = PrometheusSource(settings, sleep=lambda _: None)
    stages = cluster_stages(kube, Listed(kube), source, WithoutForecasts(), HpaPolicy(),
                            on_record=telemetry.target_seen)  # fmt: skip
    yield Controller(stages, on_problem=telemetry.metrics_problem)
    source.close()


def exposed(telemetry: Telemetry, cause: str) -> float:
    """The counter's value as `/metrics` shows it."""
    line = f'predictive_autoscaler_prometheus_errors_total{{cause="{cause}"}} '
    body = telemetry.render()[0].decode()
    (found,) = [row for row in body.splitlines() if row.startswith(line)]
    return float(found.removeprefix(line))


def tick(controller: Controller, telemetry: Telemetry, now: float) -> None:
    report = controller.tick(now)
    telemetry.tick_done(report, 0.01, now)


def cause_lines(caplog: pytest.LogCaptureFixture, level: int = logging.WARNING) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == PROBLEMS and r.levelno == level]


FAULTS = [
    pytest.param(Fault.RESET, {}, "unreachable", "Prometheus is unreachable: ", id="unreachable"),
    pytest.param(Fault.SLOW, {"delay_s": 1.5}, "timeout", "Prometheus timed out: ", id="timeout"),
    pytest.param(Fault.ERROR, {}, "server-error", "Prometheus answered with an error: ",
                 id="server-error"),
    pytest.param(Fault.BAD_QUERY, {}, "rejected", "Prometheus rejected a query: a built-in metric's "
                 "query (HTTP 400): ", id="rejected"),
    pytest.param(Fault.EMPTY, {}, "no-data", "Prometheus answered without data: no usable sample "
                 "for 3 of 3 target(s): ", id="no-data"),
]  # fmt: skip


@pytest.mark.parametrize(("fault", "options", "cause", "head"), FAULTS)
def test_each_fault_is_one_line_naming_its_cause_and_counted_per_tick(
    controller: Controller,
    telemetry: Telemetry,
    proxy: FaultProxy,
    prometheus: PromEnv,
    caplog: pytest.LogCaptureFixture,
    fault: Fault,
    options: dict[str, float],
    cause: str,
    head: str,
) -> None:
    caplog.set_level(logging.INFO)
    now = prometheus.anchor - 300
    tick(controller, telemetry, now)
    assert cause_lines(caplog) == [], "a healthy tick says nothing"
    proxy.set(fault, **options)  # type: ignore[arg-type]
    tick(controller, telemetry, now + 30)
    tick(controller, telemetry, now + 60)
    lines = cause_lines(caplog)
    assert len(lines) == 1, f"one line while it lasts, not one per tick or per Deployment: {lines}"
    assert lines[0].startswith(head), lines[0]
    (record,) = [r for r in caplog.records if r.name == PROBLEMS and r.levelno == logging.WARNING]
    assert record.__dict__["cause"] == cause
    assert "%7B" not in lines[0], "no query text at warning"
    assert "query=" not in lines[0], "no query text at warning"
    assert exposed(telemetry, cause) == 2, "counted once per tick"
    others = {"unreachable", "timeout", "server-error", "rejected", "no-data"} - {cause}
    assert {exposed(telemetry, other) for other in others} == {0}
    proxy.heal()
    tick(controller, telemetry, now + 90)
    assert len(cause_lines(caplog, logging.INFO)) == 1, "the end of it is said once"
    assert exposed(telemetry, cause) == 2


# Parsed (Python's regex engine takes the repeat), refused by Prometheus' RE2.
REJECTED_SELECTOR = 'app_hits_total{ handler=~"/checkout{1001}" }'
CUSTOM = TargetRef("blog", "custom")


def test_a_rejected_selector_names_its_workload_and_annotation_not_its_text(
    fake_kube: FakeKube,
    controller: Controller,
    telemetry: Telemetry,
    prometheus: PromEnv,
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = PREFIX + "requests-metric"
    fake_kube.add_deployment(CUSTOM.namespace, CUSTOM.name, replicas=3,
                             annotations={**ANNOTATIONS, key: REJECTED_SELECTOR})  # fmt: skip
    caplog.set_level(logging.DEBUG, logger=PROBLEMS)
    tick(controller, telemetry, prometheus.anchor - 300)
    (line,) = cause_lines(caplog)
    assert f"{CUSTOM} requests ({key}: " in line
    assert "invalid repeat count" in line
    assert "checkout{1001}" not in line, "the selector itself only at debug"
    assert any("checkout{1001}" in m for m in cause_lines(caplog, logging.DEBUG))
    assert exposed(telemetry, "rejected") == 1
    assert exposed(telemetry, "no-data") == 0, "the rejected metric is not counted twice"


def test_the_decision_log_and_the_actuation_metric_use_one_word(
    controller: Controller,
    telemetry: Telemetry,
    prometheus: PromEnv,
    proxy: FaultProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="autoscaler.observability.recorder")
    tick(controller, telemetry, prometheus.anchor - 300)
    caplog.clear()
    proxy.set(Fault.ERROR)  # every Deployment holds where it is
    tick(controller, telemetry, prometheus.anchor - 270)
    decisions = [r for r in caplog.records if r.__dict__.get("event") == "decision"]
    assert len(decisions) == len(TARGETS)
    assert {r.__dict__["outcome"] for r in decisions} == {"unchanged"}
    assert all("applied" not in r.__dict__ for r in decisions)
    assert all(r.getMessage().split(": ", 1)[1].startswith("held at") for r in decisions)
    counted = telemetry.registry.get_sample_value(
        "predictive_autoscaler_actuations_total", {"outcome": "unchanged"}
    )
    assert counted is not None
    assert counted >= len(TARGETS)
