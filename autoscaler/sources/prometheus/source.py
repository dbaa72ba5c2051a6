"""The Prometheus metrics source: batched, cached reads of every target's load.

Each tick it asks one range query per metric kind for all targets (kinds whose series each workload
names: one per distinct selector), built by `autoscaler.sources.promql`. A target seen for the first
time gets its history (`history_s`) in the same batched way; afterwards only the window since the last
fetched point is asked for, with one step of overlap, and kept in the series cache (`cache.py`), from
which the forecaster seeds its models (`recorded`, the history port). Long ranges are split into chunks
small enough for Prometheus' point limit and for a quick evaluation, and a tick's queries run
`parallel_queries` at a time through the transport (`transport.py`).

Data hygiene: NaN, infinite and negative points are dropped; the cache decides which latest points are
usable; a target with nothing usable is left out.

Failures: an unreachable server, a timeout or a server error, after the transport's retries, raises a
`PrometheusError` (an `autoscaler.stages.MetricsUnavailable`) for the whole tick. A query Prometheus
rejects (4xx) raises `PrometheusRejected`, except for a workload's own selector, which costs only its
own targets that kind: `rejected()` names them, with the annotation as written and Prometheus' words,
for the recorder to tell their owners.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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

# Prometheus' words in a rejection are cut to this many characters.
_MAX_ERROR_CHARS = 200
_POSITION = re.compile(r"^\d+:\d+: ")


class FetchPurpose(Enum):
    HISTORY = "history"  # first sight of a target: its last `history_s`
    UPDATE = "update"  # a known target: the window since the last fetched point
    BACKTEST = "backtest"  # `fetch_history` for one Deployment


@dataclass(frozen=True, slots=True)
class FetchRecord:
    """One batched fetch: a query (in `queries` chunks) over [start, end] for `targets` targets."""

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


# One parsed series: its target, times, values, and how many points were dropped.
_Parsed = tuple[TargetRef, np.ndarray, np.ndarray, int]


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
    """

    def __init__(
        self,
        settings: PrometheusSettings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        on_query: Callable[[float, bool], None] | None = None,
    ) -> None:
        self.settings = settings
        self._transport = Transport(settings, sleep=sleep, on_query=on_query)
        self._cache = SeriesCache(settings)
        self._default_selector = settings.default_requests_selector
        self._last_fetches: tuple[FetchRecord, ...] = ()
        self._rejected: tuple[Rejected, ...] = ()

    # --- public surface ---------------------------------------------------------------------------

    @property
    def queries_made(self) -> int:
        """HTTP queries sent so far, retries included."""
        return self._transport.queries_made

    @property
    def last_fetches(self) -> tuple[FetchRecord, ...]:
        """The fetches of the latest `observe` or `fetch_history`, for tests and logs."""
        return self._last_fetches

    def close(self) -> None:
        self._transport.close()

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
        jobs: list[_Job] = []
        for group in groups:
            until = {ref: self._cache.fetched_until((ref, group.kind)) for ref in group.refs}
            new = tuple(ref for ref, t in until.items() if t is None)
            known = {ref: t for ref, t in until.items() if t is not None}
            if new:
                jobs.append(_Job(FetchPurpose.HISTORY, group, new, history_start, end))
            if known:
                since = min(known.values()) - step
                start = min(max(history_start, since), end)
                jobs.append(_Job(FetchPurpose.UPDATE, group, tuple(known), start, end))
        answers = self._run(jobs)
        records: list[FetchRecord] = []
        rejected: list[Rejected] = []
        for job, answer in zip(jobs, answers, strict=True):
            if isinstance(answer, PrometheusRejected):
                rejected.extend(_rejections(job, answer, targets))
                continue
            for ref in job.refs:
                times, values = answer.points.get(ref, (np.empty(0, np.int64), np.empty(0)))
                self._cache.store((ref, job.group.kind), job.start, job.end, times, values)
            records.append(self._record(job, answer))
        self._last_fetches = tuple(records)
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

    def recorded(self, ref: TargetRef, kind: MetricKind) -> pd.Series | None:
        """The cached series of `ref` for `kind` on a regular grid, or None when nothing is cached."""
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
        answers = self._run(jobs)
        out: dict[MetricKind, pd.Series] = {}
        records: list[FetchRecord] = []
        for job, answer in zip(jobs, answers, strict=True):
            if isinstance(answer, PrometheusRejected):
                raise answer
            records.append(self._record(job, answer))
            points = answer.points.get(ref)
            if points is not None and len(points[0]):
                kind = job.group.kind
                out[kind] = regular_series(points[0], points[1], self.settings.step_s, name=kind.value)
        self._last_fetches = tuple(records)
        return out

    # --- planning ---------------------------------------------------------------------------------

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

    def _run(self, jobs: Sequence[_Job]) -> list[_Answer | PrometheusRejected]:
        """Run every chunk of every job, `parallel_queries` at a time, and assemble one answer per
        job. A rejected query of a custom request selector becomes that job's answer; any other
        error stops the chunks not yet started, and raises."""
        tasks = [(j, start, end) for j, job in enumerate(jobs) for start, end in self._chunks(job)]
        abort = threading.Event()

        def run(task: tuple[int, int, int]) -> list[_Parsed] | PrometheusRejected:
            j, start, end = task
            job = jobs[j]
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
                return _parse(self._transport.query_range(query, start, end, abort), job.group)
            except PrometheusRejected as err:
                custom = job.group.selector not in (None, self._default_selector)
                if custom and job.purpose is not FetchPurpose.BACKTEST:
                    return err
                abort.set()
                raise
            except PrometheusError:
                abort.set()
                raise

        workers = min(self.settings.parallel_queries, len(tasks))
        if workers <= 1:
            results = [run(task) for task in tasks]
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="prometheus") as pool:
                futures = [pool.submit(run, task) for task in tasks]
                try:
                    results = [future.result() for future in futures]
                finally:
                    for future in futures:
                        future.cancel()
        return self._assemble(jobs, tasks, results)

    def _assemble(
        self,
        jobs: Sequence[_Job],
        tasks: Sequence[tuple[int, int, int]],
        results: Sequence[list[_Parsed] | PrometheusRejected],
    ) -> list[_Answer | PrometheusRejected]:
        pieces: list[dict[TargetRef, list[tuple[np.ndarray, np.ndarray]]]] = [{} for _ in jobs]
        returned: list[set[TargetRef]] = [set() for _ in jobs]
        dropped = [0] * len(jobs)
        queries = [0] * len(jobs)
        failed: dict[int, PrometheusRejected] = {}
        for (j, _, _), result in zip(tasks, results, strict=True):
            queries[j] += 1
            if isinstance(result, PrometheusRejected):
                failed[j] = result
                continue
            wanted = set(jobs[j].refs)
            for ref, times, values, bad in result:
                returned[j].add(ref)
                if ref in wanted:
                    pieces[j].setdefault(ref, []).append((times, values))
                    dropped[j] += bad
        answers: list[_Answer | PrometheusRejected] = []
        for j in range(len(jobs)):
            if j in failed:
                answers.append(failed[j])
                continue
            points: dict[TargetRef, tuple[np.ndarray, np.ndarray]] = {}
            for ref, parts in pieces[j].items():
                times = np.concatenate([p[0] for p in parts])
                values = np.concatenate([p[1] for p in parts])
                # Chunks may repeat a boundary point.
                times, first = np.unique(times, return_index=True)
                points[ref] = (times, values[first])
            answers.append(_Answer(points, queries[j], len(returned[j]), dropped[j]))
        return answers
