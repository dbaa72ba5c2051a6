"""The forecaster stage of a tick: one model per target and metric, fed with what the metrics source
observed, and scored against what then happened.

Observations arrive every tick; the models work on buckets (5 minutes by default: the resolution of
daily seasonality that matters, and what keeps an ARIMA update plus forecast within milliseconds).
When a bucket completes, the forecasts made earlier for it are scored (error against "no change",
and whether it stayed under the upper bound), the model takes the new point (the model decides
itself when to refit), and a fresh forecast replaces the old one. A model that cannot fit or forecast
yet leaves the target without a forecast, which the policy turns into a reactive fallback: nothing
here may break a tick.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

import pandas as pd

from autoscaler.metrics import MetricKind
from autoscaler.model import ForecastQuality, Forecasts, LoadForecast, LoadSnapshot, Target, TargetRef
from autoscaler.stages import NO_HISTORY, RecordedLoad
from forecasting import Forecast, Forecaster, ForecastError, ModelName, make_forecaster

__all__ = ["ForecastSettings", "ModelForecaster"]


@dataclass(frozen=True, slots=True)
class ForecastSettings:
    model: ModelName = ModelName.ARIMA
    bucket_s: int = 300
    # Enough buckets to cover the longest lead time a user is likely to configure.
    horizon_buckets: int = 6
    history_buckets: int = 7 * 288
    # Forecasts scored per target and metric for the trust gate (4 hours of 5-minute buckets).
    quality_window: int = 48
    # Horizons (in buckets) whose forecasts are scored: the ones a lead time of minutes uses.
    scored_steps: tuple[int, ...] = (1, 2)
    # Errors are scaled by those of "no change", or by this share of the load where that is larger.
    noise_floor: float = 0.05
    # Recurring load: the same time of day over up to this many past days, the level reached on
    # this share of them (at least two days), carried to today's level as measured over the last
    # `recurring_level_buckets`.
    recurring_days: int = 7
    recurring_share: float = 1.0
    recurring_level_buckets: int = 12


DEFAULT_SETTINGS = ForecastSettings()
DAY_S = 86_400
# Today's level is taken to be at most this many times that of the past days, or its inverse.
MAX_LEVEL_CHANGE = 1.5


@dataclass(frozen=True, slots=True)
class _Expected:
    mean: float
    upper: float
    naive: float


class _Track:
    """State for one target and metric."""

    def __init__(self, kind: MetricKind, settings: ForecastSettings, model: Forecaster):
        self.kind = kind
        self._settings = settings
        self._model = model
        self._fitted = False
        self._bucket: float | None = None
        self._sum = 0.0
        self._count = 0
        self._times: deque[float] = deque(maxlen=settings.history_buckets)
        self._values: deque[float] = deque(maxlen=settings.history_buckets)
        self._pending: dict[float, list[_Expected]] = {}
        # (|actual - mean|, |actual - naive|, actual, covered) per scored forecast.
        self._errors: deque[tuple[float, float, float, bool]] = deque(maxlen=settings.quality_window)
        self.latest: LoadForecast | None = None

    def observe(self, at: float, value: float, level: float) -> None:
        bucket = math.floor(at / self._settings.bucket_s) * self._settings.bucket_s
        if self._bucket is None or bucket > self._bucket:
            if self._bucket is not None and self._count:
                self._close(self._bucket, self._sum / self._count, level)
            self._bucket, self._sum, self._count = bucket, 0.0, 0
        if bucket == self._bucket:
            self._sum += value
            self._count += 1

    def seed(self, history: pd.Series, before: float, level: float) -> None:
        """Start from the workload's recorded past instead of from nothing: the complete buckets
        before `before` become the model's history, and the last `quality_window` of them are fed
        one by one, so the forecasts a restarted controller makes are scored (and may be trusted)
        at once rather than hours later."""
        step = self._settings.bucket_s
        values = history.dropna()
        if values.empty:
            return
        # In the index's own unit, whatever pandas chose for it (ns, us or s), converted to seconds.
        seconds = pd.DatetimeIndex(values.index).as_unit("s").asi8
        buckets = pd.Series(values.to_numpy(dtype=float), index=(seconds // step) * step)
        means = buckets.groupby(level=0).mean()
        means = means[means.index + step <= before]
        if means.empty:
            return
        times = [float(t) for t in means.index]
        points = [float(v) for v in means.to_numpy()]
        replay = min(self._settings.quality_window, max(0, len(points) - 1))
        split = len(points) - replay
        self._times.extend(times[:split])
        self._values.extend(points[:split])
        for at, value in zip(times[split:], points[split:], strict=True):
            self._close(at, value, level)
        # The bucket after the last seeded one is the first open one; late samples of seeded
        # buckets are then ignored instead of closing a bucket twice.
        self._bucket = times[-1] + step
        self._sum, self._count = 0.0, 0

    def quality(self) -> ForecastQuality:
        if not self._errors:
            return ForecastQuality(0, None, None)
        error = sum(e for e, _, _, _ in self._errors)
        naive = sum(n for _, n, _, _ in self._errors)
        level = sum(a for _, _, a, _ in self._errors)
        covered = sum(1 for _, _, _, c in self._errors if c)
        # On flat load "no change" is perfect and any model would look infinitely worse; changes
        # below a few percent of the load are noise that no forecast is expected to beat.
        scale = max(naive, self._settings.noise_floor * level)
        return ForecastQuality(
            checked=len(self._errors),
            scaled_error=error / scale if scale > 0 else None,
            coverage=covered / len(self._errors),
            relative_error=error / level if level > 0 else None,
        )

    def _close(self, bucket: float, value: float, level: float) -> None:
        for expected in self._pending.pop(bucket, ()):
            self._errors.append(
                (
                    abs(value - expected.mean),
                    abs(value - expected.naive),
                    abs(value),
                    value <= expected.upper,
                )
            )
        for stale in [t for t in self._pending if t < bucket]:
            del self._pending[stale]
        self._times.append(bucket)
        self._values.append(value)
        try:
            self._feed(bucket, value)
            forecast = self._model.forecast(self._settings.horizon_buckets, level)
        except ForecastError:
            self.latest = None
            return
        self.latest = self._convert(forecast, bucket)
        for step in self._settings.scored_steps:
            if step <= len(forecast.mean):
                due = bucket + step * self._settings.bucket_s
                self._pending.setdefault(due, []).append(
                    _Expected(forecast.mean[step - 1], forecast.upper[step - 1], value)
                )

    def _feed(self, bucket: float, value: float) -> None:
        if self._fitted:
            self._model.update(pd.Series([value], index=pd.to_datetime([bucket], unit="s")))
            return
        series = pd.Series(list(self._values), index=pd.to_datetime(list(self._times), unit="s"))
        self._model.fit(series)
        self._fitted = True

    def _recurring(self, times: tuple[float, ...], last_bucket: float) -> tuple[float, ...]:
        """Per bucket of `times`, the load the same time of day reached on at least
        `recurring_share` of the past days that have it, scaled by how today's last hour compares
        with the same hour on those days; empty without two such days."""
        settings = self._settings
        step = settings.bucket_s
        known = dict(zip(self._times, self._values, strict=True))
        recent = [known.get(last_bucket - i * step) for i in range(settings.recurring_level_buckets)]
        ratios = []
        for day in range(1, settings.recurring_days + 1):
            back = day * DAY_S
            past = [known.get(last_bucket - back - i * step) for i in range(len(recent))]
            pairs = [(r, p) for r, p in zip(recent, past, strict=True) if None not in (r, p)]
            then = sum(p for _, p in pairs if p is not None)
            if pairs and then > 0:
                ratios.append(sum(r for r, _ in pairs if r is not None) / then)
        if len(ratios) < 2:
            return ()
        ratios.sort()
        level = min(MAX_LEVEL_CHANGE, max(1 / MAX_LEVEL_CHANGE, ratios[len(ratios) // 2]))
        out = []
        for t in times:
            days = sorted(
                (v for d in range(1, settings.recurring_days + 1)
                 if (v := known.get(t - d * DAY_S)) is not None),
                reverse=True,
            )  # fmt: skip
            if len(days) < 2:
                return ()
            reached = days[math.ceil(settings.recurring_share * len(days)) - 1]
            out.append(reached * level)
        return tuple(out)

    def _convert(self, forecast: Forecast, last_bucket: float) -> LoadForecast:
        step = self._settings.bucket_s
        first = last_bucket + step
        times = tuple(first + i * step for i in range(len(forecast.mean)))
        return LoadForecast(
            kind=self.kind,
            made_at=last_bucket,
            step_s=float(step),
            times=times,
            mean=forecast.mean,
            upper=forecast.upper,
            level=forecast.level,
            quality=self.quality(),
            lower=forecast.lower,
            recurring=self._recurring(times, last_bucket),
        )


class ModelForecaster:
    """The `Forecaster` stage of `reconcile_once`, on the `forecasting` library."""

    def __init__(
        self,
        settings: ForecastSettings = DEFAULT_SETTINGS,
        make_model: Callable[[ModelName], Forecaster] = make_forecaster,
    ) -> None:
        self._settings = settings
        self._make_model = make_model
        self._tracks: dict[tuple[TargetRef, MetricKind], _Track] = {}
        self._kinds: dict[TargetRef, tuple[MetricKind, ...]] = {}

    def latest(self, ref: TargetRef, kind: MetricKind) -> LoadForecast | None:
        track = self._tracks.get((ref, kind))
        return None if track is None else track.latest

    def forecast(
        self, target: Target, load: LoadSnapshot, now: float, past: RecordedLoad = NO_HISTORY
    ) -> Forecasts:
        ref = target.state.ref
        found: dict[MetricKind, LoadForecast | None] = {}
        for kind in target.config.metrics:
            key = (ref, kind)
            track = self._tracks.get(key)
            if track is None:
                track = _Track(kind, self._settings, self._make_model(self._settings.model))
                recorded = past.recorded(ref, kind)
                if recorded is not None:
                    track.seed(recorded, now, target.config.confidence)
                # Kept only once seeded: a seed that raised is tried again next tick, not half-kept.
                self._tracks[key] = track
            sample = load.get(kind)
            if sample is not None:
                track.observe(sample.at, sample.value, target.config.confidence)
            found[kind] = track.latest
        # A metric dropped from the annotations leaves no model behind.
        for kind in self._kinds.get(ref, ()):
            if kind not in found:
                self._tracks.pop((ref, kind), None)
        self._kinds[ref] = tuple(found)
        return Forecasts(found)

    def keep_only(self, refs: AbstractSet[TargetRef]) -> None:
        for gone in [ref for ref in self._kinds if ref not in refs]:
            for kind in self._kinds.pop(gone):
                self._tracks.pop((gone, kind), None)
