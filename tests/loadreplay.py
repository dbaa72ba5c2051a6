"""A load-replay process for the end-to-end test: it stands in for a service, its kubelet and the
cluster's exporters.

* The load is a daily pattern (`DailyRamp`): a base request rate with a few percent of jitter, and
  once a day a ramp to a peak that holds for a while. The controller forecasts per 5-minute bucket
  from days of history, so the pattern plays at real speed; `History` writes its past days as
  OpenMetrics for `promtool` to backfill, and the process serves the present.
* Pods: the process reads the Deployment's `spec.replicas` from the (fake) API server, starts that
  many pods, each ready `startup_s` after it was started, and writes `readyReplicas` back through the
  status subresource, as the kubelet and the deployment controller would together.
* `/metrics` serves, for the ready pods only, `http_requests_total` (the load split evenly among
  them) and cAdvisor's `container_cpu_usage_seconds_total`, plus kube-state-metrics' ownership
  series (`kube_pod_owner`, `kube_replicaset_owner`), for Prometheus to scrape every second.

Run: `python -m tests.loadreplay --api URL --namespace NS --deployment NAME --port P --ramp-at T`.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import threading
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path

import numpy as np

from tests.promserver import exposition_handler

__all__ = ["DailyRamp", "History", "main"]

DAY_S = 86_400
# CPU seconds one request costs: what turns the request rate into cAdvisor's CPU counter.
CPU_PER_REQUEST = 0.005
# Jitter as (period, share of the base rate): a few percent, never a slope the forecast could ride.
JITTER = ((7 * 60.0, 0.01), (11 * 60.0, 0.01), (17 * 60.0, 0.01))
REPLICASET = "5d4c8b7f9"
# Integration step of the counters: fine against the one-minute history scrapes.
FINE_S = 15.0


@dataclass(frozen=True, slots=True)
class DailyRamp:
    """Requests per second: `base`, and each day from `ramp_at` (mod one day) a linear climb over
    `ramp_s` to `peak`, which holds `hold_s` and falls back as fast."""

    base: float
    peak: float
    ramp_at: float
    # A morning ramp takes minutes, not seconds; over 10 minutes the forecast follows it closely
    # enough to be trusted (a step within a minute is smeared over its neighbouring 5-minute buckets).
    ramp_s: float = 600.0
    hold_s: float = 1800.0

    def rate(self, t: np.ndarray | float) -> np.ndarray:
        t = np.asarray(t, dtype=float)
        into = np.mod(t - self.ramp_at, DAY_S)
        up = np.clip(into / self.ramp_s, 0.0, 1.0)
        down = np.clip((self.ramp_s + self.hold_s + self.ramp_s - into) / self.ramp_s, 0.0, 1.0)
        jitter = sum(share * np.sin(2 * np.pi * t / period) for period, share in JITTER)
        return np.asarray(self.base * (1 + jitter) + (self.peak - self.base) * np.minimum(up, down))


def _labels(**pairs: str) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in pairs.items()) + "}"


def history_pods(deployment: str, count: int) -> list[str]:
    return [f"{deployment}-{REPLICASET}-h{i}" for i in range(count)]


def integral(pattern: DailyRamp, start: float, times: np.ndarray) -> np.ndarray:
    """Requests from `start` to each of `times`: the rate summed over a FINE_S grid, linear in
    between (a counter scraped every second must not move in steps of FINE_S)."""
    fine = np.arange(start, float(np.max(times)) + 2 * FINE_S, FINE_S)
    total = np.concatenate([[0.0], np.cumsum(pattern.rate(fine[:-1]) * FINE_S)])
    return np.asarray(np.interp(times, fine, total))


def _ownership(namespace: str, deployment: str, pods: Sequence[str]) -> list[str]:
    rs = f"{deployment}-{REPLICASET}"
    lines = [
        "kube_pod_owner"
        + _labels(
            namespace=namespace,
            pod=pod,
            owner_kind="ReplicaSet",
            owner_name=rs,
            owner_is_controller="true",
        )
        for pod in pods
    ]
    lines.append(
        "kube_replicaset_owner"
        + _labels(
            namespace=namespace,
            replicaset=rs,
            owner_kind="Deployment",
            owner_name=deployment,
            owner_is_controller="true",
        )
    )
    return lines


@dataclass(frozen=True, slots=True)
class History:
    """The pattern's past over [start, end), served by `pods` pods scraped every `scrape_s`."""

    pattern: DailyRamp
    namespace: str
    deployment: str
    start: float
    end: float
    pods: int = 2
    scrape_s: int = 60
    # The labels Prometheus adds when it scrapes the replay (job, instance): with them the past and
    # the present of a pod are one series, and its rate runs on across the seam.
    target: tuple[tuple[str, str], ...] = ()
    # The last minutes at the live scrape interval: a rate window that straddles the seam then
    # finds points near both of its ends, as Prometheus' extrapolation expects.
    dense_tail_s: float = 300.0
    dense_step_s: float = 1.0

    def write_openmetrics(self, path: Path) -> int:
        seam = self.end - self.dense_tail_s
        scrapes = np.concatenate(
            [
                np.arange(self.start, seam, self.scrape_s),
                np.arange(seam, self.end, self.dense_step_s),
            ]
        )
        per_pod = integral(self.pattern, self.start, scrapes) / self.pods
        names = history_pods(self.deployment, self.pods)
        samples = 0
        with path.open("w", encoding="utf-8") as out:
            for family, kind, scale in (
                ("http_requests", "counter", 1.0),
                ("container_cpu_usage_seconds", "counter", CPU_PER_REQUEST),
            ):
                out.write(f"# TYPE {family} {kind}\n")
                for pod in names:
                    labels = _labels(
                        namespace=self.namespace, pod=pod, container="app", **dict(self.target)
                    )
                    for t, v in zip(scrapes.tolist(), (per_pod * scale).tolist(), strict=True):
                        out.write(f"{family}_total{labels} {v!r} {t:.3f}\n")
                        samples += 1
            lines = _ownership(self.namespace, self.deployment, names)
            for family in ("kube_pod_owner", "kube_replicaset_owner"):
                out.write(f"# TYPE {family} gauge\n")
                for line in (x for x in lines if x.startswith(family + "{")):
                    out.writelines(f"{line} 1 {t:.3f}\n" for t in scrapes.tolist())
                    samples += len(scrapes)
            out.write("# EOF\n")
        return samples


class Replay:
    """The pods of one Deployment and their counters, advanced in real time. The pods that are up
    when it starts are the history's: their counters go on from where the history left them, so
    the request rate has no seam between the backfilled past and the scraped present."""

    def __init__(
        self,
        pattern: DailyRamp,
        namespace: str,
        deployment: str,
        api: str,
        startup_s: float,
        history_start: float,
    ) -> None:
        self.pattern = pattern
        self.namespace = namespace
        self.deployment = deployment
        self.url = f"{api}/apis/apps/v1/namespaces/{namespace}/deployments/{deployment}"
        self.startup_s = startup_s
        self.history_start = history_start
        self.lock = threading.Lock()
        self.pods: list[tuple[str, float]] = []  # name, when started
        self.requests: dict[str, float] = {}
        self.created = 0
        self.reported_ready: int | None = None
        self.last = time.time()

    def ready(self, now: float) -> list[str]:
        return [name for name, started in self.pods if now >= started + self.startup_s]

    def _adopt(self, count: int, now: float) -> None:
        names = history_pods(self.deployment, count)
        total = float(integral(self.pattern, self.history_start, np.array([now]))[0])
        self.pods = [(name, -math.inf) for name in names]
        self.requests = dict.fromkeys(names, total / count)

    def _advance(self, now: float) -> None:
        """Count the requests since the last call among the ready pods; the caller holds the lock."""
        ready = self.ready(now)
        if ready and now > self.last:
            mid = (self.last + now) / 2
            share = float(self.pattern.rate(mid)) * (now - self.last) / len(ready)
            for pod in ready:
                self.requests[pod] = self.requests.get(pod, 0.0) + share
        self.last = max(self.last, now)

    def step(self) -> None:
        """Advance the counters to now, then follow the Deployment's wanted replicas."""
        now = time.time()
        with self.lock:
            self._advance(now)
        with urllib.request.urlopen(self.url, timeout=2) as answer:
            deployment = json.load(answer)
        wanted = int(deployment["spec"].get("replicas", 1))
        with self.lock:
            if self.reported_ready is None:
                self.reported_ready = int(deployment.get("status", {}).get("readyReplicas", 0))
                self._adopt(self.reported_ready, now)
            while len(self.pods) < wanted:
                self.pods.append((f"{self.deployment}-{REPLICASET}-p{self.created}", now))
                self.created += 1
            while len(self.pods) > wanted:
                name, _ = self.pods.pop()
                self.requests.pop(name, None)
            ready_count = len(self.ready(now))
        if ready_count != self.reported_ready:
            body = json.dumps(
                {"status": {"readyReplicas": ready_count, "availableReplicas": ready_count}}
            ).encode()
            request = urllib.request.Request(
                f"{self.url}/status",
                data=body,
                method="PATCH",
                headers={"Content-Type": "application/merge-patch+json"},
            )
            with urllib.request.urlopen(request, timeout=2):
                self.reported_ready = ready_count

    def exposition(self) -> str:
        with self.lock:
            now = time.time()
            self._advance(now)
            ready = self.ready(now)
            counts = {pod: self.requests.get(pod, 0.0) for pod in ready}
        lines = [
            "# TYPE http_requests_total counter",
            "# TYPE container_cpu_usage_seconds_total counter",
        ]
        for pod, count in counts.items():
            labels = _labels(namespace=self.namespace, pod=pod, container="app")
            lines.append(f"http_requests_total{labels} {count!r}")
            lines.append(f"container_cpu_usage_seconds_total{labels} {count * CPU_PER_REQUEST!r}")
        if ready:
            lines += [f"{series} 1" for series in _ownership(self.namespace, self.deployment, ready)]
        return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="loadreplay")
    parser.add_argument("--api", required=True, help="the API server, e.g. http://127.0.0.1:6443")
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--deployment", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ramp-at", type=float, required=True, help="epoch seconds of a ramp")
    parser.add_argument("--base", type=float, default=20.0)
    parser.add_argument("--peak", type=float, default=80.0)
    parser.add_argument("--startup-seconds", type=float, default=5.0)
    parser.add_argument(
        "--history-start", type=float, required=True, help="epoch seconds where History began"
    )
    args = parser.parse_args(argv)
    pattern = DailyRamp(args.base, args.peak, args.ramp_at)
    replay = Replay(
        pattern, args.namespace, args.deployment, args.api, args.startup_seconds, args.history_start
    )

    server = ThreadingHTTPServer(("127.0.0.1", args.port), exposition_handler(replay.exposition))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.is_set():
        try:
            replay.step()
        except OSError as error:  # the API server is a test fixture; say so and keep going
            print(f"loadreplay: {error}", flush=True)
        stop.wait(0.25)
    server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
