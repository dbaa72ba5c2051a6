"""Trace files: the bundled default loads; every kind of bad input is refused with the file and line
that show it (missing file, empty, wrong header, wrong column count, bad timestamp, non-numeric,
non-finite and negative values, unsorted and duplicate timestamps, an irregular step, one row)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from autoscaler.simulate import TraceError, load_bundled_trace, load_trace

GOOD = ["timestamp,value", "2024-01-01T00:00:00Z,1", "2024-01-01T00:05:00Z,2",
        "2024-01-01T00:10:00Z,3"]  # fmt: skip


def test_bundled_trace_is_nasa_july() -> None:
    trace = load_bundled_trace()
    assert trace.name == "nasa-http-1995-jul-5m"
    assert (len(trace.times), trace.step_s) == (7938, 300)
    # First and last interval as the trace's provenance documents them.
    assert int(trace.times[0]) == int(datetime(1995, 7, 1, 4, 0, tzinfo=UTC).timestamp())
    assert int(trace.times[-1]) == int(datetime(1995, 7, 28, 17, 25, tzinfo=UTC).timestamp())


def test_good_trace_loads(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("\n".join(GOOD) + "\n")
    trace = load_trace(path)
    assert trace.step_s == 300
    assert trace.values.tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    ("lines", "line", "message"),
    [
        pytest.param([], None, "file is empty", id="empty-file"),
        pytest.param(["time,load", *GOOD[1:]], 1, "header is 'time,load'", id="wrong-header"),
        pytest.param([*GOOD, "2024-01-01T00:15:00Z,1,2"], 5, "expected 2 columns", id="columns"),
        pytest.param([*GOOD, "yesterday,1"], 5, "'yesterday' is not ISO-8601", id="bad-time"),
        pytest.param([*GOOD, "2024-01-01T00:15:00Z,abc"], 5, "'abc' is not a number", id="non-numeric"),
        pytest.param([*GOOD, "2024-01-01T00:15:00Z,nan"], 5, "is not finite", id="nan"),
        pytest.param([*GOOD, "2024-01-01T00:15:00Z,-4"], 5, "'-4' is negative", id="negative"),
        pytest.param([*GOOD, "2024-01-01T00:05:00Z,4"], 5, "before the previous row", id="unsorted"),
        pytest.param([*GOOD, "2024-01-01T00:10:00Z,4"], 5, "duplicate timestamp", id="duplicate"),
        pytest.param(
            [*GOOD, "2024-01-01T00:20:00Z,4"],
            5,
            "irregular step: 600 s after the previous row, expected 300 s",
            id="irregular-step",
        ),
        pytest.param(GOOD[:2], None, "at least two rows", id="one-row"),
    ],
)
def test_bad_trace_names_file_and_line(
    tmp_path: Path, lines: list[str], line: int | None, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(lines) + ("\n" if lines else ""))
    with pytest.raises(TraceError) as caught:
        load_trace(path)
    assert caught.value.line == line
    assert message in caught.value.message
    assert str(caught.value).startswith(f"{path}:{line}:" if line else f"{path}:")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="no such file"):
        load_trace(tmp_path / "nope.csv")
