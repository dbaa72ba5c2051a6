"""The forecaster stage of a tick: one model per target and metric, fed with what the metrics source
observed, and scored against what then happened.

Observations arrive every tick; the models work on buckets (5 minutes by default: the resolution of
daily seasonality that matters, and what keeps an ARIMA update plus forecast within milliseconds).
When a bucket completes, the forecasts made earlier for it are scored (error against "no change",
and whether it stayed under the upper bound), the model takes the new point (the model decides
itself when to refit), and a fresh forecast replaces the old one. A model that cannot fit or forecast
yet leaves the target without a forecast, which the policy turns into a reactive fallback: nothing
here may break a tick.

Fits go through a fitter (`autoscaler.fitting`). The inline one fits within the tick, as above. With
a concurrent one (the controller's pool) a tick never waits for a fit: a model's first fit (with the
replay that seeds and scores it) runs beside the tick while the target is decided reactively (the
forecasts say which metrics are still fitting); the model leaves its refits to the track, which
sends a copy to be refitted (drift before schedule; scheduled refits at a phase of their own, see
`TrackKey.phase`) and goes on forecasting with the old one. A finished fit is adopted by the next
tick and caught up on the buckets that closed meanwhile.
"""

from __future__ import annotations

import hashlib
import math
import pickle
from collections import deque
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from autoscaler.fitting import INLINE, FitDone, FitJob, Fitter, ModelState, Priority
from autoscaler.metrics import MetricKind
from autoscaler.model import ForecastQuality, Forecasts, LoadForecast, LoadSnapshot, Target, TargetRef
from autoscaler.stages import NO_HISTORY, RecordedLoad
from forecasting import (
    Forecast,
    Forecaster,
    ForecastError,
    InsufficientHistoryError,
    ModelName,
    RefitReason,
    make_forecaster,
)
from forecasting.lifecycle import StatefulForecaster

__all__ = ["ForecastSettings", "ModelForecaster", "TrackKey"]


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

FloatArray = npt.NDArray[np.float64]
_NO_BUCKETS: FloatArray = np.empty(0)
# Whole seconds within this bound are nanosecond timestamps that fit an int64.
_MAX_NS_SECONDS = pd.Timestamp.max.value // 1_000_000_000


def _bucket_means(history: pd.Series, step: int, before: float) -> tuple[FloatArray, FloatArray]:
    """The start time and mean of each complete bucket of `history` before `before`."""
    values = history.dropna()
    if values.empty:
        return _NO_BUCKETS, _NO_BUCKETS
    # In the index's own unit, whatever pandas chose for it (ns, us or s), converted to seconds.
    seconds = pd.DatetimeIndex(values.index).as_unit("s").asi8
    buckets = pd.Series(values.to_numpy(dtype=float), index=(seconds // step) * step)
    means = buckets.groupby(level=0).mean()
    means = means[means.index + step <= before]
    return means.index.to_numpy(dtype=np.float64), means.to_numpy(dtype=np.float64)


def _as_series(times: FloatArray, values: FloatArray) -> pd.Series:
    """Buckets as a model takes them: means indexed by their start."""
    return pd.Series(values, index=pd.to_datetime(times, unit="s"))


def _one_bucket(at: float, value: float) -> pd.Series:
    """`_as_series` of one bucket, as every closed bucket of every track feeds its model. pandas'
    conversion of float times is slow, so a time in whole seconds (as bucket times are) is made a
    nanosecond timestamp directly: the resolution the model's series is cleaned to anyway."""
    if float(at).is_integer() and -_MAX_NS_SECONDS <= at <= _MAX_NS_SECONDS:
        index = pd.DatetimeIndex(np.array([int(at) * 1_000_000_000], dtype="datetime64[ns]"))
    else:
        index = pd.to_datetime([at], unit="s")
    return pd.Series([value], index=index)


class _Buckets:
    """The last `size` closed buckets of a track, oldest first: start times and means in two
    arrays with some room beyond `size`. A bucket is written in place; only when the room is used up
    are the buckets kept moved to the front, so appending costs little on average and the buckets
    are always one contiguous, sorted slice (`np.searchsorted` finds a time in it)."""

    __slots__ = ("_end", "_size", "_start", "_times", "_values")

    def __init__(self, size: int) -> None:
        self._size = size
        self._times: FloatArray = _NO_BUCKETS
        self._values: FloatArray = _NO_BUCKETS
        self._start = 0
        self._end = 0

    def __len__(self) -> int:
        return self._end - self._start

    @property
    def times(self) -> FloatArray:
        """A view, valid until the buckets change."""
        return self._times[self._start : self._end]

    @property
    def values(self) -> FloatArray:
        """A view, valid until the buckets change."""
        return self._values[self._start : self._end]

    def clear(self) -> None:
        self._start = self._end = 0

    def append(self, at: float, value: float) -> None:
        if self._end == self._times.shape[0]:
            self._make_room(1)
        self._times[self._end] = at
        self._values[self._end] = value
        self._end += 1
        self._start = max(self._start, self._end - self._size)

    def extend(self, times: FloatArray, values: FloatArray) -> None:
        count = min(times.shape[0], self._size)
        if count == 0:
            return
        if self._end + count > self._times.shape[0]:
            self._make_room(count)
        end = self._end + count
        self._times[self._end : end] = times[times.shape[0] - count :]
        self._values[self._end : end] = values[values.shape[0] - count :]
        self._end = end
        self._start = max(self._start, end - self._size)

    def _make_room(self, count: int) -> None:
        """Room for `count` more buckets at the end, keeping those of the last `size` they leave."""
        keep = max(0, min(len(self), self._size - count))
        room = self._size + max(1, self._size // 8)
        capacity = self._times.shape[0]
        if capacity < room:
            # Grown by doubling: a track that is new holds a few buckets, not a week's room.
            capacity = min(room, max(keep + count, 2 * capacity, 16))
            times, values = np.empty(capacity), np.empty(capacity)
        else:
            times, values = self._times, self._values
        start = self._end - keep
        # Overlapping when moved within the same arrays: numpy copies as if through a buffer.
        times[:keep] = self._times[start : self._end]
        values[:keep] = self._values[start : self._end]
        self._times, self._values = times, values
        self._start, self._end = 0, keep


@dataclass(frozen=True, slots=True)
class _Expected:
    mean: float
    upper: float
    naive: float


@dataclass(frozen=True, slots=True)
class TrackKey:
    """One model: a target's metric. `serial` tells apart a model made again for the same pair
    (a metric dropped and added back), so that a fit of the old one is never adopted by the new."""

    ref: TargetRef
    kind: MetricKind
    serial: int

    def __str__(self) -> str:
        return f"{self.ref} {self.kind.value}"

    def phase(self) -> float:
        """A share of the refit period of its own, the same in every process and run: where this
        model's scheduled refits fall, so that models fitted together are not refitted together."""
        digest = hashlib.sha256(f"{self.ref}/{self.kind.value}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True, slots=True, eq=False)
class _Seeded:
    """A track's state after `_Track.seed`, as a job sends it back."""

    bucket: float | None
    times: FloatArray
    values: FloatArray
    pending: dict[float, list[_Expected]]
    errors: tuple[tuple[float, float, float, bool], ...]
    latest: LoadForecast | None
    model: Forecaster
    fitted: bool


@dataclass(frozen=True, slots=True)
class _Fitted:
    """A fit's outcome: the model fitted through `through` (the last bucket it saw), or why not."""

    through: float
    model: Forecaster | None
    error: str | None = None
    # Set when the fit lacked history: how many more points it needs.
    lacking: int = 0


@dataclass(frozen=True, slots=True, eq=False)
class _SeedWork:
    """The first fit of a model from the workload's recorded past, scored as `_Track.seed` does.
    It carries the means of the recorded buckets (see `_bucket_means`), not the recorded points:
    a job may wait in the fitter's queue a long while, and many at once."""

    kind: MetricKind
    settings: ForecastSettings
    model: Forecaster
    times: FloatArray
    means: FloatArray
    level: float

    def __call__(self) -> _Seeded:
        track = _Track(self.kind, self.settings, self.model)
        track.seed(self.times, self.means, self.level)
        return track.export()


@dataclass(frozen=True, slots=True, eq=False)
class _FitWork:
    """The first fit of a model on the buckets a track has gathered."""

    model: Forecaster
    times: FloatArray
    values: FloatArray

    def __call__(self) -> _Fitted:
        through = float(self.times[-1])
        try:
            self.model.fit(_as_series(self.times, self.values))
        except InsufficientHistoryError as error:
            return _Fitted(through, None, str(error), max(1, error.needed - error.got))
        except ForecastError as error:
            return _Fitted(through, None, str(error))
        return _Fitted(through, self.model)


@dataclass(frozen=True, slots=True)
class _RefitWork:
    """A refit of a model (pickled when submitted: the track goes on using its own copy)."""

    model: bytes
    reason: RefitReason
    through: float

    def __call__(self) -> _Fitted:
        model = pickle.loads(self.model)
        report = model.refit(self.reason)
        return _Fitted(self.through, model, report.refit_error)


class _Track:
    """State for one target and metric. With a concurrent fitter, fits run beside the tick: the
    track goes on gathering buckets (and a fitted model on forecasting) while its job runs, and
    catches the adopted model up on the buckets that closed meanwhile."""

    def __init__(
        self,
        kind: MetricKind,
        settings: ForecastSettings,
        model: Forecaster,
        fitter: Fitter = INLINE,
        key: TrackKey | None = None,
    ):
        self.kind = kind
        self._settings = settings
        self._model = model
        self._fitter = fitter
        self._key = key
        self._fitted = False
        self._bucket: float | None = None
        self._sum = 0.0
        self._count = 0
        self._history = _Buckets(settings.history_buckets)
        self._pending: dict[float, list[_Expected]] = {}
        # (|actual - mean|, |actual - naive|, actual, covered) per scored forecast.
        self._errors: deque[tuple[float, float, float, bool]] = deque(maxlen=settings.quality_window)
        self.latest: LoadForecast | None = None
        self._level = 0.5
        # Whether a job of this track is in the fitter, and why the last fit failed, if it did.
        self._submitted = False
        self._failure: str | None = None
        # With a concurrent fitter, no fit is tried again before the track holds this many buckets:
        # as many more as the last fit said it lacked.
        self._retry_at = 0

    @property
    def key(self) -> TrackKey | None:
        return self._key

    def state(self) -> ModelState:
        if self._submitted and self._key is not None:
            running = self._fitter.state(self._key)
            if running is not None:
                return running
        if self._fitted:
            return ModelState.FITTED
        return ModelState.FAILED if self._failure is not None else ModelState.WAITING

    @property
    def fitting(self) -> bool:
        """Whether the track has no model yet because its first fit is still in the fitter."""
        return self._submitted and not self._fitted

    def observe(self, at: float, value: float, level: float) -> None:
        self._level = level
        bucket = math.floor(at / self._settings.bucket_s) * self._settings.bucket_s
        if self._bucket is None or bucket > self._bucket:
            if self._bucket is not None and self._count:
                self._close(self._bucket, self._sum / self._count, level)
            self._bucket, self._sum, self._count = bucket, 0.0, 0
        if bucket == self._bucket:
            self._sum += value
            self._count += 1

    def start_seed(self, history: pd.Series, before: float, level: float) -> None:
        """Seed from the complete buckets of the recorded past before `before` (see `seed`) through
        the fitter: at once with an inline one, else beside the tick, the track gathering buckets
        meanwhile."""
        self._level = level
        try:
            times, means = _bucket_means(history, self._settings.bucket_s, before)
        except Exception as error:
            if not self._fitter.concurrent:
                raise
            # As the fitter takes a job that raised: this model fails, the tick goes on.
            self._failure = f"{type(error).__name__}: {error}"
            return
        work = _SeedWork(self.kind, self._settings, self._model, times, means, level)
        if not self._fitter.concurrent:
            self._take_seed(work())
            return
        self._submit(Priority.NEW, work)

    def adopt(self, done: FitDone) -> None:
        """Take a finished job of a concurrent fitter in, and catch its model up."""
        self._submitted = False
        if done.error is not None:
            self._failure = done.error
            return
        if isinstance(done.result, _Seeded):
            self._take_seed(done.result)
            return
        assert isinstance(done.result, _Fitted)
        first = not self._fitted
        if not self._take_fit(done.result):
            return
        times, values = self._history.times, self._history.values
        later = times > done.result.through
        if later.any():
            try:
                self._model.update(_as_series(times[later], values[later]))
            except ForecastError:
                self.latest = None
                return
        # A refitted model forecasts from the next bucket on: the current forecast is being scored.
        if first and len(self._history):
            self._forecast(float(times[-1]), float(values[-1]), self._level)

    def export(self) -> _Seeded:
        return _Seeded(
            self._bucket,
            self._history.times.copy(),
            self._history.values.copy(),
            self._pending,
            tuple(self._errors),
            self.latest,
            self._model,
            self._fitted,
        )

    def _take_seed(self, seeded: _Seeded) -> None:
        if seeded.bucket is None:
            return  # nothing recorded to seed from: the track fits on what it gathers
        times, values = self._history.times, self._history.values
        after = times >= seeded.bucket
        gathered = list(zip(times[after].tolist(), values[after].tolist(), strict=True))
        self._history.clear()
        self._history.extend(seeded.times, seeded.values)
        self._pending = seeded.pending
        self._errors.clear()
        self._errors.extend(seeded.errors)
        self.latest = seeded.latest
        self._model = seeded.model
        self._fitted = seeded.fitted
        self._defer_refits()
        for at, value in gathered:
            self._close(at, value, self._level)
        # The bucket after the last seeded one is the first open one; late samples of seeded
        # buckets are then ignored instead of closing a bucket twice.
        if self._bucket is None or self._bucket < seeded.bucket:
            self._bucket, self._sum, self._count = seeded.bucket, 0.0, 0

    def _take_fit(self, fitted: _Fitted) -> bool:
        if fitted.model is None:
            self._failure = fitted.error
            if self._fitter.concurrent and fitted.lacking:
                self._retry_at = len(self._history) + fitted.lacking
            return False
        self._failure = fitted.error  # a refit that failed leaves the previous fit in use
        self._model = fitted.model
        self._fitted = True
        self._defer_refits()
        return True

    def _defer_refits(self) -> None:
        if self._fitter.concurrent and self._fitted and isinstance(self._model, StatefulForecaster):
            self._model.defer_refits(None if self._key is None else self._key.phase())

    def _submit(self, priority: Priority, work: Callable[[], object]) -> None:
        assert self._key is not None, "a concurrent fitter needs the track's key"
        self._submitted = True
        self._fitter.submit(FitJob(self._key, priority, work))

    def seed(self, times: FloatArray, means: FloatArray, level: float) -> None:
        """Start from the workload's recorded past instead of from nothing: its complete buckets
        (start times and means, oldest first: see `_bucket_means`) become the model's history, and
        the last `quality_window` of them are fed one by one, so the forecasts a restarted
        controller makes are scored (and may be trusted) at once rather than hours later."""
        count = times.shape[0]
        if count == 0:
            return
        replay = min(self._settings.quality_window, count - 1)
        split = count - replay
        self._history.extend(times[:split], means[:split])
        for at, value in zip(times[split:].tolist(), means[split:].tolist(), strict=True):
            self._close(at, value, level)
        # The bucket after the last seeded one is the first open one; late samples of seeded
        # buckets are then ignored instead of closing a bucket twice.
        self._bucket = float(times[-1]) + self._settings.bucket_s
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
        self._history.append(bucket, value)
        try:
            self._feed(bucket, value)
        except ForecastError:
            self.latest = None
            return
        if self._fitted:
            self._forecast(bucket, value, level)
        else:
            self.latest = None

    def _forecast(self, bucket: float, value: float, level: float) -> None:
        try:
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
        """The bucket to the model: an update of a fitted one (and, with a concurrent fitter, its
        refit when due), else its first fit once there may be history enough."""
        if self._fitted:
            self._model.update(_one_bucket(bucket, value))
            if self._fitter.concurrent and not self._submitted:
                self._refit_if_due(bucket)
            return
        if self._submitted or len(self._history) < self._retry_at:
            return
        # Copies: the track goes on appending while a concurrent fitter runs the job.
        work = _FitWork(self._model, self._history.times.copy(), self._history.values.copy())
        if not self._fitter.concurrent:
            fitted = work()
            if not self._take_fit(fitted):
                raise ForecastError(fitted.error or "fit failed")
            return
        self._submit(Priority.NEW, work)

    def _refit_if_due(self, bucket: float) -> None:
        if not isinstance(self._model, StatefulForecaster):
            return  # a model of another kind refits within its own `update`
        reason = self._model.refit_due()
        if reason is None:
            return
        priority = Priority.DRIFTED if reason is RefitReason.DRIFT else Priority.SCHEDULED
        self._submit(priority, _RefitWork(pickle.dumps(self._model), reason, bucket))

    def _recurring(self, times: tuple[float, ...], last_bucket: float) -> tuple[float, ...]:
        """Per bucket of `times`, the load the same time of day reached on at least
        `recurring_share` of the past days that have it, scaled by how today's last hour compares
        with the same hour on those days; empty without two such days."""
        settings = self._settings
        days = settings.recurring_days
        span = settings.recurring_level_buckets
        back = np.arange(days + 1, dtype=np.float64) * DAY_S
        # Row 0: the last `span` buckets, newest first; row d: the same buckets d days before.
        hour = last_bucket - back[:, np.newaxis] - np.arange(span, dtype=np.float64) * settings.bucket_s
        # Per bucket of `times`, the same bucket 1..days days before.
        ahead = np.array(times, dtype=np.float64)[:, np.newaxis] - back[1:]
        known = self._known(np.concatenate((hour.ravel(), ahead.ravel())))
        if known is None:
            return ()
        rows = [known[i * span : (i + 1) * span] for i in range(days + 1)]
        recent = rows[0]
        ratios = []
        for past in rows[1:]:
            pairs = [
                (r, p) for r, p in zip(recent, past, strict=True) if r is not None and p is not None
            ]
            then = sum(p for _, p in pairs)
            if pairs and then > 0:
                ratios.append(sum(r for r, _ in pairs) / then)
        if len(ratios) < 2:
            return ()
        ratios.sort()
        level = min(MAX_LEVEL_CHANGE, max(1 / MAX_LEVEL_CHANGE, ratios[len(ratios) // 2]))
        out = []
        offset = (days + 1) * span
        for i in range(len(times)):
            found = known[offset + i * days : offset + (i + 1) * days]
            reached_on = sorted((v for v in found if v is not None), reverse=True)
            if len(reached_on) < 2:
                return ()
            reached = reached_on[math.ceil(settings.recurring_share * len(reached_on)) - 1]
            out.append(reached * level)
        return tuple(out)

    def _known(self, at: FloatArray) -> list[float | None] | None:
        """The mean of the bucket kept at each time of `at`, None where none is; None without any
        buckets kept. Bucket times are kept sorted and distinct."""
        times = self._history.times
        if times.shape[0] == 0:
            return None
        where = np.minimum(np.searchsorted(times, at), times.shape[0] - 1)
        hit = (times[where] == at).tolist()
        values = self._history.values[where].tolist()
        return [v if h else None for v, h in zip(values, hit, strict=True)]

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
    """The `Forecaster` stage of `reconcile_once`, on the `forecasting` library. `fitter` runs the
    fits: inline by default (the simulator, backtests and benches), beside the tick in the
    controller, where finished fits are adopted at the start of the next `forecast` call."""

    def __init__(
        self,
        settings: ForecastSettings = DEFAULT_SETTINGS,
        make_model: Callable[[ModelName], Forecaster] = make_forecaster,
        fitter: Fitter = INLINE,
    ) -> None:
        self._settings = settings
        self._make_model = make_model
        self._fitter = fitter
        self._tracks: dict[tuple[TargetRef, MetricKind], _Track] = {}
        self._kinds: dict[TargetRef, tuple[MetricKind, ...]] = {}
        self._serial = 0

    def latest(self, ref: TargetRef, kind: MetricKind) -> LoadForecast | None:
        track = self._tracks.get((ref, kind))
        return None if track is None else track.latest

    def model_states(self) -> dict[ModelState, int]:
        """How many models (targets × metrics) stand where, every state present."""
        counts = dict.fromkeys(ModelState, 0)
        for track in self._tracks.values():
            counts[track.state()] += 1
        return counts

    def forecast(
        self, target: Target, load: LoadSnapshot, now: float, past: RecordedLoad = NO_HISTORY
    ) -> Forecasts:
        self._adopt_finished()
        ref = target.state.ref
        found: dict[MetricKind, LoadForecast | None] = {}
        fitting: set[MetricKind] = set()
        for kind in target.config.metrics:
            key = (ref, kind)
            track = self._tracks.get(key)
            if track is None and past.pending(ref, kind):
                # Its past is still to be read: the model starts from it, not from nothing, once
                # it is; meanwhile the metric is decided reactively, as one whose model is fitting.
                found[kind] = None
                fitting.add(kind)
                continue
            if track is None:
                self._serial += 1
                track = _Track(
                    kind,
                    self._settings,
                    self._make_model(self._settings.model),
                    self._fitter,
                    TrackKey(ref, kind, self._serial),
                )
                recorded = past.recorded(ref, kind)
                if recorded is not None:
                    track.start_seed(recorded, now, target.config.confidence)
                # Kept only once seeded: a seed that raised is tried again next tick, not half-kept.
                self._tracks[key] = track
            sample = load.get(kind)
            if sample is not None:
                track.observe(sample.at, sample.value, target.config.confidence)
            found[kind] = track.latest
            if track.latest is None and track.fitting:
                fitting.add(kind)
        # A metric dropped from the annotations leaves no model behind.
        for kind in self._kinds.get(ref, ()):
            if kind not in found:
                self._forget(self._tracks.pop((ref, kind), None))
        self._kinds[ref] = tuple(found)
        return Forecasts(found, frozenset(fitting))

    def keep_only(self, refs: AbstractSet[TargetRef]) -> None:
        for gone in [ref for ref in self._kinds if ref not in refs]:
            for kind in self._kinds.pop(gone):
                self._forget(self._tracks.pop((gone, kind), None))

    def _adopt_finished(self) -> None:
        done = self._fitter.collect()
        if not done:
            return
        by_key = {track.key: track for track in self._tracks.values()}
        for finished in done:
            track = by_key.get(finished.key)  # type: ignore[call-overload]  # keys are TrackKeys
            if track is not None:
                track.adopt(finished)

    def _forget(self, track: _Track | None) -> None:
        if track is not None and track.key is not None:
            self._fitter.discard((track.key,))
