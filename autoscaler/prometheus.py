"""The Prometheus metrics source: the only module that talks to Prometheus (`prometheus-api-client`).

Each tick it asks one range query per metric kind for all targets (request rates: one per distinct
counter selector), built by `autoscaler.promql`. A target seen for the first time gets its history
(`history_s`) in the same batched way; afterwards only the window since the last fetched point is
asked for, with one step of overlap, and kept in a bounded per-target cache from which the forecaster
seeds its models (`history`). Points sit on a fixed grid of `step_s` seconds (epoch multiples), so
windows fetched at different ticks line up. Long ranges are split into chunks small enough for
Prometheus' point limit and for a quick evaluation, and a tick's queries run `parallel_queries` at a
time.

Data hygiene: NaN, infinite and negative points are dropped; a kind whose latest point is older than
`stale_after_s`, or that misses more than `max_missing_share` of its points over the last
`quality_window_s`, is unavailable (None) for that target; a target with nothing usable is left out.

Failures: an unreachable server, a timeout or a server error, after `retries` retries with exponential
backoff, raises a `PrometheusError` (an `autoscaler.reconcile.MetricsUnavailable`) for the whole tick.
A query Prometheus rejects (4xx) raises `PrometheusRejected`, except for a custom request selector,
which costs only its own targets their request rate.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from autoscaler.model import LoadSnapshot, MetricKind, RequestSelector, Sample, Target, TargetRef
from autoscaler.promql import QueryGroup, group_targets, load_query, parse_request_selector
from autoscaler.reconcile import MetricsUnavailable

__all__ = [
    "FILL_STEPS",
    "FetchPurpose",
    "FetchRecord",
    "PrometheusError",
    "PrometheusRejected",
    "PrometheusServerError",
    "PrometheusSettings",
    "PrometheusSource",
    "PrometheusTimeout",
    "PrometheusUnreachable",
    "regular_series",
]

_LOG = logging.getLogger(__name__)
_DURATION = re.compile(r"(?:[0-9]+(?:ms|s|m|h|d|w|y))+")
_DURATION_PART = re.compile(r"([0-9]+)(ms|s|m|h|d|w|y)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}

_STATUS = re.compile(r"HTTP Status Code (\d+)")
# Prometheus refuses range queries of more than 11 000 points per series.
_PROMETHEUS_POINT_LIMIT = 11_000
# Gaps up to this many steps are interpolated in `history`; longer ones stay NaN.
FILL_STEPS = 3


def _duration_s(text: str) -> float:
    """Seconds of a Prometheus duration such as `2m` or `1m30s` (already validated)."""
    return sum(int(n) * _UNIT_S[unit] for n, unit in _DURATION_PART.findall(text))


class PrometheusError(MetricsUnavailable):
    """Prometheus gave no usable answer this tick. `temporary` errors are expected to pass by
    themselves (the next tick retries); the others need someone to fix a query or credentials."""

    temporary: ClassVar[bool] = True


class PrometheusUnreachable(PrometheusError):
    """No connection (refused, DNS, TLS)."""


class PrometheusTimeout(PrometheusError):
    """Connected, but no answer within `timeout_s`."""


class PrometheusServerError(PrometheusError):
    """A 5xx, 408 or 429 status, or an answer that is not a query result."""


class PrometheusRejected(PrometheusError):
    """A 4xx status: the query is invalid, or the credentials are refused (401, 403)."""

    temporary: ClassVar[bool] = False

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class PrometheusSettings:
    """Where Prometheus is and how the source reads it.

    `bearer_token_file` is re-read whenever the client reconnects: on first use, after a transport
    error or a 401/403, and when the file changes, so a rotated service-account token is picked up.
    """

    url: str
    bearer_token_file: Path | None = None
    ca_file: Path | None = None
    insecure_skip_verify: bool = False
    timeout_s: float = 10.0
    retries: int = 2
    # Sleep before retry n (from 0) is backoff_s * 2**n.
    backoff_s: float = 0.5
    step_s: int = 60
    rate_window: str = "2m"
    history_s: float = 3 * 86400.0
    cache_s: float = 3 * 86400.0
    # The request counter of targets that name none; a selector, e.g. 'http_requests_total{code!~"5.."}'.
    default_requests_metric: str = "http_requests_total"
    stale_after_s: float = 180.0
    quality_window_s: float = 600.0
    max_missing_share: float = 0.3
    # Points per series of one query (Prometheus refuses more than 11 000).
    max_points_per_query: int = 10_000
    # Points of all series of one query: a longer history is fetched in more, shorter chunks, each
    # quick to evaluate (about 2 s for 250 000 on two cores) and far from `timeout_s`.
    max_answer_points: int = 250_000
    parallel_queries: int = 2
    # Plain transfer is faster than gzip on the fast links a controller has to Prometheus.
    accept_identity_encoding: bool = True

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"prometheus url must be http(s)://…, got {self.url!r}")
        if self.step_s < 1:
            raise ValueError("step_s must be at least one second")
        if not _DURATION.fullmatch(self.rate_window) or not self.rate_window.strip("0msdhwy"):
            raise ValueError(
                f"rate_window must be a positive duration like 2m, got {self.rate_window!r}"
            )
        if self.timeout_s <= 0 or self.retries < 0 or self.backoff_s < 0:
            raise ValueError("timeout_s must be positive, retries and backoff_s non-negative")
        if self.history_s < self.step_s or self.cache_s < self.quality_window_s:
            raise ValueError("history_s must cover a step and cache_s the quality window")
        if self.stale_after_s <= 0 or self.quality_window_s < self.step_s:
            raise ValueError("stale_after_s must be positive and quality_window_s at least one step")
        if not 0.0 <= self.max_missing_share < 1.0:
            raise ValueError("max_missing_share must be in [0, 1)")
        if not 2 <= self.max_points_per_query <= _PROMETHEUS_POINT_LIMIT:
            raise ValueError(f"max_points_per_query must be in [2, {_PROMETHEUS_POINT_LIMIT}]")
        if self.max_answer_points < 2 or self.parallel_queries < 1:
            raise ValueError("max_answer_points must be at least 2 and parallel_queries at least 1")
        parse_request_selector(self.default_requests_metric)

    @property
    def rate_window_s(self) -> float:
        return _duration_s(self.rate_window)

    @property
    def default_requests_selector(self) -> RequestSelector:
        return parse_request_selector(self.default_requests_metric)


class FetchPurpose(Enum):
    HISTORY = "history"  # first sight of a target: its last `history_s`
    UPDATE = "update"  # a known target: the window since the last fetched point
    BACKTEST = "backtest"  # `fetch_history` for one Deployment


@dataclass(frozen=True, slots=True)
class FetchRecord:
    """One batched fetch: a query (in `queries` chunks) over [start, end] for `targets` targets."""

    purpose: FetchPurpose
    kind: MetricKind
    selector: RequestSelector | None
    start: float
    end: float
    targets: int
    queries: int
    returned: int  # series in the answer, including Deployments that are no target
    series: int  # series of the targets
    points: int  # points of the targets' series kept
    dropped: int  # NaN, infinite or negative points of the targets' series


class _Points:
    """Cached points of one (target, kind): sorted, unique epoch seconds on the step grid."""

    __slots__ = ("times", "values")

    def __init__(self) -> None:
        self.times = np.empty(0, dtype=np.int64)
        self.values = np.empty(0, dtype=np.float64)

    def replace_range(self, start: int, end: int, times: np.ndarray, values: np.ndarray) -> None:
        """The answer for [start, end] supersedes what was cached there, even where it has no point."""
        keep = (self.times < start) | (self.times > end)
        merged_t = np.concatenate([self.times[keep], times])
        merged_v = np.concatenate([self.values[keep], values])
        order = np.argsort(merged_t, kind="stable")
        self.times, self.values = merged_t[order], merged_v[order]

    def trim(self, oldest: int) -> None:
        cut = int(np.searchsorted(self.times, oldest))
        if cut:
            self.times, self.values = self.times[cut:], self.values[cut:]


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


def regular_series(
    times: np.ndarray,
    values: np.ndarray,
    step_s: int,
    fill_steps: int = FILL_STEPS,
    name: str | None = None,
) -> pd.Series:
    """A fixed-frequency series (UTC DatetimeIndex, freq = step) from sorted points on a step grid:
    runs of up to `fill_steps` missing points between two known ones are linearly interpolated,
    longer runs stay NaN."""
    if len(times) == 0:
        raise ValueError("no points")
    t = np.asarray(times, dtype=np.int64)
    grid_len = int((t[-1] - t[0]) // step_s) + 1
    full = np.full(grid_len, np.nan)
    full[(t - t[0]) // step_s] = np.asarray(values, dtype=np.float64)
    missing = np.isnan(full)
    if missing.any():
        known = np.flatnonzero(~missing)
        # Each run of missing points lies between two consecutive known points.
        for left, right in itertools.pairwise(known):
            run = right - left - 1
            if 0 < run <= fill_steps:
                full[left + 1 : right] = np.interp(
                    np.arange(left + 1, right), [left, right], [full[left], full[right]]
                )
    index = pd.date_range(
        start=pd.Timestamp(int(t[0]), unit="s", tz="UTC"),
        periods=grid_len,
        freq=pd.Timedelta(seconds=step_s),
    )
    return pd.Series(full, index=index, name=name)


def _status_of(error: PrometheusApiClientException) -> int | None:
    match = _STATUS.search(str(error))
    return int(match.group(1)) if match else None


def _to_datetime(t: float) -> datetime:
    return datetime.fromtimestamp(t, tz=UTC)


def _parse(result: Any) -> list[_Parsed]:
    if not isinstance(result, list):
        raise PrometheusServerError("Prometheus answered something that is not a query result")
    parsed: list[_Parsed] = []
    try:
        for series in result:
            labels = series["metric"]
            ref = TargetRef(str(labels["namespace"]), str(labels["deployment"]))
            pairs = series["values"]
            times = np.rint(np.fromiter((p[0] for p in pairs), dtype=np.float64, count=len(pairs)))
            values = np.array([p[1] for p in pairs], dtype=np.float64)
            good = np.isfinite(values) & (values >= 0)
            parsed.append((ref, times[good].astype(np.int64), values[good], int((~good).sum())))
    except (KeyError, TypeError, ValueError) as err:
        raise PrometheusServerError(f"malformed answer from Prometheus: {err!r}") from None
    return parsed


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
        self._sleep = sleep
        self._on_query = on_query
        self._default_selector = settings.default_requests_selector
        self._lock = threading.Lock()  # guards the client and the query counter across workers
        self._client: PrometheusConnect | None = None
        self._token_stamp: tuple[int, int] | None = None
        self._queries = 0
        self._cache: dict[tuple[TargetRef, MetricKind], _Points] = {}
        # End of the last window asked for, per (target, kind), whether or not it had points.
        self._fetched_until: dict[tuple[TargetRef, MetricKind], int] = {}
        self._selector_of: dict[TargetRef, RequestSelector] = {}
        self._last_fetches: tuple[FetchRecord, ...] = ()
        self._warned: set[RequestSelector] = set()

    # --- public surface ---------------------------------------------------------------------------

    @property
    def queries_made(self) -> int:
        """HTTP queries sent so far, retries included."""
        return self._queries

    @property
    def last_fetches(self) -> tuple[FetchRecord, ...]:
        """The fetches of the latest `observe` or `fetch_history`, for tests and logs."""
        return self._last_fetches

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def observe(self, targets: Sequence[Target], now: float) -> Mapping[TargetRef, LoadSnapshot]:
        step = self.settings.step_s
        end = self._align(now)
        history_start = end - int(self.settings.history_s // step) * step
        groups = group_targets(targets, self._default_selector)
        self._forget_all_but(groups)
        jobs: list[_Job] = []
        for group in groups:
            new = tuple(ref for ref in group.refs if (ref, group.kind) not in self._fetched_until)
            known = tuple(ref for ref in group.refs if (ref, group.kind) in self._fetched_until)
            if new:
                jobs.append(_Job(FetchPurpose.HISTORY, group, new, history_start, end))
            if known:
                since = min(self._fetched_until[(ref, group.kind)] for ref in known) - step
                jobs.append(
                    _Job(FetchPurpose.UPDATE, group, known, min(max(history_start, since), end), end)
                )
        answers = self._run(jobs)
        records: list[FetchRecord] = []
        oldest = end - int(self.settings.cache_s)
        for job, answer in zip(jobs, answers, strict=True):
            if isinstance(answer, PrometheusRejected):
                self._warn_once(job.group, answer)
                continue
            for ref in job.refs:
                key = (ref, job.group.kind)
                points = self._cache.setdefault(key, _Points())
                times, values = answer.points.get(ref, (np.empty(0, np.int64), np.empty(0)))
                points.replace_range(job.start, job.end, times, values)
                points.trim(oldest)
                self._fetched_until[key] = job.end
            records.append(self._record(job, answer))
        self._last_fetches = tuple(records)
        loads: dict[TargetRef, LoadSnapshot] = {}
        for target in targets:
            snapshot = self._snapshot(target, now)
            if snapshot is not None:
                loads[target.state.ref] = snapshot
        return loads

    def history(self, ref: TargetRef, kind: MetricKind) -> pd.Series | None:
        """The cached series of `ref` for `kind` on a regular grid (see `regular_series`), or None
        when nothing is cached."""
        points = self._cache.get((ref, kind))
        if points is None or len(points.times) == 0:
            return None
        return regular_series(points.times, points.values, self.settings.step_s, name=kind.value)

    def fetch_history(
        self,
        ref: TargetRef,
        kinds: Iterable[MetricKind],
        start: float,
        end: float,
        *,
        selector: RequestSelector | None = None,
    ) -> dict[MetricKind, pd.Series]:
        """The load of one Deployment over [start, end] per kind, regular as in `history`, without
        touching the cache; kinds without data are left out. Errors, rejections included, raise."""
        first, last = self._align(start + self.settings.step_s - 1), self._align(end)
        if last < first:
            raise ValueError("fetch_history needs end after start")
        jobs = []
        for kind in dict.fromkeys(kinds):
            chosen = (selector or self._default_selector) if kind is MetricKind.REQUESTS else None
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

    def _align(self, t: float) -> int:
        step = self.settings.step_s
        return math.floor(t / step) * step

    def _forget_all_but(self, groups: Sequence[QueryGroup]) -> None:
        """Drop what belongs to targets (or kinds) no longer asked for, and the request history of a
        target whose counter selector changed, which must be fetched anew."""
        live: set[tuple[TargetRef, MetricKind]] = set()
        for group in groups:
            for ref in group.refs:
                live.add((ref, group.kind))
                if group.selector is not None:
                    if self._selector_of.get(ref, group.selector) != group.selector:
                        self._cache.pop((ref, group.kind), None)
                        self._fetched_until.pop((ref, group.kind), None)
                    self._selector_of[ref] = group.selector
        for key in [k for k in self._fetched_until if k not in live]:
            del self._fetched_until[key]
            self._cache.pop(key, None)
        live_refs = {ref for ref, kind in live if kind is MetricKind.REQUESTS}
        for ref in [r for r in self._selector_of if r not in live_refs]:
            del self._selector_of[ref]

    def _warn_once(self, group: QueryGroup, error: PrometheusRejected) -> None:
        if group.selector is not None and group.selector not in self._warned:
            self._warned.add(group.selector)
            _LOG.warning("request selector %s rejected by Prometheus: %s", group.selector.metric, error)

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
            )
            try:
                return _parse(self._query_range(query, start, end, abort))
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

    def _query_range(self, query: str, start: int, end: int, abort: threading.Event) -> Any:
        attempts = self.settings.retries + 1
        error: PrometheusError = PrometheusServerError("no answer")
        for attempt in range(attempts):
            # Another query failing has already decided this tick: stop asking.
            if abort.is_set():
                if attempt == 0:
                    raise PrometheusServerError("abandoned: another query of this tick failed")
                break
            if attempt:
                self._sleep(self.settings.backoff_s * 2 ** (attempt - 1))
            client = self._connect()
            with self._lock:
                self._queries += 1
            began = time.monotonic()
            answered = False
            try:
                answer = client.custom_query_range(
                    query,
                    _to_datetime(start),
                    _to_datetime(end),
                    str(self.settings.step_s),
                    params={"timeout": str(self.settings.timeout_s)},
                )
                answered = True
                return answer
            except requests.Timeout as err:
                error = PrometheusTimeout(
                    f"Prometheus did not answer within {self.settings.timeout_s} s: {err}"
                )
                self._disconnect(client)
            except requests.JSONDecodeError as err:  # a RequestException, but the server did answer
                error = PrometheusServerError(f"Prometheus answered something that is not JSON: {err}")
            except requests.RequestException as err:
                error = PrometheusUnreachable(f"cannot reach Prometheus at {self.settings.url}: {err}")
                self._disconnect(client)
            except PrometheusApiClientException as err:
                status = _status_of(err)
                if status in (401, 403):
                    # Possibly a token that rotated since it was read: read it again and retry.
                    error = PrometheusRejected(
                        f"Prometheus refused the credentials (HTTP {status})", status
                    )
                    self._disconnect(client)
                elif status is not None and 400 <= status < 500 and status not in (408, 429):
                    raise PrometheusRejected(f"Prometheus rejected a query: {err}", status) from None
                else:
                    error = PrometheusServerError(f"Prometheus answered an error: {err}")
            except (ValueError, KeyError, TypeError) as err:
                error = PrometheusServerError(f"malformed answer from Prometheus: {err!r}")
            finally:
                if self._on_query is not None:
                    self._on_query(time.monotonic() - began, answered)
        raise error

    # --- connection -------------------------------------------------------------------------------

    def _token_file_stamp(self) -> tuple[int, int] | None:
        path = self.settings.bearer_token_file
        if path is None:
            return None
        try:
            info = path.stat()
        except OSError:
            return None
        return (info.st_mtime_ns, info.st_size)

    def _connect(self) -> PrometheusConnect:
        stamp = self._token_file_stamp()
        with self._lock:
            if self._client is not None and stamp == self._token_stamp:
                return self._client
            stale, self._client = self._client, self._new_client()
            self._token_stamp = stamp
            client = self._client
        if stale is not None:
            stale.close()
        return client

    def _new_client(self) -> PrometheusConnect:
        settings = self.settings
        headers: dict[str, str] = {}
        if settings.accept_identity_encoding:
            headers["Accept-Encoding"] = "identity"
        if settings.bearer_token_file is not None:
            try:
                token = settings.bearer_token_file.read_text().strip()
            except OSError as err:
                raise PrometheusRejected(f"cannot read the bearer token file: {err}", 401) from None
            headers["Authorization"] = f"Bearer {token}"
        session = requests.Session()
        if settings.insecure_skip_verify:
            session.verify = False
        elif settings.ca_file is not None:
            session.verify = str(settings.ca_file)
        return PrometheusConnect(
            url=settings.url.rstrip("/"),
            headers=headers,
            disable_ssl=settings.insecure_skip_verify,
            # Retries are ours (counted, with an injectable sleep); read=False keeps a read timeout
            # a Timeout instead of a generic connection error.
            retry=Retry(total=0, read=False),
            session=session,
            timeout=settings.timeout_s,
        )

    def _disconnect(self, client: PrometheusConnect) -> None:
        """Drop `client` after a transport or credential error so the next attempt reconnects (and
        re-reads the token); another worker may already have replaced it."""
        with self._lock:
            current = self._client is client
            if current:
                self._client = None
        if current:
            client.close()

    # --- snapshots --------------------------------------------------------------------------------

    def _snapshot(self, target: Target, now: float) -> LoadSnapshot | None:
        samples: dict[MetricKind, Sample | None] = {
            kind: self._latest(target.state.ref, kind, now) for kind in target.config.metrics
        }
        if not any(samples.values()):
            return None
        return LoadSnapshot(
            cpu=samples.get(MetricKind.CPU),
            memory=samples.get(MetricKind.MEMORY),
            requests=samples.get(MetricKind.REQUESTS),
        )

    def _latest(self, ref: TargetRef, kind: MetricKind, now: float) -> Sample | None:
        points = self._cache.get((ref, kind))
        if points is None:
            return None
        upto = int(np.searchsorted(points.times, now, side="right"))
        if upto == 0:
            return None
        last_t = int(points.times[upto - 1])
        if now - last_t > self.settings.stale_after_s:
            return None
        step = self.settings.step_s
        # Grid points in (now - window, now], counted from the series' first point for a series that
        # began inside the window (a new Deployment is not "missing" its past).
        first_grid = max(self._align(now - self.settings.quality_window_s) + step, int(points.times[0]))
        last_grid = self._align(now)
        expected = (last_grid - first_grid) // step + 1
        if expected > 0:
            lo = int(np.searchsorted(points.times, first_grid))
            present = upto - lo
            if 1 - present / expected > self.settings.max_missing_share:
                return None
        # CPU and requests are rates over the rate window; memory is a gauge read at its time.
        window = 0.0 if kind is MetricKind.MEMORY else self.settings.rate_window_s
        return Sample(float(points.values[upto - 1]), float(last_t), window)
