"""Prometheus faults against the controller: a real Prometheus behind the fault proxy
(`tests.faultproxy`), the real `PrometheusSource` and the fake API server, a manual clock.

Three Deployments whose load needs a few pods were just raised to 20 by someone else. One tick read
their load healthily before the fault. In every named fault, Prometheus then answers with an error,
a rejection, a reset, too late, nothing, NaN or only old points; in each, the controller must not
scale any of them down on that very tick, and once the fault ends the next tick decides on fresh
data again. Missing data for one namespace holds only that namespace's Deployments; a metric that is
missing for a Deployment still lets the others scale it up. A request selector the grammar accepts
but Prometheus rejects gives its Deployment one `InvalidAnnotation` Event naming the key and the
value as written, however many ticks it lasts, and the other Deployments are decided as usual."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from autoscaler.config import PREFIX
from autoscaler.kube import Kube, connect
from autoscaler.model import TargetRef
from autoscaler.patches import scale_patch
from autoscaler.policy import HpaPolicy, Mode, Reason
from autoscaler.sources.prometheus import PrometheusSettings, PrometheusSource
from autoscaler.stages import WithoutForecasts
from autoscaler.wiring import Controller, cluster_stages
from tests.fakekube import FakeKube
from tests.faultproxy import Fault, FaultProxy
from tests.promserver import PromEnv
from tests.test_controller import Listed

WEB = TargetRef("shop", "web")
SHOP_API = TargetRef("shop", "api")
BLOG_API = TargetRef("blog", "api")
TARGETS = (WEB, SHOP_API, BLOG_API)
RAISED = 20
ANNOTATIONS = {
    PREFIX + "enabled": "true",
    PREFIX + "metrics": "cpu,requests",
    PREFIX + "target-requests-per-pod": "5",
    PREFIX + "startup-seconds": "60",
    # No window: the only thing between the fault and a scale-down is the controller's data hygiene.
    PREFIX + "scale-down-stabilization-seconds": "0",
}


@pytest.fixture
def proxy(prometheus: PromEnv) -> Iterator[FaultProxy]:
    with FaultProxy(prometheus.url) as running:
        yield running


@pytest.fixture
def kube(kubeconfig: Path) -> Kube:
    return connect(kubeconfig, user_agent="predictive-autoscaler/test")


@pytest.fixture
def source(proxy: FaultProxy) -> Iterator[PrometheusSource]:
    settings = PrometheusSettings(url=proxy.url, timeout_s=1.0, retries=0, step_s=60, history_s=3600.0,
                                  cache_s=3600.0)  # fmt: skip
    opened = PrometheusSource(settings, sleep=lambda _: None)
    yield opened
    opened.close()


def replicas(fake: FakeKube, ref: TargetRef) -> int:
    deployment = fake.get_object("Deployment", ref.namespace, ref.name)
    assert deployment is not None
    return int(deployment["spec"]["replicas"])


def started(fake: FakeKube, kube: Kube, source: PrometheusSource, prometheus: PromEnv) -> Controller:
    """A controller that read every Deployment's load once, healthily, before someone raised them."""
    for ref in TARGETS:
        fake.add_deployment(ref.namespace, ref.name, replicas=3, annotations=ANNOTATIONS)
    controller = Controller(cluster_stages(kube, Listed(kube), source, WithoutForecasts(), HpaPolicy()))
    controller.tick(prometheus.anchor - 300)
    for ref in TARGETS:
        kube.patch(scale_patch(ref, RAISED))
    return controller


FAULTS = [
    pytest.param(Fault.ERROR, {}, id="server-error"),
    pytest.param(Fault.BAD_QUERY, {}, id="query-rejected"),
    pytest.param(Fault.RESET, {}, id="connection-reset"),
    pytest.param(Fault.SLOW, {"delay_s": 1.5}, id="slower-than-the-timeout"),
    pytest.param(Fault.EMPTY, {}, id="empty-answer"),
    pytest.param(Fault.NAN, {}, id="nan-values"),
    pytest.param(Fault.STALE, {"stale_s": 600.0}, id="only-old-points"),
]


@pytest.mark.parametrize(("fault", "options"), FAULTS)
@pytest.mark.parametrize("later_s", [30, 60], ids=["same-step", "next-step"])
def test_no_scale_down_on_the_very_tick_prometheus_fails(
    fake_kube: FakeKube,
    kube: Kube,
    source: PrometheusSource,
    proxy: FaultProxy,
    prometheus: PromEnv,
    fault: Fault,
    options: dict[str, float],
    later_s: int,
) -> None:
    controller = started(fake_kube, kube, source, prometheus)
    proxy.set(fault, **options)  # type: ignore[arg-type]
    report = controller.tick(prometheus.anchor - 300 + later_s)
    assert proxy.faulted > 0, "the fault was in the way"
    assert {ref: replicas(fake_kube, ref) for ref in TARGETS} == dict.fromkeys(TARGETS, RAISED)
    assert {d.ref: d.mode for d in report.decisions} == dict.fromkeys(TARGETS, Mode.HOLD)
    assert all(Reason.METRICS_MISSING in d.reasons for d in report.decisions)
    proxy.heal()
    controller.tick(prometheus.anchor - 300 + later_s + 30)
    assert all(replicas(fake_kube, ref) < RAISED for ref in TARGETS), "fresh data decide again"


def test_healthy_answers_scale_the_raised_deployments_down(
    fake_kube: FakeKube, kube: Kube, source: PrometheusSource, proxy: FaultProxy, prometheus: PromEnv
) -> None:
    controller = started(fake_kube, kube, source, prometheus)
    controller.tick(prometheus.anchor - 270)
    assert all(replicas(fake_kube, ref) < RAISED for ref in TARGETS)


def test_series_missing_for_one_namespace_hold_only_its_deployments(
    fake_kube: FakeKube, kube: Kube, source: PrometheusSource, proxy: FaultProxy, prometheus: PromEnv
) -> None:
    controller = started(fake_kube, kube, source, prometheus)
    proxy.set(Fault.PARTIAL, drop={"namespace": "shop"})
    controller.tick(prometheus.anchor - 270)
    assert replicas(fake_kube, WEB) == RAISED
    assert replicas(fake_kube, SHOP_API) == RAISED
    assert replicas(fake_kube, BLOG_API) < RAISED


def test_a_missing_metric_still_lets_the_others_scale_up(
    fake_kube: FakeKube, kube: Kube, source: PrometheusSource, proxy: FaultProxy, prometheus: PromEnv
) -> None:
    controller = started(fake_kube, kube, source, prometheus)
    for ref in TARGETS:
        kube.patch(scale_patch(ref, 1))
    proxy.set(Fault.EMPTY, match="container_cpu_usage_seconds_total")
    report = controller.tick(prometheus.anchor - 270)
    assert proxy.faulted > 0
    # shop/api carries 30 requests/s at 5 per pod: scaled up on requests alone.
    assert replicas(fake_kube, SHOP_API) > 1
    assert {d.ref: d.metric for d in report.decisions}[SHOP_API] is not None


def test_after_minutes_without_data_the_first_healthy_tick_decides_again(
    fake_kube: FakeKube, kube: Kube, source: PrometheusSource, proxy: FaultProxy, prometheus: PromEnv
) -> None:
    controller = started(fake_kube, kube, source, prometheus)
    proxy.set(Fault.EMPTY)
    for minute in range(1, 5):  # four minutes of answers without data
        controller.tick(prometheus.anchor - 300 + 60 * minute)
    assert {ref: replicas(fake_kube, ref) for ref in TARGETS} == dict.fromkeys(TARGETS, RAISED)
    proxy.heal()
    report = controller.tick(prometheus.anchor - 300 + 60 * 5)
    assert all(Reason.METRICS_MISSING not in d.reasons for d in report.decisions), (
        "the points missed meanwhile are fetched again at once"
    )
    assert all(replicas(fake_kube, ref) < RAISED for ref in TARGETS)


# Parsed (Python's regex engine takes the repeat), refused by Prometheus' RE2: no count above 1000.
# Written with blanks: the Event names the value as annotated.
REJECTED_SELECTOR = 'app_hits_total{ handler=~"/checkout{1001}" }'
CUSTOM = TargetRef("blog", "custom")


def test_a_selector_prometheus_rejects_is_reported_once_on_its_deployment_only(
    fake_kube: FakeKube, kube: Kube, source: PrometheusSource, proxy: FaultProxy, prometheus: PromEnv
) -> None:
    key = PREFIX + "requests-metric"
    fake_kube.add_deployment(CUSTOM.namespace, CUSTOM.name, replicas=3,
                             annotations={**ANNOTATIONS, key: REJECTED_SELECTOR})  # fmt: skip
    controller = started(fake_kube, kube, source, prometheus)
    kube.patch(scale_patch(CUSTOM, RAISED))
    report = controller.tick(prometheus.anchor - 270)
    assert [(r.ref, r.key, r.value) for r in report.rejected] == [(CUSTOM, key, REJECTED_SELECTOR)]
    assert "invalid repeat count" in report.rejected[0].error
    invalid = [
        event
        for namespace in ("shop", "blog")
        for event in fake_kube.list_objects("Event", namespace)
        if event["reason"] == "InvalidAnnotation"
    ]
    assert len(invalid) == 1, "reported once, not once per tick"
    assert invalid[0]["type"] == "Warning"
    assert invalid[0]["involvedObject"]["name"] == CUSTOM.name
    message = invalid[0]["message"]
    assert message.startswith(f"annotation {key}={REJECTED_SELECTOR!r}: rejected by Prometheus (")
    assert "invalid repeat count" in message
    assert "%7B" not in message, "no URL-encoded query"
    # The others are decided on fresh data in the same tick; the rejected one, without its request
    # rate, is never scaled down.
    assert all(replicas(fake_kube, ref) < RAISED for ref in TARGETS)
    assert replicas(fake_kube, CUSTOM) == RAISED
    held = {d.ref: d for d in report.decisions}[CUSTOM]
    assert Reason.METRICS_MISSING in held.reasons
