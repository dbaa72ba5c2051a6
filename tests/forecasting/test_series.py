"""Preprocessing (forecasting.series).

Covers: a regular series passes unchanged and keeps an offset grid (..:04, ..:09); short gaps (NaN
values and missing timestamps) are interpolated and counted; long gaps raise GapTooLongError with
their position, or are cut off under LongGapPolicy.LATEST_SEGMENT; tz-aware input becomes naive UTC;
irregular and duplicated timestamps are binned; invalid input raises InvalidSeriesError;
continue_series (the per-tick path) on-grid, off-grid, with a gap, and points that continue the grid
taken without cleaning, with what the general path gives for any series; steps_for_horizon.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

import numpy as np
import pandas as pd
import pytest

from forecasting import (
    GapTooLongError,
    InvalidSeriesError,
    LongGapPolicy,
    PrepConfig,
    prepare_series,
    steps_for_horizon,
)
from forecasting import series as series_module
from forecasting.series import RegularSeries, continue_series

from .synthetic import STEP, index

TimeUnit = Literal["s", "ms", "us", "ns"]


def _series(values: list[float], start: str = "2024-01-01 00:04") -> pd.Series:
    return pd.Series(values, index=index(len(values), pd.Timestamp(start)))


def test_regular_series_is_kept_on_its_own_grid() -> None:
    raw = _series([1.0, 2.0, 3.0, 4.0])
    out = prepare_series(raw)
    assert out.start == pd.Timestamp("2024-01-01 00:04")
    assert out.step == STEP
    assert out.values.tolist() == [1.0, 2.0, 3.0, 4.0]
    assert out.filled_points == 0
    assert not out.values.flags.writeable


@pytest.mark.parametrize(
    ("values", "expected", "filled"),
    [
        pytest.param([1.0, np.nan, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], 1, id="one-nan"),
        pytest.param([0.0, np.nan, np.nan, np.nan, 8.0], [0.0, 2.0, 4.0, 6.0, 8.0], 3, id="three-nans"),
        pytest.param([np.nan, 5.0, 6.0, np.nan], [5.0, 6.0], 0, id="edges-trimmed-not-invented"),
    ],
)
def test_short_gaps_are_interpolated(values: list[float], expected: list[float], filled: int) -> None:
    out = prepare_series(_series(values))
    assert out.values.tolist() == pytest.approx(expected)
    assert out.filled_points == filled


def test_missing_timestamps_count_as_gaps() -> None:
    raw = _series([1.0, 2.0, 3.0, 4.0, 5.0]).drop(index(5, pd.Timestamp("2024-01-01 00:04"))[2])
    out = prepare_series(raw)
    assert len(out) == 5
    assert out.values[2] == pytest.approx(3.0)
    assert out.filled_points == 1


def test_long_gap_raises_with_its_position() -> None:
    values = [1.0] * 5 + [np.nan] * 4 + [2.0] * 5
    with pytest.raises(GapTooLongError) as caught:
        prepare_series(_series(values, "2024-01-01 00:00"))
    assert caught.value.missing_steps == 4
    assert caught.value.start == pd.Timestamp("2024-01-01 00:25")
    assert caught.value.retryable


def test_long_gap_policy_keeps_latest_segment() -> None:
    values = [1.0] * 5 + [np.nan] * 10 + [2.0] * 6
    config = PrepConfig(long_gap=LongGapPolicy.LATEST_SEGMENT)
    out = prepare_series(_series(values, "2024-01-01 00:00"), config)
    assert out.values.tolist() == [2.0] * 6
    assert out.start == pd.Timestamp("2024-01-01 01:15")
    assert out.dropped_points == 15


def test_tz_aware_input_becomes_naive_utc() -> None:
    raw = pd.Series(
        [1.0, 2.0, 3.0],
        index=pd.date_range("2024-01-01 02:00", periods=3, freq="5min", tz="Europe/Berlin"),
    )
    out = prepare_series(raw)
    assert out.start == pd.Timestamp("2024-01-01 01:00")
    assert out.start.tzinfo is None


def test_irregular_and_duplicate_timestamps_are_binned() -> None:
    stamps = pd.DatetimeIndex(
        [
            "2024-01-01 00:00:10",
            "2024-01-01 00:00:50",
            "2024-01-01 00:05:20",
            "2024-01-01 00:10:05",
            "2024-01-01 00:10:05",
            "2024-01-01 00:15:00",
        ]
    )
    raw = pd.Series([1.0, 3.0, 4.0, 5.0, 7.0, 8.0], index=stamps)
    out = prepare_series(raw, PrepConfig(step=timedelta(minutes=5)))
    assert out.start == pd.Timestamp("2024-01-01 00:00")
    assert out.values.tolist() == pytest.approx([2.0, 4.0, 6.0, 8.0])


def test_jittered_scrapes_get_the_median_step_to_the_second() -> None:
    rng = np.random.default_rng(1)
    offsets = np.arange(40) * 60.0 + rng.uniform(-2.0, 2.0, 40)
    stamps = pd.Timestamp("2024-01-01") + pd.to_timedelta(offsets, unit="s")
    out = prepare_series(pd.Series(np.ones(40), index=stamps))
    assert out.step == pd.Timedelta(seconds=60)
    assert 38 <= len(out) <= 41
    assert out.values.tolist() == pytest.approx([1.0] * len(out))


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(pd.Series([1.0, 2.0]), id="range-index"),
        pytest.param(pd.Series(["a", "b"], index=index(2)), id="text-values"),
        pytest.param(pd.Series([1.0, np.inf], index=index(2)), id="infinite"),
        pytest.param(pd.Series([np.nan, np.nan], index=index(2)), id="all-missing"),
        pytest.param(pd.Series([1.0], index=index(1)), id="one-point-no-step"),
        pytest.param([1.0, 2.0], id="not-a-series"),
    ],
)
def test_invalid_input_is_rejected(raw: object) -> None:
    with pytest.raises(InvalidSeriesError):
        prepare_series(raw)  # type: ignore[arg-type]


def test_continue_series_fast_path_and_old_points_ignored() -> None:
    history = prepare_series(_series([1.0, 2.0, 3.0]))
    newer = _series([2.0, 3.0, 4.0, 5.0], "2024-01-01 00:09")
    out = continue_series(history, newer)
    assert out is not None
    assert out.start == history.end + STEP
    assert out.values.tolist() == [4.0, 5.0]
    assert continue_series(history, _series([1.0, 2.0])) is None


def test_continue_series_bins_off_grid_points_onto_the_model_grid() -> None:
    history = prepare_series(_series([1.0, 2.0, 3.0]))  # 00:04, 00:09, 00:14
    stamps = pd.DatetimeIndex(["2024-01-01 00:20", "2024-01-01 00:25"])
    out = continue_series(history, pd.Series([6.0, 7.0], index=stamps))
    assert out is not None
    assert out.start == pd.Timestamp("2024-01-01 00:19")
    assert out.values.tolist() == [6.0, 7.0]


def test_continue_series_fills_a_short_hole_and_rejects_a_long_one() -> None:
    history = prepare_series(_series([1.0, 2.0, 3.0], "2024-01-01 00:00"))
    after_one_missing = _series([5.0], "2024-01-01 00:20")
    out = continue_series(history, after_one_missing)
    assert out is not None
    assert out.values.tolist() == pytest.approx([4.0, 5.0])
    with pytest.raises(GapTooLongError):
        continue_series(history, _series([5.0], "2024-01-01 02:00"))


def _on_grid_after(history: RegularSeries, values: list[float], unit: TimeUnit) -> pd.Series:
    stamps = pd.date_range(history.end + history.step, periods=len(values), freq=history.step)
    return pd.Series(np.array(values, dtype=np.float64), index=stamps.as_unit(unit))


def test_continue_series_takes_the_next_grid_points_without_cleaning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    history = prepare_series(_series([1.0, 2.0, 3.0]))

    def refuse(series: pd.Series) -> pd.Series:
        raise AssertionError("the common tick went through _clean")

    monkeypatch.setattr(series_module, "_clean", refuse)
    units: tuple[TimeUnit, ...] = ("ns", "us", "s")
    for unit in units:
        out = continue_series(history, _on_grid_after(history, [4.0, 5.0], unit))
        assert out is not None
        assert out.start == history.end + STEP
        assert out.step == STEP
        assert out.values.tolist() == [4.0, 5.0]
        assert out.filled_points == 0


def _history() -> RegularSeries:
    return prepare_series(_series([1.0, 2.0, 3.0]))


def _after(offsets: list[int], values: list[object], dtype: str | None = None) -> pd.Series:
    """Points `offsets` steps after the end of `_history()`."""
    end = _history().end
    stamps = pd.DatetimeIndex([end + STEP * k for k in offsets])
    return pd.Series(values, index=stamps, dtype=dtype)


@pytest.mark.parametrize(
    "series",
    [
        pytest.param(_after([1], [4.0]), id="next-point"),
        pytest.param(_after([1, 2, 3], [4.0, 5.0, 6.0]), id="next-points"),
        pytest.param(_after([0, 1], [3.0, 4.0]), id="with-the-last-point-again"),
        pytest.param(_after([-1, 0], [2.0, 3.0]), id="nothing-newer"),
        pytest.param(_after([2], [5.0]), id="after-a-short-hole"),
        pytest.param(_after([30], [5.0]), id="after-a-long-hole"),
        pytest.param(_after([1, 3], [4.0, 6.0]), id="a-hole-within"),
        pytest.param(_after([2, 1], [5.0, 4.0]), id="unsorted"),
        pytest.param(_after([1, 1], [4.0, 6.0]), id="duplicated"),
        pytest.param(_after([1, 2], [4.0, np.nan]), id="missing-value"),
        pytest.param(_after([1], [np.inf]), id="infinite"),
        pytest.param(_after([1], [1e301]), id="too-large"),
        pytest.param(_after([1, 2], [4, 5], "int64"), id="integers"),
        pytest.param(_after([1], [4.0], "float32"), id="float32"),
        pytest.param(_after([1], ["4"], "object"), id="text"),
        pytest.param(_after([1], [4.0]).tz_localize("UTC"), id="tz-aware"),
        pytest.param(_after([1], [4.0]).tz_localize("Europe/Paris"), id="tz-aware-elsewhere"),
        pytest.param(
            pd.Series([4.0], index=pd.DatetimeIndex([_history().end + STEP / 2])), id="off-grid"
        ),
        pytest.param(pd.Series([], dtype=np.float64, index=pd.DatetimeIndex([])), id="empty"),
        pytest.param(pd.Series([4.0]), id="range-index"),
    ],
)
def test_continue_series_gives_what_the_general_path_gives(
    series: pd.Series, monkeypatch: pytest.MonkeyPatch
) -> None:
    def outcome() -> object:
        try:
            out = continue_series(_history(), series)
        except Exception as error:
            return type(error), str(error)
        if out is None:
            return None
        return out.values.tolist(), out.start, out.step, out.filled_points, out.dropped_points

    quick = outcome()
    monkeypatch.setattr(series_module, "_following", lambda history, series: None)
    assert quick == outcome()


@pytest.mark.parametrize(
    ("step", "horizon", "expected"),
    [
        pytest.param(timedelta(minutes=5), timedelta(minutes=15), 3, id="exact"),
        pytest.param(timedelta(minutes=5), timedelta(minutes=16), 4, id="rounds-up"),
        pytest.param(timedelta(minutes=30), timedelta(minutes=15), 1, id="at-least-one"),
    ],
)
def test_steps_for_horizon(step: timedelta, horizon: timedelta, expected: int) -> None:
    assert steps_for_horizon(step, horizon) == expected
