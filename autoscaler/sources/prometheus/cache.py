"""The series the Prometheus source has fetched, per target and metric kind, on a fixed grid of
`step_s` seconds (epoch multiples), bounded to `cache_s`; what a tick reads its latest samples from
and models are seeded from.

Data hygiene: a kind whose latest point is more than `late_steps` behind the newest grid point, or
that misses more than `max_missing_share` of its points over the last `quality_window_s`, has no
usable sample.
"""

from __future__ import annotations

import itertools
import math
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
    def __init__(self, settings: PrometheusSettings) -> None:
        self.settings = settings
        self._points: dict[Key, _Points] = {}
        # End of the last window asked for, per (target, kind), whether or not it had points.
        self._fetched_until: dict[Key, int] = {}
        # The selector each (target, kind) was fetched with, where the workload names its own.
        self._selector_of: dict[Key, SeriesSelector] = {}

    def align(self, t: float) -> int:
        step = self.settings.step_s
        return math.floor(t / step) * step

    def fetched_until(self, key: Key) -> int | None:
        return self._fetched_until.get(key)

    def keep_only(self, live: Mapping[Key, SeriesSelector | None]) -> None:
        """Drop what belongs to targets (or kinds) no longer asked for, and the history of a
        (target, kind) whose selector changed, which must be fetched anew."""
        for key, selector in live.items():
            if selector is None:
                continue
            if self._selector_of.get(key, selector) != selector:
                self._points.pop(key, None)
                self._fetched_until.pop(key, None)
            self._selector_of[key] = selector
        for gone in [k for k in self._fetched_until if k not in live]:
            del self._fetched_until[gone]
            self._points.pop(gone, None)
        for gone in [k for k in self._selector_of if k not in live]:
            del self._selector_of[gone]

    def store(self, key: Key, start: int, end: int, times: np.ndarray, values: np.ndarray) -> None:
        """The answer for [start, end] supersedes what was cached there, even where it has no point.

        Fetched up to its last point, not to `end`: points that were missing (an outage of the
        exporter, an answer without data) are asked for again next tick, so the cache fills back as
        soon as Prometheus has them; at most the quality window is asked again, however long a
        series has been gone."""
        points = self._points.setdefault(key, _Points())
        points.replace_range(start, end, times, values)
        points.trim(end - int(self.settings.cache_s))
        last = int(times[-1]) if len(times) else start
        floor = end - int(self.settings.quality_window_s)
        self._fetched_until[key] = max(last, floor, self._fetched_until.get(key, floor))

    def recorded(self, ref: TargetRef, kind: MetricKind) -> pd.Series | None:
        """The cached series of `ref` for `kind` on a regular grid (see `regular_series`), or None
        when nothing is cached."""
        points = self._points.get((ref, kind))
        if points is None or len(points.times) == 0:
            return None
        return regular_series(points.times, points.values, self.settings.step_s, name=kind.value)

    def latest(self, ref: TargetRef, kind: MetricKind, now: float, *, averaged: bool) -> Sample | None:
        """The latest point of `ref` for `kind` at `now`, or None when it is too old or too much of
        the quality window is missing; `averaged` says the point is a rate over the rate window."""
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
        first_grid = max(self.align(now - self.settings.quality_window_s) + step, int(points.times[0]))
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
