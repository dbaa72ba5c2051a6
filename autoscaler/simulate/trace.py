"""Traffic traces: `timestamp,value` CSV files with a fixed step, where `value` is the load units that
arrived during the step that starts at `timestamp`. Loading is strict, because a silently repaired
trace would change every score computed from it."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = ["BUNDLED_TRACE", "Trace", "TraceError", "load_bundled_trace", "load_trace"]

BUNDLED_TRACE = "nasa-http-1995-jul-5m.csv"


class TraceError(ValueError):
    """A trace that cannot be used, with the place that shows why."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path = path
        self.line = line
        self.message = message
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True, slots=True)
class Trace:
    name: str
    times: npt.NDArray[np.int64]  # interval starts, seconds since the epoch
    values: npt.NDArray[np.float64]  # load units per step
    step_s: int

    @property
    def start(self) -> int:
        return int(self.times[0])

    @property
    def end(self) -> int:
        return int(self.times[-1])

    @property
    def duration_s(self) -> int:
        return self.end - self.start

    def rate_at(self, times: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Demand in load units per second, linearly interpolated between trace points."""
        rates = self.values / float(self.step_s)
        return np.interp(times, self.times.astype(np.float64), rates)


def _parse_time(text: str) -> int:
    stamp = datetime.fromisoformat(text.strip())
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return math.floor(stamp.timestamp())


def _read(lines: list[str], path: str, name: str) -> Trace:
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        raise TraceError(path, None, "file is empty; expected a header 'timestamp,value'")
    if [h.strip().lower() for h in header] != ["timestamp", "value"]:
        raise TraceError(path, 1, f"header is {','.join(header)!r}; expected 'timestamp,value'")
    times: list[int] = []
    values: list[float] = []
    step: int | None = None
    for lineno, row in enumerate(reader, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != 2:
            raise TraceError(path, lineno, f"expected 2 columns, found {len(row)}")
        try:
            t = _parse_time(row[0])
        except ValueError:
            raise TraceError(path, lineno, f"timestamp {row[0]!r} is not ISO-8601") from None
        try:
            v = float(row[1])
        except ValueError:
            raise TraceError(path, lineno, f"value {row[1]!r} is not a number") from None
        if not math.isfinite(v):
            raise TraceError(path, lineno, f"value {row[1]!r} is not finite")
        if v < 0:
            raise TraceError(path, lineno, f"value {row[1]!r} is negative")
        if times:
            gap = t - times[-1]
            if gap == 0:
                raise TraceError(path, lineno, f"duplicate timestamp {row[0]}")
            if gap < 0:
                raise TraceError(path, lineno, f"timestamp {row[0]} is before the previous row")
            if step is None:
                step = gap
            elif gap != step:
                raise TraceError(
                    path,
                    lineno,
                    f"irregular step: {gap} s after the previous row, expected {step} s",
                )
        times.append(t)
        values.append(v)
    if len(times) < 2 or step is None:
        raise TraceError(path, None, "a trace needs at least two rows")
    return Trace(
        name=name,
        times=np.asarray(times, dtype=np.int64),
        values=np.asarray(values, dtype=np.float64),
        step_s=step,
    )


def load_trace(path: Path) -> Trace:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TraceError(str(path), None, "no such file") from None
    except IsADirectoryError:
        raise TraceError(str(path), None, "is a directory, not a trace file") from None
    except UnicodeDecodeError:
        raise TraceError(str(path), None, "is not a UTF-8 text file") from None
    except OSError as exc:
        raise TraceError(str(path), None, exc.strerror or "cannot be read") from None
    return _read(text.splitlines(), str(path), path.stem)


def load_bundled_trace() -> Trace:
    text = resources.files("autoscaler.data").joinpath(BUNDLED_TRACE).read_text(encoding="utf-8")
    return _read(text.splitlines(), f"<bundled>/{BUNDLED_TRACE}", Path(BUNDLED_TRACE).stem)
