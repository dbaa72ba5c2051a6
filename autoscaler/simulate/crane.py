"""The forecast behind the `crane` peer: Crane's DSP prediction (gocrane/crane, `pkg/prediction/dsp`).

Re-implemented from Crane's public source and documentation with the defaults its EHPA examples use:
the observed load at a 1-minute resolution over the last 7 days (and an hour, as Crane queries it),
the prediction redone every 12 h (`--model-update-interval`). Each refresh does what Crane's
`updateAggregateSignals` does:

1. pre-processing: gaps filled linearly (a gap over an hour drops what came before it), the series
   cut to whole hours from its end, values beyond its 99.9th or under its 0.1th percentile (the
   percentile of the `montanaflynn/stats` version Crane pins) replaced by the value before them;
2. periodicity: as Crane's `findPeriod` orders it, over whole weeks where there are several, else over
   whole days where there are several; a period is 7 days if, of the spectral components at or under
   one cycle a week, the weekly one is the strongest, else 1 day if, of those at or under one cycle a
   day, the daily one is; anything else is no period (Crane uses only these two);
3. estimators: Crane's 8 default FFT estimators (at least 3 / 50 spectral components kept, at most
   100, amplitude threshold 1.0 / 0.05, components at or under one cycle per hour always kept,
   margins 1 %, 10 %, 15 %, 20 %), each fitted on all whole periods but the last and scored on the
   last by Crane's `PredictionError` (a MAPE that amplifies under-prediction, `-ln(1-x)/ln(1.25)`,
   or the mean absolute error where an actual value is under 0.001); the best is refitted on all
   periods and the last period of its reconstruction is the prediction of each coming period.
   The estimator's filter is reproduced as written: it compares each FFT bin's index-based frequency
   with the threshold, so a kept low-frequency component whose mirror bin is dropped counts half;
4. nothing is predicted without a period or with fewer than two whole periods, and a refresh that
   finds none withdraws the earlier prediction (Crane's EHPA then leaves the metric out of the HPA).

Deviations: the period test is the rule above, where Crane's `FindPeriod` thresholds the spectrum
at a random permutation test seeded from the clock and keeps the candidate with the highest
autocorrelation peak, sub-daily ones included, which would make Crane use no period wherever a short
cycle correlates better than the day; the DSP sees the load in units of one pod's full capacity
(cores, for pods that request one core: Crane's amplitude thresholds are absolute) and its prediction
is handed back in the metric's own units; the history is what the simulated Prometheus showed (the
60-s means, the latest at or before each minute), not a PromQL `irate`; the prediction reaches past
the next refresh by the window, not over as many periods as the history holds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from autoscaler.metrics import METRICS, MetricKind
from autoscaler.model import ForecastQuality, Forecasts, LoadForecast, LoadSnapshot, Target, TargetRef
from autoscaler.stages import NO_HISTORY, RecordedLoad

__all__ = [
    "DEFAULT_ESTIMATORS",
    "DspForecaster",
    "FftEstimator",
    "dsp_prediction",
    "prediction_error",
]

FloatArray = npt.NDArray[np.float64]

MINUTE_S = 60
HOUR_S = 3600
DAY_S = 86_400
WEEK_S = 7 * DAY_S
_UNSCORED = ForecastQuality(checked=0, scaled_error=None, coverage=None)
# Crane's `defaultFFTMinValue`: a reconstruction at or under zero is predicted as this.
_FFT_MIN_VALUE = 0.01
# Under this an actual value makes the percentage error undefined and Crane scores by absolute error.
_NEAR_ZERO = 1e-3


@dataclass(frozen=True, slots=True)
class FftEstimator:
    """Crane's `fftEstimator`: the series through an FFT, the noise (high frequency and low
    amplitude) zeroed, back through the inverse FFT; its last period, raised by the margin."""

    min_items: int = 3
    max_items: int = 100
    high_frequency_threshold: float = 1.0 / HOUR_S
    low_amplitude_threshold: float = 1.0
    margin_fraction: float = 0.0

    def reconstruct(self, samples: FloatArray, sample_rate: float) -> FloatArray:
        """The filtered series (before the floor and the margin), as long as `samples`."""
        n = len(samples)
        spectrum = np.fft.rfft(samples)
        amplitude = np.abs(spectrum) / n
        # Crane sorts the first half of the spectrum without the constant term.
        ranked = np.sort(amplitude[1 : n // 2])[::-1]
        if len(ranked) == 0:
            return samples.copy()
        least = ranked[self.max_items - 1] if len(ranked) >= self.max_items else ranked[-1]
        least = max(least, self.low_amplitude_threshold)
        if len(ranked) >= self.min_items:
            least = min(least, ranked[self.min_items - 1])
        # Crane zeroes bin k of the full spectrum when it is weak and k·rate/n is above the
        # threshold; the mirror bins n-k always count as high, so a weak low-frequency component
        # keeps one of its two halves.
        frequency = np.arange(len(spectrum), dtype=np.float64) * sample_rate / n
        low = frequency <= self.high_frequency_threshold
        strong = amplitude >= least
        weight = np.where(strong, 1.0, np.where(low, 0.5, 0.0))
        weight[0] = 1.0 if strong[0] or low[0] else 0.0
        if n % 2 == 0:
            # The Nyquist bin is its own mirror.
            weight[-1] = 1.0 if strong[-1] or low[-1] else 0.0
        return np.fft.irfft(spectrum * weight, n)

    def finish(self, reconstruction: FloatArray, period: int) -> FloatArray:
        last = reconstruction[len(reconstruction) - period :]
        return np.where(last <= 0.0, _FFT_MIN_VALUE, last) * (1.0 + self.margin_fraction)

    def estimate(self, samples: FloatArray, period: int, sample_rate: float) -> FloatArray:
        return self.finish(self.reconstruct(samples, sample_rate), period)


# Crane's `defaultEstimators` (pkg/prediction/dsp/config.go).
DEFAULT_ESTIMATORS: tuple[FftEstimator, ...] = tuple(
    FftEstimator(min_items=items, low_amplitude_threshold=threshold, margin_fraction=margin)
    for items, threshold in ((3, 1.0), (50, 0.05))
    for margin in (0.01, 0.10, 0.15, 0.20)
)


def prediction_error(actual: FloatArray, predicted: FloatArray) -> float:
    """Crane's `PredictionError`: the mean relative error, an under-prediction by x counting
    `-ln(1-x)/ln(1.25)`; the mean absolute error where some actual value is too near zero."""
    if np.any(actual < _NEAR_ZERO):
        return float(np.mean(np.abs(actual - predicted)))
    relative = (actual - predicted) / actual
    under = relative > 0.0
    # The floor keeps predictions positive, so x stays below 1; the clip only guards the log.
    amplified = -np.log1p(-np.clip(relative, 0.0, 1.0 - 1e-12)) / math.log(1.25)
    return float(np.mean(np.where(under, amplified, -relative)))


def _truncate(samples: FloatArray, period: int) -> tuple[FloatArray, int]:
    """Crane's `Signal.Truncate`: the whole periods at the end, and how many."""
    count = len(samples) // period
    return samples[len(samples) - count * period :], count


def _strongest_is(samples: FloatArray, cycles: int) -> bool:
    """Whether, of the components at or under `cycles` cycles over `samples`, the one at exactly
    `cycles` has the largest amplitude (a tie goes to the slower one)."""
    amplitude = np.abs(np.fft.rfft(samples))[1 : cycles + 1]
    return len(amplitude) == cycles and int(np.argmax(amplitude)) == cycles - 1


def _period_of(samples: FloatArray, step_s: int) -> int | None:
    """The period in seconds, as Crane's `findPeriod` orders the search: over whole weeks where there
    are several, else over whole days where there are several; a week is preferred to a day."""
    for span_s in (WEEK_S, DAY_S):
        whole, count = _truncate(samples, span_s // step_s)
        if count < 2:
            continue
        seconds = len(whole) * step_s
        for period_s in (WEEK_S, DAY_S):
            if period_s <= span_s and _strongest_is(whole, seconds // period_s):
                return period_s
        return None
    return None


def _percentile(values: FloatArray, percent: float) -> float | None:
    """`stats.Percentile` of montanaflynn/stats v0.6.6 (Crane's pin); None where it errs."""
    ordered = np.sort(values)
    index = percent / 100.0 * len(ordered)
    whole = int(index)
    if index == whole and whole >= 1:
        return float(ordered[whole - 1])
    if index > 1:
        return float(ordered[whole - 1] + ordered[whole]) / 2.0
    return None


def _without_outliers(values: FloatArray) -> FloatArray:
    """Crane's `removeExtremeOutliers`: each value beyond the extreme percentiles (but the first)
    replaced by the value before it, as already replaced."""
    high = _percentile(values, 99.9)
    low = _percentile(values, 0.1)
    if high is None or low is None:
        return values
    outside = (values > high) | (values < low)
    outside[0] = False
    source = np.where(outside, 0, np.arange(len(values)))
    return values[np.maximum.accumulate(source)]


def dsp_prediction(
    values: FloatArray,
    step_s: int = MINUTE_S,
    estimators: Sequence[FftEstimator] = DEFAULT_ESTIMATORS,
) -> FloatArray | None:
    """One period of prediction following `values` (pre-processed, `step_s` apart, oldest first),
    or None where Crane predicts nothing."""
    found = _period_of(values, step_s)
    if found is None:
        return None
    period = found // step_s
    signal, count = _truncate(values, period)
    if count < 2:
        return None
    rate = 1.0 / step_s
    history, actual = signal[: (count - 1) * period], signal[(count - 1) * period :]
    chosen: FftEstimator | None = None
    lowest = math.inf
    # Estimators that differ only in their margin share one filtered series.
    reconstructed: dict[tuple[int, int, float, float], FloatArray] = {}
    for estimator in estimators:
        key = (
            estimator.min_items,
            estimator.max_items,
            estimator.high_frequency_threshold,
            estimator.low_amplitude_threshold,
        )
        if key not in reconstructed:
            reconstructed[key] = estimator.reconstruct(history, rate)
        error = prediction_error(actual, estimator.finish(reconstructed[key], period))
        if error < lowest:
            chosen, lowest = estimator, error
    if chosen is None:
        return None
    return chosen.estimate(signal, period, rate)


def _preprocessed(minutes: dict[int, float], end: int, span: int) -> tuple[FloatArray, int] | None:
    """The series Crane queries for minutes `(end - span, end]`, pre-processed, and its last minute."""
    keys = np.array(sorted(k for k in minutes if end - span < k <= end), dtype=np.int64)
    if len(keys) < 2:
        return None
    gaps = np.flatnonzero(np.diff(keys) * MINUTE_S > HOUR_S)
    if len(gaps):
        keys = keys[gaps[-1] + 1 :]
    values = np.array([minutes[int(k)] for k in keys], dtype=np.float64)
    every = np.arange(int(keys[0]), int(keys[-1]) + 1)
    filled = np.interp(every, keys, values) if len(every) != len(keys) else values
    per_hour = HOUR_S // MINUTE_S
    filled = filled[len(filled) % per_hour :]
    if len(filled) == 0:
        return None
    return _without_outliers(filled), int(keys[-1])


@dataclass(slots=True)
class _Minutes:
    """The observed load at each minute boundary (the latest 60-s mean at or before it), and the
    prediction last made from them."""

    points: dict[int, float] = field(default_factory=dict)
    last_at: float | None = None
    refreshed_at: float | None = None
    forecast: LoadForecast | None = None

    def add(self, at: float, value: float) -> None:
        if self.last_at is not None and at <= self.last_at:
            return  # the same sample handed out again
        self.last_at = at
        # A later sample of the same minute replaces an earlier one: the latest at or before it.
        self.points[-int(-at // MINUTE_S)] = value

    def drop_before(self, minute: int) -> None:
        for old in [k for k in self.points if k <= minute]:
            del self.points[old]


class DspForecaster:
    """Crane's DSP prediction per target and metric, redone every `refresh_s`; each prediction
    reaches `window_s` past the next refresh (the EHPA looks that far ahead)."""

    def __init__(
        self,
        *,
        refresh_s: float = 12 * HOUR_S,
        history_s: int = 7 * DAY_S,
        window_s: int = HOUR_S,
        estimators: Sequence[FftEstimator] = DEFAULT_ESTIMATORS,
    ) -> None:
        self._refresh_s = refresh_s
        # Crane queries an hour more than the history length.
        self._span = (history_s + HOUR_S) // MINUTE_S
        self._ahead = math.ceil((refresh_s + window_s) / MINUTE_S) + 2
        self._estimators = tuple(estimators)
        self._series: dict[tuple[TargetRef, MetricKind], _Minutes] = {}

    def forecast(
        self, target: Target, load: LoadSnapshot, now: float, past: RecordedLoad = NO_HISTORY
    ) -> Forecasts:
        ref = target.state.ref
        made: dict[MetricKind, LoadForecast] = {}
        for kind in target.config.metrics:
            series = self._series.setdefault((ref, kind), _Minutes())
            sample = load.get(kind)
            if sample is not None:
                series.add(sample.at, sample.value)
            if series.refreshed_at is None or now - series.refreshed_at >= self._refresh_s:
                series.refreshed_at = now
                series.forecast = self._predict(kind, target, series, now)
            if series.forecast is not None and series.forecast.at(now) is not None:
                made[kind] = series.forecast
        return Forecasts(made)

    def _predict(
        self, kind: MetricKind, target: Target, series: _Minutes, now: float
    ) -> LoadForecast | None:
        end = int(now // MINUTE_S)
        series.drop_before(end - self._span)
        unit = _pod_capacity(kind, target)
        history = _preprocessed(series.points, end, self._span)
        if unit is None or history is None:
            return None
        values, last = history
        period = dsp_prediction(values / unit, MINUTE_S, self._estimators)
        if period is None:
            return None
        coming = np.resize(period, self._ahead) * unit
        # The prediction for minute boundary t is the mean of the minute that ends at t.
        times = tuple(float(m * MINUTE_S) for m in range(last, last + self._ahead))
        predicted = tuple(coming.tolist())
        return LoadForecast(kind, now, float(MINUTE_S), times, predicted, predicted, 0.5, _UNSCORED)

    def keep_only(self, refs: AbstractSet[TargetRef]) -> None:
        for key in [k for k in self._series if k[0] not in refs]:
            del self._series[key]


def _pod_capacity(kind: MetricKind, target: Target) -> float | None:
    """What one pod can carry at most: its request for a resource, else the per-pod target over the
    target utilization (`TargetConfig` takes them to be the same fraction)."""
    state, config = target.state, target.config
    if METRICS[kind].request_resource is not None:
        request = state.pod_requests.get(kind)
        return request if request is not None and request > 0 else None
    per_pod = config.per_pod_target(kind, state)
    if per_pod is None or per_pod <= 0 or config.target_utilization <= 0:
        return None
    return per_pod / config.target_utilization
