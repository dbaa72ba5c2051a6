"""The models behind the `phpa` peer: PHPA's Linear and Holt-Winters models on the HPA's own replica
calculation, with the parameters of its documentation's examples.

Each sync the HPA's calculation (the same code as the `hpa` baseline, with PHPA's behavior) is
appended to each model's history and each model predicts the next count:
- Linear: ordinary least squares of the last `history` counts against their time, evaluated
  `look_ahead_s` past now, rounded up;
- Holt-Winters: additive trend and season, fixed α β γ, one day of syncs per season, one step ahead,
  rounded up; nothing until two seasons are stored (statsmodels needs them).
The largest prediction is handed to `PhpaPolicy` as the load that many pods carry at the per-pod
target. Holt-Winters is run as one recursion carried forward from the statsmodels fit on the first
two seasons, where PHPA refits statsmodels from the start of its stored seasons at every sync: the two
agree exactly until a third season is stored, later they differ only in how the initial states were
estimated, whose weight the smoothing has by then decayed (README, "Peers").
"""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

import numpy as np
from statsmodels.tools.sm_exceptions import ConvergenceWarning
from statsmodels.tsa.holtwinters import ExponentialSmoothing

from autoscaler.metrics import MetricKind
from autoscaler.model import ForecastQuality, Forecasts, LoadForecast, LoadSnapshot, Target, TargetRef
from autoscaler.policy.decision import DecisionHistory, PolicyInputs
from autoscaler.policy.hpa import HpaBehavior, pods_for, reactive_proposal
from autoscaler.policy.phpa import PHPA_BEHAVIOR
from autoscaler.stages import NO_HISTORY, RecordedLoad

__all__ = ["HoltWinters", "LinearReplicas", "ReplicaModels"]

DAY_S = 86_400
_UNSCORED = ForecastQuality(checked=0, scaled_error=None, coverage=None)


@dataclass(slots=True)
class LinearReplicas:
    history: int = 6
    look_ahead_s: float = 10.0
    _points: deque[tuple[float, int]] = field(init=False)

    def __post_init__(self) -> None:
        self._points = deque(maxlen=self.history)

    def add(self, at: float, replicas: int) -> int:
        """Stores the count and predicts the one `look_ahead_s` after `at`."""
        self._points.append((at, replicas))
        if len(self._points) == 1:
            return replicas
        # Least squares of the counts against the time left to the look-ahead instant; the
        # prediction is the fitted line there (x = 0): its intercept.
        xs = [at + self.look_ahead_s - t for t, _ in self._points]
        ys = [float(r) for _, r in self._points]
        n = len(xs)
        mean_x, mean_y = sum(xs) / n, sum(ys) / n
        sxx = sum((x - mean_x) ** 2 for x in xs)
        sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
        intercept = mean_y - (sxy / sxx) * mean_x if sxx > 0 else mean_y
        return pods_for(intercept, 1.0)


@dataclass(slots=True)
class HoltWinters:
    season: int
    alpha: float = 0.9
    beta: float = 0.1
    gamma: float = 0.1
    _first: list[float] = field(default_factory=list)
    _level: float = 0.0
    _trend: float = 0.0
    # The seasonal states of the next `season` points, the next one first.
    _seasons: deque[float] = field(default_factory=deque)

    @property
    def ready(self) -> bool:
        return bool(self._seasons)

    @property
    def next_value(self) -> float | None:
        """The unrounded prediction of the next count, once two seasons are stored."""
        return self._level + self._trend + self._seasons[0] if self.ready else None

    def add(self, replicas: int) -> int | None:
        """Stores the count and predicts the next; None until two seasons are stored."""
        y = float(replicas)
        if not self.ready:
            self._first.append(y)
            if len(self._first) < 2 * self.season:
                return None
            self._fit_first()
        else:
            level, trend = self._level, self._trend
            season = self._seasons.popleft()
            self._level = self.alpha * (y - season) + (1 - self.alpha) * (level + trend)
            self._trend = self.beta * (self._level - level) + (1 - self.beta) * trend
            self._seasons.append(self.gamma * (y - level - trend) + (1 - self.gamma) * season)
        return pods_for(self._level + self._trend + self._seasons[0], 1.0)

    def _fit_first(self) -> None:
        model = ExponentialSmoothing(
            np.array(self._first),
            trend="add",
            seasonal="add",
            seasonal_periods=self.season,
            initialization_method="estimated",
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fitted = model.fit(
                smoothing_level=self.alpha,
                smoothing_trend=self.beta,
                smoothing_seasonal=self.gamma,
                optimized=False,
            )
        self._level = float(fitted.level[-1])
        self._trend = float(fitted.trend[-1])
        self._seasons = deque(float(s) for s in fitted.season[-self.season :])
        self._first = []


@dataclass(slots=True)
class _Models:
    linear: LinearReplicas
    holt_winters: HoltWinters


class ReplicaModels:
    """A forecaster (the stage's protocol) whose forecast is PHPA's predicted replica count."""

    def __init__(self, *, sync_s: float, behavior: HpaBehavior = PHPA_BEHAVIOR) -> None:
        self._sync_s = sync_s
        self._season = round(DAY_S / sync_s)
        self._behavior = behavior
        self._models: dict[TargetRef, _Models] = {}

    def forecast(
        self, target: Target, load: LoadSnapshot, now: float, past: RecordedLoad = NO_HISTORY
    ) -> Forecasts:
        calculated = reactive_proposal(
            PolicyInputs(target, load, DecisionHistory(), now), self._behavior
        )
        kind: MetricKind | None = calculated.metric
        per_pod = calculated.per_pod_target
        if calculated.holding or calculated.direct or kind is None or per_pod is None:
            # PHPA's sync fails when the metrics cannot be gathered: no count is stored.
            return Forecasts()
        models = self._models.get(target.state.ref)
        if models is None:
            models = _Models(LinearReplicas(), HoltWinters(self._season))
            self._models[target.state.ref] = models
        predictions = [models.linear.add(now, calculated.replicas)]
        seasonal = models.holt_winters.add(calculated.replicas)
        if seasonal is not None:
            predictions.append(seasonal)
        load_of = (max(predictions) * per_pod,)
        made = LoadForecast(kind, now, self._sync_s, (now,), load_of, load_of, 0.5, _UNSCORED)
        return Forecasts({kind: made})

    def keep_only(self, refs: AbstractSet[TargetRef]) -> None:
        for ref in [r for r in self._models if r not in refs]:
            del self._models[ref]
