"""`predictive-autoscaler run`: builds the concrete stages (`wiring`) and runs the tick on a schedule.

APScheduler (3.x) calls the tick on an interval with one instance at a time: a tick that overruns
makes the next one late, and late runs are coalesced into one, never stacked. Leader election, when
enabled, renews the Lease (or the shard Leases, `autoscaler.actuation.shards`) on its own schedule
so a slow tick cannot cost the lease; a round that gains shards runs the tick at once rather than
at its next scheduled time (`EarlyTicks`). The loop never dies of an exception in a tick: it is logged
and the next tick starts afresh. Stopping (SIGTERM) waits for the running tick, releases the
leases, and returns.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED
from apscheduler.executors.base import MaxInstancesReachedError
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from autoscaler.actuation.leader import LeaseSettings
from autoscaler.actuation.shards import ShardElector
from autoscaler.fitting import PooledFitter, default_workers, process_pool
from autoscaler.forecast_stage import ModelForecaster
from autoscaler.kube import connect
from autoscaler.observability.health import HealthServer
from autoscaler.observability.telemetry import Telemetry
from autoscaler.policy import PredictivePolicy
from autoscaler.sources.informers import Informers
from autoscaler.sources.prometheus import PrometheusSettings, PrometheusSource
from autoscaler.tick_trigger import TickTrigger
from autoscaler.wiring import Controller, cluster_stages
from forecasting import ArimaConfig, Forecaster, ModelName, make_forecaster

__all__ = ["TICK_JOB", "EarlyTicks", "RunSettings", "default_identity", "run_controller"]

log = logging.getLogger(__name__)


# In a cluster a selection that the work budget allows but a starved CPU drags out must not hold up
# the tick; the simulator and the benches have no such guard, so their figures never depend on load.
_FIT_GUARD_S = 5.0


def _guarded_model(name: ModelName) -> Forecaster:
    """A model for the controller: the defaults, with a wall-clock guard on ARIMA's order selection."""
    return make_forecaster(name, ArimaConfig(fit_guard_s=_FIT_GUARD_S))


def default_identity() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, slots=True)
class RunSettings:
    kubeconfig: Path | None
    namespaces: tuple[str, ...]
    interval_s: float
    prometheus: PrometheusSettings
    dry_run: bool
    metrics_port: int | None
    leader_elect: bool
    lease: LeaseSettings
    identity: str
    # How long the reader waits for its first lists before the first tick gives up on this round.
    sync_timeout_s: float = 30.0
    # Shards of the fleet, one Lease each (with election); one is the single leader's Lease.
    shards: int = 1


# /healthz fails once no tick has ended for this many intervals (and never sooner than the floor,
# since a tick that fits many models at once may take a while).
STALE_TICKS = 5
STALE_FLOOR_S = 120.0

TICK_JOB = "tick"


class EarlyTicks:
    """Runs the tick early when a lease round gains shards (`autoscaler.tick_trigger`): the tick
    job's next run moves to now, and the ticks after it follow at the interval from there.

    One lock orders the rounds' decisions, the ticks' starts (as the scheduler hands the tick to a
    thread, `_Executor`) and their ends (once the scheduler no longer counts it running), so a run
    asked for while a tick runs is asked for at that tick's end instead, and never skipped with
    APScheduler's "maximum number of running instances" warning. Only a tick the scheduler starts
    between a decision and the move can meet the early run; that tick started after the gain and
    decides the new shards, so the early run is dropped quietly."""

    def __init__(self) -> None:
        # Reentrant: the scheduler's thread that hands a tick over under this lock hears it end
        # there (`_job_done`) when it ends at once.
        self._lock = threading.Condition(threading.RLock())
        self._trigger = TickTrigger()
        self._asked: set[datetime] = set()  # early runs' times, until the scheduler reaches them
        self._moving = 0  # early runs asked for and not yet moved to
        self._stopping = False
        self._scheduler: Any = None

    def scheduler(self) -> Any:
        """A BackgroundScheduler (UTC) whose job `TICK_JOB` this moves."""
        scheduler = BackgroundScheduler(timezone=UTC, executors={"default": _Executor(self)})
        scheduler.add_listener(self._job_done, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)
        self._scheduler = scheduler
        return scheduler

    def round_done(self, held: Iterable[int]) -> None:
        """A lease round ended holding `held` (the first one too; not one that failed)."""
        with self._lock:
            gained = self._trigger.round_done(held)
            if gained is None or self._stopping:
                return
            at = self._ask() if gained.wake_now else None
        log.info(
            "shards gained: ticking %s",
            "now" if gained.wake_now else "when the running tick ends",
            extra={
                "event": "shards_gained",
                "shards": sorted(gained.shards),
                "tick": "now" if gained.wake_now else "after_running",
            },
        )
        if at is not None:
            self._move(at)

    def stop(self) -> None:
        """No more early runs. Called before the scheduler's shutdown, which holds the job store
        while it waits for the running jobs: returns once no move is under way."""
        with self._lock:
            self._stopping = True
            self._lock.wait_for(lambda: self._moving == 0)

    def submit_tick(self, submit: Callable[[], None], run_times: list[datetime]) -> None:
        """The scheduler hands the tick to a thread (`submit`)."""
        with self._lock:
            early = not self._asked.isdisjoint(run_times)
            self._asked.difference_update(run_times)
            try:
                submit()
            except MaxInstancesReachedError:
                if not early:
                    raise  # a tick that overran: the next one is skipped, as ever
                log.debug("early tick dropped: a tick started since the shards were gained")
                return
            self._trigger.tick_started()

    def _job_done(self, event: Any) -> None:
        if event.job_id != TICK_JOB:
            return
        with self._lock:
            at = self._ask() if self._trigger.tick_ended() else None
        if at is not None:
            log.debug("ticking now for the shards gained while the last tick ran")
            self._move(at)

    def _ask(self) -> datetime | None:
        """An early run's time (under the lock); None once stopping."""
        if self._stopping:
            return None
        at = datetime.now(UTC)
        # A run asked for is reached at once, unless another move overtook it: forget those.
        self._asked = {t for t in self._asked if t > at - timedelta(hours=1)}
        self._asked.add(at)
        self._moving += 1
        return at

    def _move(self, at: datetime) -> None:
        try:
            self._scheduler.modify_job(TICK_JOB, next_run_time=at)
        finally:
            with self._lock:
                self._moving -= 1
                self._lock.notify_all()


class _Executor(ThreadPoolExecutor):  # type: ignore[misc]  # APScheduler has no type hints
    """APScheduler's default executor, telling `EarlyTicks` when it hands the tick to a thread."""

    def __init__(self, early: EarlyTicks) -> None:
        super().__init__()
        self._early = early

    def submit_job(self, job: Any, run_times: list[datetime]) -> None:
        submit = super().submit_job
        if job.id == TICK_JOB:
            self._early.submit_tick(lambda: submit(job, run_times), run_times)
        else:
            submit(job, run_times)


def run_controller(
    settings: RunSettings, stop: threading.Event, telemetry: Telemetry | None = None
) -> int:
    """Run until `stop` is set; the exit status."""
    telemetry = telemetry if telemetry is not None else Telemetry()
    # A leader acts only within the renew deadline of its last renewal, and a write it starts is
    # given up before the lease duration has passed since then: before another replica may take
    # the lease over. What the API server still holds past that carries a resourceVersion
    # precondition and can only land on the very state it was decided from.
    write_timeout_s = (
        settings.lease.lease_duration_s - settings.lease.renew_deadline_s
        if settings.leader_elect
        else None
    )
    kube = connect(
        settings.kubeconfig,
        user_agent=f"predictive-autoscaler/{settings.identity}",
        on_error=telemetry.kube_error,
        write_timeout_s=write_timeout_s,
    )
    # Histories are read beside the ticks: a fleet's first reads never hold a decision.
    source = PrometheusSource(
        settings.prometheus, on_query=telemetry.query_done, background_history=True
    )
    informers = Informers(kube, settings.namespaces or None)
    elector = (
        ShardElector(kube, settings.lease, settings.shards, settings.identity, time.monotonic, time.time)
        if settings.leader_elect
        else None
    )
    may_act = elector.holds_any if elector is not None else lambda: True
    # Models are fitted beside the tick, one process per CPU; the tick only submits and collects.
    workers = default_workers()
    fitter = PooledFitter(lambda: process_pool(workers), workers, on_fit=telemetry.fit_done)
    forecaster = ModelForecaster(make_model=_guarded_model, fitter=fitter)
    # With one shard, holding it is leading, and the workloads need no narrowing.
    owns = elector.owns if elector is not None and settings.shards > 1 else None
    stages = cluster_stages(
        kube,
        informers,
        source,
        forecaster,
        PredictivePolicy(interval_s=settings.interval_s),
        dry_run=settings.dry_run,
        may_act=may_act,
        on_record=telemetry.target_seen,
        owns=owns,
    )
    controller = Controller(stages, may_act=may_act, on_problem=telemetry.metrics_problem)
    if elector is None:
        telemetry.set_leader(True)
    else:
        telemetry.set_shards((), settings.shards)
    health = None
    if settings.metrics_port is not None:
        health = HealthServer(
            settings.metrics_port,
            not_ready=informers.not_ready,
            metrics=telemetry.render,
            stale_after_s=max(STALE_FLOOR_S, STALE_TICKS * settings.interval_s),
        )
        health.start()
    ticks = 0

    def tick() -> None:
        nonlocal ticks
        began = time.monotonic()
        try:
            report = controller.tick(time.time())
        except Exception:
            # Whatever broke, the next tick starts from the cluster's state again.
            log.exception("tick failed", extra={"event": "tick_failed"})
            telemetry.tick_failed(time.monotonic() - began, time.time())
            return
        finally:
            if health is not None:
                health.beat(time.monotonic())
        telemetry.tick_done(report, time.monotonic() - began, time.time())
        telemetry.set_models(forecaster.model_states())
        ticks += 1
        log.info(
            "tick done",
            extra={
                "event": "tick",
                "acted": report.acted,
                "targets": len(report.decisions),
                "metrics_available": report.metrics_available,
                # What Prometheus did wrong this tick, if anything; each cause has a line of its
                # own when it appears (autoscaler.observability.problems).
                "prometheus_errors": [c.value for c in controller.problems.in_effect]
                if report.acted
                else [],
                "seconds": round(time.monotonic() - began, 3),
            },
        )

    informers.start()
    # The first tick decides on the workloads the informers have listed: started before their first
    # lists, it would decide nothing and leave the whole fleet for one interval more.
    if not informers.wait_synced(settings.interval_s):
        log.warning(
            "informers not synced after one interval; ticking anyway",
            extra={"event": "not_synced", "waited_s": settings.interval_s},
        )
    early = EarlyTicks()
    scheduler = early.scheduler()
    first = datetime.now(UTC)
    if elector is not None:
        lease_elector = elector

        def lease_round() -> None:
            held = lease_elector.round()
            telemetry.set_shards(held, settings.shards)
            # Shards taken over are decided by a tick that starts now, not up to an interval on.
            early.round_done(held)

        # A first round before the first tick, so that it acts on the shards that are free to take
        # rather than on none; what fails here is the scheduled rounds' to retry.
        try:
            lease_round()
        except Exception:
            log.exception("first lease round failed", extra={"event": "lease_round_failed"})
            early.round_done(lease_elector.held())  # the first tick decides what it did take
        scheduler.add_job(
            lease_round,
            "interval",
            seconds=settings.lease.retry_period_s,
            max_instances=1,
            coalesce=True,
            # A round the scheduler starts late (a busy process) still renews: dropping it would
            # leave the Leases a retry period longer without renewal.
            misfire_grace_time=max(1, math.ceil(settings.lease.retry_period_s)),
            next_run_time=first + timedelta(seconds=settings.lease.retry_period_s),
            id="lease",
        )
    scheduler.add_job(
        tick,
        "interval",
        seconds=settings.interval_s,
        max_instances=1,
        coalesce=True,
        misfire_grace_time=max(1, int(settings.interval_s)),
        next_run_time=first,
        id=TICK_JOB,
    )
    log.info(
        "controller started",
        extra={
            "event": "started",
            "identity": settings.identity,
            "namespaces": list(settings.namespaces) or "all",
            "interval_s": settings.interval_s,
            "dry_run": settings.dry_run,
            "leader_elect": settings.leader_elect,
            "shards": settings.shards,
        },
    )
    fitter.start()
    scheduler.start()
    try:
        stop.wait()
    finally:
        early.stop()
        scheduler.shutdown(wait=True)
        fitter.shutdown()
        if elector is not None:
            elector.release()
        informers.stop()
        source.close()
        if health is not None:
            health.stop()
        log.info("controller stopped", extra={"event": "stopped", "ticks": ticks})
    return 0
