"""Preprocessing: turn whatever a metrics source returned into a regular, gap-checked series.

Models only ever see a :class:`RegularSeries`: values on a fixed grid (``start + i * step``), with
short holes interpolated and long ones rejected, so that the statistics downstream never have to
guess what a missing point means. The same function serves the controller (one call per tick) and
the backtests.

Grid rule: a series whose timestamps already sit on one grid (all differences are multiples of the
step) keeps its own timestamps, so a trace stamped ``..:04, ..:09`` stays that way; anything else is
resampled onto epoch-aligned bins of the step, averaging points that share a bin. Timestamps come
out tz-naive in UTC (tz-aware input is converted; naive input is taken to be UTC already).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta
from enum import Enum

import numpy as np
import numpy.typing as npt
import pandas as pd

from forecasting.errors import GapTooLongError, InvalidSeriesError

__all__ = [
    "LongGapPolicy",
    "PrepConfig",
    "RegularSeries",
    "continue_series",
    "prepare_series",
    "steps_for_horizon",
]

FloatArray = npt.NDArray[np.float64]

LARGEST_VALUE = 1e300
"""Values beyond ±this are refused. No load is that large, and the models need headroom above the
series within the float range (1.8e308): for sums over a window, the log offset and a forecast bound
(``transform.HEADROOM`` times the largest value)."""


class LongGapPolicy(Enum):
    """What to do with a run of missing points longer than ``PrepConfig.max_fill_steps``."""

    RAISE = "raise"
    """Raise :class:`GapTooLongError` (the default: the caller decides)."""
    LATEST_SEGMENT = "latest-segment"
    """Keep only the points after the last long gap (a restarted exporter, an old outage)."""


@dataclass(frozen=True)
class PrepConfig:
    """How :func:`prepare_series` regularizes a series."""

    step: timedelta | None = None
    """Grid step; ``None`` infers it from the median spacing of the timestamps."""
    max_fill_steps: int = 3
    """Longest run of missing points filled by linear interpolation."""
    long_gap: LongGapPolicy = LongGapPolicy.RAISE

    def __post_init__(self) -> None:
        if self.step is not None and self.step <= timedelta(0):
            raise ValueError(f"step must be positive, got {self.step}")
        if self.max_fill_steps < 0:
            raise ValueError(f"max_fill_steps must be >= 0, got {self.max_fill_steps}")


@dataclass(frozen=True, eq=False)
class RegularSeries:
    """Finite values on the grid ``start + i * step``; immutable (the array is read-only)."""

    values: FloatArray
    start: pd.Timestamp
    step: pd.Timedelta
    filled_points: int = 0
    """Points that were interpolated (short gaps)."""
    dropped_points: int = field(default=0)
    """Grid points dropped before the last long gap (``LongGapPolicy.LATEST_SEGMENT``)."""

    def __post_init__(self) -> None:
        values = np.array(self.values, dtype=np.float64)
        if values.ndim != 1:
            raise InvalidSeriesError("values must be one-dimensional")
        values.flags.writeable = False
        object.__setattr__(self, "values", values)

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def end(self) -> pd.Timestamp:
        """Timestamp of the last point."""
        return self.start + self.step * (len(self) - 1)

    @property
    def index(self) -> pd.DatetimeIndex:
        return pd.date_range(self.start, periods=len(self), freq=self.step)

    @property
    def steps_per_day(self) -> float:
        return pd.Timedelta(days=1) / self.step

    def epoch_seconds(self, offset: int = 0, count: int | None = None) -> FloatArray:
        """Seconds since the Unix epoch of points ``offset .. offset + count - 1`` of the grid.

        Offsets past the end address future grid points, so seasonal terms of a forecast use the same
        clock as the fit.
        """
        n = len(self) - offset if count is None else count
        start_s = self.start.value / 1e9 + offset * self.step.total_seconds()
        return start_s + self.step.total_seconds() * np.arange(n, dtype=np.float64)

    def tail(self, count: int) -> RegularSeries:
        """The last ``count`` points (all of them when ``count >= len(self)``)."""
        if count >= len(self):
            return self
        offset = len(self) - count
        return RegularSeries(self.values[offset:], self.start + self.step * offset, self.step)

    def head(self, count: int) -> RegularSeries:
        """The first ``count`` points."""
        return RegularSeries(self.values[:count], self.start, self.step)

    def append(self, newer: RegularSeries, keep: int | None = None) -> RegularSeries:
        """This series followed by ``newer`` (which must start one step after ``end``).

        ``keep`` bounds the result to its last ``keep`` points.
        """
        if newer.step != self.step or newer.start != self.end + self.step:
            raise InvalidSeriesError("appended points must continue the grid without a hole")
        joined = RegularSeries(np.concatenate((self.values, newer.values)), self.start, self.step)
        return joined if keep is None else joined.tail(keep)

    def to_series(self) -> pd.Series:
        return pd.Series(self.values, index=self.index, name="value")


def steps_for_horizon(step: timedelta, horizon: timedelta) -> int:
    """Number of grid steps needed to reach ``horizon`` (rounded up, at least 1)."""
    if horizon <= timedelta(0) or step <= timedelta(0):
        raise ValueError("horizon and step must be positive")
    return max(1, math.ceil(horizon / step - 1e-9))


def prepare_series(series: pd.Series, config: PrepConfig = PrepConfig()) -> RegularSeries:
    """Validate and regularize ``series`` (values indexed by a DatetimeIndex).

    Raises :class:`InvalidSeriesError` for input that is not a numeric time series and
    :class:`GapTooLongError` for a long hole under ``LongGapPolicy.RAISE``. An empty result (all
    points missing) is an :class:`InvalidSeriesError`; a short one is left to the model, which knows
    how much history it needs.
    """
    with_missing = _clean(series)
    values = with_missing.dropna()
    if values.empty:
        raise InvalidSeriesError("series has no finite values")
    # Missing values still mark grid points, so they help to infer the step.
    index = with_missing.index
    assert isinstance(index, pd.DatetimeIndex)
    step = pd.Timedelta(config.step) if config.step is not None else _infer_step(index)
    gridded = _to_grid(values, step)
    return _fill_gaps(gridded, step, config.max_fill_steps, config.long_gap)


def continue_series(
    history: RegularSeries, series: pd.Series, config: PrepConfig = PrepConfig()
) -> RegularSeries | None:
    """The points of ``series`` after ``history.end``, on the grid of ``history``.

    ``None`` when there is nothing newer. A hole longer than ``config.max_fill_steps`` between the
    history and the new points, or within them, raises :class:`GapTooLongError` whatever the policy:
    the model cannot simply continue, and the caller decides (typically a refit on the new series).
    """
    following = _following(history, series)
    if following is not None:
        return following
    values = _clean(series).dropna()
    newer = values[values.index > history.end]
    if newer.empty:
        return None
    step = history.step
    index = newer.index
    assert isinstance(index, pd.DatetimeIndex)
    # Fast path for the common tick: points exactly on the grid, no hole, nothing to interpolate.
    if index[0] == history.end + step and (len(index) == 1 or (np.diff(index.asi8) == step.value).all()):
        return RegularSeries(newer.to_numpy(dtype=np.float64), history.end + step, step)
    anchor = pd.Series([history.values[-1]], index=pd.DatetimeIndex([history.end]))
    joined = pd.concat([anchor, newer])
    gridded = joined.resample(step, origin=history.start).mean()
    regular = _fill_gaps(gridded, step, config.max_fill_steps, LongGapPolicy.RAISE)
    if len(regular) < 2:
        return None
    return RegularSeries(
        regular.values[1:], regular.start + step, step, filled_points=regular.filled_points
    )


def _following(history: RegularSeries, series: pd.Series) -> RegularSeries | None:
    """``continue_series`` of points that need no cleaning: floats, all finite and within range, on
    a tz-naive index that continues the grid of ``history`` right after its end; None for any other
    series, which then takes the general path (with its checks and errors). The common tick, for
    which ``_clean``'s pandas work would cost more than the model's update."""
    if not isinstance(series, pd.Series) or series.dtype != np.float64 or series.empty:
        return None
    index = series.index
    if not isinstance(index, pd.DatetimeIndex) or index.tz is not None:
        return None
    numbers = series.to_numpy()
    if not np.isfinite(numbers).all() or float(np.abs(numbers).max()) > LARGEST_VALUE:
        return None
    # Past the checks above `_clean` converts the index too, failing the same way if it must.
    if index.unit != "ns":
        index = index.as_unit("ns")
    end = history.end
    first = index[0]
    # Before `end + step`, which the general path reaches only with points after `end`.
    if not first > end:
        return None
    start = end + history.step
    if first != start:
        return None
    if len(index) > 1 and not (np.diff(index.asi8) == history.step.value).all():
        return None
    return RegularSeries(numbers, start, history.step)


def _clean(series: pd.Series) -> pd.Series:
    """Float values (NaN where missing) on a sorted, duplicate-free, tz-naive UTC index."""
    if not isinstance(series, pd.Series):
        raise InvalidSeriesError(f"expected a pandas Series, got {type(series).__name__}")
    index = series.index
    if not isinstance(index, pd.DatetimeIndex):
        raise InvalidSeriesError(f"index must be a DatetimeIndex, got {type(index).__name__}")
    try:
        numbers = pd.to_numeric(series, errors="raise").to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidSeriesError(f"values are not numeric: {exc}") from exc
    if np.isinf(numbers).any():
        raise InvalidSeriesError("values contain infinities")
    largest = float(np.nanmax(np.abs(numbers), initial=0.0))
    if largest > LARGEST_VALUE:
        raise InvalidSeriesError(f"values reach {largest:.3g}, beyond ±{LARGEST_VALUE:.0e}")
    if index.tz is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    index = index.as_unit("ns")
    keep = ~np.asarray(index.isna())
    values = pd.Series(numbers[keep], index=index[keep])
    if not values.index.is_monotonic_increasing:
        values = values.sort_index()
    if values.index.has_duplicates:
        values = values.groupby(level=0).mean()
    return values


def _infer_step(index: pd.DatetimeIndex) -> pd.Timedelta:
    if len(index) < 2:
        raise InvalidSeriesError("cannot infer the step of a series with fewer than 2 points")
    diffs = np.diff(index.asi8)
    diffs = diffs[diffs > 0]
    if diffs.size == 0:
        raise InvalidSeriesError("timestamps do not advance")
    spacings, counts = np.unique(diffs, return_counts=True)
    if counts.max() * 2 > diffs.size:
        # A grid with holes: the usual spacing, even where holes are many (a median would drift up).
        return pd.Timedelta(int(spacings[np.argmax(counts)]), unit="ns")
    # Jittered timestamps: no spacing repeats, so take the median, to the second.
    median_ns = float(np.median(diffs))
    second = 1_000_000_000
    step_ns = round(median_ns / second) * second if median_ns >= second else int(median_ns)
    return pd.Timedelta(step_ns, unit="ns")


def _to_grid(values: pd.Series, step: pd.Timedelta) -> pd.Series:
    index = values.index
    assert isinstance(index, pd.DatetimeIndex)
    offsets = index.asi8 - index.asi8[0]
    if (offsets % step.value == 0).all():
        grid = pd.date_range(index[0], index[-1], freq=step)
        return values.reindex(grid)
    return values.resample(step, origin="epoch").mean()


def _fill_gaps(
    gridded: pd.Series, step: pd.Timedelta, max_fill_steps: int, long_gap: LongGapPolicy
) -> RegularSeries:
    raw = gridded.to_numpy(dtype=np.float64)
    missing = np.isnan(raw)
    start_index = gridded.index[0]
    assert isinstance(start_index, pd.Timestamp)
    dropped = 0
    if missing.any():
        runs = _missing_runs(missing)
        long_runs = [(a, b) for a, b in runs if b - a > max_fill_steps]
        if long_runs:
            a, b = long_runs[-1]
            if long_gap is LongGapPolicy.RAISE:
                raise GapTooLongError(
                    start_index + step * a, start_index + step * (b - 1), b - a, max_fill_steps
                )
            dropped = b
            raw = raw[b:]
            missing = missing[b:]
            start_index = start_index + step * b
        filled = int(missing.sum())
        if filled:
            positions = np.arange(raw.shape[0], dtype=np.float64)
            raw = raw.copy()
            raw[missing] = np.interp(positions[missing], positions[~missing], raw[~missing])
    else:
        filled = 0
    return RegularSeries(raw, start_index, step, filled_points=filled, dropped_points=dropped)


def _missing_runs(missing: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """Half-open ``[start, end)`` index ranges of consecutive missing points."""
    padded = np.concatenate(([False], missing, [False]))
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]
