"""Forecasts recorded in one simulated run and replayed in another.

On a request-rate trace what the metrics source shows does not depend on the policy (requests are
counted at the load balancer, never capped), so the forecaster sees the same inputs in every run over
the trace and produces the same forecasts. A sweep records them once and replays them, which makes
it cheaper without changing a single decision. CPU traces are never replayed: there the observed load
is capped by the policy's own capacity.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet

from autoscaler.model import Forecasts, LoadSnapshot, Target, TargetRef
from autoscaler.stages import NO_HISTORY, Forecaster, RecordedLoad

__all__ = ["ForecastTape"]


class ForecastTape:
    """Records what `inner` returns per tick; once `inner` is dropped, replays it."""

    def __init__(self, inner: Forecaster | None) -> None:
        self._inner = inner
        self._ticks: dict[tuple[float, TargetRef], Forecasts] = {}
        # The forecasts each target was last given, for the run's forecast band.
        self.last: dict[TargetRef, Forecasts] = {}

    @property
    def recording(self) -> bool:
        return self._inner is not None

    def replaying(self) -> ForecastTape:
        replay = ForecastTape(None)
        replay._ticks = self._ticks
        return replay

    def forecast(
        self, target: Target, load: LoadSnapshot, now: float, past: RecordedLoad = NO_HISTORY
    ) -> Forecasts:
        key = (now, target.state.ref)
        if self._inner is not None:
            self._ticks[key] = self._inner.forecast(target, load, now, past)
        found = self._ticks.get(key, _NONE)
        self.last[target.state.ref] = found
        return found

    def keep_only(self, refs: AbstractSet[TargetRef]) -> None:
        if self._inner is not None:
            self._inner.keep_only(refs)


_NONE = Forecasts()
