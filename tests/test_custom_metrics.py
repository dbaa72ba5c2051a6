"""Metrics a workload declares itself (`predictive-autoscaler.io/metric.<name>`), end to end: the
annotations on Deployments in the fake API server, the real Prometheus (backfilled here with agent
series in two namespaces), the Prometheus source and the controller's tick.

Covers: a custom gauge per pod (in-flight requests), a custom counter's rate per pod (tokens/s) and a
workload total (a queue's depth, exported by a pod the workload does not own) each scale their
Deployment to load ÷ per-pod target; the queries per tick, counted by a proxy in front of Prometheus,
do not grow with the number of workloads sharing a declaration; hostile declarations either fail to
parse (with the key and value named) or, when they parse, never read the other namespace's series or
another metric; a declaration the parser refuses or Prometheus rejects gets one `InvalidAnnotation`
Event naming it, and the other workloads are scaled.

No forecast is made (the forecaster hands out none), so each decision is the HPA's rule on the
measured load: what is checked is what the load is and which series it comes from.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path

import pytest

from autoscaler.config import PREFIX, AnnotationError, parse_annotations
from autoscaler.kube import Kube, connect
from autoscaler.metrics import MetricKind
from autoscaler.model import Forecasts, LoadSnapshot, Target, TargetConfig, TargetRef, WorkloadState
from autoscaler.policy import PredictivePolicy
from autoscaler.sources.prometheus import PrometheusSettings, PrometheusSource
from autoscaler.stages import NO_HISTORY, RecordedLoad
from autoscaler.wiring import Controller, cluster_stages
from tests.fakekube import FakeKube
from tests.faultproxy import FaultProxy
from tests.promserver import PromServer, backfill, require_binaries
from tests.test_controller import Listed

ANCHOR = 1_800_000_000.0 // 3600 * 3600  # the data's end, and the tick's `now`
SCRAPE_S = 30
SPAN_S = 2 * 3600
NS, RIVAL = "agents", "rival"
# Per pod: in-flight requests (gauge) and tokens/s (counter); the queue's depth; in the rival
# namespace every value is far larger, so reading it would show.
INFLIGHT, TOKENS, QUEUE = 4.0, 300.0, 50.0
RIVAL_FACTOR = 100.0
HOSTILE_ROUTE = '"} or vector(1000) or x{a="'


def _labels(pairs: Mapping[str, str]) -> str:
    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in pairs.items()) + "}"


@dataclass(frozen=True, slots=True)
class AgentPods:
    """A Deployment's pods in the data: `count` pods of ReplicaSet `<name>-5d`."""

    namespace: str
    name: str
    count: int

    @property
    def pods(self) -> list[str]:
        return [f"{self.name}-5d-{i}" for i in range(self.count)]


class AgentData:
    """Two hours of agent series at 30 s scrapes, ending at ANCHOR, as OpenMetrics."""

    def __init__(self, workloads: Sequence[AgentPods]) -> None:
        self.workloads = workloads

    def write_openmetrics(self, path: Path) -> int:
        times = [ANCHOR - SPAN_S + i * SCRAPE_S for i in range(SPAN_S // SCRAPE_S + 1)]
        families: dict[str, list[str]] = {}

        def series(name: str, labels: Mapping[str, str], value_at: object) -> None:
            head = name + _labels(labels)
            assert callable(value_at)
            families.setdefault(name, []).extend(f"{head} {value_at(t)} {int(t)}" for t in times)

        for w in self.workloads:
            factor = RIVAL_FACTOR if w.namespace == RIVAL else 1.0
            rs = f"{w.name}-5d"
            series(
                "kube_replicaset_owner",
                {"namespace": w.namespace, "replicaset": rs, "owner_kind": "Deployment",
                 "owner_name": w.name},
                lambda t: 1,
            )  # fmt: skip
            for pod in w.pods:
                own = {"namespace": w.namespace, "pod": pod}
                series(
                    "kube_pod_owner",
                    {**own, "owner_kind": "ReplicaSet", "owner_name": rs},
                    lambda t: 1,
                )
                inflight = INFLIGHT * factor
                series("agent_inflight_requests", {**own, "route": "/v1/chat"}, lambda t, v=inflight: v)
                # The same metric on another route, which a declaration's matcher leaves out.
                series("agent_inflight_requests", {**own, "route": "/health"}, lambda t: 7)
                rate = TOKENS * factor
                series(
                    "agent_tokens_generated_total",
                    own,
                    lambda t, r=rate: r * (t - (ANCHOR - SPAN_S)),
                )
                # What a hostile declaration aims at: in the rival namespace only.
                if w.namespace == RIVAL:
                    series("agent_inflight_requests", {**own, "route": HOSTILE_ROUTE}, lambda t: 1000)
            if w.name == "queue-exporter":
                series(
                    "queue_depth",
                    {"namespace": w.namespace, "pod": w.pods[0], "queue": "tasks"},
                    lambda t, d=QUEUE * factor: d,
                )
        with path.open("w", encoding="utf-8") as out:
            for name, lines in families.items():
                counter = name.endswith("_total")
                family = name.removesuffix("_total") if counter else name
                out.write(f"# TYPE {family} {'counter' if counter else 'gauge'}\n")
                out.writelines(line + "\n" for line in lines)
            out.write("# EOF\n")
        return sum(len(lines) for lines in families.values())


# The rival namespace has the same Deployments, so a query that leaked would find them.
PODS = {"chat": 3, "writer": 2, "worker": 1, "queue-exporter": 1}
BULK = tuple(f"bulk-{i:02d}" for i in range(12))
DATA = AgentData(
    [
        *(AgentPods(ns, name, n) for ns in (NS, RIVAL) for name, n in PODS.items()),
        *(AgentPods(NS, name, 1) for name in BULK),
    ]
)  # fmt: skip


@pytest.fixture(scope="module")
def agents_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromServer]:
    require_binaries()
    server = PromServer(backfill(DATA, tmp_path_factory.mktemp("agents") / "prometheus"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def proxy(agents_prometheus: PromServer) -> Iterator[FaultProxy]:
    with FaultProxy(agents_prometheus.url) as counting:
        yield counting


def settings(url: str) -> PrometheusSettings:
    return PrometheusSettings(
        url=url, timeout_s=10.0, retries=0, step_s=60, rate_window="2m", history_s=SPAN_S,
        cache_s=SPAN_S, late_steps=2, quality_window_s=600.0, max_missing_share=0.3,
    )  # fmt: skip


class NoForecast:
    """A forecaster that never has a forecast: every decision is the reactive (HPA) one."""

    def forecast(
        self, target: Target, load: LoadSnapshot, now: float, past: RecordedLoad = NO_HISTORY
    ) -> Forecasts:
        return Forecasts()

    def keep_only(self, refs: AbstractSet[TargetRef]) -> None:
        return None


def declared(metric: str, declaration: str, **more: str) -> dict[str, str]:
    return {
        PREFIX + "enabled": "true",
        PREFIX + "metrics": metric,
        PREFIX + f"metric.{metric}": declaration,
        PREFIX + "max-replicas": "50",
        PREFIX + "startup-seconds": "60",
        **{PREFIX + k.replace("_", "-"): v for k, v in more.items()},
    }


@pytest.fixture
def kube(kubeconfig: Path) -> Kube:
    return connect(kubeconfig, user_agent="predictive-autoscaler/test")


def tick(kube: Kube, source: PrometheusSource) -> None:
    stages = cluster_stages(kube, Listed(kube), source, NoForecast(), PredictivePolicy(interval_s=30))
    Controller(stages).tick(ANCHOR)


def replicas(fake: FakeKube, name: str) -> int:
    deployment = fake.get_object("Deployment", NS, name)
    assert deployment is not None
    return int(deployment["spec"]["replicas"])


def events(fake: FakeKube, reason: str) -> list[str]:
    return [
        f"{e['involvedObject']['name']}: {e.get('message', '')}"
        for e in fake.list_objects("Event", NS)
        if e.get("reason") == reason
    ]


@pytest.mark.parametrize(
    ("name", "pods", "declaration", "wanted"),
    [
        # 3 pods × 4 in flight on /v1/chat = 12, 2 a pod → 6 (from 3: within the HPA's doubling).
        pytest.param("chat", 3, 'gauge per-pod 2 agent_inflight_requests{route="/v1/chat"}', 6,
                     id="gauge-per-pod-inflight"),
        # 2 pods × 300 tokens/s = 600/s, 100 a pod → 6.
        pytest.param("writer", 2, "counter per-pod 100 agent_tokens_generated_total", 6,
                     id="counter-rate-per-pod-tokens"),
        # The queue's 50 tasks, exported by another Deployment's pod, 10 a pod → 5 (from 1: +4).
        pytest.param("worker", 1, 'gauge total 10 queue_depth{queue="tasks"}', 5,
                     id="workload-total-queue-depth"),
    ],
)  # fmt: skip
def test_a_declared_metric_scales_its_deployment_to_load_over_target(
    fake_kube: FakeKube,
    kube: Kube,
    agents_prometheus: PromServer,
    name: str,
    pods: int,
    declaration: str,
    wanted: int,
) -> None:
    metric = {"chat": "inflight", "writer": "tokens", "worker": "queue"}[name]
    fake_kube.add_deployment(NS, name, replicas=pods, annotations=declared(metric, declaration))
    source = PrometheusSource(settings(agents_prometheus.url))
    try:
        tick(kube, source)
    finally:
        source.close()
    # Exactly: the rival namespace's Deployment of the same name has a hundred times the load.
    assert replicas(fake_kube, name) == wanted
    assert events(fake_kube, "InvalidAnnotation") == []


def test_queries_per_tick_do_not_grow_with_workloads_sharing_a_declaration(
    fake_kube: FakeKube, kube: Kube, proxy: FaultProxy
) -> None:
    declaration = 'gauge per-pod 2 agent_inflight_requests{route="/v1/chat"}'

    def queries_of_two_ticks(names: Sequence[str]) -> tuple[int, int]:
        for name in names:
            fake_kube.add_deployment(NS, name, annotations=declared("inflight", declaration))
        source = PrometheusSource(settings(proxy.url))
        try:
            counts = []
            for _ in range(2):  # the first tick reads history, the second only what is new
                before = len(proxy.queries)
                tick(kube, source)
                counts.append(len(proxy.queries) - before)
        finally:
            source.close()
        return counts[0], counts[1]

    few = queries_of_two_ticks(BULK[:2])
    many = queries_of_two_ticks(BULK[2:])  # on a fresh source: all 12 workloads are new to it
    assert few == many == (1, 1)
    assert all(replicas(fake_kube, name) == 2 for name in BULK)  # 4 in flight, 2 a pod


# Label values a user might write to escape the selector; each parses (it is a quoted string) and
# must then match nothing but the literal value, in the workload's own namespace.
PARSED_HOSTILE = [
    pytest.param('agent_inflight_requests{route="' + HOSTILE_ROUTE.replace('"', '\\"') + '"}',
                 id="quotes-and-or-in-a-value"),
    pytest.param('agent_inflight_requests{route="}{namespace=\\"rival\\"}"}', id="braces-in-a-value"),
    pytest.param('agent_inflight_requests{route=~".*|rival.*"}', id="regex-alternation"),
    pytest.param('agent_inflight_requests{route=~"' + "a" * 150 + '.*"}', id="long-regex"),
    pytest.param("agent_inflight_requests{route=\"" + "x" * 1500 + '"}', id="very-long-value"),
]  # fmt: skip


@pytest.mark.parametrize("selector", PARSED_HOSTILE)
def test_a_hostile_declaration_never_reads_another_namespace(
    fake_kube: FakeKube, kube: Kube, agents_prometheus: PromServer, selector: str
) -> None:
    annotations = declared("inflight", f"gauge per-pod 1 {selector}")
    assert parse_annotations(annotations) is not None
    fake_kube.add_deployment(NS, "chat", replicas=3, annotations=annotations)
    source = PrometheusSource(settings(agents_prometheus.url))
    try:
        target = Target(WorkloadState(TargetRef(NS, "chat"), 3, 3), _config(annotations))
        load = source.observe([target], ANCHOR).get(target.state.ref)
        tick(kube, source)
    finally:
        source.close()
    sample = None if load is None else load.get(MetricKind("inflight"))
    # Only the workload's own series can match: /v1/chat (4) and /health (7) on three pods at most.
    assert sample is None or sample.value <= 3 * (INFLIGHT + 7)
    # Never the rival's 1000s: nothing is scaled past what its own pods report.
    assert replicas(fake_kube, "chat") <= 3 * 11


def _config(annotations: Mapping[str, str]) -> TargetConfig:
    settings_ = parse_annotations(annotations)
    assert settings_ is not None
    return settings_.config


@pytest.mark.parametrize(
    "declaration",
    [
        pytest.param('gauge per-pod 1 agent_inflight_requests{route="x"} or up', id="or-another-metric"),
        pytest.param("gauge per-pod 1 sum(agent_inflight_requests)", id="an-expression"),
        pytest.param('gauge per-pod 1 agent_inflight_requests{namespace="rival"}',
                     id="namespace-matcher"),
        pytest.param('gauge per-pod 1 agent_inflight_requests{pod=~".*"}', id="pod-matcher"),
        pytest.param('gauge per-pod 1 x{route=~"(?=a)"}', id="lookahead-re2-lacks"),
        pytest.param("gauge per-pod 1 x{route='single'}", id="single-quotes"),
        pytest.param("gauge per-pod 1 x" + "{a=\"b\"}" * 2, id="two-brace-groups"),
        pytest.param("gauge per-pod 1 " + "x" * 2100, id="too-long"),
        pytest.param("gauge per-pod 0 x", id="zero-target"),
        pytest.param("histogram per-pod 1 x", id="unknown-signal"),
        pytest.param("gauge everywhere 1 x", id="unknown-scope"),
    ],
)  # fmt: skip
def test_a_declaration_that_is_not_a_plain_selector_is_refused_naming_key_and_value(
    declaration: str,
) -> None:
    with pytest.raises(AnnotationError) as refused:
        parse_annotations(declared("inflight", declaration))
    assert refused.value.key == PREFIX + "metric.inflight"
    assert refused.value.value == declaration


@pytest.mark.parametrize(
    ("declaration", "named"),
    [
        pytest.param("gauge per-pod 2 agent_inflight_requests or up", " or up",
                     id="refused-by-the-parser"),
        # RE2 refuses a repeat count above 1000, which Python's re (the parser's check) accepts.
        pytest.param('gauge per-pod 2 agent_inflight_requests{route=~"a{1001}"}', "a{1001}",
                     id="rejected-by-prometheus"),
    ],
)  # fmt: skip
def test_a_bad_declaration_is_told_and_costs_only_its_workload(
    fake_kube: FakeKube, kube: Kube, agents_prometheus: PromServer, declaration: str, named: str
) -> None:
    fake_kube.add_deployment(NS, "chat", replicas=3, annotations=declared("inflight", declaration))
    good = 'gauge per-pod 2 agent_inflight_requests{route="/v1/chat"}'
    fake_kube.add_deployment(NS, "bulk-00", annotations=declared("inflight", good))
    source = PrometheusSource(settings(agents_prometheus.url))
    try:
        tick(kube, source)
    finally:
        source.close()
    [told] = events(fake_kube, "InvalidAnnotation")
    assert told.startswith("chat: ")
    assert "metric.inflight" in told
    assert named in told
    assert replicas(fake_kube, "chat") == 3
    assert replicas(fake_kube, "bulk-00") == 2
