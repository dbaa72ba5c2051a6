"""Fitting models beside the tick: who runs a fit, in what order, and what became of it.

A fit is a job: a picklable piece of work (`FitJob.work`, built by the forecaster stage) under the key
of the model it is for, with a priority: a model that has none yet first, then one that has drifted
from its load, then a scheduled refit. Two fitters run jobs:

- `InlineFitter` runs a job as it is submitted and hands its result straight back. The simulator, the
  backtests and the benches use it, so that their figures never depend on timing.
- `PooledFitter` queues jobs by priority and runs them in an executor beside the tick (a pool of
  processes in the controller: statsmodels holds the GIL), no more at once than it has workers, so a
  drift refit submitted later still overtakes scheduled ones that are waiting. The tick only submits
  and collects: a finished job is picked up by the next tick.
"""

from __future__ import annotations

import heapq
import logging
import math
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Collection, Hashable
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from enum import Enum, IntEnum
from pathlib import Path
from typing import Protocol

__all__ = [
    "INLINE",
    "FitDone",
    "FitJob",
    "Fitter",
    "InlineFitter",
    "ModelState",
    "PooledFitter",
    "Priority",
    "default_workers",
    "process_pool",
]

log = logging.getLogger(__name__)


class ModelState(Enum):
    """Where a model (one target and metric) stands; `queued` and `fitting` include refits of a
    model that keeps forecasting meanwhile."""

    FITTED = "fitted"
    QUEUED = "queued"
    FITTING = "fitting"
    FAILED = "failed"
    # Not enough history to fit yet (a new workload with no recorded past).
    WAITING = "waiting"


class Priority(IntEnum):
    """The order jobs run in, lowest first."""

    NEW = 0
    DRIFTED = 1
    SCHEDULED = 2


@dataclass(frozen=True, slots=True)
class FitJob:
    """`work` runs where the fitter puts it (another process, for the pooled one), so it and what it
    returns must pickle; it carries its own copy of the data and the model."""

    key: Hashable
    priority: Priority
    work: Callable[[], object]


@dataclass(frozen=True, slots=True)
class FitDone:
    """A finished job: what `work` returned, or the error that escaped it (then `result` is None)."""

    key: Hashable
    result: object
    error: str | None = None
    seconds: float = 0.0


class Fitter(Protocol):
    @property
    def concurrent(self) -> bool:
        """Whether jobs run beside the caller (their results come through `collect`) rather than
        within `submit`."""
        ...

    def submit(self, job: FitJob) -> FitDone | None:
        """Runs `job` now and returns what became of it, or queues it and returns None."""
        ...

    def collect(self) -> tuple[FitDone, ...]:
        """The jobs finished since the last call."""
        ...

    def state(self, key: Hashable) -> ModelState | None:
        """`queued` or `fitting` while a job for `key` is in the fitter, else None."""
        ...

    def discard(self, keys: Collection[Hashable]) -> None:
        """Forget the jobs of `keys` that have not started; those running finish unheard."""
        ...


class InlineFitter:
    """Runs every job within `submit`, in the caller's thread: what `work` raises, the caller gets."""

    @property
    def concurrent(self) -> bool:
        return False

    def submit(self, job: FitJob) -> FitDone:
        return FitDone(job.key, job.work())

    def collect(self) -> tuple[FitDone, ...]:
        return ()

    def state(self, key: Hashable) -> ModelState | None:
        return None

    def discard(self, keys: Collection[Hashable]) -> None:
        return None


INLINE = InlineFitter()


def _run(work: Callable[[], object]) -> tuple[object, float]:
    """What a worker runs: the job, timed where it runs (the queue's wait is not the fit's)."""
    began = time.perf_counter()
    result = work()
    return result, time.perf_counter() - began


# How much less CPU priority a fitting worker has than the tick: fits use whatever the tick leaves,
# so a tick's decisions are never slowed by a fleet's worth of fitting on the same cores.
WORKER_NICENESS = 10


def _lower_priority() -> None:
    os.nice(WORKER_NICENESS)


def process_pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes started from a fork server that has already imported the forecaster stage
    (and with it pandas and statsmodels): a new or replaced worker is ready in a fraction of the
    time a spawned interpreter needs, and nothing of the controller's threads is forked. Workers
    run at a lower CPU priority than the controller (`WORKER_NICENESS`)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["autoscaler.forecast_stage"])
    return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_lower_priority)


CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def default_workers(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """The CPUs this process may use: those it may run on, at most its container's CPU limit
    (cgroup v2 `cpu.max`, rounded up). A pod limited to one CPU on a large node would otherwise start
    a worker, and its memory, for every CPU of the node."""
    cpus = max(1, len(os.sched_getaffinity(0)))
    limit = cpu_limit(cpu_max)
    return cpus if limit is None else max(1, min(cpus, math.ceil(limit)))


def cpu_limit(cpu_max: Path = CGROUP_CPU_MAX) -> float | None:
    """The CPU limit in `cpu_max` ("<quota> <period>" in microseconds, or "max <period>"), or None
    where there is none or it cannot be read."""
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota == "max":
            return None
        limit = int(quota) / int(period)
    except (OSError, ValueError):
        return None
    return limit if limit > 0 else None


class PooledFitter:
    """Runs jobs in an executor, `workers` at a time, highest priority first (then in the order
    submitted). A job for a key already queued replaces nothing: the caller submits one per model at
    a time. A broken executor (a worker killed) fails the jobs it held and is replaced."""

    def __init__(
        self,
        executor: Callable[[], Executor],
        workers: int,
        on_fit: Callable[[float, bool], None] | None = None,
    ) -> None:
        """`on_fit` hears of every finished job, its seconds and whether it ran to its end (from the
        fitter's threads)."""
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self._make_executor = executor
        self._workers = workers
        self._on_fit = on_fit
        self._cond = threading.Condition()
        self._heap: list[tuple[int, int, FitJob]] = []
        self._sequence = 0
        self._queued: dict[Hashable, int] = {}
        self._running: set[Hashable] = set()
        self._done: list[FitDone] = []
        self._executor: Executor | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = False

    @property
    def concurrent(self) -> bool:
        return True

    def start(self) -> None:
        with self._cond:
            if self._threads:
                return
            self._executor = self._make_executor()
            self._threads = [
                threading.Thread(target=self._serve, name=f"fitter-{i}", daemon=True)
                for i in range(self._workers)
            ]
        for thread in self._threads:
            thread.start()

    def shutdown(self) -> None:
        """Stop taking queued jobs, wait for the running ones, and stop the executor."""
        with self._cond:
            self._stopping = True
            self._heap.clear()
            self._queued.clear()
            self._cond.notify_all()
            executor = self._executor
        for thread in self._threads:
            thread.join()
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    def submit(self, job: FitJob) -> None:
        with self._cond:
            self._sequence += 1
            heapq.heappush(self._heap, (int(job.priority), self._sequence, job))
            self._queued[job.key] = self._sequence
            self._cond.notify()

    def collect(self) -> tuple[FitDone, ...]:
        with self._cond:
            done = tuple(self._done)
            self._done.clear()
        return done

    def state(self, key: Hashable) -> ModelState | None:
        with self._cond:
            if key in self._running:
                return ModelState.FITTING
            if key in self._queued:
                return ModelState.QUEUED
        return None

    def discard(self, keys: Collection[Hashable]) -> None:
        with self._cond:
            for key in keys:
                self._queued.pop(key, None)

    def pending(self) -> int:
        """Jobs queued or running."""
        with self._cond:
            return len(self._queued) + len(self._running)

    def _next(self) -> tuple[FitJob, Executor] | None:
        with self._cond:
            while True:
                if self._stopping or self._executor is None:
                    return None
                while self._heap:
                    _, sequence, job = heapq.heappop(self._heap)
                    # A discarded job, or one submitted again since, is skipped here.
                    if self._queued.get(job.key) == sequence:
                        del self._queued[job.key]
                        self._running.add(job.key)
                        return job, self._executor
                self._cond.wait()

    def _serve(self) -> None:
        while (taken := self._next()) is not None:
            job, executor = taken
            try:
                result, seconds = executor.submit(_run, job.work).result()
                done = FitDone(job.key, result, None, seconds)
            except BrokenProcessPool as error:
                self._replace(executor)
                done = FitDone(job.key, None, f"{type(error).__name__}: {error}")
            except Exception as error:  # whatever a fit raised, it is that model's failure alone
                done = FitDone(job.key, None, f"{type(error).__name__}: {error}")
            with self._cond:
                self._running.discard(job.key)
                self._done.append(done)
            if done.error is not None:
                log.warning(
                    "model fit failed",
                    extra={"event": "fit_failed", "key": str(job.key), "error": done.error},
                )
            if self._on_fit is not None:
                self._on_fit(done.seconds, done.error is None)

    def _replace(self, broken: Executor) -> None:
        with self._cond:
            if self._executor is not broken or self._stopping:
                return
            self._executor = self._make_executor()
        broken.shutdown(wait=False, cancel_futures=True)
