"""A real Prometheus for the integration tests and the fetch benchmark.

* `Dataset` generates deterministic series shaped like a cluster's: cAdvisor
  (`container_cpu_usage_seconds_total`, `container_memory_working_set_bytes`, with the pod-level cgroup
  `container=""` and the pause container `container="POD"` that queries must leave out),
  kube-state-metrics (`kube_pod_owner`, `kube_replicaset_owner`, `kube_pod_container_resource_requests`;
  a Deployment's pods are owned by its ReplicaSet, a StatefulSet's by the StatefulSet itself)
  and application request counters, and computes what a query should answer for them (`expected`).
  Loads are smooth functions of the time since the dataset's end (`anchor`), so a test passes that
  anchor as `now` and never depends on the wall clock.
* `backfill` writes it as OpenMetrics and turns it into TSDB blocks with `promtool`;
  `PromServer` runs `prometheus` on those blocks on a free loopback port.
* The session fixture `prometheus` backfills `cluster_dataset` once and serves it; register it with
  `pytest_plugins = ("tests.promserver",)` in `tests/conftest.py`.
"""

from __future__ import annotations

import math
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Protocol

import numpy as np
import pytest

from autoscaler.metrics import MetricKind
from autoscaler.model import TargetRef, WorkloadKind

__all__ = [
    "ESCAPE_PROBES",
    "MISSING_MESSAGE",
    "Dataset",
    "Pod",
    "PromEnv",
    "PromServer",
    "Workload",
    "backfill",
    "bench_dataset",
    "cluster_dataset",
    "exposition_handler",
    "free_port",
    "history_dataset",
    "live_dataset",
    "prometheus",
    "prometheus_history",
    "prometheus_live",
    "require_binaries",
]

MISSING_MESSAGE = (
    "prometheus is required for the integration tests: install Debian's prometheus package "
    "(apt-get install prometheus)"
)
PERIOD_S = 4 * 3600.0
# Relative amplitude of the load wave for counters (cpu, requests) and for memory.
RATE_AMPLITUDE = 0.3
MEMORY_AMPLITUDE = 0.1
# Extra requests on a second handler of the custom counter, which its selector must leave out.
NOISE_RPS = 5.0
# The pause container's share, which the container filter must leave out.
PAUSE_CORES = 0.001
PAUSE_BYTES = 1.0e6
# Prometheus carries a gauge's last value this long into a gap (its default lookback delta).
LOOKBACK_S = 300.0
# Flaky request counters: present only in the last FLAKY_ON_S seconds of every FLAKY_CYCLE_S.
FLAKY_CYCLE_S = 360
FLAKY_ON_S = 60
# Label values that need escaping in a PromQL string or regex; served as `escape_probe{v=...}`.
ESCAPE_PROBES = (
    "a.b",
    "axb",
    'quote"inside',
    "back\\slash",
    "back\\\\double",
    "new\nline",
    "tab\there",
    "pipe|bar",
    "star*",
    "(paren",
    "[brackets]",
    "{curly}",
    "^caret$",
    "plus+",
    "question?",
    "dollar$1",
    "unicode-é",
)


@dataclass(frozen=True, slots=True)
class Pod:
    name: str
    replicaset: str  # unused for a StatefulSet's pods, which no ReplicaSet owns
    start: float  # first sample at or after this
    end: float  # no sample at or after this
    # The request counter restarts from zero just after this sample time (a container restart).
    counter_reset_at: float | None = None


@dataclass(frozen=True, slots=True)
class Workload:
    """One Deployment (or, with another `owner_kind`, a ReplicaSet owned by something else), or with
    `kind` a StatefulSet, whose pods each carry `cpu_cores`, `memory_bytes` and `rps` on average."""

    namespace: str
    deployment: str  # the workload's name, whatever its kind
    pods: tuple[Pod, ...]
    cpu_cores: float
    memory_bytes: float
    rps: float
    phase: float = 0.0
    request_metric: str = "http_requests_total"
    owner_kind: str = "Deployment"
    # Every series of the workload is missing over these [start, end) spans.
    gaps: tuple[tuple[float, float], ...] = ()
    # From this time on, the request counter is scraped only now and then (see FLAKY_*).
    flaky_requests_from: float | None = None
    # From this time on, the working set reads NaN.
    memory_nan_from: float | None = None
    # Two kube-state-metrics replicas export every ownership series twice.
    duplicate_ksm: bool = False
    kind: WorkloadKind = WorkloadKind.DEPLOYMENT

    @property
    def ref(self) -> TargetRef:
        return TargetRef(self.namespace, self.deployment, self.kind)


@dataclass(frozen=True, slots=True)
class _Series:
    name: str
    labels: tuple[tuple[str, str], ...]
    times: np.ndarray
    values: np.ndarray


def _om_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _format_labels(labels: tuple[tuple[str, str], ...]) -> str:
    return "{" + ",".join(f'{k}="{_om_escape(v)}"' for k, v in labels) + "}"


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return repr(float(value))


@dataclass(frozen=True, slots=True)
class Dataset:
    """Series sampled every `scrape_s` seconds over [start, anchor]; `detailed` adds what only the
    tests need (pod-level and pause-container cAdvisor series, resource requests, status codes,
    escape probes)."""

    start: float
    anchor: float
    scrape_s: int
    workloads: tuple[Workload, ...]
    detailed: bool = True
    period_s: float = PERIOD_S  # of the load wave
    # More waves on top, as (period, size relative to the main wave's): they keep a forecast from
    # being perfect, as real load does.
    extra_waves: tuple[tuple[float, float], ...] = ()
    _by_ref: dict[TargetRef, Workload] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_ref", {w.ref: w for w in self.workloads})

    def workload(self, ref: TargetRef) -> Workload:
        return self._by_ref[ref]

    # --- the load model -------------------------------------------------------------------------

    def _wave(self, t: np.ndarray | float, phase: float) -> np.ndarray | float:
        x = np.asarray(t) - self.anchor
        wave = np.sin(2 * np.pi * x / self.period_s + phase)
        for period_s, size in self.extra_waves:
            wave = wave + size * np.sin(2 * np.pi * x / period_s)
        return wave

    def _integral(self, t: np.ndarray | float, phase: float) -> np.ndarray:
        """Integral of 1 + RATE_AMPLITUDE * wave, from the anchor."""
        x = np.asarray(t, dtype=float) - self.anchor
        angle = 2 * np.pi * x / self.period_s + phase
        total = x - RATE_AMPLITUDE * self.period_s / (2 * np.pi) * np.cos(angle)
        for period_s, size in self.extra_waves:
            extra = 2 * np.pi * x / period_s
            total = total - RATE_AMPLITUDE * size * period_s / (2 * np.pi) * np.cos(extra)
        return np.asarray(total)

    def _memory(self, w: Workload, t: np.ndarray | float) -> np.ndarray:
        return np.asarray(w.memory_bytes * (1 + MEMORY_AMPLITUDE * np.asarray(self._wave(t, w.phase))))

    def _times(self) -> np.ndarray:
        return np.arange(self.start, self.anchor + 1, self.scrape_s, dtype=float)

    def _present(self, w: Workload, pod: Pod, times: np.ndarray) -> np.ndarray:
        mask = (times >= pod.start) & (times < pod.end)
        for a, b in w.gaps:
            mask &= ~((times >= a) & (times < b))
        return np.asarray(mask)

    # --- series ----------------------------------------------------------------------------------

    def _series(self) -> Iterator[_Series]:
        times = self._times()
        for w in self.workloads:
            yield from self._workload_series(w, times)
        if self.detailed:
            probe_times = times[:: max(1, 600 // self.scrape_s)]
            for value in ESCAPE_PROBES:
                yield _Series("escape_probe", (("v", value),), probe_times, np.ones(len(probe_times)))

    def _workload_series(self, w: Workload, times: np.ndarray) -> Iterator[_Series]:
        ksm_instances = ("ksm-0", "ksm-1") if w.duplicate_ksm else ("ksm-0",)
        replicasets: dict[str, np.ndarray] = {}
        for pod in w.pods:
            mask = self._present(w, pod, times)
            t = times[mask]
            if len(t) == 0:
                continue
            pod_labels = (("namespace", w.namespace), ("pod", pod.name))
            cadvisor = (("job", "kubelet"), ("metrics_path", "/metrics/cadvisor"))
            cpu = w.cpu_cores * (self._integral(t, w.phase) - self._integral(pod.start, w.phase))
            mem = self._memory(w, t)
            if w.memory_nan_from is not None:
                mem = np.where(t >= w.memory_nan_from, np.nan, mem)
            app = (*pod_labels, ("container", "app"), *cadvisor)
            yield _Series("container_cpu_usage_seconds_total", app, t, cpu)
            yield _Series("container_memory_working_set_bytes", app, t, mem)
            if self.detailed:
                pause_cpu = PAUSE_CORES * (t - pod.start)
                pause = (*pod_labels, ("container", "POD"), *cadvisor)
                whole = (*pod_labels, ("container", ""), *cadvisor)
                yield _Series("container_cpu_usage_seconds_total", pause, t, pause_cpu)
                yield _Series("container_cpu_usage_seconds_total", whole, t, cpu + pause_cpu)
                yield _Series(
                    "container_memory_working_set_bytes", pause, t, np.full(len(t), PAUSE_BYTES)
                )
                yield _Series("container_memory_working_set_bytes", whole, t, mem + PAUSE_BYTES)
            yield from self._request_series(w, pod, t, pod_labels)
            for instance in ksm_instances:
                ksm = (("job", "kube-state-metrics"), ("instance", instance))
                owned_by = (
                    (w.kind.value, w.deployment)
                    if w.kind is WorkloadKind.STATEFULSET
                    else ("ReplicaSet", pod.replicaset)
                )
                owner = (
                    *pod_labels,
                    ("owner_kind", owned_by[0]),
                    ("owner_name", owned_by[1]),
                    ("owner_is_controller", "true"),
                    *ksm,
                )
                yield _Series("kube_pod_owner", owner, t, np.ones(len(t)))
                if self.detailed:
                    for resource, unit, amount in (
                        ("cpu", "core", w.cpu_cores * 2),
                        ("memory", "byte", w.memory_bytes * 2),
                    ):
                        req = (*pod_labels, ("container", "app"), ("resource", resource), ("unit", unit))
                        yield _Series(
                            "kube_pod_container_resource_requests",
                            (*req, *ksm),
                            t,
                            np.full(len(t), amount),
                        )
            if w.kind is WorkloadKind.DEPLOYMENT:
                seen = replicasets.get(pod.replicaset)
                replicasets[pod.replicaset] = mask if seen is None else seen | mask
        for rs, mask in replicasets.items():
            # A ReplicaSet outlives its pods (kept for rollbacks): from its first pod to the end.
            first = int(np.argmax(mask))
            t = times[first:]
            for instance in ksm_instances:
                labels = (
                    ("namespace", w.namespace),
                    ("replicaset", rs),
                    ("owner_kind", w.owner_kind),
                    ("owner_name", w.deployment),
                    ("owner_is_controller", "true"),
                    ("job", "kube-state-metrics"),
                    ("instance", instance),
                )
                yield _Series("kube_replicaset_owner", labels, t, np.ones(len(t)))

    def _request_series(
        self, w: Workload, pod: Pod, t: np.ndarray, pod_labels: tuple[tuple[str, str], ...]
    ) -> Iterator[_Series]:
        if w.flaky_requests_from is not None:
            keep = (t < w.flaky_requests_from) | (((self.anchor - t) % FLAKY_CYCLE_S) <= FLAKY_ON_S)
            t = t[keep]
        base = np.full(len(t), pod.start)
        if pod.counter_reset_at is not None:
            base = np.where(t > pod.counter_reset_at, pod.counter_reset_at, base)
        total = w.rps * (self._integral(t, w.phase) - self._integral(base, w.phase))
        if w.request_metric == "http_requests_total" and self.detailed:
            for code, share in (("200", 0.9), ("500", 0.1)):
                yield _Series(w.request_metric, (*pod_labels, ("code", code)), t, total * share)
        elif w.request_metric == "http_requests_total":
            yield _Series(w.request_metric, (*pod_labels, ("code", "200")), t, total)
        else:
            noise = NOISE_RPS * (t - base)
            yield _Series(w.request_metric, (*pod_labels, ("handler", "/checkout")), t, total)
            yield _Series(w.request_metric, (*pod_labels, ("handler", "/health")), t, noise)

    def write_openmetrics(self, path: Path) -> int:
        """Write all series as OpenMetrics text; returns the number of samples."""
        by_family: dict[str, list[_Series]] = {}
        for series in self._series():
            by_family.setdefault(series.name, []).append(series)
        samples = 0
        with path.open("w", encoding="utf-8") as out:
            for name, members in by_family.items():
                counter = name.endswith("_total")
                family = name.removesuffix("_total") if counter else name
                out.write(f"# TYPE {family} {'counter' if counter else 'gauge'}\n")
                for series in members:
                    head = name + _format_labels(series.labels)
                    out.writelines(
                        f"{head} {_format_value(v)} {int(t)}\n"
                        for t, v in zip(series.times.tolist(), series.values.tolist(), strict=True)
                    )
                    samples += len(series.times)
            out.write("# EOF\n")
        return samples

    # --- what a query should answer --------------------------------------------------------------

    def _boundaries(self, w: Workload, kind: MetricKind) -> list[float]:
        edges = [self.start]
        for pod in w.pods:
            edges += [pod.start, pod.end]
        for a, b in w.gaps:
            edges += [a, b]
        if kind is MetricKind.REQUESTS and w.flaky_requests_from is not None:
            edges.append(w.flaky_requests_from)
        if kind is MetricKind.MEMORY and w.memory_nan_from is not None:
            edges.append(w.memory_nan_from)
        return [edge for edge in edges if edge <= self.anchor]  # pods alive at the end have no edge

    def expected(self, ref: TargetRef, kind: MetricKind, t: float, window_s: float) -> float | None:
        """The aggregate load of `ref` a query evaluated at `t` should return, or None where it is
        not pinned down: no data, or too close to a pod, gap or breakage edge (where rate windows and
        the lookback blend old and new series)."""
        w = self._by_ref.get(ref)
        if w is None or (w.kind is WorkloadKind.DEPLOYMENT and w.owner_kind != "Deployment"):
            return None
        margin_start = t - window_s - LOOKBACK_S - self.scrape_s
        if any(margin_start <= edge <= t + self.scrape_s for edge in self._boundaries(w, kind)):
            return None
        if (
            kind is MetricKind.REQUESTS
            and w.flaky_requests_from is not None
            and t >= w.flaky_requests_from
        ) or (kind is MetricKind.MEMORY and w.memory_nan_from is not None and t >= w.memory_nan_from):
            return None
        if t > self.anchor or any(a <= t < b for a, b in w.gaps):
            return None
        alive = [pod for pod in w.pods if pod.start <= t < pod.end]
        if not alive:
            return None
        if kind is MetricKind.MEMORY:
            return float(self._memory(w, t)) * len(alive)
        per_pod = w.cpu_cores if kind is MetricKind.CPU else w.rps
        increase = float(self._integral(t, w.phase) - self._integral(t - window_s, w.phase))
        return per_pod * increase / window_s * len(alive)


def cluster_dataset(anchor: float) -> Dataset:
    """Eight hours at 30-second scrapes ending at `anchor` (a multiple of 3600):

    * shop/web: two pods replaced by two new ones (a rollout) four hours before the anchor, ownership
      exported twice (two kube-state-metrics replicas);
    * shop/api and blog/api: the same name in two namespaces with different loads; shop/api's counter
      resets two hours before the anchor;
    * blog/gappy: every series missing for 30 minutes, from three hours before the anchor;
    * blog/custom: requests on `app_hits_total{handler="/checkout"}` beside a `/health` handler;
    * shop/broken: request counter scraped only now and then, working set NaN, in the last 15 minutes;
    * shop/stale: all series end 20 minutes before the anchor;
    * shop/orphan: a ReplicaSet no Deployment owns (never a target's load);
    * StatefulSet shop/web: two pods (`web-0`, `web-1`) beside the Deployment of the same name, with
      another load, ownership exported twice; StatefulSet shop/db: three pods;
    * bulk/bulk-00 … bulk-47: one pod each, for batching at scale.
    """
    start = anchor - 8 * 3600
    end = anchor + 1  # pods alive at the anchor
    rollout = anchor - 4 * 3600

    def pods(prefix: str, n: int, begin: float = start, finish: float = end) -> tuple[Pod, ...]:
        return tuple(Pod(f"{prefix}-{i}", prefix, begin, finish) for i in range(n))

    sts = WorkloadKind.STATEFULSET

    web = (*pods("web-7d9f", 2, finish=rollout), *pods("web-5c8e", 2, begin=rollout - 60))
    shop_api = (
        Pod("api-6b7c-0", "api-6b7c", start, end, counter_reset_at=anchor - 2 * 3600),
        Pod("api-6b7c-1", "api-6b7c", start, end),
    )
    gap = (anchor - 3 * 3600, anchor - 2.5 * 3600)
    broken_since = anchor - 15 * 60
    workloads = [
        Workload("shop", "web", web, 0.25, 200e6, 12.0, phase=0.3, duplicate_ksm=True),
        Workload("shop", "api", shop_api, 0.5, 300e6, 30.0, phase=1.1),
        Workload("blog", "api", pods("api-59d4", 3), 0.1, 100e6, 5.0, phase=2.0),
        Workload("blog", "gappy", pods("gappy-8f7e", 1), 0.2, 50e6, 3.0, gaps=(gap,)),
        Workload("blog", "custom", pods("custom-4a1b", 2), 0.15, 80e6, 7.0, phase=0.7,
                 request_metric="app_hits_total"),
        Workload("shop", "broken", pods("broken-1c2d", 1), 0.05, 40e6, 2.0,
                 flaky_requests_from=broken_since, memory_nan_from=broken_since),
        Workload("shop", "stale", pods("stale-9e8f", 1, finish=anchor - 20 * 60), 0.3, 60e6, 4.0),
        Workload("shop", "orphan", pods("orphan-3b4c", 1), 1.0, 500e6, 50.0,
                 owner_kind="StatefulSetLike"),
        Workload("shop", "web", pods("web", 2), 0.4, 150e6, 20.0, phase=1.7, duplicate_ksm=True,
                 kind=sts),
        Workload("shop", "db", pods("db", 3), 0.3, 400e6, 8.0, phase=2.6, kind=sts),
    ]  # fmt: skip
    for i in range(48):
        name = f"bulk-{i:02d}"
        load = float(i + 1)
        workloads.append(
            Workload("bulk", name, pods(f"{name}-66f5", 1), 0.01 * load, 10e6 * load, load, phase=i / 8)
        )
    return Dataset(start, anchor, 30, tuple(workloads))


def history_dataset(anchor: float, days: float = 3.25) -> Dataset:
    """`days` days at one-minute scrapes with a daily wave, for the backtest on a cluster's history:

    * shop/checkout: two pods, replaced by a rollout a day before the anchor;
    * blog/checkout: the same name in another namespace with three times the load.
    """
    start = anchor - days * 86400
    end = anchor + 1
    rollout = anchor - 86400
    shop = (
        *(Pod(f"checkout-5f6a-{i}", "checkout-5f6a", start, rollout) for i in range(2)),
        *(Pod(f"checkout-7b8c-{i}", "checkout-7b8c", rollout - 60, end) for i in range(2)),
    )
    blog = tuple(Pod(f"checkout-2d3e-{i}", "checkout-2d3e", start, end) for i in range(2))
    workloads = (
        Workload("shop", "checkout", shop, 0.2, 100e6, 20.0, phase=0.5),
        Workload("blog", "checkout", blog, 0.6, 300e6, 60.0, phase=2.5),
    )
    return Dataset(
        start,
        anchor,
        60,
        workloads,
        detailed=False,
        period_s=86400.0,
        # Not daily, so "same time yesterday" is not a perfect forecast.
        extra_waves=((5.3 * 3600, 0.4),),
    )


def live_dataset(now: float) -> Dataset:
    """Series from six hours before `now` to two hours after it, for tests that run the controller
    on the wall clock: a query at any time during the test run sees a fresh point. Namespace shop:
    the Deployments web and api and the StatefulSets db and queue, two pods of 30 requests/s each,
    times 1 + 0.3 sin(phase) (web 60, api 75 in all; db as web, queue as api).
    The wave is a month long, so the load is flat over the data: steady enough that the forecast
    earns the policy's trust from the history alone, whatever the time of day the tests run."""
    anchor = float(int(now) // 60 * 60 + 2 * 3600)
    start = anchor - 8 * 3600
    deployments = tuple(
        Workload(
            "shop",
            name,
            tuple(Pod(f"{name}-6d5c-{i}", f"{name}-6d5c", start, anchor + 1) for i in range(2)),
            0.2,
            100e6,
            30.0,
            phase=phase,
        )
        for name, phase in (("web", 0.0), ("api", 1.0))
    )
    statefulsets = tuple(
        Workload(
            "shop",
            name,
            tuple(Pod(f"{name}-{i}", "", start, anchor + 1) for i in range(2)),
            0.2,
            100e6,
            30.0,
            phase=phase,
            kind=WorkloadKind.STATEFULSET,
        )
        for name, phase in (("db", 0.0), ("queue", 1.0))
    )
    workloads = deployments + statefulsets
    # Short waves of a few percent each: the jitter of real traffic, and no slope to drift on.
    jitter = ((7 * 60.0, 0.1), (11 * 60.0, 0.1), (17 * 60.0, 0.1))
    return Dataset(
        start, anchor, 30, workloads, detailed=False, period_s=30 * 86400.0, extra_waves=jitter
    )


def bench_dataset(anchor: float, deployments: int, days: float, scrape_s: int = 60) -> Dataset:
    """`deployments` Deployments of two pods each in ten namespaces, `days` days up to `anchor`,
    with only the series the queries read."""
    start = anchor - days * 86400
    workloads = []
    for i in range(deployments):
        name = f"svc-{i:03d}"
        pods = tuple(Pod(f"{name}-7f6d-{k}", f"{name}-7f6d", start, anchor + 1) for k in range(2))
        workloads.append(
            Workload(
                f"team-{i % 10}",
                name,
                pods,
                0.05 + 0.01 * (i % 17),
                50e6 * (1 + i % 7),
                1.0 + i % 23,
                phase=i / 13,
            )
        )
    return Dataset(start, anchor, scrape_s, tuple(workloads), detailed=False)


def require_binaries() -> None:
    """Fail (never skip) when Prometheus is not installed: `scripts/ensure-prometheus` installs it."""
    if shutil.which("prometheus") is None or shutil.which("promtool") is None:
        pytest.fail(MISSING_MESSAGE, pytrace=False)


class OpenMetricsSource(Protocol):
    def write_openmetrics(self, path: Path) -> int: ...


def backfill(dataset: OpenMetricsSource, workdir: Path) -> Path:
    """Write `dataset` as OpenMetrics in `workdir` and make TSDB blocks of it; returns the TSDB dir."""
    workdir.mkdir(parents=True, exist_ok=True)
    source = workdir / "data.om.txt"
    dataset.write_openmetrics(source)
    tsdb = workdir / "tsdb"
    tsdb.mkdir(exist_ok=True)
    # Day-long blocks: the default two-hour blocks make backfilling several times slower.
    subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", "--max-block-duration=24h", "--quiet",
         str(source), str(tsdb)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    source.unlink()
    return tsdb


def exposition_handler(render: Callable[[], str]) -> type[BaseHTTPRequestHandler]:
    """A scrape target for Prometheus: every GET answers `render()` in the text exposition format."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = render().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PromServer:
    """A `prometheus` process serving one TSDB directory on one loopback port, which stay the same
    across restarts."""

    def __init__(
        self, tsdb: Path, port: int | None = None, scrape: Sequence[str] = (), scrape_s: int = 1
    ) -> None:
        """`scrape`: host:port targets scraped every `scrape_s` seconds, their own labels kept."""
        self.tsdb = tsdb
        self.port = port if port is not None else free_port()
        self.config = tsdb.parent / f"prometheus-{self.port}.yml"
        config = "global:\n  evaluation_interval: 1h\nscrape_configs: []\n"
        if scrape:
            config = (
                "global:\n  evaluation_interval: 1h\nscrape_configs:\n"
                f"  - job_name: replay\n    scrape_interval: {scrape_s}s\n"
                f"    scrape_timeout: {scrape_s}s\n    honor_labels: true\n"
                f"    static_configs:\n      - targets: [{', '.join(scrape)}]\n"
            )
        self.config.write_text(config)
        self.log = tsdb.parent / f"prometheus-{self.port}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = 20.0) -> None:
        if self.running:
            return
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    "prometheus",
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.tsdb}",
                    "--storage.tsdb.retention.time=3650d",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"prometheus exited at start-up:\n{self._log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"prometheus was not ready within {timeout_s} s:\n{self._log_tail()}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)  # a paused process ignores SIGTERM until resumed
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def pause(self) -> None:
        """Freeze the server: connections are accepted by the kernel but never answered."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def _log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])

    @staticmethod
    def copy_blocks(tsdb: Path, target: Path) -> Path:
        """A private copy of the persisted blocks of `tsdb` (not its WAL or lock), for a server a test
        may stop and restart without disturbing the shared one."""
        target.mkdir(parents=True)
        for block in tsdb.iterdir():
            if (block / "meta.json").is_file():
                shutil.copytree(block, target / block.name)
        return target


@dataclass(frozen=True, slots=True)
class PromEnv:
    server: PromServer
    dataset: Dataset

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def anchor(self) -> float:
        return self.dataset.anchor


def _serve(dataset: Dataset, workdir: Path) -> Iterator[PromEnv]:
    """Backfill `dataset` in `workdir`, serve it for as long as the caller yields, then stop."""
    require_binaries()
    server = PromServer(backfill(dataset, workdir))
    server.start()
    try:
        yield PromEnv(server, dataset)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromEnv]:
    """A real Prometheus serving `cluster_dataset`, backfilled once per session."""
    # Near the real time so the data sit where a live server's would; tests use only the anchor.
    anchor = float(int(time.time()) // 3600 * 3600)
    yield from _serve(cluster_dataset(anchor), tmp_path_factory.mktemp("prometheus"))


@pytest.fixture(scope="session")
def prometheus_history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromEnv]:
    """A real Prometheus serving `history_dataset`: days of a Deployment's load, for `backtest`."""
    anchor = float(int(time.time()) // 3600 * 3600)
    yield from _serve(history_dataset(anchor), tmp_path_factory.mktemp("prometheus-history"))


@pytest.fixture(scope="session")
def prometheus_live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromEnv]:
    """A real Prometheus serving `live_dataset`, whose points reach past the wall clock, for tests
    that run `predictive-autoscaler run` as a process (which reads the real time)."""
    yield from _serve(live_dataset(time.time()), tmp_path_factory.mktemp("prometheus-live"))
