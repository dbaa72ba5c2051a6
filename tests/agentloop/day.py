"""The chat-traffic day the closed loop replays, and its requests' arrival times.

A support chat is quiet overnight, climbs steeply when the working day starts and stays busy for
hours. The controller forecasts per 5-minute bucket from days of history, so the pattern repeats
every day at the same time of day; a run only replays the minutes around one morning ramp, in real
time. Arrivals are an open-loop Poisson process drawn with a fixed seed relative to the ramp, so two
runs get exactly the same requests at the same moments relative to their ramp, however late or
early each run's own clock reaches it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["DAY_S", "ChatDay", "arrival_offsets"]

DAY_S = 86_400.0
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class ChatDay:
    """Requests per second: `base` overnight, and every day from `ramp_at` (epoch seconds, taken
    modulo a day) a linear climb over `ramp_s` to `peak`, which holds `hold_s` (the working day)
    and falls back to `base` over `fall_s` in the evening."""

    base: float
    peak: float
    ramp_at: float
    ramp_s: float
    hold_s: float = 8 * 3600.0
    fall_s: float = 1800.0

    def __post_init__(self) -> None:
        if not 0 < self.base <= self.peak:
            raise ValueError(f"need 0 < base <= peak, got base {self.base}, peak {self.peak}")
        if self.ramp_s <= 0 or self.fall_s <= 0 or self.hold_s < 0:
            raise ValueError("ramp and fall must take some time, and the hold cannot be negative")
        if self.ramp_s + self.hold_s + self.fall_s >= DAY_S:
            raise ValueError("the busy part of the day must fit in a day")

    def rate(self, t: FloatArray | float) -> FloatArray:
        """Requests per second at epoch seconds `t`."""
        into = np.mod(np.asarray(t, dtype=np.float64) - self.ramp_at, DAY_S)
        up = np.clip(into / self.ramp_s, 0.0, 1.0)
        down = np.clip((self.ramp_s + self.hold_s + self.fall_s - into) / self.fall_s, 0.0, 1.0)
        return np.asarray(self.base + (self.peak - self.base) * np.minimum(up, down), dtype=np.float64)

    def moved_to(self, ramp_at: float) -> ChatDay:
        """The same day with its ramp at another moment (another run's)."""
        return ChatDay(self.base, self.peak, ramp_at, self.ramp_s, self.hold_s, self.fall_s)


def arrival_offsets(day: ChatDay, first_s: float, last_s: float, seed: int) -> FloatArray:
    """Arrival times, in seconds relative to `day.ramp_at`, of a Poisson process with the day's
    rate over [first_s, last_s). Drawn by thinning a homogeneous process at the highest rate, so
    the same seed gives the same arrivals whatever the day's `ramp_at`."""
    if last_s <= first_s:
        raise ValueError(f"an empty span of arrivals: [{first_s}, {last_s})")
    rng = np.random.default_rng(seed)
    ceiling = max(day.base, day.peak)
    span = last_s - first_s
    count = int(rng.poisson(ceiling * span))
    candidates = np.sort(rng.uniform(first_s, last_s, count))
    keep = rng.uniform(0.0, ceiling, count) < day.rate(day.ramp_at + candidates)
    return np.asarray(candidates[keep], dtype=np.float64)
