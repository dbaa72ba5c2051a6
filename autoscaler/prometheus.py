"""The Prometheus metrics source: the only module that talks to Prometheus (`prometheus-api-client`).

Each tick it asks one range query per metric kind for all targets (request rates: one per distinct
counter selector), built by `autoscaler.promql`. A target seen for the first time gets its history
(`history_s`) in the same batched way; afterwards only the window since the last fetched point is
asked for, with one step of overlap, and kept in a bounded per-target cache from which the forecaster
seeds its models (`history`). Points sit on a fixed grid of `step_s` seconds (epoch multiples), so
windows fetched at different ticks line up.

Data hygiene: NaN, infinite and negative points are dropped; a kind whose latest point is older than
`stale_after_s`, or that misses more than `max_missing_share` of its points over the last
`quality_window_s`, is unavailable (None) for that target; a target with nothing usable is left out.

Failures: an unreachable server, a timeout or a server error, after `retries` retries with exponential
backoff, raises a `PrometheusError` (an `autoscaler.reconcile.MetricsUnavailable`) for the whole tick.
A query Prometheus rejects (4xx) raises `PrometheusRejected`, except for a custom request selector,
which costs only those targets their request rate.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
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
_STATUS = re.compile(r"HTTP Status Code (\d+)")
# Prometheus refuses range queries of more than 11 000 points per series.
_PROMETHEUS_POINT_LIMIT = 11_000
# Gaps up to this many steps are interpolated in `history`; longer ones stay NaN.
FILL_STEPS = 3


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
    max_points_per_query: int = 10_000
    # Plain transfer is faster than gzip on the fast links a controller has to Prometheus.
    accept_identity_encoding: bool = True

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"prometheus url must be http(s)://…, got {self.url!r}")
        if self.step_s < 1:
            raise ValueError("step_s must be at least one second")
        if not _DURATION.fullmatch(self.rate_window):
            raise ValueError(
                f"rate_window must be a Prometheus duration like 2m, got {self.rate_window!r}"
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
        parse_request_selector(self.default_requests_metric)

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
class _Answer:
    """Points per (namespace, deployment) of one batched query, already cleaned."""

    points: dict[TargetRef, tuple[np.ndarray, np.ndarray]]
    queries: int
    returned: int
    dropped: int


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


class PrometheusSource:
    """A `MetricsSource` reading a real Prometheus; see the module docstring for what it does.

    `sleep` is what waits between retries (tests pass a recorder so they never sleep).
    """

    def __init__(
        self, settings: PrometheusSettings, *, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.settings = settings
        self._sleep = sleep
        self._default_selector = settings.default_requests_selector
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
        if self._client is not None:
            self._client.close()
            self._client = None

    def observe(self, targets: Sequence[Target], now: float) -> Mapping[TargetRef, LoadSnapshot]:
        step = self.settings.step_s
        end = self._align(now)
        history_start = end - int(self.settings.history_s // step) * step
        groups = group_targets(targets, self._default_selector)
        self._forget_all_but(groups)
        records: list[FetchRecord] = []
        for group in groups:
            new = [ref for ref in group.refs if (ref, group.kind) not in self._fetched_until]
            known = [ref for ref in group.refs if (ref, group.kind) in self._fetched_until]
            if new:
                records += self._refresh(group, new, history_start, end, FetchPurpose.HISTORY)
            if known:
                since = min(self._fetched_until[(ref, group.kind)] for ref in known) - step
                start = min(max(history_start, since), end)
                records += self._refresh(group, known, start, end, FetchPurpose.UPDATE)
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
        out: dict[MetricKind, pd.Series] = {}
        records: list[FetchRecord] = []
        for kind in dict.fromkeys(kinds):
            chosen = (selector or self._default_selector) if kind is MetricKind.REQUESTS else None
            group = QueryGroup(kind, chosen, (ref,))
            answer = self._fetch(group, [ref], first, last, restrict=True)
            points = answer.points.get(ref)
            records.append(self._record(FetchPurpose.BACKTEST, group, 1, first, last, answer))
            if points is not None and len(points[0]):
                out[kind] = regular_series(points[0], points[1], self.settings.step_s, name=kind.value)
        self._last_fetches = tuple(records)
        return out

    # --- fetching ---------------------------------------------------------------------------------

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

    def _refresh(
        self, group: QueryGroup, refs: Sequence[TargetRef], start: int, end: int, purpose: FetchPurpose
    ) -> list[FetchRecord]:
        try:
            answer = self._fetch(group, refs, start, end, restrict=purpose is FetchPurpose.HISTORY)
        except PrometheusRejected as err:
            if group.selector is None or group.selector == self._default_selector:
                raise
            if group.selector not in self._warned:
                self._warned.add(group.selector)
                _LOG.warning(
                    "request selector %s rejected by Prometheus: %s", group.selector.metric, err
                )
            return []
        oldest = end - int(self.settings.cache_s)
        for ref in refs:
            key = (ref, group.kind)
            points = self._cache.setdefault(key, _Points())
            times, values = answer.points.get(ref, (np.empty(0, np.int64), np.empty(0)))
            points.replace_range(start, end, times, values)
            points.trim(oldest)
            self._fetched_until[key] = end
        return [self._record(purpose, group, len(refs), start, end, answer)]

    def _record(
        self,
        purpose: FetchPurpose,
        group: QueryGroup,
        targets: int,
        start: int,
        end: int,
        answer: _Answer,
    ) -> FetchRecord:
        return FetchRecord(
            purpose=purpose,
            kind=group.kind,
            selector=group.selector,
            start=float(start),
            end=float(end),
            targets=targets,
            queries=answer.queries,
            returned=answer.returned,
            series=len(answer.points),
            points=sum(len(t) for t, _ in answer.points.values()),
            dropped=answer.dropped,
        )

    def _fetch(
        self, group: QueryGroup, refs: Sequence[TargetRef], start: int, end: int, *, restrict: bool
    ) -> _Answer:
        """One batched query over [start, end], in chunks Prometheus accepts; only series of `refs`
        are kept, matched exactly on (namespace, deployment)."""
        query = load_query(
            group.kind,
            refs,
            rate_window=self.settings.rate_window,
            selector=group.selector,
            restrict_deployments=restrict,
        )
        wanted = set(refs)
        step = self.settings.step_s
        span = (self.settings.max_points_per_query - 1) * step
        pieces: dict[TargetRef, list[tuple[np.ndarray, np.ndarray]]] = {}
        dropped = 0
        queries = 0
        returned: set[TargetRef] = set()
        chunk_start = start
        while chunk_start <= end:
            chunk_end = min(end, chunk_start + span)
            queries += 1
            for ref, times, values, bad in self._parse(self._query_range(query, chunk_start, chunk_end)):
                returned.add(ref)
                if ref in wanted:
                    pieces.setdefault(ref, []).append((times, values))
                    dropped += bad
            chunk_start = chunk_end + step
        points: dict[TargetRef, tuple[np.ndarray, np.ndarray]] = {}
        for ref, parts in pieces.items():
            times = np.concatenate([p[0] for p in parts])
            values = np.concatenate([p[1] for p in parts])
            # Chunks may repeat their boundary point.
            times, first = np.unique(times, return_index=True)
            points[ref] = (times, values[first])
        return _Answer(points, queries, len(returned), dropped)

    @staticmethod
    def _parse(result: Any) -> Iterable[tuple[TargetRef, np.ndarray, np.ndarray, int]]:
        if not isinstance(result, list):
            raise PrometheusServerError("Prometheus answered something that is not a query result")
        parsed = []
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

    def _query_range(self, query: str, start: int, end: int) -> Any:
        attempts = self.settings.retries + 1
        error: PrometheusError = PrometheusServerError("no attempt made")
        for attempt in range(attempts):
            if attempt:
                self._sleep(self.settings.backoff_s * 2 ** (attempt - 1))
            try:
                client = self._connect()
                self._queries += 1
                return client.custom_query_range(
                    query,
                    _to_datetime(start),
                    _to_datetime(end),
                    str(self.settings.step_s),
                    params={"timeout": str(self.settings.timeout_s)},
                )
            except requests.Timeout as err:
                error = PrometheusTimeout(
                    f"Prometheus did not answer within {self.settings.timeout_s} s: {err}"
                )
                self._disconnect()
            except requests.RequestException as err:
                error = PrometheusUnreachable(f"cannot reach Prometheus at {self.settings.url}: {err}")
                self._disconnect()
            except PrometheusApiClientException as err:
                status = _status_of(err)
                if status in (401, 403):
                    # Possibly a token that rotated since it was read: read it again and retry.
                    error = PrometheusRejected(
                        f"Prometheus refused the credentials (HTTP {status})", status
                    )
                    self._disconnect()
                elif status is not None and 400 <= status < 500 and status not in (408, 429):
                    raise PrometheusRejected(f"Prometheus rejected a query: {err}", status) from None
                else:
                    error = PrometheusServerError(f"Prometheus answered an error: {err}")
            except (ValueError, KeyError, TypeError) as err:
                error = PrometheusServerError(f"malformed answer from Prometheus: {err!r}")
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
        if self._client is not None and stamp == self._token_stamp:
            return self._client
        self._disconnect()
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
        self._client = PrometheusConnect(
            url=settings.url.rstrip("/"),
            headers=headers,
            disable_ssl=settings.insecure_skip_verify,
            # Retries are ours (counted, with an injectable sleep); read=False keeps a read timeout
            # a Timeout instead of a generic connection error.
            retry=Retry(total=0, read=False),
            session=session,
            timeout=settings.timeout_s,
        )
        self._token_stamp = stamp
        return self._client

    def _disconnect(self) -> None:
        self.close()

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
        return Sample(float(points.values[upto - 1]), float(last_t))
