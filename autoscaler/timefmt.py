"""Durations and timestamps as people write and read them: one parser, one formatter."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

__all__ = ["iso_utc", "parse_duration", "parse_time"]

# One or more `<number><unit>` parts: `90s`, `1m30s`, `1.5h`. A bare number is refused: `--horizon 15`
# was read as 15 seconds where 15 minutes was meant, and nothing said so.
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w|y)")
_PARTS = re.compile(r"(?:\d+(?:\.\d+)?\s*(?:ms|s|m|h|d|w|y)\s*)+")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}


def parse_duration(text: str) -> timedelta:
    """`900s`, `15m`, `1m30s`, `1.5h`, `1d`. Raises ValueError for a bare number (saying a unit is
    needed), for anything else, and for durations that are not positive."""
    stripped = text.strip()
    if _NUMBER.fullmatch(stripped):
        raise ValueError(f"{text!r} needs a unit (s, m, h or d), e.g. {stripped}s or {stripped}m")
    if not _PARTS.fullmatch(stripped):
        raise ValueError(f"{text!r} is not a duration like 15m, 900s or 1h")
    seconds = sum(float(n) * _UNIT_S[unit] for n, unit in _PART.findall(stripped))
    if seconds <= 0:
        raise ValueError(f"{text!r} is not a positive duration")
    return timedelta(seconds=seconds)


def iso_utc(epoch: float, *, micro: bool = False) -> str:
    """`2026-12-05T14:05:59Z` (with microseconds if asked): how the API server and reports write
    times."""
    pattern = "%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ"
    return datetime.fromtimestamp(epoch, UTC).strftime(pattern)


def parse_time(text: object) -> float | None:
    """Seconds since the epoch of an RFC 3339 time as the API server writes it; None if unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
