"""The forecast behind the `scheduled` peer: cloud predictive scaling's daily pattern.

As EC2 Auto Scaling documents its predictive scaling: the forecast is redone every `refresh_s` (6 h)
from the observed load, hour by hour, each coming hour's load the mean of the same hour of the day
over up to `days` (14) past days; at least one past day is needed. It is a seasonal profile, not a
model: it follows a level change only as the days that show it enter the window.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from autoscaler.metrics import MetricKind
from autoscaler.model import ForecastQuality, Forecasts, LoadForecast, LoadSnapshot, Target, TargetRef
from autoscaler.stages import NO_HISTORY, RecordedLoad

__all__ = ["HourlyProfileForecaster"]

HOUR_S = 3600
DAY_HOURS = 24
_UNSCORED = ForecastQuality(checked=0, scaled_error=None, coverage=None)


@dataclass(slots=True)
class _Hours:
    """Observed load summed per hour since the epoch, and the forecast last made from it."""

    sums: dict[int, float] = field(default_factory=dict)
    counts: dict[int, int] = field(default_factory=dict)
    last_at: float | None = None
    forecast: LoadForecast | None = None

    def add(self, at: float, value: float, keep_from: int) -> None:
        if self.last_at is not None and at <= self.last_at:
            return  # the same sample handed out again
        self.last_at = at
        hour = int(at // HOUR_S)
        if hour not in self.sums:
            for old in [h for h in self.sums if h < keep_from]:
                del self.sums[old], self.counts[old]
            self.sums[hour], self.counts[hour] = 0.0, 0
        self.sums[hour] += value
        self.counts[hour] += 1

    def mean(self, hour: int) -> float | None:
        count = self.counts.get(hour)
        return None if not count else self.sums[hour] / count


class HourlyProfileForecaster:
    def __init__(self, *, refresh_s: float = 6 * HOUR_S, days: int = 14) -> None:
        self._refresh_s = refresh_s
        self._days = days
        self._hours: dict[tuple[TargetRef, MetricKind], _Hours] = {}

    def forecast(
        self, target: Target, load: LoadSnapshot, now: float, past: RecordedLoad = NO_HISTORY
    ) -> Forecasts:
        ref = target.state.ref
        made: dict[MetricKind, LoadForecast] = {}
        current = int(now // HOUR_S)
        for kind in target.config.metrics:
            hours = self._hours.setdefault((ref, kind), _Hours())
            sample = load.get(kind)
            if sample is not None:
                hours.add(sample.at, sample.value, current - self._days * DAY_HOURS)
            old = hours.forecast
            if old is None or now - old.made_at >= self._refresh_s:
                hours.forecast = self._profile(kind, hours, now) or old
            if hours.forecast is not None and hours.forecast.at(now) is not None:
                made[kind] = hours.forecast
        return Forecasts(made)

    def _profile(self, kind: MetricKind, hours: _Hours, now: float) -> LoadForecast | None:
        """The coming hours up to the next refresh and one more (the buffer reaches into it)."""
        first = int(now // HOUR_S)
        last = int((now + self._refresh_s) // HOUR_S) + 1
        means: list[float] = []
        for hour in range(first, last + 1):
            seen = [
                m
                for day in range(1, self._days + 1)
                if (m := hours.mean(hour - day * DAY_HOURS)) is not None
            ]
            if not seen:
                return None
            means.append(sum(seen) / len(seen))
        times = tuple(float(h * HOUR_S) for h in range(first, last + 1))
        profile = tuple(means)
        return LoadForecast(kind, now, float(HOUR_S), times, profile, profile, 0.5, _UNSCORED)

    def keep_only(self, refs: AbstractSet[TargetRef]) -> None:
        for key in [k for k in self._hours if k[0] not in refs]:
            del self._hours[key]
