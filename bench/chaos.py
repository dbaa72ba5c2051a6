"""Chaos: random faults of every class against two live controller replicas that share a dozen
Deployments through a Lease; prints what went wrong, asserts nothing.

Run: ``OPENBLAS_NUM_THREADS=1 python bench/chaos.py [--minutes 720] [--seed 19]``

The parts are the real ones the tests use: the fake API server (``tests/fakekube``), which the
official client talks to over HTTP, with real watches behind the informers; a real ``prometheus``
serving a backfilled dataset whose load moves (a four-hour wave and a half-hour one), reached through
the fault proxy (``tests/faultproxy.py``); the real ``PrometheusSource``, the per-target forecaster,
the predictive policy, the actuator and the recorder; two ``LeaderElector`` replicas on one Lease.

Time is the controllers' own: a manual clock moves 5 s a step; the electors run every step and the
replicas tick every 30 s (``--minutes`` of it). Between ticks, at random (``--seed``), one fault at a
time starts or ends, people change Deployments, and one Deployment is poisoned for good (a CPU
request so small that load ÷ target overflows):

* Prometheus: 5xx, query rejected, connection reset, slower than the timeout, empty answers, NaN,
  only old points, one namespace's series missing;
* API server: scale writes answered 5xx, 409 or 403, scale writes held up for seconds, the
  Deployments watch failing, a whole outage, Lease writes failing (the leader steps down and the
  lease may change hands), and the leading replica crashing (it comes back with nothing in memory);
* people: opting a Deployment out or back in, switching dry-run, scaling it by hand; during API
  faults too, when the controllers' view cannot follow, and raising three Deployments to 20 pods
  as each Prometheus fault begins (only the data could say that fewer would do).

It prints, from the server's own request log and the bench's record of what was true when:

* blind scale-downs: a Deployment scaled down in a tick during which Prometheus could not give its
  load;
* writes to an opted-out or dry-run Deployment, and workload writes without a resourceVersion
  precondition (which could land on a state they were not decided from);
* writes from a replica that does not hold the lease when the write lands;
* ticks lost to one target's error: a tick that raised, or in which another target failed;
* recovery after each fault ends, in ticks, p50/p95 per class and overall: until the leading
  replica's tick is healthy again (metrics for every target, a current view, writes going through).
  A Deployment resting after a 403 (five minutes, by design) counts as healthy.

Real time only paces the background threads (watches, held-up writes); every decision is made on the
manual clock, and the counts do not depend on how busy the machine is. Needs ``prometheus`` and
``promtool`` (``scripts/ensure-prometheus``).
"""

from __future__ import annotations

import argparse
import functools
import logging
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autoscaler.actuation.leader import LeaderElector, LeaseSettings
from autoscaler.config import PREFIX
from autoscaler.forecast_stage import ForecastSettings, ModelForecaster
from autoscaler.kube import Kind, Kube, connect
from autoscaler.model import TargetRef
from autoscaler.policy import PredictivePolicy, Reason
from autoscaler.sources.informers import Informer, Informers
from autoscaler.sources.prometheus import PrometheusSettings, PrometheusSource
from autoscaler.stages import ActOutcome, TickReport
from autoscaler.wiring import Controller, cluster_stages
from forecasting import ModelName
from tests.fakekube import FakeKube
from tests.faultproxy import Fault, FaultProxy
from tests.promserver import MISSING_MESSAGE, Dataset, Pod, PromServer, Workload, backfill

STEP_S = 5.0
TICK_S = 30.0
STEPS_PER_TICK = int(TICK_S / STEP_S)
# A fixed time, so that the same seed replays the same data and faults.
ANCHOR = 1_780_000_000.0
NAMESPACES = ("team-0", "team-1", "team-2", "team-3")
LEASE = LeaseSettings(
    "ops", "predictive-autoscaler", lease_duration_s=15, renew_deadline_s=10, retry_period_s=2
)
WRITE_TIMEOUT_S = LEASE.lease_duration_s - LEASE.renew_deadline_s
ANNOTATIONS = {
    PREFIX + "enabled": "true",
    PREFIX + "metrics": "cpu,requests",
    PREFIX + "target-requests-per-pod": "4",
    PREFIX + "target-utilization": "50",
    PREFIX + "startup-seconds": "60",
    # Short, so that a scale-down on missing data would show at once.
    PREFIX + "scale-down-stabilization-seconds": "30",
}


class FaultClass(Enum):
    PROM_ERROR = "prometheus-5xx"
    PROM_REJECTED = "prometheus-rejected"
    PROM_RESET = "prometheus-reset"
    PROM_SLOW = "prometheus-slow"
    PROM_EMPTY = "prometheus-empty"
    PROM_NAN = "prometheus-nan"
    PROM_STALE = "prometheus-stale"
    PROM_PARTIAL = "prometheus-one-namespace-missing"
    API_SCALE_5XX = "api-scale-5xx"
    API_SCALE_409 = "api-scale-409"
    API_SCALE_403 = "api-scale-403"
    API_SCALE_SLOW = "api-scale-held-up"
    API_WATCH = "api-watch-failing"
    API_OUTAGE = "api-outage"
    API_LEASE = "api-lease-writes-failing"
    CRASH = "leader-crash"


PROMETHEUS_FAULTS = {
    FaultClass.PROM_ERROR: Fault.ERROR,
    FaultClass.PROM_REJECTED: Fault.BAD_QUERY,
    FaultClass.PROM_RESET: Fault.RESET,
    FaultClass.PROM_SLOW: Fault.SLOW,
    FaultClass.PROM_EMPTY: Fault.EMPTY,
    FaultClass.PROM_NAN: Fault.NAN,
    FaultClass.PROM_STALE: Fault.STALE,
    FaultClass.PROM_PARTIAL: Fault.PARTIAL,
}


@dataclass
class ActiveFault:
    kind: FaultClass
    began: int  # tick
    ends: int  # the first tick without it
    namespace: str | None = None  # the one it covers, where it covers one

    def covers(self, ref: TargetRef) -> bool:
        return self.namespace is None or self.namespace == ref.namespace


def chaos_dataset(start: float, anchor: float, deployments: int) -> Dataset:
    workloads = []
    for i in range(deployments):
        name = f"svc-{i:02d}"
        pods = tuple(Pod(f"{name}-5b7c-{k}", f"{name}-5b7c", start, anchor + 1) for k in range(2))
        workloads.append(
            Workload(
                NAMESPACES[i % len(NAMESPACES)],
                name,
                pods,
                0.1 + 0.02 * (i % 9),
                60e6 * (1 + i % 3),
                4.0 + 3.0 * (i % 7),
                phase=i / 2,
            )
        )
    return Dataset(
        start,
        anchor,
        30,
        tuple(workloads),
        detailed=False,
        period_s=4 * 3600.0,
        extra_waves=((1800.0, 0.3),),
    )


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@dataclass
class Replica:
    """One controller process: its client, caches, models and memory."""

    name: str
    kube: Kube
    elector: LeaderElector
    informers: Informers
    source: PrometheusSource
    controller: Controller
    down_until: int = -1  # tick at which a crashed replica comes back

    def stop(self) -> None:
        self.informers.stop()
        self.source.close()


def start_replica(name: str, kubeconfig: Path, prometheus_url: str, clock: Clock) -> Replica:
    kube = connect(
        kubeconfig, user_agent=f"predictive-autoscaler/{name}", write_timeout_s=WRITE_TIMEOUT_S
    )
    elector = LeaderElector(kube, LEASE, name, clock, lambda: ANCHOR + clock.t)
    quick = functools.partial(Informer, backoff_s=0.05)
    informers = Informers(kube, None, watch_timeout_s=60, make=quick)
    informers.start()
    informers.wait_synced(10)
    settings = PrometheusSettings(
        url=prometheus_url, timeout_s=1.0, retries=0, step_s=60, history_s=3600.0, cache_s=3600.0
    )
    source = PrometheusSource(settings, sleep=lambda _: None)
    stages = cluster_stages(
        kube,
        informers,
        source,
        ModelForecaster(ForecastSettings(model=ModelName.NAIVE)),
        PredictivePolicy(interval_s=TICK_S),
        may_act=elector.is_leader,
    )
    controller = Controller(stages, may_act=elector.is_leader)
    return Replica(name, kube, elector, informers, source, controller)


@dataclass
class Tally:
    blind_scale_downs: list[str] = field(default_factory=list)
    opted_out_writes: list[str] = field(default_factory=list)
    unconditioned_writes: int = 0
    non_holder_writes: list[str] = field(default_factory=list)
    lost_ticks: list[str] = field(default_factory=list)
    recoveries: dict[FaultClass, list[int]] = field(default_factory=dict)
    faults: dict[FaultClass, int] = field(default_factory=dict)
    leader_ticks: int = 0
    idle_ticks: int = 0
    scale_writes: int = 0
    hand_overs: int = 0


class Bench:
    def __init__(
        self,
        args: argparse.Namespace,
        fake: FakeKube,
        proxy: FaultProxy,
        kubeconfig: Path,
        dataset: Dataset,
    ) -> None:
        self.args = args
        self.draw = random.Random(args.seed)
        self.fake = fake
        self.proxy = proxy
        self.kubeconfig = kubeconfig
        self.refs = [w.ref for w in dataset.workloads]
        self.poison = self.refs[-1]
        self.start = dataset.anchor - args.minutes * 60.0
        self.clock = Clock(self.start)
        self.replicas = {n: start_replica(n, kubeconfig, proxy.url, self.clock) for n in ("a", "b")}
        self.fault: ActiveFault | None = None
        self.opted_out: set[TargetRef] = set()
        self.dry: set[TargetRef] = set()
        self.tally = Tally()
        # Recovery: faults that ended and the tick they ended at, until a healthy tick.
        self.recovering: list[ActiveFault] = []
        self.holder_log: list[tuple[float, str]] = [(time.time(), "")]

    # --- people and faults ------------------------------------------------------------------------

    def edit(self, ref: TargetRef, change: Callable[[dict[str, object]], None]) -> None:
        deployment = self.fake.get_object("Deployment", ref.namespace, ref.name)
        assert deployment is not None
        change(deployment)
        self.fake.put_object(deployment)

    def people(self, tick: int) -> None:
        if self.draw.random() < 0.08:
            ref = self.draw.choice(self.refs[:-1])
            what = self.draw.choice(["opt", "dry", "scale"])
            if what == "opt":
                out = ref not in self.opted_out
                self.opted_out.symmetric_difference_update({ref})
                self.edit(ref, _annotate("enabled", "false" if out else "true"))
            elif what == "dry":
                dry = ref not in self.dry
                self.dry.symmetric_difference_update({ref})
                self.edit(ref, _annotate("dry-run", "true" if dry else "false"))
            else:
                count = self.draw.randint(1, 25)
                self.edit(ref, _scale(count))

    def begin_fault(self, tick: int) -> None:
        kind = self.draw.choice(list(FaultClass))
        fault = ActiveFault(kind, tick, tick + self.draw.randint(1, 4))
        self.tally.faults[kind] = self.tally.faults.get(kind, 0) + 1
        if kind in PROMETHEUS_FAULTS:
            options: dict[str, object] = {}
            if kind is FaultClass.PROM_SLOW:
                options["delay_s"] = 1.3
            elif kind is FaultClass.PROM_STALE:
                options["stale_s"] = 600.0
            elif kind is FaultClass.PROM_PARTIAL:
                fault.namespace = self.draw.choice(NAMESPACES)
                options["drop"] = {"namespace": fault.namespace}
            self.proxy.set(PROMETHEUS_FAULTS[kind], **options)  # type: ignore[arg-type]
            # Someone had just raised a few: the load says fewer, and only data can say so.
            for ref in self.draw.sample(self.refs[:-1], 3):
                self.edit(ref, _scale(20))
        elif kind is FaultClass.API_SCALE_5XX:
            self.fake.inject("PATCH", r"/scale$", status=500, times=None)
        elif kind is FaultClass.API_SCALE_409:
            self.fake.inject("PATCH", r"/scale$", status=409, times=None)
        elif kind is FaultClass.API_SCALE_403:
            self.fake.inject("PATCH", r"/scale$", status=403, times=None)
        elif kind is FaultClass.API_SCALE_SLOW:
            self.fake.slow(r"/scale$", self.draw.uniform(0.5, 2 * WRITE_TIMEOUT_S), times=2)
        elif kind is FaultClass.API_WATCH:
            self.fake.inject("GET", r"/deployments$", status=500, times=None)
            self.fake.drop_watches()
        elif kind is FaultClass.API_OUTAGE:
            self.fake.fail_all(503)
        elif kind is FaultClass.API_LEASE:
            self.fake.inject("PUT", r"/leases/", status=500, times=None)
        elif kind is FaultClass.CRASH:
            leader = self.leader()
            if leader is not None:
                leader.down_until = fault.ends
                leader.stop()
        self.fault = fault
        # People act during faults too, when a controller cannot see them.
        if kind in (FaultClass.API_WATCH, FaultClass.API_OUTAGE):
            self.people(tick)

    def end_fault(self, tick: int) -> None:
        fault = self.fault
        assert fault is not None
        self.proxy.heal()
        self.fake.heal()
        self.fault = None
        for name, replica in list(self.replicas.items()):
            if replica.down_until >= 0 and replica.down_until <= tick:
                self.replicas[name] = start_replica(name, self.kubeconfig, self.proxy.url, self.clock)
        self.recovering.append(ActiveFault(fault.kind, fault.began, tick, fault.namespace))

    # --- the run ------------------------------------------------------------------------------------

    def leader(self) -> Replica | None:
        leading = [r for r in self.replicas.values() if r.down_until < 0 and r.elector.is_leader()]
        return leading[0] if leading else None

    def settle(self) -> None:
        """Let the watches deliver what changed since the last tick (30 s pass between ticks in a
        cluster): wait until every running replica's cache shows the server's Deployments, unless
        a fault keeps it from doing so."""
        if self.fault is not None and self.fault.kind in (FaultClass.API_WATCH, FaultClass.API_OUTAGE):
            return
        truth = {
            (d["metadata"]["namespace"], d["metadata"]["name"]): d["metadata"]["resourceVersion"]
            for d in self.fake.list_objects("Deployment")
        }
        deadline = time.monotonic() + 5.0
        for replica in self.replicas.values():
            if replica.down_until >= 0:
                continue
            while time.monotonic() < deadline:
                seen = {
                    (d["metadata"]["namespace"], d["metadata"]["name"]): d["metadata"]["resourceVersion"]
                    for d in replica.informers.objects(Kind.DEPLOYMENT)
                }
                if seen == truth and not replica.informers.stale():
                    break
                time.sleep(0.005)

    def elect(self) -> None:
        running = [r for r in self.replicas.values() if r.down_until < 0]
        self.draw.shuffle(running)
        for replica in running:
            replica.elector.try_acquire_or_renew()
        lease = self.fake.get_object("Lease", LEASE.namespace, LEASE.name)
        holder = "" if lease is None else str(lease["spec"].get("holderIdentity") or "")
        if holder != self.holder_log[-1][1]:
            if self.holder_log[-1][1]:
                self.tally.hand_overs += 1
            self.holder_log.append((time.time(), holder))

    def replicas_now(self) -> dict[TargetRef, int]:
        return {
            ref: int(
                (self.fake.get_object("Deployment", ref.namespace, ref.name) or {})["spec"]["replicas"]
            )
            for ref in self.refs
        }

    def run(self) -> None:
        ticks = int(self.args.minutes * 60 / TICK_S)
        for tick in range(ticks):
            if self.fault is not None and self.fault.ends <= tick:
                self.end_fault(tick)
            # One fault at a time, and the next only once the last one's recovery is measured.
            if self.fault is None and not self.recovering and self.draw.random() < 0.3:
                self.begin_fault(tick)
            self.people(tick)
            self.settle()
            for _ in range(STEPS_PER_TICK):
                self.clock.t += STEP_S
                self.elect()
            before = self.replicas_now()
            reports: dict[str, TickReport] = {}
            for name, replica in self.replicas.items():
                if replica.down_until >= 0:
                    continue
                try:
                    reports[name] = replica.controller.tick(self.clock.t)
                except Exception as error:  # the bench counts it; a controller's loop would go on
                    self.tally.lost_ticks.append(f"tick {tick} of {name}: {error!r}")
            after = self.replicas_now()
            self.judge(tick, before, after, reports)

    def judge(
        self,
        tick: int,
        before: dict[TargetRef, int],
        after: dict[TargetRef, int],
        reports: dict[str, TickReport],
    ) -> None:
        fault = self.fault
        prometheus_down = fault is not None and fault.kind in PROMETHEUS_FAULTS
        for ref in self.refs:
            if after[ref] != before[ref] and (ref in self.opted_out or ref in self.dry):
                why = "opted out" if ref in self.opted_out else "in dry-run"
                self.tally.opted_out_writes.append(
                    f"tick {tick}: {ref} {before[ref]}→{after[ref]}, {why}"
                )
            if after[ref] < before[ref] and prometheus_down and fault is not None and fault.covers(ref):
                self.tally.blind_scale_downs.append(
                    f"tick {tick}: {ref} {before[ref]}→{after[ref]} during {fault.kind.value}"
                )
        acting = [report for report in reports.values() if report.acted]
        if not acting:
            self.tally.idle_ticks += 1
        else:
            self.tally.leader_ticks += 1
        for report in acting:
            broken = [ref for ref in report.failed if ref != self.poison]
            if broken:
                self.tally.lost_ticks.append(f"tick {tick}: {broken} failed beside the poisoned one")
        healthy = bool(acting) and all(self.healthy(report) for report in acting)
        for done in list(self.recovering):
            if healthy:
                self.tally.recoveries.setdefault(done.kind, []).append(tick - done.ends)
                self.recovering.remove(done)

    def healthy(self, report: TickReport) -> bool:
        if not report.metrics_available or report.stale:
            return False
        decided = {d.ref: d for d in report.decisions}
        expected = [r for r in self.refs if r != self.poison and r not in self.opted_out]
        for ref in expected:
            decision = decided.get(ref)
            if decision is None:
                if ref in report.cooling:
                    continue  # resting after a 403, by design
                return False
            if Reason.METRICS_MISSING in decision.reasons:
                return False
            if report.outcomes.get(ref) in (ActOutcome.UNAVAILABLE, ActOutcome.CONFLICT):
                return False
        return True

    # --- from the server's request log ---------------------------------------------------------------

    def audit(self) -> None:
        for record in self.fake.requests:
            if record.method != "PATCH" or record.status != 200 or "/deployments/" not in record.path:
                continue
            identity = record.user_agent.rsplit("/", 1)[-1]
            holder = ""
            for at, who in self.holder_log:
                if at <= record.answered:
                    holder = who
            if identity in self.replicas and holder != identity:
                self.tally.non_holder_writes.append(f"{record.path} by {identity} under {holder!r}")
            if record.path.endswith("/scale"):
                self.tally.scale_writes += 1
                body = record.body if isinstance(record.body, dict) else {}
                if not (body.get("metadata") or {}).get("resourceVersion"):
                    self.tally.unconditioned_writes += 1


def _annotate(key: str, value: str) -> Callable[[dict[str, object]], None]:
    def change(deployment: dict[str, object]) -> None:
        meta = deployment["metadata"]
        assert isinstance(meta, dict)
        meta.setdefault("annotations", {})[PREFIX + key] = value

    return change


def _scale(count: int) -> Callable[[dict[str, object]], None]:
    def change(deployment: dict[str, object]) -> None:
        spec = deployment["spec"]
        assert isinstance(spec, dict)
        spec["replicas"] = count

    return change


def _percentile(values: list[int], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(share * len(ordered)))])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=720.0, help="controller time to run")
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--deployments", type=int, default=12)
    args = parser.parse_args()
    # The controllers' warnings and errors are the faults at work; the figures below say what counts.
    logging.disable(logging.CRITICAL)
    if args.minutes <= 0 or args.deployments < 2:
        parser.error("--minutes must be positive and --deployments at least 2")
    if shutil.which("prometheus") is None or shutil.which("promtool") is None:
        raise SystemExit(MISSING_MESSAGE)
    wall = time.monotonic()
    start = ANCHOR - args.minutes * 60.0 - 2 * 3600.0
    dataset = chaos_dataset(start, ANCHOR, args.deployments)
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        server = PromServer(backfill(dataset, Path(tmp) / "data"))
        server.start()
        try:
            with FakeKube() as fake, FaultProxy(server.url) as proxy:
                fake.add_namespace(LEASE.namespace)
                for i, ref in enumerate(w.ref for w in dataset.workloads):
                    poisoned = i == len(dataset.workloads) - 1
                    fake.add_deployment(
                        ref.namespace,
                        ref.name,
                        replicas=2,
                        annotations=ANNOTATIONS,
                        cpu_request="1e-320" if poisoned else "250m",
                    )
                kubeconfig = fake.write_kubeconfig(Path(tmp) / "kubeconfig")
                bench = Bench(args, fake, proxy, kubeconfig, dataset)
                try:
                    bench.run()
                finally:
                    for replica in bench.replicas.values():
                        replica.stop()
                bench.audit()
        finally:
            server.stop()
    report(bench.tally, args, time.monotonic() - wall)


def report(tally: Tally, args: argparse.Namespace, wall_s: float) -> None:
    ticks = int(args.minutes * 60 / TICK_S)
    print(
        f"chaos: {args.minutes:g} controller minutes ({ticks} ticks), seed {args.seed}, "
        f"{args.deployments} Deployments (one poisoned), two replicas"
    )
    counts = sorted((kind.value, n) for kind, n in tally.faults.items())
    print(f"faults: {sum(tally.faults.values())} ({', '.join(f'{k} {n}' for k, n in counts)})")
    print(
        f"ticks acted on: {tally.leader_ticks}, without a leader: {tally.idle_ticks}; "
        f"lease hand-overs: {tally.hand_overs}; scale writes: {tally.scale_writes}"
    )
    print(f"blind scale-downs:                         {len(tally.blind_scale_downs)}")
    print(f"writes to an opted-out or dry-run workload: {len(tally.opted_out_writes)}")
    print(f"workload writes without a precondition:    {tally.unconditioned_writes}")
    print(f"writes landed from a non-holder:           {len(tally.non_holder_writes)}")
    print(f"ticks lost to one target's error:          {len(tally.lost_ticks)}")
    every: list[int] = []
    print("recovery after a fault ends, ticks (p50 / p95 / max, faults):")
    for kind in sorted(tally.recoveries, key=lambda k: k.value):
        values = tally.recoveries[kind]
        every.extend(values)
        print(
            f"  {kind.value:<34} {_percentile(values, 0.5):>4.0f} / {_percentile(values, 0.95):>4.0f}"
            f" / {max(values):>4d}  ({len(values)})"
        )
    print(
        f"  {'all':<34} {_percentile(every, 0.5):>4.0f} / {_percentile(every, 0.95):>4.0f}"
        f" / {max(every, default=0):>4d}  ({len(every)})"
    )
    for label, items in (
        ("blind", tally.blind_scale_downs),
        ("opted-out", tally.opted_out_writes),
        ("non-holder", tally.non_holder_writes),
        ("lost", tally.lost_ticks),
    ):
        for item in items[:5]:
            print(f"  {label}: {item}")
    print(f"wall time: {wall_s:.0f} s (not a figure of the run; the counts do not depend on it)")


if __name__ == "__main__":
    main()
