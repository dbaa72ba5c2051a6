"""Forecasts recorded in one simulated run and replayed in another.

On a request-rate trace what the metrics source shows does not depend on the policy (requests are
counted at the load balancer, never capped), so the forecaster sees the same inputs in every run over
the trace and produces the same forecasts. A sweep records them once and replays them, which makes
it cheaper without changing a single decision. CPU traces are never replayed: there the observed load
is capped by the policy's own capacity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from autoscaler.model import Forecasts, LoadSnapshot, Target, TargetRef
from autoscaler.stages import NO_HISTORY, Forecaster, RecordedLoad

__all__ = ["ForecastTape"]


class ForecastTape:
    """Records what `inner` returns per tick; once `inner` is dropped, replays it."""

    def __init__(self, inner: Forecaster | None) -> None:
        self._inner = inner
        self._ticks: dict[float, Mapping[TargetRef, Forecasts]] = {}
        self.last: Mapping[TargetRef, Forecasts] = {}

    @property
    def recording(self) -> bool:
        return self._inner is not None

    def replaying(self) -> ForecastTape:
        replay = ForecastTape(None)
        replay._ticks = self._ticks
        return replay

    def forecasts(
        self,
        targets: Sequence[Target],
        loads: Mapping[TargetRef, LoadSnapshot],
        now: float,
        past: RecordedLoad = NO_HISTORY,
    ) -> Mapping[TargetRef, Forecasts]:
        if self._inner is not None:
            self.last = self._inner.forecasts(targets, loads, now, past)
            self._ticks[now] = self.last
        else:
            self.last = self._ticks.get(now, {})
        return self.last
