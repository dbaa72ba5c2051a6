"""The Prometheus metrics source: batched, cached reads of every target's load.

Each tick it asks one range query per metric kind for all targets (kinds whose series each workload
names: one per distinct selector), built by `autoscaler.sources.promql`. A target seen for the first
time gets its history (`history_s`) in the same batched way, a share of the new targets a tick (in
the tick, or on a thread of the source's own with `background_history`; meanwhile it is read from the
recent window); afterwards only the window since the last
fetched point is asked for, with one step of overlap, and kept in the series cache (`cache.py`), from
which the forecaster seeds its models (`recorded`, the history port, which hands a target's history
over: the cache keeps only its last `cache_s` once it has been read). Long ranges are split into
chunks small enough for Prometheus' point limit and for a quick evaluation, and a tick's queries run
`parallel_queries` at a time through the transport (`transport.py`).

Memory: a fetch is read in waves of at most `max_points_in_flight` points (a job's targets split into
groups where one query group would have more), each parsed, joined and cached before the next is
asked, so that the first tick of a thousand targets holds their histories once, in the cache, and
not twice over beside it. A steady tick's window is a few points per target: one wave, as few
queries as before.

Data hygiene: NaN, infinite and negative points are dropped; the cache decides which latest points are
usable; a target with nothing usable is left out.

Failures: an unreachable server, a timeout or a server error, after the transport's retries, raises a
`PrometheusError` (an `autoscaler.stages.MetricsUnavailable`) for the whole tick. A query Prometheus
rejects (4xx) raises `PrometheusRejected`, except for a workload's own selector, which costs only its
own targets that kind: `rejected()` names them, with the annotation as written and Prometheus' words,
for the recorder to tell their owners.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

import numpy as np
import pandas as pd

from autoscaler.config import PREFIX
from autoscaler.metrics import METRICS, MetricKind, Scope
from autoscaler.model import LoadSnapshot, Sample, Target, TargetRef, WorkloadKind
from autoscaler.selectors import SeriesSelector
from autoscaler.sources.prometheus.cache import Key, SeriesCache, regular_series
from autoscaler.sources.prometheus.settings import PrometheusSettings
from autoscaler.sources.prometheus.transport import (
    PrometheusError,
    PrometheusRejected,
    PrometheusServerError,
    Transport,
)
from autoscaler.sources.promql import WORKLOAD_KIND_LABEL, QueryGroup, group_targets, load_query
from autoscaler.stages import Rejected

__all__ = ["FetchPurpose", "FetchRecord", "PrometheusSource"]

log = logging.getLogger(__name__)

# Prometheus' words in a rejection are cut to this many characters.
_MAX_ERROR_CHARS = 200
_POSITION = re.compile(r"^\d+:\d+: ")


class FetchPurpose(Enum):
    HISTORY = "history"  # first sight of a target: its last `history_s`
    UPDATE = "update"  # a known target: the window since the last fetched point
    BACKTEST = "backtest"  # `fetch_history` for one Deployment


@dataclass(frozen=True, slots=True)
class FetchRecord:
    """One batched fetch: a query (in `queries` chunks) over [start, end] for `targets` targets,
    read in `groups` groups of them (more than one where their points would not fit in
    `max_points_in_flight`); the counts are over all groups that were answered."""

    purpose: FetchPurpose
    kind: MetricKind
    selector: SeriesSelector | None
    start: float
    end: float
    targets: int
    queries: int
    returned: int  # series in the answer, including Deployments that are no target
    series: int  # series of the targets
    points: int  # points of the targets' series kept
    dropped: int  # NaN, infinite or negative points of the targets' series
    groups: int = 1


@dataclass(frozen=True, slots=True)
class _Job:
    """One batched fetch to make: a query group's targets (or some of them) over [start, end]."""

    purpose: FetchPurpose
    group: QueryGroup
    refs: tuple[TargetRef, ...]
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class _Answer:
    """Points per (namespace, deployment) of one job, cleaned and matched to its targets."""

    points: dict[TargetRef, tuple[np.ndarray, np.ndarray]]
    queries: int
    returned: int
    dropped: int


@dataclass(frozen=True, slots=True)
class _Chunk:
    """One query's answer: the points of the job's targets, and the targets it named (theirs and
    others')."""

    points: list[tuple[TargetRef, np.ndarray, np.ndarray]]
    returned: frozenset[TargetRef]
    dropped: int


# One parsed series: its target, times, values, and how many points were dropped.
_Parsed = tuple[TargetRef, np.ndarray, np.ndarray, int]
# A job's index among those planned, and one group of its targets (the job itself, mostly).
_Part = tuple[int, _Job]


def _parse(result: Any, group: QueryGroup) -> list[_Parsed]:
    """The answer's series by target; a namespace total goes to each of the group's targets in
    that namespace."""
    if not isinstance(result, list):
        raise PrometheusServerError("Prometheus answered something that is not a query result")
    total = group.spec.scope is Scope.NAMESPACE
    parsed: list[_Parsed] = []
    try:
        for series in result:
            labels = series["metric"]
            namespace = str(labels["namespace"])
            if total:
                refs = [ref for ref in group.refs if ref.namespace == namespace]
            else:
                kind = WorkloadKind(labels.get(WORKLOAD_KIND_LABEL, WorkloadKind.DEPLOYMENT.value))
                refs = [TargetRef(namespace, str(labels["deployment"]), kind)]
            pairs = series["values"]
            times = np.rint(np.fromiter((p[0] for p in pairs), dtype=np.float64, count=len(pairs)))
            values = np.array([p[1] for p in pairs], dtype=np.float64)
            good = np.isfinite(values) & (values >= 0)
            kept = (times[good].astype(np.int64), values[good], int((~good).sum()))
            parsed.extend((ref, *kept) for ref in refs)
    except (KeyError, TypeError, ValueError) as err:
        raise PrometheusServerError(f"malformed answer from Prometheus: {err!r}") from None
    return parsed


def _rejections(job: _Job, error: PrometheusRejected, targets: Sequence[Target]) -> list[Rejected]:
    """The targets of a rejected job, each with its annotation and the selector as it wrote it (the
    group's selector is equal to each target's, but may be written with other blanks)."""
    kind = job.group.kind
    name = job.group.spec.selector_annotation
    if name is None:  # only a workload's own selector is answered with a rejection
        return []
    # Positions ("1:78: parse error: ...") point into a query its owner never sees.
    words = _POSITION.sub("", " ".join(error.detail.split()))
    if len(words) > _MAX_ERROR_CHARS:
        words = words[: _MAX_ERROR_CHARS - 1] + "…"
    config = {t.state.ref: t.config for t in targets}
    out = []
    for ref in job.refs:
        own = config.get(ref)
        written = None
        if own is not None:
            declared = own.custom.get(kind)
            written = declared.series if declared is not None else own.selectors.get(kind)
        value = str(written if written is not None else job.group.selector)
        out.append(Rejected(ref, kind, PREFIX + name, value, words))
    return out


class PrometheusSource:
    """A `MetricsSource` reading a real Prometheus; see the module docstring for what it does.

    `sleep` is what waits between retries (tests pass a recorder so they never sleep); `on_query`
    hears of every HTTP query: its duration in seconds and whether it was answered.

    With `background_history`, a tick never reads a history itself: it hands the share it would
    have read (see `history_points_per_tick`) to a thread of the source's own, one share at a time
    and at most one a tick, and goes on with the recent windows. A history read that fails or is
    slow then costs no tick anything: its targets stay pending (decided reactively) and their
    history is asked again on a later tick. Without it, the tick reads the share itself, and a
    failure of that read fails the tick, as any other query's.
    """

    def __init__(
        self,
        settings: PrometheusSettings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        on_query: Callable[[float, bool], None] | None = None,
        background_history: bool = False,
    ) -> None:
        self.settings = settings
        self._transport = Transport(settings, sleep=sleep, on_query=on_query)
        self._cache = SeriesCache(settings)
        self._default_selector = settings.default_requests_selector
        self._last_fetches: tuple[FetchRecord, ...] = ()
        self._rejected: tuple[Rejected, ...] = ()
        self._most_in_flight = 0
        self._reader: ThreadPoolExecutor | None = None
        if background_history:
            self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prometheus-history")
        self._reading: Future[None] | None = None
        self._closing = threading.Event()

    # --- public surface ---------------------------------------------------------------------------

    @property
    def queries_made(self) -> int:
        """HTTP queries sent so far, retries included."""
        return self._transport.queries_made

    @property
    def last_fetches(self) -> tuple[FetchRecord, ...]:
        """The fetches of the latest `observe` or `fetch_history`, for tests and logs."""
        return self._last_fetches

    @property
    def most_points_in_flight(self) -> int:
        """The most points the latest `observe` or `fetch_history` held parsed at once before caching
        or returning them (one wave of queries): at most `max_points_in_flight`, or one target's
        range where that is longer."""
        return self._most_in_flight

    def close(self) -> None:
        self._closing.set()
        if self._reader is not None:
            self._reader.shutdown(wait=True, cancel_futures=True)
        self._transport.close()

    def wait_for_history(self, timeout_s: float) -> bool:
        """Wait for the history read running in the background, if any, to end (stored or failed);
        False if it still runs after `timeout_s`. For tests and for a clean stop."""
        reading = self._reading
        if reading is None:
            return True
        try:
            reading.result(timeout=timeout_s)
        except TimeoutError:
            return False
        return True

    def rejected(self) -> tuple[Rejected, ...]:
        """Per target and kind, the workload's own selector that Prometheus rejected in the latest
        `observe`, named as annotated, with Prometheus' words."""
        return self._rejected

    def observe(self, targets: Sequence[Target], now: float) -> Mapping[TargetRef, LoadSnapshot]:
        step = self.settings.step_s
        end = self._cache.align(now)
        history_start = end - int(self.settings.history_s // step) * step
        self._rejected = ()
        groups = group_targets(targets, self._default_selector)
        live: dict[Key, SeriesSelector | None] = {
            (ref, group.kind): group.selector for group in groups for ref in group.refs
        }
        self._cache.keep_only(live)
        admitted: set[Key] = set()
        if self._reader is None:
            admitted = self._admit_history(groups, (end - history_start) // step + 1)
        elif self._reading is None or self._reading.done():
            share = self._admit_history(groups, (end - history_start) // step + 1)
            if share:
                history = self._history_jobs(groups, share, history_start, end)
                self._reading = self._reader.submit(self._read_history, history)
        # Whose history is not read this tick is read from the recent window, as a known target is.
        recent = end - int(self.settings.quality_window_s)
        jobs: list[_Job] = []
        for group in groups:
            new: list[TargetRef] = []
            known: dict[TargetRef, int] = {}
            for ref in group.refs:
                key = (ref, group.kind)
                if key in admitted:
                    new.append(ref)
                else:
                    until = self._cache.fetched_until(key)
                    known[ref] = recent if until is None else until
            if new:
                jobs.append(_Job(FetchPurpose.HISTORY, group, tuple(new), history_start, end))
            if known:
                since = min(known.values()) - step
                start = min(max(history_start, since), end)
                jobs.append(_Job(FetchPurpose.UPDATE, group, tuple(known), start, end))
        records: dict[int, FetchRecord] = {}
        rejected: list[Rejected] = []
        for j, part, answer in self._fetch(jobs):
            if isinstance(answer, PrometheusRejected):
                rejected.extend(_rejections(part, answer, targets))
                continue
            for ref in part.refs:
                times, values = answer.points.get(ref, (np.empty(0, np.int64), np.empty(0)))
                self._cache.store(
                    (ref, part.group.kind),
                    part.start,
                    part.end,
                    times,
                    values,
                    history=part.purpose is FetchPurpose.HISTORY,
                )
            records[j] = _merged(records.get(j), self._record(part, answer))
        self._last_fetches = tuple(records.values())
        self._rejected = tuple(rejected)
        loads: dict[TargetRef, LoadSnapshot] = {}
        for target in targets:
            samples: dict[MetricKind, Sample | None] = {
                kind: self._cache.latest(
                    target.state.ref,
                    kind,
                    now,
                    averaged=target.config.spec(kind).averages_over_rate_window,
                )
                for kind in target.config.metrics
            }
            if any(samples.values()):
                loads[target.state.ref] = LoadSnapshot(samples)
        return loads

    def pending(self, ref: TargetRef, kind: MetricKind) -> bool:
        """Whether the history of `ref` for `kind` is still to be read (see
        `history_points_per_tick`): not yet, or being read in the background, or its read failed; a
        rejected custom selector stays pending, and is asked again."""
        return not self._cache.has_history((ref, kind))

    def recorded(self, ref: TargetRef, kind: MetricKind) -> pd.Series | None:
        """The cached series of `ref` for `kind` on a regular grid, or None when nothing is cached.

        The seed read: the history it returns is handed over, the cache keeps only the last
        `cache_s` of it from then on (see `cache.py`), so a later call returns that much at most."""
        return self._cache.recorded(ref, kind)

    def fetch_history(
        self,
        ref: TargetRef,
        kinds: Iterable[MetricKind],
        start: float,
        end: float,
        *,
        selector: SeriesSelector | None = None,
    ) -> dict[MetricKind, pd.Series]:
        """The load of one Deployment over [start, end] per kind, regular as in `recorded`, without
        touching the cache; kinds without data are left out. Errors, rejections included, raise."""
        first, last = self._cache.align(start + self.settings.step_s - 1), self._cache.align(end)
        if last < first:
            raise ValueError("fetch_history needs end after start")
        jobs = []
        for kind in dict.fromkeys(kinds):
            chosen = None if METRICS[kind].series else (selector or self._default_selector)
            jobs.append(
                _Job(FetchPurpose.BACKTEST, QueryGroup(kind, chosen, (ref,)), (ref,), first, last)
            )
        out: dict[MetricKind, pd.Series] = {}
        records: dict[int, FetchRecord] = {}
        for j, part, answer in self._fetch(jobs):
            if isinstance(answer, PrometheusRejected):
                raise answer
            records[j] = _merged(records.get(j), self._record(part, answer))
            points = answer.points.get(ref)
            if points is not None and len(points[0]):
                kind = part.group.kind
                out[kind] = regular_series(points[0], points[1], self.settings.step_s, name=kind.value)
        self._last_fetches = tuple(records.values())
        return out

    # --- planning ---------------------------------------------------------------------------------

    def _admit_history(self, groups: Sequence[QueryGroup], span: int) -> set[Key]:
        """The keys whose history this tick reads: whole targets, in the order the groups name
        them, while their points (`span` per key) fit `history_points_per_tick`; the first target
        always, so that every tick makes progress."""
        waiting: dict[TargetRef, list[Key]] = {}
        for group in groups:
            for ref in group.refs:
                key = (ref, group.kind)
                if not self._cache.has_history(key):
                    waiting.setdefault(ref, []).append(key)
        admitted: set[Key] = set()
        budget = self.settings.history_points_per_tick
        for keys in waiting.values():
            cost = span * len(keys)
            if admitted and cost > budget:
                break
            admitted.update(keys)
            budget -= cost
        return admitted

    def _history_jobs(
        self, groups: Sequence[QueryGroup], share: set[Key], start: int, end: int
    ) -> list[_Job]:
        jobs = []
        for group in groups:
            refs = tuple(ref for ref in group.refs if (ref, group.kind) in share)
            if refs:
                jobs.append(_Job(FetchPurpose.HISTORY, group, refs, start, end))
        return jobs

    def _read_history(self, jobs: Sequence[_Job]) -> None:
        """One share of histories, read on the background thread and stored as each group of
        targets is answered. Whatever goes wrong is logged and leaves the targets not stored
        pending, for a later tick to ask again: it must never end the thread."""
        began = time.monotonic()
        stored = points = 0
        try:
            for _, part, answer in self._fetch(jobs, stop=self._closing, tracked=False):
                if isinstance(answer, PrometheusRejected):
                    continue  # told by the tick's own read of the recent window
                kind, selector = part.group.kind, part.group.selector
                for ref in part.refs:
                    times, values = answer.points.get(ref, (np.empty(0, np.int64), np.empty(0)))
                    key = (ref, kind)
                    if self._cache.store_history(key, selector, part.start, part.end, times, values):
                        stored += 1
                        points += len(times)
        except PrometheusError as error:
            if not self._closing.is_set():
                log.warning(
                    "history read failed; its targets are asked again next tick",
                    extra={"event": "history_read_failed", "error": str(error), "stored": stored},
                )
            return
        except Exception:
            log.exception("history read failed", extra={"event": "history_read_failed"})
            return
        log.info(
            "history read",
            extra={
                "event": "history_read",
                "series": stored,
                "points": points,
                "seconds": round(time.monotonic() - began, 3),
            },
        )

    def _chunks(self, job: _Job) -> list[tuple[int, int]]:
        """[start, end] cut so that no query exceeds Prometheus' points per series nor
        `max_answer_points` over all of its series (estimated as one series per target)."""
        step = self.settings.step_s
        per_series = self.settings.max_answer_points // max(1, len(job.refs))
        points = max(2, min(self.settings.max_points_per_query, per_series))
        chunks = []
        start = job.start
        while start <= job.end:
            end = min(job.end, start + (points - 1) * step)
            chunks.append((start, end))
            start = end + step
        return chunks

    def _parts(self, jobs: Sequence[_Job]) -> list[_Part]:
        """Each job, its targets cut into as few groups as keep each group's points (one series per
        target) within `max_points_in_flight`; a group has one target at least."""
        parts: list[_Part] = []
        for j, job in enumerate(jobs):
            fit = max(1, self.settings.max_points_in_flight // _points_per_series(job, self.settings))
            groups = math.ceil(len(job.refs) / fit)
            size = math.ceil(len(job.refs) / groups)
            parts.extend(
                (j, replace(job, refs=job.refs[i : i + size])) for i in range(0, len(job.refs), size)
            )
        return parts

    def _waves(self, parts: Sequence[_Part]) -> list[list[_Part]]:
        """Consecutive parts, as many at a time as fit in `max_points_in_flight` together: a steady
        tick's jobs, a few points a target, all run in one wave, their queries side by side."""
        waves: list[list[_Part]] = []
        budget = self.settings.max_points_in_flight
        planned = 0
        for part in parts:
            points = len(part[1].refs) * _points_per_series(part[1], self.settings)
            if not waves or planned + points > budget:
                waves.append([])
                planned = 0
            waves[-1].append(part)
            planned += points
        return waves

    def _record(self, job: _Job, answer: _Answer) -> FetchRecord:
        return FetchRecord(
            purpose=job.purpose,
            kind=job.group.kind,
            selector=job.group.selector,
            start=float(job.start),
            end=float(job.end),
            targets=len(job.refs),
            queries=answer.queries,
            returned=answer.returned,
            series=len(answer.points),
            points=sum(len(t) for t, _ in answer.points.values()),
            dropped=answer.dropped,
        )

    # --- fetching ---------------------------------------------------------------------------------

    def _fetch(
        self,
        jobs: Sequence[_Job],
        *,
        stop: threading.Event | None = None,
        tracked: bool = True,
    ) -> Iterator[tuple[int, _Job, _Answer | PrometheusRejected]]:
        """Run every chunk of every job, `parallel_queries` at a time, and yield one answer per
        group of a job's targets (see `_parts`), with the job's index. The groups are asked for in
        waves (see `_waves`); a wave's answers go to the caller (which caches them) before the next
        wave is asked, so that no more than one wave's points are held beside the cache. A rejected
        query of a custom request selector becomes that group's answer; any other error stops the
        chunks not yet started, and raises (what the caller has of earlier waves stays its own).
        `stop` set abandons the chunks not yet started the same way; `tracked` says whether the
        fetch counts in `most_points_in_flight` (the tick's do, the background reads do not)."""
        if tracked:
            self._most_in_flight = 0
        abort = threading.Event()
        parallel = self.settings.parallel_queries

        def run(task: tuple[_Job, int, int]) -> _Chunk | PrometheusRejected:
            job, start, end = task
            if stop is not None and stop.is_set():
                abort.set()
            query = load_query(
                job.group.kind,
                job.refs,
                rate_window=self.settings.rate_window,
                start=start,
                end=end,
                selector=job.group.selector,
                restrict_deployments=job.purpose is not FetchPurpose.UPDATE,
                custom=job.group.custom,
            )
            try:
                parsed = _parse(self._transport.query_range(query, start, end, abort), job.group)
            except PrometheusRejected as err:
                custom = job.group.selector not in (None, self._default_selector)
                if custom and job.purpose is not FetchPurpose.BACKTEST:
                    return err
                abort.set()
                raise
            except PrometheusError:
                abort.set()
                raise
            # Series of workloads that are no target of this group are let go at once: an update's
            # answer has every workload of the targets' namespaces.
            wanted = set(job.refs)
            mine = [p for p in parsed if p[0] in wanted]
            return _Chunk(
                [(ref, times, values) for ref, times, values, _ in mine],
                frozenset(p[0] for p in parsed),
                sum(p[3] for p in mine),
            )

        pool: ThreadPoolExecutor | None = None
        try:
            for wave in self._waves(self._parts(jobs)):
                tasks = [
                    (p, start, end)
                    for p, (_, job) in enumerate(wave)
                    for start, end in self._chunks(job)
                ]
                if parallel <= 1 or len(tasks) <= 1:
                    results = [run((wave[p][1], start, end)) for p, start, end in tasks]
                else:
                    if pool is None:
                        pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="prometheus")
                    futures = [pool.submit(run, (wave[p][1], start, end)) for p, start, end in tasks]
                    try:
                        results = [future.result() for future in futures]
                    finally:
                        for future in futures:
                            future.cancel()
                    del futures
                answers = self._assemble(wave, tasks, results, tracked)
                yield from zip((j for j, _ in wave), (job for _, job in wave), answers, strict=True)
        finally:
            if pool is not None:
                pool.shutdown()

    def _assemble(
        self,
        wave: Sequence[_Part],
        tasks: Sequence[tuple[int, int, int]],
        results: list[_Chunk | PrometheusRejected],
        tracked: bool,
    ) -> list[_Answer | PrometheusRejected]:
        """One answer per part of the wave, from its chunks' answers. Empties `results`, so that
        each target's parsed points are let go as soon as they are joined."""
        pieces: list[dict[TargetRef, list[tuple[np.ndarray, np.ndarray]]]] = [{} for _ in wave]
        returned: list[set[TargetRef]] = [set() for _ in wave]
        dropped = [0] * len(wave)
        queries = [0] * len(wave)
        failed: dict[int, PrometheusRejected] = {}
        held = 0
        for (p, _, _), result in zip(tasks, results, strict=True):
            queries[p] += 1
            if isinstance(result, PrometheusRejected):
                failed[p] = result
                continue
            returned[p].update(result.returned)
            dropped[p] += result.dropped
            for ref, times, values in result.points:
                pieces[p].setdefault(ref, []).append((times, values))
                held += len(times)
        results.clear()
        if tracked:
            self._most_in_flight = max(self._most_in_flight, held)
        answers: list[_Answer | PrometheusRejected] = []
        for p in range(len(wave)):
            if p in failed:
                answers.append(failed[p])
                pieces[p].clear()
                continue
            points: dict[TargetRef, tuple[np.ndarray, np.ndarray]] = {}
            while pieces[p]:
                ref, parts = pieces[p].popitem()
                points[ref] = _joined(parts)
            answers.append(_Answer(points, queries[p], len(returned[p]), dropped[p]))
        return answers


def _points_per_series(job: _Job, settings: PrometheusSettings) -> int:
    return (job.end - job.start) // settings.step_s + 1


def _joined(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """One series from its chunks' pieces, in time order without repeats (chunks may repeat a
    boundary point); a single piece in order is kept as it is."""
    if len(parts) == 1 and bool(np.all(np.diff(parts[0][0]) > 0)):
        return parts[0]
    times = np.concatenate([t for t, _ in parts])
    values = np.concatenate([v for _, v in parts])
    parts.clear()
    times, first = np.unique(times, return_index=True)
    return times, values[first]


def _merged(before: FetchRecord | None, group: FetchRecord) -> FetchRecord:
    """The record of a job with one more group of its targets answered."""
    if before is None:
        return group
    return replace(
        before,
        targets=before.targets + group.targets,
        queries=before.queries + group.queries,
        returned=before.returned + group.returned,
        series=before.series + group.series,
        points=before.points + group.points,
        dropped=before.dropped + group.dropped,
        groups=before.groups + group.groups,
    )
