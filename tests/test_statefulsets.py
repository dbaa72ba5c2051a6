"""StatefulSets as scale targets, end to end: the controller's tick (`Controller` on the informers,
the actuator and the recorder, through the official client) against the fake API server, with loads
from the real Prometheus (`prometheus`, `tests.promserver.cluster_dataset`: the StatefulSet shop/web
runs there beside the Deployment shop/web, with another load), and what the tick did read back with
the real kubectl.

Covers: mode replicas patches `statefulsets/scale` to what the StatefulSet's own load asks for
(`kubectl get sts`), with a `ScaledUp` Event on the StatefulSet and its status annotation; mode hpa
raises the floor of the HPA whose `scaleTargetRef` names the StatefulSet (`kubectl get hpa`), leaves
its replicas to the HPA, and gives the floor back when the forecast falls; a Deployment and a
StatefulSet of one name in one namespace are scaled independently, each to its own load, each with
its own Events, and a StatefulSet that opts out gets its HPA's floor back while the Deployment of
the same name keeps its own; bad annotations on a StatefulSet give one `InvalidAnnotation` Event on
it (`kubectl get events` names `statefulset/web`) and no write, while the Deployment of the same
name is scaled.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from pathlib import Path

import pytest

from autoscaler.config import PREFIX, STATUS_KEY
from autoscaler.kube import Kind, Kube, connect
from autoscaler.metrics import MetricKind
from autoscaler.model import (
    ForecastQuality,
    Forecasts,
    LoadForecast,
    LoadSnapshot,
    Target,
    TargetRef,
    WorkloadKind,
)
from autoscaler.policy import PredictivePolicy
from autoscaler.sources.informers import Informers
from autoscaler.sources.prometheus import PrometheusSettings, PrometheusSource
from autoscaler.stages import NO_HISTORY, Forecaster, RecordedLoad, TickReport, WithoutForecasts
from autoscaler.wiring import Controller, cluster_stages
from tests.fakekube import FakeKube
from tests.polling import eventually
from tests.promserver import PromEnv
from tests.test_controller import writes

NS = "shop"
DEPLOYMENT = TargetRef(NS, "web")
STATEFULSET = TargetRef(NS, "web", WorkloadKind.STATEFULSET)
PER_POD = 10.0  # requests/s one pod should carry
ON = {
    PREFIX + "enabled": "true",
    PREFIX + "metrics": "requests",
    PREFIX + "target-requests-per-pod": f"{PER_POD:g}",
    PREFIX + "startup-seconds": "60",
}

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")


class Foreseen:
    """A trusted request-rate forecast per target: a flat upper bound over the next half hour."""

    def __init__(self) -> None:
        self.upper: dict[TargetRef, float] = {}

    def forecast(
        self, target: Target, load: LoadSnapshot, now: float, past: RecordedLoad = NO_HISTORY
    ) -> Forecasts:
        upper = self.upper.get(target.state.ref)
        if upper is None:
            return Forecasts()
        forecast = LoadForecast(
            kind=MetricKind.REQUESTS,
            made_at=now - 60,
            step_s=300,
            times=tuple(now - 60 + 300 * i for i in range(6)),
            mean=(upper * 0.8,) * 6,
            upper=(upper,) * 6,
            level=0.8,
            quality=ForecastQuality(48, 0.5, 0.85),
        )
        return Forecasts.of(requests=forecast)

    def keep_only(self, refs: AbstractSet[TargetRef]) -> None:
        return None


@pytest.fixture
def kube(kubeconfig: Path) -> Kube:
    return connect(kubeconfig, user_agent="predictive-autoscaler/test")


@pytest.fixture
def source(prometheus: PromEnv) -> Iterator[PrometheusSource]:
    settings = PrometheusSettings(
        url=prometheus.url, timeout_s=5.0, retries=0, history_s=6 * 3600.0, cache_s=6 * 3600.0
    )
    prometheus_source = PrometheusSource(settings)
    yield prometheus_source
    prometheus_source.close()


@pytest.fixture
def kubectl(kubeconfig: Path, tmp_path: Path) -> Callable[..., str]:
    def run(*args: str) -> str:
        done = subprocess.run(
            ["kubectl", "--kubeconfig", str(kubeconfig), "--cache-dir", str(tmp_path / "cache"),
             "-n", NS, *args],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        return done.stdout

    return run


@contextmanager
def controller(
    kube: Kube, source: PrometheusSource, forecaster: Forecaster
) -> Iterator[tuple[Controller, Informers]]:
    """The controller as `run` wires it, on informers that have listed the namespace."""
    informers = Informers(kube, [NS], watch_timeout_s=30)
    informers.start()
    try:
        assert informers.wait_synced(10)
        stages = cluster_stages(
            kube, informers, source, forecaster, PredictivePolicy(interval_s=30), dry_run=False
        )
        yield Controller(stages), informers
    finally:
        informers.stop()


def ready_column(kubectl: Callable[..., str], name: str) -> str:
    """The READY column of `kubectl get sts <name>` (ready/wanted)."""
    header, row = kubectl("get", "sts", name).splitlines()
    assert header.split()[:2] == ["NAME", "READY"]
    return row.split()[1]


def requests_load(report: TickReport, ref: TargetRef, prometheus: PromEnv, now: float) -> float:
    """The request rate the tick observed for `ref`, checked against the data Prometheus holds."""
    snapshot = report.loads[ref]
    sample = snapshot.get(MetricKind.REQUESTS)
    expected = prometheus.dataset.expected(ref, MetricKind.REQUESTS, now, 120.0)
    assert sample is not None
    assert expected is not None
    assert math.isclose(sample.value, expected, rel_tol=1e-6), (ref, sample.value, expected)
    return sample.value


def events_on(fake: FakeKube, kind: WorkloadKind, reason: str) -> list[dict[str, str]]:
    return [
        {"name": e["involvedObject"]["name"], "message": e.get("message", "")}
        for e in fake.list_objects("Event", NS)
        if e.get("reason") == reason and e["involvedObject"]["kind"] == kind.value
    ]


def test_a_statefulset_is_scaled_in_mode_replicas(
    fake_kube: FakeKube,
    kube: Kube,
    source: PrometheusSource,
    prometheus: PromEnv,
    kubectl: Callable[..., str],
) -> None:
    fake_kube.add_statefulset(NS, "web", replicas=2, annotations=ON)
    now = prometheus.anchor
    with controller(kube, source, WithoutForecasts()) as (tick, _):
        report = tick.tick(now)
    wanted = math.ceil(requests_load(report, STATEFULSET, prometheus, now) / PER_POD)
    assert [(d.ref, d.current, d.replicas) for d in report.decisions] == [(STATEFULSET, 2, wanted)]
    assert wanted > 2
    assert ready_column(kubectl, "web") == f"{wanted}/{wanted}"
    assert kubectl("get", "sts", "web", "-o", "jsonpath={.spec.replicas}") == str(wanted)
    assert len(writes(fake_kube, "/statefulsets/web/scale")) == 1
    assert writes(fake_kube, "/deployments/") == []
    assert [e["name"] for e in events_on(fake_kube, WorkloadKind.STATEFULSET, "ScaledUp")] == ["web"]
    key = STATUS_KEY.replace(".", "\\.")  # jsonpath: a dot in a key is escaped
    status = json.loads(kubectl("get", "sts", "web", "-o", f"jsonpath={{.metadata.annotations.{key}}}"))
    assert status["target"] == wanted


def test_a_statefulset_in_mode_hpa_has_its_hpa_floor_raised_and_given_back(
    fake_kube: FakeKube,
    kube: Kube,
    source: PrometheusSource,
    prometheus: PromEnv,
    kubectl: Callable[..., str],
) -> None:
    fake_kube.add_statefulset(NS, "web", replicas=2, annotations={**ON, PREFIX + "mode": "hpa"})
    fake_kube.add_hpa(NS, "web", "web", min_replicas=2, max_replicas=20, target_kind="StatefulSet")
    foreseen = Foreseen()
    # What a pod carries at most: the 10 requests/s it should carry are 70 % (the default) of it.
    foreseen.upper[STATEFULSET] = 120.0
    floor = math.ceil(120.0 / (PER_POD / 0.7))
    now = prometheus.anchor
    with controller(kube, source, foreseen) as (tick, informers):
        report = tick.tick(now)
        assert [d.ref for d in report.decisions] == [STATEFULSET]
        requests_load(report, STATEFULSET, prometheus, now)
        hpa = kubectl("get", "hpa", "web").splitlines()[1].split()
        # NAME REFERENCE TARGETS(2 words) MINPODS MAXPODS REPLICAS AGE
        assert (hpa[1], hpa[4], hpa[5]) == ("StatefulSet/web", str(floor), "20")
        assert ready_column(kubectl, "web") == "2/2", "the HPA, not us, scales the StatefulSet"
        assert writes(fake_kube, "/statefulsets/web/scale") == []
        (raised,) = events_on(fake_kube, WorkloadKind.STATEFULSET, "RaisedHPAFloor")
        assert raised["message"].startswith(f"HPA web floor 2→{floor}"), raised["message"]

        eventually(
            lambda: any(h["spec"]["minReplicas"] == floor for h in informers.objects(Kind.HPA)),
            "the informer to see the raised floor",
        )
        foreseen.upper[STATEFULSET] = 10.0
        tick.tick(now + 30)
    assert kubectl("get", "hpa", "web", "-o", "jsonpath={.spec.minReplicas}") == "2"
    annotations = kubectl("get", "hpa", "web", "-o", "jsonpath={.metadata.annotations}")
    assert "original-min-replicas" not in annotations
    assert len(events_on(fake_kube, WorkloadKind.STATEFULSET, "RestoredHPAFloor")) == 1


def test_a_deployment_and_a_statefulset_of_one_name_are_scaled_independently(
    fake_kube: FakeKube,
    kube: Kube,
    source: PrometheusSource,
    prometheus: PromEnv,
    kubectl: Callable[..., str],
) -> None:
    fake_kube.add_deployment(NS, "web", replicas=2, annotations=ON)
    fake_kube.add_statefulset(NS, "web", replicas=2, annotations=ON)
    now = prometheus.anchor
    with controller(kube, source, WithoutForecasts()) as (tick, _):
        report = tick.tick(now)
    wanted = {
        ref: math.ceil(requests_load(report, ref, prometheus, now) / PER_POD)
        for ref in (DEPLOYMENT, STATEFULSET)
    }
    assert {d.ref: d.replicas for d in report.decisions} == wanted
    assert wanted[DEPLOYMENT] != wanted[STATEFULSET], "their loads differ in the data"
    assert kubectl("get", "deploy", "web", "-o", "jsonpath={.spec.replicas}") == str(wanted[DEPLOYMENT])
    assert ready_column(kubectl, "web") == f"{wanted[STATEFULSET]}/{wanted[STATEFULSET]}"
    for ref, kind in ((DEPLOYMENT, WorkloadKind.DEPLOYMENT), (STATEFULSET, WorkloadKind.STATEFULSET)):
        (scaled,) = events_on(fake_kube, kind, "ScaledUp")
        assert scaled["message"].startswith(f"scaled 2→{wanted[ref]}"), scaled["message"]
    assert len(writes(fake_kube, "/deployments/web/scale")) == 1
    assert len(writes(fake_kube, "/statefulsets/web/scale")) == 1


def test_bad_annotations_on_a_statefulset_give_an_event_on_it(
    fake_kube: FakeKube,
    kube: Kube,
    source: PrometheusSource,
    prometheus: PromEnv,
    kubectl: Callable[..., str],
) -> None:
    fake_kube.add_statefulset(NS, "web", replicas=2, annotations={**ON, PREFIX + "min-replica": "3"})
    fake_kube.add_deployment(NS, "web", replicas=2, annotations=ON)
    fake_kube.clear_log()
    now = prometheus.anchor
    with controller(kube, source, WithoutForecasts()) as (tick, _):
        first = tick.tick(now)
        tick.tick(now + 30)
    assert first.invalid == (STATEFULSET,)
    assert [d.ref for d in first.decisions] == [DEPLOYMENT]
    assert writes(fake_kube, "/statefulsets/") == []
    assert ready_column(kubectl, "web") == "2/2"
    (invalid,) = events_on(fake_kube, WorkloadKind.STATEFULSET, "InvalidAnnotation")
    assert invalid["name"] == "web"
    assert PREFIX + "min-replica" in invalid["message"]
    assert "the StatefulSet is left as it is" in invalid["message"]
    assert events_on(fake_kube, WorkloadKind.DEPLOYMENT, "InvalidAnnotation") == []
    shown = [line for line in kubectl("get", "events").splitlines() if "InvalidAnnotation" in line]
    assert len(shown) == 1
    assert "statefulset/web" in shown[0]
    assert kubectl("get", "deploy", "web", "-o", "jsonpath={.spec.replicas}") != "2"


def test_a_floor_left_on_a_statefulsets_hpa_goes_back_and_the_deployments_stays(
    fake_kube: FakeKube,
    kube: Kube,
    source: PrometheusSource,
    prometheus: PromEnv,
    kubectl: Callable[..., str],
) -> None:
    hpa_mode = {**ON, PREFIX + "mode": "hpa"}
    fake_kube.add_deployment(NS, "web", replicas=2, annotations=hpa_mode)
    fake_kube.add_statefulset(NS, "web", replicas=2, annotations=hpa_mode)
    fake_kube.add_hpa(NS, "web-deploy", "web", min_replicas=2, max_replicas=20)
    fake_kube.add_hpa(NS, "web-sts", "web", min_replicas=2, max_replicas=20, target_kind="StatefulSet")
    foreseen = Foreseen()
    foreseen.upper.update({DEPLOYMENT: 120.0, STATEFULSET: 120.0})
    floor = math.ceil(120.0 / (PER_POD / 0.7))

    def floors() -> dict[str, str]:
        shown = kubectl(
            "get", "hpa", "-o", "jsonpath={range .items[*]}{.metadata.name}={.spec.minReplicas} {end}"
        )
        return dict(pair.split("=") for pair in shown.split())

    with controller(kube, source, foreseen) as (tick, informers):
        tick.tick(prometheus.anchor)
        assert floors() == {"web-deploy": str(floor), "web-sts": str(floor)}
        kubectl("annotate", "sts", "web", f"{PREFIX}enabled=false", "--overwrite")
        eventually(
            lambda: (
                all(h["spec"]["minReplicas"] == floor for h in informers.objects(Kind.HPA))
                and all(
                    s["metadata"]["annotations"][PREFIX + "enabled"] == "false"
                    for s in informers.objects(Kind.STATEFULSET)
                )
            ),
            "the informers to see the raised floors and the opt-out",
        )
        tick.tick(prometheus.anchor + 30)
    assert floors() == {"web-deploy": str(floor), "web-sts": "2"}
    (restored,) = events_on(fake_kube, WorkloadKind.STATEFULSET, "RestoredHPAFloor")
    assert restored["name"] == "web"
    assert events_on(fake_kube, WorkloadKind.DEPLOYMENT, "RestoredHPAFloor") == []
