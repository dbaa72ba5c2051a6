"""The pod runner: kubelet, deployment controller and kube-state-metrics for the fake API server,
with real agent processes as the pods.

It follows the Deployment's `spec.replicas` (polled over HTTP, as any client of the API server):

* a pod more is a Pod object created in the API server, then an agent process on a free loopback
  port (`examples/agent-service/agent_service.py`); a pod less is the newest pod: out of the
  endpoints and the file-SD targets first, its Pod object deleted, then SIGTERM (the agent answers
  what it admitted and exits) and SIGKILL to its process group if it does not;
* a pod is Ready only once its `GET /ready` answered 200: then its Pod's Ready condition turns
  True (the controller measures start-up from creation to that moment), it joins the endpoints the
  balancer spreads requests over and the file-SD file Prometheus scrapes (labels `namespace`,
  `pod`), in that order;
* the Deployment's status (`replicas`, `updatedReplicas`, `readyReplicas`, `availableReplicas`,
  `unavailableReplicas`, `observedGeneration`) is written through the status subresource
  whenever it differs from what the server holds;
* `/metrics` on its own port serves the ownership series of every pod that exists.

Every pod's life (started, first 200 from `/ready`, reported Ready, stopped) is kept in a
`PodRecord`, so a test can check that nothing was reported before the pod said so.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.agentloop.scrape import write_file_sd
from tests.agentloop.workload import Workload, ownership_series
from tests.promserver import exposition_handler, free_port

__all__ = ["AGENT_SCRIPT", "AgentSpec", "Endpoint", "PodRecord", "PodRunner", "kill_group"]

AGENT_SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "agent-service" / "agent_service.py"
# Local clients only: a proxy from the environment must never see these requests.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_MERGE = "application/merge-patch+json"
# Longer than the agent's own drain (10 s), so SIGKILL only meets an agent that is stuck.
STOP_GRACE_S = 15.0


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """How each agent pod runs: generation speed and reply length, parallel replies, queue, warm-up."""

    tokens_per_second: float
    reply_tokens: int
    concurrency: int
    queue_limit: int
    warmup_s: float

    @property
    def service_s(self) -> float:
        """Seconds one reply takes when nothing queues."""
        return self.reply_tokens / self.tokens_per_second

    @property
    def capacity_rps(self) -> float:
        """Requests per second one pod completes when all its slots are busy."""
        return self.concurrency / self.service_s

    def command(self, port: int) -> list[str]:
        return [
            sys.executable, str(AGENT_SCRIPT), "--host", "127.0.0.1", "--port", str(port),
            "--tokens-per-second", f"{self.tokens_per_second:g}",
            "--reply-tokens", str(self.reply_tokens), "--concurrency", str(self.concurrency),
            "--queue-limit", str(self.queue_limit), "--warmup-seconds", f"{self.warmup_s:g}",
        ]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A ready pod, as a Service's endpoints list it."""

    pod: str
    url: str


@dataclass(frozen=True, slots=True)
class PodRecord:
    name: str
    port: int
    started: float  # epoch seconds: Pod object created, process launched right after
    probed_ready: float | None = None  # first 200 from /ready
    reported_ready: float | None = None  # Ready condition written, endpoint and target added
    stopped: float | None = None  # taken out (scale-down, exit, or the runner closing)
    exit_code: int | None = None


def kill_group(process: subprocess.Popen[Any], grace_s: float) -> int:
    """SIGTERM the process, wait up to `grace_s`, then SIGKILL its whole group; its exit code."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    return process.wait()


def _stamp(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _call(method: str, url: str, body: Any = None, content_type: str = "application/json") -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Content-Type": content_type, "Accept": "application/json"},
    )
    with _OPENER.open(request, timeout=5) as answer:
        return json.load(answer)


def probe(url: str, timeout_s: float = 0.5) -> bool:
    """True when `GET url` answers 200."""
    try:
        with _OPENER.open(url, timeout=timeout_s) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


# A pod's process that exits before it was ever ready is started again at most this many times;
# after that its exit is an error of the run.
_START_ATTEMPTS = 3


class _Pod:
    def __init__(self, record: PodRecord, process: subprocess.Popen[bytes]) -> None:
        self.record = record
        self.process = process
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.record.port}"


class PodRunner:
    def __init__(
        self,
        api: str,
        workload: Workload,
        spec: AgentSpec,
        sd_file: Path,
        logs: Path,
        *,
        first_pods: Sequence[str] = (),
        poll_s: float = 0.2,
    ) -> None:
        """`first_pods`: names for the first pods, the ones the history ran on."""
        self.workload = workload
        self.spec = spec
        self.sd_file = sd_file
        self.logs = logs
        self.poll_s = poll_s
        base = f"{api}/apis/apps/v1/namespaces/{workload.namespace}/deployments/{workload.name}"
        self._deployment_url = base
        self._pods_url = f"{api}/api/v1/namespaces/{workload.namespace}/pods"
        self._names = list(first_pods)
        self._created = 0
        self._lock = threading.Lock()
        self._pods: list[_Pod] = []  # oldest first; stopped pods leave the list
        self._ready: tuple[Endpoint, ...] = ()
        self._records: dict[str, PodRecord] = {}
        self._reapers: list[threading.Thread] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pod-runner", daemon=True)
        self._ksm = ThreadingHTTPServer(("127.0.0.1", 0), exposition_handler(self._ksm_exposition))
        self._ksm.daemon_threads = True
        self._ksm_thread = threading.Thread(target=self._ksm.serve_forever, name="ksm", daemon=True)
        self.errors: list[str] = []

    # --- what others read -------------------------------------------------------------------------

    @property
    def ksm_address(self) -> str:
        host, port = self._ksm.server_address[:2]
        return f"{host!s}:{port}"

    def ready(self) -> tuple[Endpoint, ...]:
        return self._ready

    def records(self) -> list[PodRecord]:
        with self._lock:
            return list(self._records.values())

    def existing(self) -> int:
        with self._lock:
            return len(self._pods)

    # --- lifecycle --------------------------------------------------------------------------------

    def start(self) -> PodRunner:
        self.logs.mkdir(parents=True, exist_ok=True)
        write_file_sd(self.sd_file, self.workload.namespace, [])
        self._ksm_thread.start()
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop following the Deployment, then stop every pod (in parallel: each may drain)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        with self._lock:
            pods, self._pods = list(reversed(self._pods)), []
            self._ready = ()
        for pod in pods:
            self._retire(pod, delete=False)
        for reaper in list(self._reapers):
            reaper.join(timeout=STOP_GRACE_S + 5)
        if self._ksm_thread.is_alive():  # shutdown() waits forever for a loop never started
            self._ksm.shutdown()
        self._ksm.server_close()

    def __enter__(self) -> PodRunner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the loop ---------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                deployment = _call("GET", self._deployment_url)
                self._converge(int((deployment.get("spec") or {}).get("replicas", 1)))
                self._probe()
                self._report(deployment)
            except (OSError, ValueError) as error:  # the API server is a fixture: note, go on
                self._note(f"pod runner: {error!r}")
            self._stop.wait(self.poll_s)

    def _note(self, message: str) -> None:
        self.errors.append(message)
        print(message, file=sys.stderr, flush=True)

    def _converge(self, wanted: int) -> None:
        while len(self._pods) < wanted and not self._stop.is_set():
            self._launch()
        while len(self._pods) > wanted:
            with self._lock:
                pod = self._pods.pop()  # the newest goes first, as a ReplicaSet picks
                self._ready = tuple(e for e in self._ready if e.pod != pod.record.name)
            self._write_targets()
            self._retire(pod, delete=True)

    def _next_name(self) -> str:
        if self._names:
            return self._names.pop(0)
        self._created += 1
        return self.workload.pod(f"n{self._created:03d}")

    def _launch(self) -> None:
        name = self._next_name()
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "labels": self.workload.labels,
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "ReplicaSet",
                        "name": self.workload.replicaset,
                        "uid": self.workload.replicaset,
                        "controller": True,
                    },
                ],
            },
            "spec": {"containers": [{"name": "agent", "image": "examples/agent-service:local"}]},
        }
        _call("POST", self._pods_url, body)
        port, process = self._spawn(name)
        started = time.time()
        pod = _Pod(PodRecord(name, port, started), process)
        with self._lock:
            self._pods.append(pod)
            self._records[name] = pod.record
        self._pod_status(name, ready=False, started=started, transition=started)

    def _spawn(self, name: str) -> tuple[int, subprocess.Popen[bytes]]:
        port = free_port()
        with (self.logs / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                self.spec.command(port), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return port, process

    def _restart(self, pod: _Pod) -> None:
        """What the kubelet does with a container that exits: start it again, here on a port of its
        own (a start can fail for a reason of the moment: the free port taken before the agent
        bound it). The pod stays unready until its new process answers /ready."""
        port, pod.process = self._spawn(pod.record.name)
        pod.restarts += 1
        started = time.time()
        with self._lock:
            pod.record = replace(pod.record, port=port, started=started)
            self._records[pod.record.name] = pod.record
        self._pod_status(pod.record.name, ready=False, started=started, transition=started)

    def _pod_status(self, name: str, *, ready: bool, started: float, transition: float) -> None:
        flag = "True" if ready else "False"
        conditions = [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": _stamp(started)},
            {"type": "Initialized", "status": "True", "lastTransitionTime": _stamp(started)},
            {"type": "ContainersReady", "status": flag, "lastTransitionTime": _stamp(transition)},
            {"type": "Ready", "status": flag, "lastTransitionTime": _stamp(transition)},
        ]
        status = {
            "phase": "Running",
            "podIP": "127.0.0.1",
            "startTime": _stamp(started),
            "conditions": conditions,
            "containerStatuses": [
                {"name": "agent", "ready": ready, "started": True, "restartCount": 0,
                 "image": "examples/agent-service:local", "imageID": "",
                 "state": {"running": {"startedAt": _stamp(started)}}},
            ],
        }  # fmt: skip
        _call("PATCH", f"{self._pods_url}/{name}/status", {"status": status}, _MERGE)

    def _probe(self) -> None:
        for pod in list(self._pods):
            record = pod.record
            code = pod.process.poll()
            if code is not None and record.probed_ready is None and pod.restarts < _START_ATTEMPTS:
                self._restart(pod)
                continue
            if code is not None:
                self._note(f"pod runner: {record.name} exited with {code}")
                with self._lock:
                    self._pods.remove(pod)
                    self._ready = tuple(e for e in self._ready if e.pod != record.name)
                self._write_targets()
                self._retire(pod, delete=True)
                continue
            if record.probed_ready is not None or not probe(f"{pod.url}/ready"):
                continue
            probed = time.time()
            self._pod_status(record.name, ready=True, started=record.started, transition=probed)
            with self._lock:
                if pod not in self._pods:
                    continue
                self._ready = (*self._ready, Endpoint(record.name, pod.url))
            self._write_targets()
            reported = time.time()
            with self._lock:
                pod.record = replace(record, probed_ready=probed, reported_ready=reported)
                self._records[record.name] = pod.record

    def _write_targets(self) -> None:
        ready = {e.pod for e in self._ready}
        with self._lock:
            targets = [
                (p.record.name, f"127.0.0.1:{p.record.port}")
                for p in self._pods
                if p.record.name in ready
            ]
        write_file_sd(self.sd_file, self.workload.namespace, targets)

    def _retire(self, pod: _Pod, *, delete: bool) -> None:
        """Take `pod` out for good: its Pod object (while the API server is followed), then its
        process, waited for in the background so the loop goes on meanwhile."""
        name = pod.record.name
        if delete:
            try:
                _call("DELETE", f"{self._pods_url}/{name}")
            except urllib.error.HTTPError as error:
                if error.code != 404:
                    raise
        stopped = time.time()

        def reap() -> None:
            code = kill_group(pod.process, STOP_GRACE_S)
            with self._lock:
                self._records[name] = replace(self._records[name], stopped=stopped, exit_code=code)

        reaper = threading.Thread(target=reap, name=f"reap-{name}", daemon=True)
        self._reapers.append(reaper)
        reaper.start()

    def _report(self, deployment: dict[str, Any]) -> None:
        """The Deployment's status as its controller would write it, when it differs."""
        with self._lock:
            existing = len(self._pods)
            ready = len(self._ready)
        counts = {
            "replicas": existing,
            "updatedReplicas": existing,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": existing - ready,
        }
        status = deployment.get("status") or {}
        generation = (deployment.get("metadata") or {}).get("generation", 1)
        if status.get("observedGeneration") == generation and all(
            int(status.get(key, 0) or 0) == value for key, value in counts.items()
        ):
            return
        # The real counts are omitempty: a zero is absent, which a merge patch says with null.
        patch = {key: (value or None) for key, value in counts.items()}
        patch["observedGeneration"] = generation
        _call("PATCH", f"{self._deployment_url}/status", {"status": patch}, _MERGE)

    # --- kube-state-metrics -----------------------------------------------------------------------

    def _ksm_exposition(self) -> str:
        with self._lock:
            names = [p.record.name for p in self._pods]
        series = ownership_series(self.workload, names)
        lines = []
        for family in ("kube_pod_owner", "kube_replicaset_owner"):
            lines.append(f"# TYPE {family} gauge")
            lines += [f"{s} 1" for s in series if s.startswith(family + "{")]
        return "\n".join(lines) + "\n"
