"""The one duration parser and timestamp formatter (`autoscaler.timefmt`): durations as the CLI and
Prometheus write them, compound units, and named rejections (a bare number among them: it needs a
unit); times as the API server writes them, both ways."""

from __future__ import annotations

import re

import pytest

from autoscaler.timefmt import iso_utc, parse_duration, parse_time


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("900s", 900.0, id="seconds"),
        pytest.param("15m", 900.0, id="minutes"),
        pytest.param("1.5h", 5400.0, id="fractional-hours"),
        pytest.param("1m30s", 90.0, id="compound"),
        pytest.param(" 15 m ", 900.0, id="spaces-around"),
        pytest.param("500ms", 0.5, id="milliseconds"),
        pytest.param("1w", 604800.0, id="week"),
    ],
)
def test_durations_accepted(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("soon", "is not a duration", id="words"),
        pytest.param("2 minutes", "is not a duration", id="unit-spelled-out"),
        pytest.param("-5", "is not a duration", id="negative"),
        pytest.param("1e3", "is not a duration", id="exponent"),
        pytest.param("", "is not a duration", id="empty"),
        pytest.param("0m", "is not a positive duration", id="zero"),
        pytest.param("15", "'15' needs a unit (s, m, h or d), e.g. 15s or 15m", id="bare-number"),
        pytest.param(" 900 ", "needs a unit", id="bare-number-spaced"),
        pytest.param("1.5", "needs a unit", id="bare-fraction"),
    ],
)
def test_durations_rejected(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_duration(text)


def test_times_round_trip() -> None:
    assert iso_utc(1_800_000_000.0) == "2027-01-15T08:00:00Z"
    assert iso_utc(1_800_000_000.25, micro=True) == "2027-01-15T08:00:00.250000Z"
    assert parse_time("2027-01-15T08:00:00Z") == 1_800_000_000.0
    assert parse_time("yesterday") is None
    assert parse_time(None) is None
