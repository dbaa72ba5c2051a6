"""One closed-loop run, in real time: the real controller scales a Deployment of real agent pods.

    fake API server ──spec.replicas──> pod runner ──starts/stops──> agent processes
          ^                              │  Ready, status            │ /metrics
          │ patch scale                  v                           v
    `autoscaler run` <──PromQL── Prometheus <──file SD── ready pods; kube-state-metrics series
                                                                     ^
    load generator ──POST /v1/chat──> balancer (least in flight) ────┘

A run is predictive or reactive. Both get a fresh fake API server, Prometheus, pods and the same
arrivals (relative to the ramp); they differ in one thing only: the predictive run's Prometheus holds
days of the Deployment's history (ramp at the same time of day as today's), the reactive run's
holds nothing, so there the controller has no forecast and decides as the Kubernetes HPA would
(`fallback-no-forecast` in its Events and status).

Everything started is stopped on the way out, on failure too: the controller, Prometheus and every
agent (their process groups), the pod runner, the fake API server.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt

from autoscaler.config import PREFIX
from tests.agentloop.balancer import Balancer, Outcome
from tests.agentloop.day import DAY_S, ChatDay, arrival_offsets
from tests.agentloop.history import AgentHistory
from tests.agentloop.loadgen import LoadGenerator, RequestRecord
from tests.agentloop.pods import AgentSpec, PodRecord, PodRunner, kill_group
from tests.agentloop.scrape import LoopPrometheus
from tests.agentloop.workload import Workload
from tests.fakekube import FakeKube
from tests.promserver import backfill

__all__ = [
    "ANNOTATIONS",
    "REQUESTS_ANNOTATIONS",
    "Decision",
    "Moment",
    "RunResult",
    "Scenario",
    "run_loop",
]

REPO = Path(__file__).resolve().parents[2]
# Seconds of live load before the history is cut and Prometheus starts: the pods' in-flight gauge
# carries the load by then.
_SEAM_S = 3.0
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# How the Deployment opts in: it scales on the agents' own concurrency gauge, three requests in
# flight per pod of five generation slots. The forecast sizes pods at the target over the 70 %
# utilization the controller assumes (4.3 in flight, which five slots carry without a queue); the
# HPA's part, at 3, keeps headroom on top. Start-up is planned as the warm-up (30 s) plus a margin
# for the process to start and be probed, scraped and routed to. The upper bound provisioned is the
# 99 % one: an in-flight count is a Poisson count, noisy at a few requests per pod, and the ramp is
# a step the forecast smooths over its neighbouring buckets.
ANNOTATIONS: Mapping[str, str] = {
    PREFIX + "enabled": "true",
    PREFIX + "metrics": "inflight",
    PREFIX + "metric.inflight": "gauge per-pod 3 agent_inflight_requests",
    PREFIX + "startup-seconds": "45",
    PREFIX + "min-replicas": "2",
    PREFIX + "max-replicas": "12",
    PREFIX + "confidence": "99",
}
# The same on the built-in request-rate metric (what the loop ran on before custom gauges existed):
# three in flight at 2 s a reply are 1.5 requests/s (a pod's ceiling is 2.5).
REQUESTS_ANNOTATIONS: Mapping[str, str] = {
    **{k: v for k, v in ANNOTATIONS.items() if not k.startswith(PREFIX + "metric")},
    PREFIX + "metrics": "requests",
    PREFIX + "requests-metric": "agent_requests_total",
    PREFIX + "target-requests-per-pod": "1.5",
}


@dataclass(frozen=True, slots=True)
class Scenario:
    agent: AgentSpec
    base_rps: float
    peak_rps: float
    setup_s: float  # start → first request: the base pods warm up
    base_s: float  # first request → the ramp
    ramp_s: float  # the climb from base to peak
    hold_s: float  # at the peak, until the run ends
    base_pods: int = 2
    annotations: Mapping[str, str] = field(default_factory=lambda: dict(ANNOTATIONS))
    seed: int = 2024
    history_days: int = 3
    workload: Workload = field(default_factory=Workload)

    @property
    def length_s(self) -> float:
        """Wall time of a run: set-up, base, ramp and hold."""
        return self.setup_s + self.base_s + self.ramp_s + self.hold_s

    def day(self, ramp_at: float) -> ChatDay:
        return ChatDay(self.base_rps, self.peak_rps, ramp_at, self.ramp_s)

    def offsets(self) -> npt.NDArray[np.float64]:
        """Arrivals relative to the ramp, the same in every run of this scenario."""
        return arrival_offsets(self.day(0.0), -self.base_s, self.ramp_s + self.hold_s, self.seed)


@dataclass(frozen=True, slots=True)
class Moment:
    at: float  # seconds relative to the ramp
    desired: int  # the Deployment's spec.replicas
    ready: int  # pods reported ready
    existing: int  # pods running, ready or not


@dataclass(frozen=True, slots=True)
class Decision:
    """One decision of the controller, from its decision log line."""

    at: float  # seconds relative to the ramp
    current: int
    desired: int
    mode: str  # predictive, reactive, hold
    reasons: tuple[str, ...]
    message: str


def decisions_in(log: str, ramp_at: float) -> list[Decision]:
    """The decision lines of the controller's JSON log, oldest first."""
    out = []
    for line in log.splitlines():
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if entry.get("event") != "decision":
            continue
        at = datetime.fromisoformat(str(entry["time"])).timestamp() - ramp_at
        out.append(
            Decision(
                at,
                int(entry["current"]),
                int(entry["desired"]),
                str(entry["mode"]),
                tuple(str(r) for r in entry.get("reasons") or ()),
                str(entry.get("message", "")),
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class RunResult:
    name: str
    scenario: Scenario
    ramp_at: float  # epoch seconds
    requests: list[RequestRecord]
    moments: list[Moment]
    pods: list[PodRecord]
    # (seconds relative to the ramp, mean agent_inflight_requests over the scraped pods), as
    # Prometheus holds it: what the controller read.
    inflight_per_pod: list[tuple[float, float]]
    events: list[tuple[str, str]]  # (reason, message) of the controller's Events, oldest first
    runner_errors: list[str]
    controller_log: str

    @property
    def decisions(self) -> list[Decision]:
        return decisions_in(self.controller_log, self.ramp_at)

    @property
    def start_s(self) -> float:
        return -self.scenario.base_s

    @property
    def end_s(self) -> float:
        return self.scenario.ramp_s + self.scenario.hold_s


class _Sampler:
    """The Deployment's desired and ready pods every half second (the fake server is in-process)."""

    def __init__(self, fake: FakeKube, runner: PodRunner, workload: Workload, ramp_at: float) -> None:
        self.moments: list[Moment] = []
        self._fake, self._runner, self._workload, self._ramp_at = fake, runner, workload, ramp_at
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            deployment = self._fake.get_object(
                "Deployment", self._workload.namespace, self._workload.name
            )
            if deployment is not None:
                desired = int(deployment["spec"].get("replicas", 1))
                at = time.time() - self._ramp_at
                self.moments.append(
                    Moment(at, desired, len(self._runner.ready()), self._runner.existing())
                )
            self._stop.wait(0.5)

    def latest(self) -> Moment | None:
        return self.moments[-1] if self.moments else None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _controller(kubeconfig: Path, prometheus: str, namespace: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "OPENBLAS_NUM_THREADS": "1"}
    with log.open("wb") as out:  # the child keeps its own handle
        return subprocess.Popen(
            [sys.executable, "-m", "autoscaler", "run", "--kubeconfig", str(kubeconfig),
             "--prometheus-url", prometheus, "--namespaces", namespace, "--interval", "2s",
             "--metrics-port", "0", "--prometheus-step", "5s", "--prometheus-rate-window", "30s"],
            stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env, start_new_session=True,
        )  # fmt: skip


def _inflight_per_pod(
    url: str, namespace: str, start: float, end: float, ramp_at: float
) -> list[tuple[float, float]]:
    query = f'avg(agent_inflight_requests{{namespace="{namespace}"}})'
    params = urllib.parse.urlencode(
        {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": "1"}
    )
    with _OPENER.open(f"{url}/api/v1/query_range?{params}", timeout=30) as answer:
        data = json.load(answer)
    result = data["data"]["result"]
    if not result:
        return []
    return [(float(t) - ramp_at, float(v)) for t, v in result[0]["values"]]


def run_loop(
    scenario: Scenario, *, predictive: bool, workdir: Path, say: Callable[[str], None]
) -> RunResult:
    """One run, from an empty cluster to the end of the hold; `say` gets the progress lines.

    The base pods warm up first and take the first requests; only then is the history written (up
    to that moment) and are Prometheus and the controller started, as on a cluster where the
    service ran all along: the live series go on from the backfilled ones without a stretch of
    idle pods that no past day had."""
    name = "predictive" if predictive else "reactive"
    workload = scenario.workload
    workdir.mkdir(parents=True, exist_ok=True)
    began = time.time()
    load_start = began + scenario.setup_s
    ramp_at = load_start + scenario.base_s
    end = ramp_at + scenario.ramp_s + scenario.hold_s
    day = scenario.day(ramp_at)

    def note(message: str) -> None:
        say(f"[{name} {time.time() - ramp_at:+5.0f}s] {message}")

    with contextlib.ExitStack() as stack:
        fake = FakeKube(auto_ready=False).start()
        stack.callback(fake.stop)
        fake.add_deployment(
            workload.namespace, workload.name, replicas=scenario.base_pods,
            annotations=scenario.annotations, cpu_request="1", memory_request="512Mi",
            image="examples/agent-service:local",
        )  # fmt: skip
        kubeconfig = fake.write_kubeconfig(workdir / "kubeconfig", workload.namespace)
        runner = PodRunner(
            fake.url, workload, scenario.agent, workdir / "targets.json", workdir / "pods",
            first_pods=workload.first_pods(scenario.base_pods),
        )  # fmt: skip
        stack.callback(runner.close)
        runner.start()
        sampler = _Sampler(fake, runner, workload, ramp_at)
        stack.callback(sampler.close)
        note(f"{scenario.base_pods} pods warming up")

        balancer = Balancer(runner.ready, timeout_s=30.0)
        generator = LoadGenerator(scenario.offsets(), ramp_at, balancer.send)
        stop = threading.Event()
        stack.callback(stop.set)  # on the way out for any reason, no further request is sent
        replay = _Background(lambda: generator.run(stop))
        time.sleep(max(0.0, load_start + _SEAM_S - time.time()))
        if len(runner.ready()) < scenario.base_pods:
            note(f"only {len(runner.ready())} of {scenario.base_pods} pods ready as the load began")

        if predictive:
            history = AgentHistory(
                day, workload, began - scenario.history_days * DAY_S, time.time(),
                scenario.base_pods, scenario.agent.service_s,
            )  # fmt: skip
            tsdb = backfill(history, workdir / "prometheus")
        else:
            tsdb = workdir / "prometheus" / "tsdb"
            tsdb.mkdir(parents=True, exist_ok=True)
        prometheus = LoopPrometheus(tsdb, workdir / "targets.json", runner.ksm_address)
        stack.callback(prometheus.stop)
        prometheus.start()
        controller_log = workdir / "controller.log"
        controller = _controller(kubeconfig, prometheus.url, workload.namespace, controller_log)
        stack.callback(kill_group, controller, 20.0)
        past = f"{scenario.history_days} days of history" if predictive else "no history"
        note(f"Prometheus ({past}) and the controller started")

        reporter = threading.Thread(
            target=_report_progress, args=(stop, sampler, balancer, note), daemon=True
        )
        reporter.start()
        requests = replay.result()
        stop.set()
        reporter.join(timeout=5)
        causes = Counter(r.cause for r in requests if r.outcome is Outcome.REJECTED)
        note(f"done: {len(requests)} requests, rejected {dict(causes) or 'none'}")
        if controller.poll() is not None:
            raise RuntimeError(f"the controller exited early:\n{controller_log.read_text()[-3000:]}")
        inflight = _inflight_per_pod(prometheus.url, workload.namespace, load_start, end, ramp_at)
        events = [
            (str(e.get("reason")), str(e.get("message")))
            for e in sorted(
                fake.list_objects("Event", workload.namespace),
                key=lambda e: str((e.get("metadata") or {}).get("name", "")),
            )
        ]
        sampler.close()
        moments = list(sampler.moments)
    # Read after everything stopped: the log is complete and every pod's end is recorded.
    return RunResult(
        name, scenario, ramp_at, requests, moments, runner.records(), inflight, events,
        list(runner.errors), controller_log.read_text(errors="replace"),
    )  # fmt: skip


T = TypeVar("T")


class _Background(Generic[T]):
    """`work` on a thread of its own; `result()` waits for it and raises what it raised."""

    def __init__(self, work: Callable[[], T]) -> None:
        self._work = work
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="replay", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._work()
        except BaseException as error:
            self._error = error

    def result(self) -> T:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._value is not None
        return self._value


def _report_progress(
    stop: threading.Event, sampler: _Sampler, balancer: Balancer, note: Callable[[str], None]
) -> None:
    while not stop.wait(15.0):
        moment = sampler.latest()
        if moment is None:
            continue
        rejected = sum(balancer.rejected.values())
        note(
            f"desired {moment.desired}, ready {moment.ready}, in flight {balancer.inflight()}, "
            f"rejected so far {rejected}"
        )
