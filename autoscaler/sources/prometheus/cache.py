"""The series the Prometheus source has fetched, per target and metric kind, on a fixed grid of
`step_s` seconds (epoch multiples); what a tick reads its latest samples from and models are seeded
from.

What is kept: a (target, kind)'s whole history (its last `history_s`) only until `recorded` has
handed it over, which the forecaster does once, when it starts that model; from then on only its
last `cache_s`, enough for `latest` and for the window a tick fetches again. At a thousand
workloads, days of points for every one of them would be most of the controller's memory, kept for
a read that happens once. A tick's new points are written after the ones kept, in place, so a
tick's store costs what it brings, not what is kept.

Threads: a tick and the source's background history reader (see `PrometheusSource`) share one
cache; each public method holds its lock for what it does.

Data hygiene: a kind whose latest point is more than `late_steps` behind the newest grid point, or
that misses more than `max_missing_share` of its points over the last `quality_window_s`, has no
usable sample.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Mapping

import numpy as np
import pandas as pd

from autoscaler.metrics import MetricKind
from autoscaler.model import Sample, TargetRef
from autoscaler.selectors import SeriesSelector
from autoscaler.sources.prometheus.settings import PrometheusSettings

__all__ = ["FILL_STEPS", "SeriesCache", "regular_series"]

# Gaps up to this many steps are interpolated in `recorded`; longer ones stay NaN.
FILL_STEPS = 3

Key = tuple[TargetRef, MetricKind]

# Room for this many points at least behind a buffer: a tick's worth, so that short tails are not
# copied at every tick.
_MIN_ROOM = 16


class _Points:
    """Cached points of one (target, kind): sorted, unique epoch seconds on the step grid.

    They are the slice [lo, hi) of buffers with some room behind it, so that new points that all
    come after the kept ones (every tick's) are written in place; the buffers are copied only when
    that room runs out or when much of them has been trimmed off. An answer kept as the buffer may
    be shared (one namespace total goes to several targets), so it is copied before it is written to.
    """

    __slots__ = ("_hi", "_lo", "_owned", "_times", "_values", "end", "first")

    def __init__(self) -> None:
        self._times = np.empty(0, dtype=np.int64)
        self._values = np.empty(0, dtype=np.float64)
        self._lo = self._hi = 0
        self._owned = True
        # The earliest point ever cached, trimmed or not: a series that has one before the quality
        # window is missing, not new, where that window has no point.
        self.first: int | None = None
        self.end = 0  # end of the last window stored

    @property
    def times(self) -> np.ndarray:
        return self._times[self._lo : self._hi]

    @property
    def values(self) -> np.ndarray:
        return self._values[self._lo : self._hi]

    @property
    def held(self) -> int:
        return len(self._times)

    def replace_range(self, start: int, end: int, times: np.ndarray, values: np.ndarray) -> None:
        """The answer for [start, end] supersedes what was cached there, even where it has no point.
        Keeps `times` and `values` without a copy where it can: the caller hands them over."""
        if len(times):
            first = int(times[0])
            self.first = first if self.first is None else min(self.first, first)
        kept = self.times
        if (len(kept) == 0 or kept[-1] <= end) and (len(times) == 0 or times[0] >= start):
            self._put(int(np.searchsorted(kept, start)), times, values)
            return
        # Points cached after `end` (a clock set back): merge, as rare as it is costly.
        keep = (kept < start) | (kept > end)
        merged_t = np.concatenate([kept[keep], times])
        merged_v = np.concatenate([self.values[keep], values])
        order = np.argsort(merged_t, kind="stable")
        self._reset(merged_t[order], merged_v[order], owned=True)

    def trim(self, oldest: int) -> None:
        cut = int(np.searchsorted(self.times, oldest))
        self._lo += cut
        live = self._hi - self._lo
        if self.held - live > 2 * _room(live):
            self._reset(self.times, self.values, owned=True, room=_room(live))

    def _put(self, cut: int, times: np.ndarray, values: np.ndarray) -> None:
        """Keep the first `cut` points, then `times` and `values`, all later than them."""
        size = cut + len(times)
        if self._hi == self._lo:
            # Nothing kept: the answer itself becomes the buffer (a history, fetched once).
            self._reset(times, values, owned=False)
            return
        if not self._owned or self._lo + size > self.held:
            grown_t = np.empty(size + _room(size), dtype=np.int64)
            grown_v = np.empty(size + _room(size), dtype=np.float64)
            grown_t[:cut] = self._times[self._lo : self._lo + cut]
            grown_v[:cut] = self._values[self._lo : self._lo + cut]
            self._times, self._values, self._lo, self._owned = grown_t, grown_v, 0, True
        at = self._lo + cut
        self._times[at : at + len(times)] = times
        self._values[at : at + len(times)] = values
        self._hi = self._lo + size

    def _reset(self, times: np.ndarray, values: np.ndarray, *, owned: bool, room: int = 0) -> None:
        if room:
            self._times = np.empty(len(times) + room, dtype=np.int64)
            self._values = np.empty(len(times) + room, dtype=np.float64)
            self._times[: len(times)] = times
            self._values[: len(times)] = values
        else:
            self._times = np.asarray(times, dtype=np.int64)
            self._values = np.asarray(values, dtype=np.float64)
        self._lo, self._hi, self._owned = 0, len(times), owned


def _room(points: int) -> int:
    """Room left behind `points` kept points when their buffer is (re)made: a share of them, so
    that copying them is paid for by as many appends or trims."""
    return max(points // 8, _MIN_ROOM)


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


class SeriesCache:
    """See the module docstring. `store` hands its arrays over: the cache may keep them as they
    are."""

    def __init__(self, settings: PrometheusSettings) -> None:
        self.settings = settings
        self._points: dict[Key, _Points] = {}
        # End of the last window asked for, per (target, kind), whether or not it had points.
        self._fetched_until: dict[Key, int] = {}
        # The selector each (target, kind) was fetched with, where the workload names its own.
        self._selector_of: dict[Key, SeriesSelector] = {}
        # The (target, kind)s whose history `recorded` has handed over, with or without points: the
        # forecaster has started their models and will not ask again.
        self._read: set[Key] = set()
        # The (target, kind)s whose history has been fetched (with or without points); the others
        # have at most their recent window, read while their turn for a history read comes.
        self._history: set[Key] = set()
        # What the latest `keep_only` was asked for, with the selector: a history read in the
        # background is stored only if its target and selector are still these.
        self._live: dict[Key, SeriesSelector | None] = {}
        self._lock = threading.RLock()

    def align(self, t: float) -> int:
        step = self.settings.step_s
        return math.floor(t / step) * step

    def fetched_until(self, key: Key) -> int | None:
        with self._lock:
            return self._fetched_until.get(key)

    def has_history(self, key: Key) -> bool:
        """Whether `key`'s history has been fetched and stored (whatever it held)."""
        with self._lock:
            return key in self._history

    def held(self, key: Key) -> int:
        """Points the cache has room for in `key`'s buffers, the kept ones included: its memory."""
        with self._lock:
            points = self._points.get(key)
            return 0 if points is None else points.held

    def keep_only(self, live: Mapping[Key, SeriesSelector | None]) -> None:
        """Drop what belongs to targets (or kinds) no longer asked for, and the history of a
        (target, kind) whose selector changed, which must be fetched anew. Its model lives on (it is
        the same target and kind), so the new history is not read for a seed and is not kept."""
        with self._lock:
            self._keep_only(live)

    def _keep_only(self, live: Mapping[Key, SeriesSelector | None]) -> None:
        self._live = dict(live)
        for key, selector in live.items():
            if selector is None:
                continue
            if self._selector_of.get(key, selector) != selector:
                self._points.pop(key, None)
                self._fetched_until.pop(key, None)
                self._history.discard(key)
            self._selector_of[key] = selector
        for gone in [k for k in self._fetched_until if k not in live]:
            del self._fetched_until[gone]
            self._points.pop(gone, None)
        for gone in [k for k in self._selector_of if k not in live]:
            del self._selector_of[gone]
        # A kind dropped and asked for again later is a new model: its history is kept for its seed.
        self._read.intersection_update(live)
        self._history.intersection_update(live)

    def store(
        self,
        key: Key,
        start: int,
        end: int,
        times: np.ndarray,
        values: np.ndarray,
        *,
        history: bool = False,
    ) -> None:
        """The answer for [start, end] supersedes what was cached there, even where it has no point;
        `history` says it is the key's history read.

        Fetched up to its last point, not to `end`: points that were missing (an outage of the
        exporter, an answer without data) are asked for again next tick, so the cache fills back as
        soon as Prometheus has them; at most the quality window is asked again, however long a
        series has been gone."""
        with self._lock:
            self._store(key, start, end, times, values, history=history)

    def store_history(
        self,
        key: Key,
        selector: SeriesSelector | None,
        start: int,
        end: int,
        times: np.ndarray,
        values: np.ndarray,
    ) -> bool:
        """`store` of a history read in the background, if `key` is still asked for with the
        `selector` it was read with and has no history yet (a tick may have dropped the target or
        changed its selector meanwhile); whether it was stored. Its range may end before what a
        tick has stored since: those later points are kept."""
        with self._lock:
            if key in self._history or key not in self._live or self._live[key] != selector:
                return False
            self._store(key, start, end, times, values, history=True)
            return True

    def _store(
        self, key: Key, start: int, end: int, times: np.ndarray, values: np.ndarray, *, history: bool
    ) -> None:
        if history:
            self._history.add(key)
        points = self._points.setdefault(key, _Points())
        points.replace_range(start, end, times, values)
        points.end = max(points.end, end)
        points.trim(points.end - self._keep_s(key))
        last = int(times[-1]) if len(times) else start
        floor = end - int(self.settings.quality_window_s)
        self._fetched_until[key] = max(last, floor, self._fetched_until.get(key, floor))

    def recorded(self, ref: TargetRef, kind: MetricKind) -> pd.Series | None:
        """The cached series of `ref` for `kind` on a regular grid (see `regular_series`), or None
        when nothing is cached.

        The seed read: it hands the history over, and the cache keeps only the last `cache_s` of it
        from then on, so a later call returns that much at most."""
        key = (ref, kind)
        with self._lock:
            self._read.add(key)
            points = self._points.get(key)
            if points is None or len(points.times) == 0:
                return None
            series = regular_series(points.times, points.values, self.settings.step_s, name=kind.value)
            points.trim(points.end - self._keep_s(key))
            return series

    def _keep_s(self, key: Key) -> int:
        if key in self._read:
            return int(self.settings.cache_s)
        return int(max(self.settings.history_s, self.settings.cache_s))

    def latest(self, ref: TargetRef, kind: MetricKind, now: float, *, averaged: bool) -> Sample | None:
        """The latest point of `ref` for `kind` at `now`, or None when it is too old or too much of
        the quality window is missing; `averaged` says the point is a rate over the rate window."""
        with self._lock:
            return self._latest(ref, kind, now, averaged=averaged)

    def _latest(self, ref: TargetRef, kind: MetricKind, now: float, *, averaged: bool) -> Sample | None:
        points = self._points.get((ref, kind))
        if points is None:
            return None
        upto = int(np.searchsorted(points.times, now, side="right"))
        if upto == 0:
            return None
        last_t = int(points.times[upto - 1])
        step = self.settings.step_s
        if self.align(now) - last_t > self.settings.late_steps * step:
            return None
        # Grid points in (now - window, now], counted from the series' first point for a series that
        # began inside the window (a new Deployment is not "missing" its past).
        began = points.first if points.first is not None else int(points.times[0])
        first_grid = max(self.align(now - self.settings.quality_window_s) + step, began)
        last_grid = self.align(now)
        expected = (last_grid - first_grid) // step + 1
        if expected > 0:
            lo = int(np.searchsorted(points.times, first_grid))
            present = upto - lo
            if 1 - present / expected > self.settings.max_missing_share:
                return None
        # A counter's load is its rate over the rate window; a gauge is read at its time.
        window = self.settings.rate_window_s if averaged else 0.0
        return Sample(float(points.values[upto - 1]), float(last_t), window)
