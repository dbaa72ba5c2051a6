"""Fleet scale: how one controller process (or a sharded set) keeps up with hundreds to thousands of
workloads. Prints a table (or, with ``--json``, one JSON object) per fleet size.

Run: ``OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/fleet.py --workloads 100,300 --minutes 10``
Sharded: ``... --workloads 300 --replicas 3 --shards 6 --kill-one``

For each fleet size N:

* the fake API server (``tests/fakekube``) holds N Deployments in ten namespaces, two pods each, with
  the annotations a user would set (cpu, memory and requests, targets, bounds, start-up time);
* a real ``prometheus`` serves three days of one-minute history per workload, backfilled with
  ``promtool``: each workload's load is a stretch of one of the shared real traces (its own trace,
  offset and scale, drawn from ``--seed``), as cAdvisor, kube-state-metrics and a request counter
  would export it. The backfill reaches past the end of the run, so every query of the run finds
  fresh points, as the tests' live dataset does;
* ``predictive-autoscaler run`` runs as a process of its own (``--replicas`` of them, with
  ``--leader-elect`` and, given ``--shards``, sharded), each reaching Prometheus through a
  ``FaultProxy`` of its own that counts its requests, for ``--minutes`` of wall time. It writes for
  real by default: a dry run writes an Event only when its proposal changes, which would hide the API
  load of scale and status writes (``--dry-run`` measures that mode).

What it reads, and from where:

* time until every workload has a fitted model: the ``predictive_autoscaler_models{state="fitted"}``
  gauge on each process's ``/metrics``, summed over the processes, polled every two seconds;
* tick wall time: the ``tick done`` log lines; the first tick that decided anything, which reads the
  whole history, is reported apart, as is the time until every workload had been decided once;
* CPU per tick: utime + stime (``/proc/PID/stat``) of the process and of its session, where its
  model-fitting workers run, over the ticks it ran; also over the second half of the run alone;
* skipped ticks: APScheduler's "maximum number of running instances" and "was missed by" lines
  about the tick job; the same lines about the lease rounds (every retry period) are counted apart,
  as lease rounds late or skipped;
* peak RSS: ``VmHWM`` in ``/proc/PID/status``, and the largest sum of ``VmRSS`` over its session,
  and of ``Pss`` (``/proc/PID/smaps_rollup``: each page once, what the pod's memory limit counts;
  the fitting workers share much of their memory with the forkserver they are forked from);
* once every model is fitted (the steady state): tick wall time p50 / p95, the CPU used, in
  cores, and Prometheus requests per tick, from that moment to the end of the run;
* Prometheus requests per tick: the proxies' counts; API requests per tick: the fake server's request
  log, by the controller's user agent;
* every workload decided on every tick: one ``decision`` log line per workload per tick (one process),
  or, with several, no workload left longer than one and a half intervals without a decision;
* with several processes: from the server's request log, whether every workload's writes were all
  made by the holder, at that moment, of one and the same Lease (never by two processes at once);
  with ``--kill-one``, the process that decided the most workloads lately is killed (SIGKILL, with
  its session) at 40 % of the run and started again at 70 %: how long until the others decided its
  workloads, and how the work was shared out again;
* the take-over's bound: the lease duration (the bench passes the controller's default as
  ``--lease-duration``) plus two intervals, and whether every workload the killed replica decided in
  its last tick was decided by another replica within it of the kill ("cannot tell" when some were
  not, yet the restart came before the bound had passed);
* the hand-back, from the restart to the end of the run: for every workload, each gap between two of
  its consecutive decisions (by any replica) that ends after the restart, one that spans the restart
  counted whole, and the gap from its last decision to the end of the last acting tick of the run
  (from the start of the run for a workload never decided). A gap of g seconds counts as
  ``ceil(g / interval - 0.5) - 1`` ticks undecided: whole intervals less the one between any two
  decisions, with the half interval of slack of the 1.5-interval rule above (a decision is logged
  anywhere in its tick, and replicas tick out of phase): up to 1.5 intervals is no tick, up to 2.5
  one, up to 3.5 two. Reported: the longest gap, in seconds and ticks, its workload, and how many
  workloads went more than two ticks undecided;
* ticks held without metrics: the ``tick done`` lines of acting ticks with ``"metrics_available":
  false``, and the causes their ``prometheus_errors`` list, counted (``unspecified`` for none).

Wall-clock figures depend on how busy the machine is; the data, the fleet and every decision input
are the same for the same ``--seed``. Needs ``prometheus`` and ``promtool``
(``scripts/ensure-prometheus``). Temporary files and every process started are removed on exit,
Ctrl-C included.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autoscaler.actuation.leader import LeaseSettings
from autoscaler.cli.common import EXIT_USAGE, Parser, duration, positive, whole
from autoscaler.config import PREFIX
from tests.fakekube import FakeKube
from tests.fakekube.requestlog import RequestRecord
from tests.faultproxy import FaultProxy
from tests.promserver import MISSING_MESSAGE, PromServer, backfill, free_port

ROOT = Path(__file__).resolve().parents[1]
CONTROLLER = ROOT / ".venv" / "bin" / "predictive-autoscaler"
DEFAULT_TRACES = ROOT.parent / "shared" / "traces"
NAMESPACES = tuple(f"team-{i}" for i in range(10))
LEASE_NAMESPACE = "ops"
USER_AGENT = "predictive-autoscaler/"
SCRAPE_S = 60
# Ownership never changes; a sample every four minutes keeps one inside any window a query reads
# (the rate window plus Prometheus' five-minute lookback) and shrinks the backfill by a third.
OWNER_SCRAPE_S = 240
HISTORY_S = 3 * 86400
# Data before the history the controller reads, and after the run, so neither edge is ever read.
MARGIN_S = 1800
PODS = 2
SAMPLE_S = 1.0
METRICS_EVERY = 2  # samples between two reads of /metrics
# Prometheus' default scrape timeout: a busy controller may take seconds to render /metrics.
SCRAPE_TIMEOUT_S = 10.0
# A workload counts as decided on time while its decisions are at most this many intervals apart.
LATE_INTERVALS = 1.5
KILL_AT, RESTART_AT = 0.4, 0.7
# The controller's default lease duration, which the bench passes to every replica: the take-over
# bound is this plus TAKEOVER_TICKS intervals.
LEASE_DURATION_S = LeaseSettings(namespace=LEASE_NAMESPACE).lease_duration_s
TAKEOVER_TICKS = 2
# After the restart, no workload may go more than this many ticks without a decision.
HANDBACK_TICKS = 2
# The metrics every workload of the fleet declares: one model each.
KINDS = ("cpu", "memory", "requests")
FITTED = re.compile(r'^predictive_autoscaler_models\{[^}]*state="fitted"[^}]*\}\s+(\S+)', re.M)
MODELS_GAUGE = "predictive_autoscaler_models"
EXCEPTION_LINE = re.compile(r"\b\w*(Error|Exception|Warning): ")
SKIPPED = ("maximum number of running instances", "was missed by")
# The job an APScheduler line is about: `Execution of job "run_controller.<locals>.tick (trigger: …`.
TICK_JOB_LINE = re.compile(r"\.tick \(trigger")
WORKLOAD_WRITE = re.compile(r"^/apis/apps/v1/namespaces/([^/]+)/deployments/([^/]+)(/scale)?$")
LEASE_PATH = re.compile(r"/apis/coordination\.k8s\.io/v1/namespaces/[^/]+/leases(?:/([^/]+))?$")


class UsageError(Exception):
    """A flag the bench cannot run with: one line, exit status 2."""


# --- the data ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Load:
    """One workload: a stretch of a shared trace, scaled to its own size."""

    namespace: str
    name: str
    trace: str
    offset: int  # first row of the trace used
    peak_rps: float
    peak_cores: float
    memory_bytes: float  # per pod at no load
    shape: np.ndarray  # load relative to its 99th percentile, one value per scrape from `start`

    @property
    def replicaset(self) -> str:
        return f"{self.name}-7f6d9c"

    def pods(self) -> list[str]:
        return [f"{self.replicaset}-{k}" for k in range(PODS)]

    def annotations(self) -> dict[str, str]:
        return {
            PREFIX + "enabled": "true",
            PREFIX + "metrics": ",".join(KINDS),
            PREFIX + "target-utilization": "70",
            # Pods sized so that the trace's busy hours need about six of them.
            PREFIX + "target-requests-per-pod": f"{self.peak_rps / 6:.3f}",
            PREFIX + "min-replicas": "2",
            PREFIX + "max-replicas": "30",
            PREFIX + "startup-seconds": "90",
        }

    def cpu_request(self) -> str:
        return f"{max(10, round(self.peak_cores / 4 * 1000))}m"

    def memory_request(self) -> str:
        return f"{round(self.memory_bytes * 1.6 / 2**20)}Mi"


def read_trace(path: Path) -> np.ndarray:
    lines = path.read_text().splitlines()[1:]
    return np.array([float(line.split(",")[1]) for line in lines if line.strip()])


def trace_step_s(path: Path) -> float:
    first, second = path.read_text().splitlines()[1:3]
    return epoch(second.split(",")[0]) - epoch(first.split(",")[0])


def fleet_loads(n: int, points: int, traces: Path, seed: int) -> list[Load]:
    """`n` workloads, each a stretch of `points` one-minute values of a trace, cycling through the
    traces, at an offset and scale drawn from (`seed`, its index)."""
    files = sorted(traces.glob("*.csv"))
    if not files:
        raise UsageError(f"--traces: no CSV traces in {traces}")
    data = {f.stem: (read_trace(f), trace_step_s(f)) for f in files}
    loads = []
    for i in range(n):
        draw = np.random.default_rng([seed, i])
        stem = files[i % len(files)].stem
        values, step_s = data[stem]
        rows = math.ceil(points * SCRAPE_S / step_s) + 2
        if rows > len(values):
            raise UsageError(f"--traces: {stem} is shorter than the {points} minutes needed")
        offset = int(draw.integers(0, len(values) - rows + 1))
        stretch = values[offset : offset + rows]
        minute = np.arange(points) * SCRAPE_S / step_s
        curve = np.interp(minute, np.arange(rows), stretch)
        shape = np.clip(curve / max(float(np.percentile(curve, 99)), 1e-9), 0.02, None)
        loads.append(
            Load(
                NAMESPACES[i % len(NAMESPACES)],
                f"svc-{i:04d}",
                stem,
                offset,
                peak_rps=float(np.exp(draw.uniform(np.log(5), np.log(400)))),
                peak_cores=float(draw.uniform(0.2, 4.0)),
                memory_bytes=float(draw.uniform(80, 900)) * 2**20,
                shape=shape,
            )
        )
    return loads


@dataclass(frozen=True)
class FleetDataset:
    """The series the controller's queries read, for every workload, over [start, start + points
    minutes): cAdvisor's CPU counter and working set (container "app"), a request counter, and
    kube-state-metrics' pod and ReplicaSet ownership."""

    start: int
    loads: Sequence[Load]

    def write_openmetrics(self, path: Path) -> int:
        families: dict[str, list[str]] = {
            "container_cpu_usage_seconds": [],
            "container_memory_working_set_bytes": [],
            "http_requests": [],
            "kube_pod_owner": [],
            "kube_replicaset_owner": [],
        }
        samples = 0
        with tempfile.TemporaryDirectory(prefix="fleet-om-", dir=path.parent) as parts:
            outs = {name: (Path(parts) / name).open("w") for name in families}
            try:
                for load in self.loads:
                    samples += self._write_load(load, outs)
            finally:
                for out in outs.values():
                    out.close()
            with path.open("w") as out:
                for name in families:
                    counter = name in ("container_cpu_usage_seconds", "http_requests")
                    out.write(f"# TYPE {name} {'counter' if counter else 'gauge'}\n")
                    with (Path(parts) / name).open() as part:
                        shutil.copyfileobj(part, out)
                out.write("# EOF\n")
        return samples

    def _write_load(self, load: Load, outs: dict[str, Any]) -> int:
        points = len(load.shape)
        stamps = [str(self.start + k * SCRAPE_S) for k in range(points)]
        per_pod = load.shape / PODS
        # Counters: the integral of the per-pod rate, in one-minute steps; CPU has a floor of idle use.
        cores = load.peak_cores * (0.15 + 0.85 * per_pod)
        cpu = np.cumsum(cores * SCRAPE_S)
        requests = np.cumsum(load.peak_rps * per_pod * SCRAPE_S)
        memory = load.memory_bytes * (1 + 0.4 * load.shape)
        owner_every = OWNER_SCRAPE_S // SCRAPE_S
        written = 0
        for pod in load.pods():
            where = f'namespace="{load.namespace}",pod="{pod}"'
            head = f'container_cpu_usage_seconds_total{{{where},container="app"}} '
            outs["container_cpu_usage_seconds"].writelines(
                f"{head}{v:.3f} {t}\n" for v, t in zip(cpu.tolist(), stamps, strict=True)
            )
            head = f'container_memory_working_set_bytes{{{where},container="app"}} '
            outs["container_memory_working_set_bytes"].writelines(
                f"{head}{v:.0f} {t}\n" for v, t in zip(memory.tolist(), stamps, strict=True)
            )
            head = f'http_requests_total{{{where},code="200"}} '
            outs["http_requests"].writelines(
                f"{head}{v:.3f} {t}\n" for v, t in zip(requests.tolist(), stamps, strict=True)
            )
            head = (
                f'kube_pod_owner{{{where},owner_kind="ReplicaSet",owner_name="{load.replicaset}",'
                'owner_is_controller="true"} 1 '
            )
            outs["kube_pod_owner"].writelines(f"{head}{t}\n" for t in stamps[::owner_every])
            written += 3 * points + len(stamps[::owner_every])
        head = (
            f'kube_replicaset_owner{{namespace="{load.namespace}",replicaset="{load.replicaset}",'
            f'owner_kind="Deployment",owner_name="{load.name}",owner_is_controller="true"}} 1 '
        )
        outs["kube_replicaset_owner"].writelines(f"{head}{t}\n" for t in stamps[::owner_every])
        return written + len(stamps[::owner_every])


# --- the controller processes ------------------------------------------------------------------------


@dataclass
class Sample:
    at: float
    cpu_s: float
    hwm_bytes: int
    rss_bytes: int
    pss_bytes: int
    prometheus_requests: int
    fitted: float | None  # None: no models gauge on /metrics (or /metrics not answering)


@dataclass
class Process:
    """One run of one controller replica (a restarted replica is a new `Process` of the same name)."""

    identity: str
    popen: subprocess.Popen[bytes]
    log: Path
    metrics_port: int
    proxy: FaultProxy
    started: float
    proxy_base: int  # the proxy's count when this process started
    samples: list[Sample] = field(default_factory=list)
    gauge_seen: bool = False
    ended: float | None = None
    killed: bool = False

    def alive(self) -> bool:
        return self.popen.poll() is None


def run_supports_shards() -> bool:
    text = subprocess.run(
        [str(CONTROLLER), "run", "--help"], capture_output=True, text=True, check=False, timeout=60
    ).stdout
    return "--shards" in text


@dataclass(frozen=True, slots=True)
class Usage:
    cpu_s: float  # the session's processes, and the children they have reaped
    hwm_bytes: int  # the controller process's own peak
    rss_bytes: int  # the session's processes now, summed
    # Each page once, shared ones split between the processes that map them: what the pod's memory
    # cgroup is charged, where summed RSS counts the workers' pages shared with the forkserver twice.
    pss_bytes: int


def _status_kb(text: str, key: str) -> int:
    match = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
    return int(match.group(1)) if match else 0


def read_usage(pid: int) -> Usage | None:
    """What the controller `pid` and every process of its session use: its model-fitting workers
    run in processes of their own, whose CPU and memory are the controller's cost too."""
    try:
        own = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    cpu_ticks = rss_kb = pss_kb = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            # The name is in parentheses and may hold spaces; the fields after it are fixed.
            fields = stat[stat.rfind(")") + 2 :].split()
            if int(fields[3]) != pid:  # the session: the controller started one of its own
                continue
            rss_kb += _status_kb((entry / "status").read_text(), "VmRSS")
            pss_kb += _status_kb((entry / "smaps_rollup").read_text(), "Pss")
        except (OSError, IndexError, ValueError):
            continue
        cpu_ticks += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return Usage(
        cpu_ticks / os.sysconf("SC_CLK_TCK"),
        _status_kb(own, "VmHWM") * 1024,
        rss_kb * 1024,
        pss_kb * 1024,
    )


def end_session(popen: subprocess.Popen[bytes]) -> None:
    """Kill what is left of the controller's session: its fitting workers outlive a killed parent."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(popen.pid, signal.SIGKILL)


def read_metrics(port: int) -> str | None:
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/metrics", timeout=SCRAPE_TIMEOUT_S
        ) as answer:
            return str(answer.read().decode())
    except (urllib.error.URLError, OSError):
        return None


def read_fitted(port: int) -> tuple[bool, float | None]:
    """(whether /metrics has the models gauge, its fitted count)."""
    text = read_metrics(port)
    if text is None:
        return False, None
    match = FITTED.search(text)
    return MODELS_GAUGE in text, float(match.group(1)) if match else None


class Fleet:
    """The controller processes of one fleet size, and the thread that samples them."""

    def __init__(self, args: argparse.Namespace, kubeconfig: Path, prometheus_url: str, tmp: Path):
        self.args = args
        self.kubeconfig = kubeconfig
        self.prometheus_url = prometheus_url
        self.tmp = tmp
        self.processes: list[Process] = []
        self.proxies: dict[str, FaultProxy] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample_loop, name="fleet-sampler", daemon=True)

    def identities(self) -> list[str]:
        return [f"replica-{i}" for i in range(self.args.replicas)]

    def start(self) -> None:
        for identity in self.identities():
            self.spawn(identity)
        self._sampler.start()

    def spawn(self, identity: str) -> Process:
        proxy = self.proxies.get(identity)
        if proxy is None:
            proxy = FaultProxy(self.prometheus_url)
            proxy.start()
            self.proxies[identity] = proxy
        generation = sum(1 for p in self.processes if p.identity == identity)
        log = self.tmp / f"{identity}-{generation}.log"
        port = free_port()
        command = [
            str(CONTROLLER), "run", "--kubeconfig", str(self.kubeconfig),
            "--prometheus-url", proxy.url, "--interval", f"{self.args.interval_s:g}s",
            "--metrics-port", str(port), "--log-format", "json", "--log-level", "info",
            "--identity", identity,
        ]  # fmt: skip
        if self.args.dry_run:
            command.append("--dry-run")
        if self.args.replicas > 1:
            command += ["--leader-elect", "--lease-namespace", LEASE_NAMESPACE]
            # Said rather than left to the default (or to the environment): the take-over bound uses it.
            command += ["--lease-duration", f"{LEASE_DURATION_S:g}s"]
        if self.args.shards:
            command += ["--shards", str(self.args.shards)]
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
        with log.open("wb") as out:
            # A session of its own: Ctrl-C reaches the bench alone, which then stops the controllers
            # in order (SIGTERM, then SIGKILL) rather than racing them.
            popen = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        process = Process(identity, popen, log, port, proxy, time.time(), proxy.requests)
        with self._lock:
            self.processes.append(process)
        return process

    def kill(self, identity: str) -> Process:
        process = self.current(identity)
        self._take_sample(process, with_metrics=False)
        process.popen.kill()
        process.popen.wait()
        process.ended, process.killed = time.time(), True
        end_session(process.popen)
        return process

    def busiest(self, interval_s: float) -> str:
        """The replica that decided the most workloads over the last two intervals: the one whose
        loss the others have to make up for."""
        since = time.time() - 2 * interval_s
        counts = {
            p.identity: len({ref for at, ref in read_log(i, p.log).decisions if at >= since})
            for i, p in enumerate(self.processes)
            if p.alive()
        }
        return max(sorted(counts), key=lambda identity: counts[identity])

    def current(self, identity: str) -> Process:
        return [p for p in self.processes if p.identity == identity][-1]

    def stop(self) -> None:
        self._stop.set()
        if self._sampler.is_alive():
            self._sampler.join(timeout=10)
        for process in self.processes:
            if process.alive():
                self._take_sample(process, with_metrics=False)
                if self.args.keep_logs is not None:
                    text = read_metrics(process.metrics_port)
                    process.log.with_suffix(".metrics.txt").write_text(text or "")
                process.popen.send_signal(signal.SIGTERM)
        for process in self.processes:
            if process.ended is not None:
                continue
            try:
                process.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait()
            process.ended = time.time()
            end_session(process.popen)
        for proxy in self.proxies.values():
            proxy.stop()

    def _sample_loop(self) -> None:
        count = 0
        while not self._stop.wait(SAMPLE_S):
            count += 1
            with self._lock:
                running = [p for p in self.processes if p.ended is None and p.alive()]
            for process in running:
                self._take_sample(process, with_metrics=count % METRICS_EVERY == 0)

    def _take_sample(self, process: Process, with_metrics: bool) -> None:
        usage = read_usage(process.popen.pid)
        if usage is None:
            return
        fitted: float | None = None
        if with_metrics:
            seen, fitted = read_fitted(process.metrics_port)
            process.gauge_seen |= seen
        elif process.samples:
            fitted = process.samples[-1].fitted
        requests = process.proxy.requests - process.proxy_base
        process.samples.append(
            Sample(
                time.time(),
                usage.cpu_s,
                usage.hwm_bytes,
                usage.rss_bytes,
                usage.pss_bytes,
                requests,
                fitted,
            )
        )


# --- reading what happened ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tick:
    process: int  # index into Fleet.processes
    began: float
    ended: float
    seconds: float
    acted: bool
    decided: frozenset[str]  # "namespace/name"


@dataclass
class ProcessLog:
    ticks: list[Tick]
    decisions: list[tuple[float, str]]  # (time, "namespace/name")
    skipped: int
    failed_ticks: int
    errors: list[str]
    # Acting ticks that went without metrics (Prometheus failed), and the causes they listed.
    ticks_without_metrics: int = 0
    metrics_causes: dict[str, int] = field(default_factory=dict)
    lease_rounds_late: int = 0  # skipped or late lease rounds (APScheduler's lines about them)


def epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def read_log(index: int, path: Path) -> ProcessLog:
    ticks: list[Tick] = []
    decisions: list[tuple[float, str]] = []
    pending: set[str] = set()
    skipped = failed = without_metrics = lease_late = 0
    causes: dict[str, int] = {}
    errors: list[str] = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            # Text outside the JSON log (a traceback, a warning): its one line that names the error.
            if EXCEPTION_LINE.search(line):
                errors.append(line.strip()[:200])
            continue
        if not isinstance(entry, dict):
            continue
        event, message = entry.get("event"), str(entry.get("message", ""))
        at = epoch(str(entry["time"])) if "time" in entry else 0.0
        if event == "decision":
            target = str(entry.get("target"))
            pending.add(target)
            decisions.append((at, target))
        elif event == "tick":
            seconds = float(entry.get("seconds", 0.0))
            acted = bool(entry.get("acted"))
            ticks.append(Tick(index, at - seconds, at, seconds, acted, frozenset(pending)))
            pending = set()
            if acted and entry.get("metrics_available") is False:
                without_metrics += 1
                listed = entry.get("prometheus_errors")
                for cause in (listed if isinstance(listed, list) else []) or ["unspecified"]:
                    causes[str(cause)] = causes.get(str(cause), 0) + 1
        elif event == "tick_failed":
            failed += 1
            pending = set()
        elif any(fragment in message for fragment in SKIPPED):
            if TICK_JOB_LINE.search(message):
                skipped += 1
            else:
                lease_late += 1
        elif entry.get("level") in ("error", "critical"):
            errors.append(message[:200])
    return ProcessLog(ticks, decisions, skipped, failed, errors, without_metrics, causes, lease_late)


def percentile(values: Sequence[float], share: float) -> float | None:
    if not values:
        return None
    return float(np.percentile(np.asarray(values, dtype=float), share * 100))


def api_category(record: RequestRecord) -> str:
    if record.query.get("watch") in ("true", "1"):
        return "watch"
    if LEASE_PATH.search(record.path):
        return "lease"
    if "/events" in record.path:
        return "event"
    if record.method == "GET":
        return "read"
    if record.path.endswith("/scale"):
        return "scale write"
    return "other write"


def lease_timeline(records: Sequence[RequestRecord]) -> dict[str, list[tuple[float, str]]]:
    """Each Lease's holder from each successful write on, by the server's log."""
    timeline: dict[str, list[tuple[float, str]]] = {}
    for record in records:
        match = LEASE_PATH.search(record.path)
        if match is None or record.method not in ("POST", "PUT", "PATCH") or record.status >= 300:
            continue
        body = record.body if isinstance(record.body, dict) else {}
        name = match.group(1) or str((body.get("metadata") or {}).get("name", ""))
        spec = body.get("spec") or {}
        if "holderIdentity" not in spec:
            continue
        timeline.setdefault(name, []).append((record.answered, str(spec.get("holderIdentity") or "")))
    for changes in timeline.values():
        changes.sort()
    return timeline


def holder_at(changes: list[tuple[float, str]], at: float) -> str:
    holder = ""
    for when, who in changes:
        if when > at:
            break
        holder = who
    return holder


def takeover_bound_s(interval_s: float) -> float:
    """How long after a kill the others may take to decide the killed replica's workloads: the lease
    duration its leases take to expire, and `TAKEOVER_TICKS` ticks."""
    return LEASE_DURATION_S + TAKEOVER_TICKS * interval_s


def takeover_within_bound(
    taken: Mapping[str, float], orphans: Collection[str], watched_s: float, bound_s: float
) -> bool | None:
    """Whether every orphan (a workload the killed replica decided in its last tick) was decided by
    another replica within `bound_s` of the kill; `taken`: seconds from the kill to each orphan's
    first such decision, within the `watched_s` from the kill to the restart. None when there is
    nothing to take over, or when an orphan not taken yet was still within the bound at the
    restart."""
    if not orphans:
        return None
    if all(ref in taken and taken[ref] <= bound_s for ref in orphans):
        return True
    if any(taken[ref] > bound_s for ref in orphans if ref in taken) or watched_s >= bound_s:
        return False
    return None


def ticks_undecided(gap_s: float, interval_s: float) -> int:
    """The ticks a workload went without a decision in a gap of `gap_s` seconds between two of its
    decisions: the gap in whole intervals, less the one between any two decisions, with half an
    interval of slack (a decision is logged anywhere in its tick; replicas tick out of phase), as
    for `LATE_INTERVALS`: up to 1.5 intervals is no tick, up to 2.5 one, up to 3.5 two."""
    return max(0, math.ceil(gap_s / interval_s - (LATE_INTERVALS - 1)) - 1)


@dataclass(frozen=True, slots=True)
class HandBack:
    """The hand-back after the restart: the longest time a workload went without a decision."""

    max_gap_s: float | None  # None: no gap ends after the restart
    max_ticks: int | None  # `ticks_undecided` of that gap
    worst: str | None  # the workload of that gap
    over_bound: int  # workloads with a gap of more than `HANDBACK_TICKS` ticks undecided


def handback(
    decided_at: Mapping[str, Sequence[float]],
    restarted_at: float,
    began: float,
    last_tick_end: float,
    interval_s: float,
) -> HandBack:
    """Every workload's gaps that end after `restarted_at`: between two consecutive decisions (by
    any replica; one spanning the restart counts whole), and from its last decision to
    `last_tick_end`, the end of the run's last acting tick (from `began`, the start of the run, for a
    workload never decided)."""
    worst: tuple[float, str] | None = None
    over = 0
    for ref in sorted(decided_at):
        times = sorted(decided_at[ref]) or [began]
        points = [*times, max(last_tick_end, times[-1])]
        gaps = [b - a for a, b in itertools.pairwise(points) if b > restarted_at]
        if not gaps:
            continue
        longest = max(gaps)
        if ticks_undecided(longest, interval_s) > HANDBACK_TICKS:
            over += 1
        if worst is None or longest > worst[0]:
            worst = (longest, ref)
    if worst is None:
        return HandBack(None, None, None, over)
    return HandBack(worst[0], ticks_undecided(worst[0], interval_s), worst[1], over)


@dataclass
class Result:
    workloads: int
    replicas: int
    shards: int | None
    mode: str
    minutes: float
    interval_s: float
    backfill_s: float
    fitted_s: float | None
    fitted_note: str
    first_tick_s: float | None
    all_decided_s: float | None  # from the start until every workload had been decided once
    tick_p50_s: float | None
    tick_p95_s: float | None
    tick_max_s: float | None
    ticks: int
    ticks_due: int
    skipped_ticks: int
    lease_rounds_late: int
    failed_ticks: int
    # Acting ticks held without metrics (Prometheus failed), and the causes they listed, counted.
    ticks_without_metrics: int
    ticks_without_metrics_by_cause: dict[str, int]
    cpu_s_per_tick: float | None
    cpu_s_per_tick_second_half: float | None
    peak_rss_mb: float | None
    peak_session_rss_mb: float | None  # with its fitting workers, sampled every second
    peak_session_pss_mb: float | None  # the same, each page counted once
    # From the moment every workload had a fitted model to the end of the run.
    tick_p50_fitted_s: float | None
    tick_p95_fitted_s: float | None
    cpu_cores_fitted: float | None
    prometheus_requests_per_tick_fitted: float | None
    prometheus_requests_per_tick: float | None
    prometheus_requests_per_tick_second_half: float | None
    api_requests_per_tick: float | None
    api_requests_per_tick_second_half: float | None
    api_requests_by_kind: dict[str, int]
    ticks_with_every_workload: int
    acting_ticks: int
    late_decisions: int
    max_decision_gap_s: float | None
    never_decided: int
    writes: int
    workloads_written_by_two: int | None
    two_writer_examples: list[str]
    takeover_s: float | None
    takeover_note: str
    # With --kill-one: lease duration + TAKEOVER_TICKS intervals; whether every workload of the
    # killed replica was decided by another within it (None: nothing to take over, or cannot tell).
    takeover_bound_s: float | None
    takeover_within_bound: bool | None
    rebalance_s: float | None
    rebalance_note: str
    # With --kill-one, from the restart to the end of the run (`handback`): the longest time a
    # workload went without a decision, as seconds and ticks, its workload, and how many workloads
    # went more than `handback_bound_ticks` ticks without one.
    handback_max_gap_s: float | None
    handback_max_ticks_undecided: int | None
    handback_worst_workload: str | None
    handback_bound_ticks: int | None
    handback_workloads_over_bound: int | None
    errors: list[str]


def analyse(
    args: argparse.Namespace,
    n: int,
    fleet: Fleet,
    records: Sequence[RequestRecord],
    began: float,
    ended: float,
    backfill_s: float,
    kill: tuple[float, float] | None,
) -> Result:
    logs = [read_log(i, p.log) for i, p in enumerate(fleet.processes)]
    ticks = [t for log in logs for t in log.ticks]
    acting = [t for t in ticks if t.acted]
    interval = args.interval_s
    half = began + (ended - began) / 2
    all_refs = {f"{NAMESPACES[i % len(NAMESPACES)]}/svc-{i:04d}" for i in range(n)}

    # Models fitted: the first sample time at which the processes running then had them all, one per
    # workload and metric.
    fitted_s: float | None = None
    gauge = any(p.gauge_seen for p in fleet.processes)
    best = 0.0
    if gauge:
        moments = sorted({s.at for p in fleet.processes for s in p.samples if s.fitted is not None})
        for at in moments:
            total = 0.0
            for p in fleet.processes:
                before = [s for s in p.samples if s.at <= at and s.fitted is not None]
                if before and (p.ended is None or p.ended > at):
                    total += before[-1].fitted or 0.0
            best = max(best, total)
            if total >= n * len(KINDS):
                fitted_s = at - began
                break
    if not gauge:
        note = "n/a (no models gauge)"
    elif fitted_s is None:
        note = f"not within the run ({best:.0f} of {n * len(KINDS)} models fitted at most)"
    else:
        note = f"{fitted_s:.0f} s"

    # CPU, Prometheus requests: per process, first sample to last, over the ticks it ran.
    cpu_total = prom_total = cpu_half = prom_half = 0.0
    ticks_half = 0
    for i, p in enumerate(fleet.processes):
        if not p.samples:
            continue
        last = p.samples[-1]
        cpu_total += last.cpu_s
        prom_total += last.prometheus_requests
        mid = [s for s in p.samples if s.at <= half]
        if mid and p.ended is not None and p.ended > half:
            cpu_half += last.cpu_s - mid[-1].cpu_s
            prom_half += last.prometheus_requests - mid[-1].prometheus_requests
            ticks_half += sum(1 for t in logs[i].ticks if t.ended > half)
    done = len(ticks)
    peak = max((s.hwm_bytes for p in fleet.processes for s in p.samples), default=0)
    peak_session = max((s.rss_bytes for p in fleet.processes for s in p.samples), default=0)
    peak_pss = max((s.pss_bytes for p in fleet.processes for s in p.samples), default=0)

    # After every model is fitted: the steady state the fleet settles in.
    fitted_ticks: list[float] = []
    cores_fitted: float | None = None
    prom_fitted: float | None = None
    if fitted_s is not None:
        since = began + fitted_s
        fitted_ticks = [t.seconds for t in ticks if t.began >= since]
        used = asked = 0.0
        for p in fleet.processes:
            window = [s for s in p.samples if s.at >= since]
            if len(window) >= 2:
                used += window[-1].cpu_s - window[0].cpu_s
                asked += window[-1].prometheus_requests - window[0].prometheus_requests
        span = max((s.at for p in fleet.processes for s in p.samples), default=since) - since
        cores_fitted = round(used / span, 2) if span > 0 else None
        prom_fitted = round(asked / len(fitted_ticks), 2) if fitted_ticks else None

    mine = [r for r in records if r.user_agent.startswith(USER_AGENT)]
    by_kind: dict[str, int] = {}
    for record in mine:
        kind = api_category(record)
        by_kind[kind] = by_kind.get(kind, 0) + 1
    api_half = sum(1 for r in mine if r.timestamp > half)

    # Decisions: per tick with one process; by the gaps between decisions with several.
    every = sum(1 for t in acting if all_refs <= t.decided)
    decided_at: dict[str, list[float]] = {ref: [] for ref in all_refs}
    for log in logs:
        for at, ref in log.decisions:
            if ref in decided_at:
                decided_at[ref].append(at)
    firsts = [min(times) for times in decided_at.values() if times]
    never = sum(1 for times in decided_at.values() if not times)
    late = 0
    max_gap: float | None = None
    settled = max(firsts) if firsts and not never else None
    last_tick_end = max(t.ended for t in acting) if acting else ended
    if settled is not None:
        for times in decided_at.values():
            times.sort()
            points = [*[t for t in times if t >= settled], last_tick_end]
            for a, b in itertools.pairwise(points):
                if kill is not None and a <= kill[0] < b:
                    continue  # the take-over, reported on its own
                gap = b - a
                max_gap = gap if max_gap is None else max(max_gap, gap)
                if gap > LATE_INTERVALS * interval:
                    late += 1

    # Writes: each workload's writers must all be the holder, when they wrote, of one same Lease.
    writes = [
        (r, m)
        for r in mine
        if r.method in ("PATCH", "PUT") and r.status < 300 and (m := WORKLOAD_WRITE.match(r.path))
    ]
    two_writers: int | None = None
    examples: list[str] = []
    if args.replicas > 1:
        timeline = lease_timeline(records)
        by_ref: dict[str, list[tuple[float, float, str]]] = {}
        for record, match in writes:
            who = record.user_agent.removeprefix(USER_AGENT)
            by_ref.setdefault(f"{match.group(1)}/{match.group(2)}", []).append(
                (record.timestamp, record.answered, who)
            )
        two_writers = 0
        for ref, made in sorted(by_ref.items()):
            explaining = {
                lease
                for lease, changes in timeline.items()
                if all(who in (holder_at(changes, t0), holder_at(changes, t1)) for t0, t1, who in made)
            }
            if not explaining:
                two_writers += 1
                if len(examples) < 5:
                    writers = sorted({w for _, _, w in made})
                    examples.append(f"{ref}: {len(made)} writes by {', '.join(writers)}")

    takeover_s, takeover_note, rebalance_s, rebalance_note = None, "", None, ""
    bound_s: float | None = None
    within: bool | None = None
    back: HandBack | None = None
    if kill is not None:
        killed_at, restarted_at = kill
        victim = next(p for p in fleet.processes if p.killed)
        index = fleet.processes.index(victim)
        ticked = [t for t in logs[index].ticks if t.acted and t.ended <= killed_at]
        orphans = set(ticked[-1].decided) if ticked else set()
        others = [
            (at, ref)
            for i, log in enumerate(logs)
            if fleet.processes[i].identity != victim.identity
            for at, ref in log.decisions
            if killed_at < at <= restarted_at
        ]
        taken: dict[str, float] = {}
        for at, ref in sorted(others):
            if ref in orphans and ref not in taken:
                taken[ref] = at - killed_at
        bound_s = takeover_bound_s(interval)
        within = takeover_within_bound(taken, orphans, restarted_at - killed_at, bound_s)
        back = handback(decided_at, restarted_at, began, last_tick_end, interval)
        if not orphans:
            takeover_note = "the killed replica was deciding nothing"
        elif len(taken) == len(orphans):
            takeover_s = max(taken.values())
            takeover_note = f"{len(orphans)} workloads decided by the others after {takeover_s:.0f} s"
        else:
            takeover_note = (
                f"{len(orphans) - len(taken)} of {len(orphans)} workloads not decided by another "
                f"replica within {restarted_at - killed_at:.0f} s"
            )
        restarted = fleet.processes[-1]
        back_ticks = [t for t in logs[-1].ticks if t.acted and t.decided]
        if restarted.identity != victim.identity or not back_ticks:
            rebalance_note = "the restarted replica decided nothing before the end"
        else:
            rebalance_s = back_ticks[0].ended - restarted_at
            shares = [
                len(log.ticks[-1].decided) if log.ticks else 0
                for i, log in enumerate(logs)
                if not fleet.processes[i].killed
            ]
            double = _decided_twice(logs, restarted_at + rebalance_s, ended, interval)
            rebalance_note = (
                f"restarted replica deciding after {rebalance_s:.0f} s; last tick's shares "
                f"{'/'.join(str(s) for s in shares)}; workload-intervals decided by two replicas "
                f"after that: {double}"
            )

    def per_tick(total: float) -> float | None:
        return total / done if done else None

    seconds = [t.seconds for t in ticks]
    # A process's first tick that decided anything reads the whole history; the others are its steady
    # state. Ticks before it (the reader not yet synced) decided nothing and took no time.
    firsts_by_process: list[float] = []
    rest: list[float] = []
    for log in logs:
        working = [k for k, t in enumerate(log.ticks) if t.decided]
        if working:
            firsts_by_process.append(log.ticks[working[0]].seconds)
            rest += [t.seconds for t in log.ticks[working[0] + 1 :]]
    errors = [e for log in logs for e in log.errors]
    causes: dict[str, int] = {}
    for log in logs:
        for cause, held in log.metrics_causes.items():
            causes[cause] = causes.get(cause, 0) + held
    return Result(
        workloads=n,
        replicas=args.replicas,
        shards=args.shards,
        mode="dry-run" if args.dry_run else "writing",
        minutes=round((ended - began) / 60, 2),
        interval_s=interval,
        backfill_s=round(backfill_s, 1),
        fitted_s=None if fitted_s is None else round(fitted_s, 1),
        fitted_note=note,
        first_tick_s=max(firsts_by_process) if firsts_by_process else None,
        all_decided_s=None if settled is None else round(settled - began, 1),
        tick_p50_s=percentile(rest or seconds, 0.5),
        tick_p95_s=percentile(rest or seconds, 0.95),
        tick_max_s=max(seconds) if seconds else None,
        ticks=done,
        ticks_due=sum(
            1 + int((min(p.ended or ended, ended) - log.ticks[0].began) // interval)
            for p, log in zip(fleet.processes, logs, strict=True)
            if log.ticks
        ),
        skipped_ticks=sum(log.skipped for log in logs),
        lease_rounds_late=sum(log.lease_rounds_late for log in logs),
        failed_ticks=sum(log.failed_ticks for log in logs),
        ticks_without_metrics=sum(log.ticks_without_metrics for log in logs),
        ticks_without_metrics_by_cause=dict(sorted(causes.items())),
        cpu_s_per_tick=per_tick(cpu_total),
        cpu_s_per_tick_second_half=cpu_half / ticks_half if ticks_half else None,
        peak_rss_mb=round(peak / 2**20, 1) if peak else None,
        peak_session_rss_mb=round(peak_session / 2**20, 1) if peak_session else None,
        peak_session_pss_mb=round(peak_pss / 2**20, 1) if peak_pss else None,
        tick_p50_fitted_s=percentile(fitted_ticks, 0.5),
        tick_p95_fitted_s=percentile(fitted_ticks, 0.95),
        cpu_cores_fitted=cores_fitted,
        prometheus_requests_per_tick_fitted=prom_fitted,
        prometheus_requests_per_tick=per_tick(prom_total),
        prometheus_requests_per_tick_second_half=prom_half / ticks_half if ticks_half else None,
        api_requests_per_tick=per_tick(len(mine)),
        api_requests_per_tick_second_half=(
            api_half / sum(1 for t in ticks if t.ended > half)
            if any(t.ended > half for t in ticks)
            else None
        ),
        api_requests_by_kind=dict(sorted(by_kind.items())),
        ticks_with_every_workload=every,
        acting_ticks=len(acting),
        late_decisions=late,
        max_decision_gap_s=None if max_gap is None else round(max_gap, 1),
        never_decided=never,
        writes=len(writes),
        workloads_written_by_two=two_writers,
        two_writer_examples=examples,
        takeover_s=None if takeover_s is None else round(takeover_s, 1),
        takeover_note=takeover_note,
        takeover_bound_s=bound_s,
        takeover_within_bound=within,
        rebalance_s=None if rebalance_s is None else round(rebalance_s, 1),
        rebalance_note=rebalance_note,
        handback_max_gap_s=None if back is None or back.max_gap_s is None else round(back.max_gap_s, 1),
        handback_max_ticks_undecided=None if back is None else back.max_ticks,
        handback_worst_workload=None if back is None else back.worst,
        handback_bound_ticks=None if back is None else HANDBACK_TICKS,
        handback_workloads_over_bound=None if back is None else back.over_bound,
        errors=errors[:10],
    )


def _decided_twice(logs: Sequence[ProcessLog], start: float, end: float, interval: float) -> int:
    """Workload-intervals in [start, end) in which two replicas decided the same workload."""
    count = 0
    slots = max(0, int((end - start) // interval))
    for k in range(slots):
        lo, hi = start + k * interval, start + (k + 1) * interval
        seen: dict[str, int] = {}
        for i, log in enumerate(logs):
            for ref in {ref for at, ref in log.decisions if lo <= at < hi}:
                seen[ref] = seen.get(ref, 0) | (1 << i)
        count += sum(1 for mask in seen.values() if mask & (mask - 1))
    return count


# --- one fleet size ---------------------------------------------------------------------------------


def measure(args: argparse.Namespace, n: int, tmp: Path, say: Any) -> Result:
    run_s = args.minutes * 60
    now = time.time()
    start = int((now - HISTORY_S - MARGIN_S) // SCRAPE_S * SCRAPE_S)
    end = now + run_s + 2 * MARGIN_S  # the controllers' start-up and stopping are not in the run
    points = int((end - start) // SCRAPE_S) + 1
    loads = fleet_loads(n, points, args.traces, args.seed)
    say(f"fleet {n}: backfilling {points} minutes of {n} workloads")
    clock = time.monotonic()
    tsdb = backfill(FleetDataset(start, loads), tmp / "prometheus")
    backfill_s = time.monotonic() - clock
    server = PromServer(tsdb)
    server.start(timeout_s=120)
    try:
        with FakeKube() as fake:
            fake.add_namespace(LEASE_NAMESPACE)
            for load in loads:
                fake.add_namespace(load.namespace)
                fake.add_deployment(
                    load.namespace,
                    load.name,
                    replicas=PODS,
                    annotations=load.annotations(),
                    cpu_request=load.cpu_request(),
                    memory_request=load.memory_request(),
                )
            kubeconfig = fake.write_kubeconfig(tmp / "kubeconfig")
            fleet = Fleet(args, kubeconfig, server.url, tmp)
            kill: tuple[float, float] | None = None
            try:
                began = time.time()
                say(f"fleet {n}: {args.replicas} controller(s) running for {args.minutes:g} min")
                fleet.start()
                if args.kill_one:
                    _sleep_until(began + KILL_AT * run_s)
                    victim = fleet.busiest(args.interval_s)
                    fleet.kill(victim)
                    killed_at = time.time()
                    say(f"fleet {n}: killed {victim}")
                    _sleep_until(began + RESTART_AT * run_s)
                    fleet.spawn(victim)
                    kill = (killed_at, time.time())
                    say(f"fleet {n}: restarted {victim}")
                _sleep_until(began + run_s)
                ended = time.time()
            finally:
                fleet.stop()
                if args.keep_logs is not None:
                    args.keep_logs.mkdir(parents=True, exist_ok=True)
                    for process in fleet.processes:
                        for kept in (process.log, process.log.with_suffix(".metrics.txt")):
                            if kept.exists():
                                shutil.copy(kept, args.keep_logs / f"fleet-{n}-{kept.name}")
            records = fake.requests
    finally:
        server.stop()
    return analyse(args, n, fleet, records, began, ended, backfill_s, kill)


def _sleep_until(moment: float) -> None:
    while (left := moment - time.time()) > 0:
        time.sleep(min(left, 1.0))


# --- output ------------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _verdict(within: bool | None) -> str:
    if within is None:
        return "cannot tell (nothing to take over, or the restart came first)"
    return "met" if within else "NOT met"


def _without_metrics(r: Result) -> str:
    if not r.ticks_without_metrics_by_cause:
        return str(r.ticks_without_metrics)
    causes = ", ".join(f"{k} {v}" for k, v in r.ticks_without_metrics_by_cause.items())
    return f"{r.ticks_without_metrics} ({causes})"


def print_table(results: Sequence[Result]) -> None:
    for r in results:
        shards = f", {r.shards} shards" if r.shards else ""
        print(
            f"fleet of {r.workloads}: {r.replicas} replica(s){shards}, {r.mode}, "
            f"{r.minutes:g} min at {r.interval_s:g} s ticks (backfill {r.backfill_s:g} s)"
        )
        rows = [
            ("every workload has a fitted model after", r.fitted_note),
            ("first tick that decided anything", f"{_fmt(r.first_tick_s, 1)} s"),
            ("every workload decided once, from the start", f"{_fmt(r.all_decided_s, 1)} s"),
            (
                "tick wall time p50 / p95 / max",
                f"{_fmt(r.tick_p50_s)} / {_fmt(r.tick_p95_s)} / {_fmt(r.tick_max_s)} s",
            ),
            ("ticks done / due", f"{r.ticks} / {r.ticks_due}"),
            ("skipped ticks (scheduler), failed ticks", f"{r.skipped_ticks}, {r.failed_ticks}"),
            ("lease rounds late or skipped (scheduler)", str(r.lease_rounds_late)),
            ("ticks held without metrics (Prometheus failed), by cause", _without_metrics(r)),
            (
                "CPU per tick, whole run / second half",
                f"{_fmt(r.cpu_s_per_tick)} / {_fmt(r.cpu_s_per_tick_second_half)} s",
            ),
            (
                "once every model is fitted: tick p50 / p95, CPU, Prometheus requests per tick",
                f"{_fmt(r.tick_p50_fitted_s)} / {_fmt(r.tick_p95_fitted_s)} s, "
                f"{_fmt(r.cpu_cores_fitted)} cores, {_fmt(r.prometheus_requests_per_tick_fitted)}",
            ),
            (
                "peak RSS: controller process / with its workers (summed RSS, PSS)",
                f"{_fmt(r.peak_rss_mb, 0)} / {_fmt(r.peak_session_rss_mb, 0)}, "
                f"{_fmt(r.peak_session_pss_mb, 0)} MB",
            ),
            (
                "Prometheus requests per tick, whole run / second half",
                f"{_fmt(r.prometheus_requests_per_tick)} / "
                f"{_fmt(r.prometheus_requests_per_tick_second_half)}",
            ),
            (
                "API requests per tick, whole run / second half",
                f"{_fmt(r.api_requests_per_tick)} / {_fmt(r.api_requests_per_tick_second_half)}",
            ),
            ("API requests by kind", ", ".join(f"{k} {v}" for k, v in r.api_requests_by_kind.items())),
            (
                "acting ticks that decided every workload",
                # A shard's replica decides only its own workloads; the gaps below say it for the set.
                "n/a (sharded)" if r.shards else f"{r.ticks_with_every_workload} / {r.acting_ticks}",
            ),
            (
                f"decisions more than {LATE_INTERVALS:g} intervals apart, longest gap",
                f"{r.late_decisions}, {_fmt(r.max_decision_gap_s, 1)} s",
            ),
            ("workloads never decided", str(r.never_decided)),
            ("workload writes", str(r.writes)),
        ]
        if r.workloads_written_by_two is not None:
            rows.append(("workloads written by two replicas at once", str(r.workloads_written_by_two)))
        if r.takeover_note:
            rows.append(("take-over after the kill", r.takeover_note))
        if r.takeover_bound_s is not None:
            rows.append(
                (
                    f"take-over within lease duration + {TAKEOVER_TICKS} ticks",
                    f"{r.takeover_bound_s:g} s: {_verdict(r.takeover_within_bound)}",
                )
            )
        if r.rebalance_note:
            rows.append(("after the restart", r.rebalance_note))
        if r.handback_bound_ticks is not None:
            rows.append(
                (
                    "hand-back, restart to end: longest without a decision",
                    "n/a (no decision or tick after the restart)"
                    if r.handback_max_gap_s is None
                    else f"{r.handback_max_gap_s:.1f} s, {r.handback_max_ticks_undecided} tick(s) "
                    f"undecided ({r.handback_worst_workload})",
                )
            )
            rows.append(
                (
                    f"hand-back: workloads undecided more than {r.handback_bound_ticks} ticks",
                    str(r.handback_workloads_over_bound),
                )
            )
        width = max(len(label) for label, _ in rows)
        for label, value in rows:
            print(f"  {label:<{width}}  {value}")
        for example in r.two_writer_examples:
            print(f"  two writers: {example}")
        for error in r.errors:
            print(f"  controller error: {error}")


# --- flags -------------------------------------------------------------------------------------------


def sizes(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of counts") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: every count must be at least 1")
    return values


count = whole("a whole number of at least 1", lambda v: v >= 1)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = Parser(
        prog="fleet.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workloads", type=sizes, default=[100], help="fleet sizes, e.g. 100,300,1000")
    parser.add_argument("--minutes", type=positive, default=10.0, help="wall time per fleet size")
    parser.add_argument("--interval", type=duration, default="30s", help="the controllers' --interval")
    parser.add_argument("--replicas", type=count, default=1, help="controller processes")
    parser.add_argument("--shards", type=count, default=None, help="the controllers' --shards")
    parser.add_argument("--kill-one", action="store_true", help="kill a replica mid-run, restart it")
    parser.add_argument("--dry-run", action="store_true", help="run the controllers with --dry-run")
    parser.add_argument("--seed", type=int, default=7, help="draws each workload's trace stretch")
    parser.add_argument("--traces", type=Path, default=DEFAULT_TRACES, help="folder of CSV traces")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    parser.add_argument("--keep-logs", type=Path, default=None, help="copy the controllers' logs here")
    args = parser.parse_args(argv)
    args.interval_s = args.interval.total_seconds()
    try:
        if args.shards is not None and args.replicas < 2:
            raise UsageError("--shards needs --replicas of 2 or more")
        if args.kill_one and args.replicas < 2:
            raise UsageError("--kill-one needs --replicas of 2 or more")
        if args.kill_one and args.minutes * 60 * (RESTART_AT - KILL_AT) < 4 * args.interval_s:
            raise UsageError(
                "--kill-one needs --minutes long enough for four ticks between kill and restart"
            )
        if args.minutes * 60 < args.interval_s:
            raise UsageError("--minutes must cover at least one --interval")
        if not args.traces.is_dir():
            raise UsageError(f"--traces: no folder {args.traces}")
        if "sealed" in args.traces.resolve().parts:
            raise UsageError("--traces: the sealed traces are kept for the final check")
        if args.shards is not None and not run_supports_shards():
            raise UsageError("--shards: this predictive-autoscaler's `run` has no --shards flag yet")
    except UsageError as error:
        parser.error(str(error))
    return args


@contextlib.contextmanager
def terminated_on_sigterm() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the `finally` blocks stop every process and remove the files."""

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("prometheus") is None or shutil.which("promtool") is None:
        print(MISSING_MESSAGE, file=sys.stderr)
        return 1
    if not CONTROLLER.exists():
        print(f"fleet.py: {CONTROLLER} is missing; install the project first", file=sys.stderr)
        return 1

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    results: list[Result] = []
    try:
        with terminated_on_sigterm():
            for n in args.workloads:
                with tempfile.TemporaryDirectory(prefix=f"fleet-{n}-") as tmp:
                    results.append(measure(args, n, Path(tmp), say))
    except UsageError as error:
        print(f"fleet.py: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        say("fleet.py: interrupted; every process stopped and temporary files removed")
        return 130
    if args.json:
        print(json.dumps({"results": [asdict(r) for r in results]}, indent=2))
    else:
        print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
