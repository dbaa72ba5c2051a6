"""What kept the metrics backend from giving a tick its data, said where an operator looks first.

The tick itself only sees "no usable sample" (`metrics-missing` on each decision). This module turns a
tick's failures into a few causes (`MetricsCause`): Prometheus could not be reached, did not answer in
time, answered with an error, rejected a query, or answered without data for some targets. Each tick
counts every cause it met once (`Telemetry.metrics_problem`); the log says a cause in one warning line
when it appears or its details change, repeats it while it lasts no more often than `remind_s`, and
says in one info line when it is over. One line per cause, never one per workload: a Prometheus
outage holds every target, and a thousand identical lines hide the one that matters.

What a line may carry: the cause, Prometheus' own words and the workloads and metrics concerned. The
text of a query or a selector runs long and repeats in every line, so it is logged at debug only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum

__all__ = ["MetricsCause", "MetricsProblem", "MetricsProblemLog"]

log = logging.getLogger(__name__)


class MetricsCause(Enum):
    """Why a tick went without (some of) its data: the `cause` label of
    `predictive_autoscaler_prometheus_errors_total` and the `cause` field of the log line."""

    UNREACHABLE = "unreachable"  # no connection: refused, reset, DNS, TLS
    TIMEOUT = "timeout"  # connected, no answer in time
    SERVER_ERROR = "server-error"  # an error status (5xx, 408, 429) or an answer that is no result
    REJECTED = "rejected"  # a 4xx: a query Prometheus refuses, or credentials it refuses
    NO_DATA = "no-data"  # answered, but without a usable sample for some targets' metrics


_HEADLINE = {
    MetricsCause.UNREACHABLE: "Prometheus is unreachable",
    MetricsCause.TIMEOUT: "Prometheus timed out",
    MetricsCause.SERVER_ERROR: "Prometheus answered with an error",
    MetricsCause.REJECTED: "Prometheus rejected a query",
    MetricsCause.NO_DATA: "Prometheus answered without data",
}
_OVER = {
    MetricsCause.UNREACHABLE: "Prometheus is reachable again",
    MetricsCause.TIMEOUT: "Prometheus answers in time again",
    MetricsCause.SERVER_ERROR: "Prometheus answers without errors again",
    MetricsCause.REJECTED: "Prometheus accepts every query again",
    MetricsCause.NO_DATA: "Prometheus has data for every target again",
}


@dataclass(frozen=True, slots=True)
class MetricsProblem:
    """One cause met in a tick. `detail` is what the warning line says after the headline (Prometheus'
    words, the workloads concerned); `debug` what only the debug line adds (the query or selector
    text). `key` tells one instance of a cause from the next: a line is written again when it
    changes (another selector rejected, other targets without data)."""

    cause: MetricsCause
    detail: str
    key: tuple[str, ...] = ()
    debug: str = ""
    # Whether every target of the tick holds, not only those concerned.
    whole_tick: bool = False

    def message(self) -> str:
        consequence = (
            "every target holds (no scale-down)"
            if self.whole_tick
            else "the metrics concerned hold (no scale-down on them)"
        )
        return f"{_HEADLINE[self.cause]}: {self.detail}; {consequence}"


class MetricsProblemLog:
    """Counts and logs each tick's problems; see the module docstring. `count` hears of every cause
    met, once per tick (the telemetry's counter)."""

    def __init__(
        self, count: Callable[[MetricsCause], None] | None = None, *, remind_s: float = 600.0
    ) -> None:
        self._count = count
        self._remind_s = remind_s
        # Per cause in effect: the key last told and when.
        self._told: dict[MetricsCause, tuple[tuple[str, ...], float]] = {}

    @property
    def in_effect(self) -> tuple[MetricsCause, ...]:
        """The causes the latest tick met, in a stable order."""
        return tuple(cause for cause in MetricsCause if cause in self._told)

    def tick(self, problems: Iterable[MetricsProblem], now: float) -> None:
        by_cause: dict[MetricsCause, MetricsProblem] = {}
        for problem in problems:
            by_cause.setdefault(problem.cause, problem)
        for cause, problem in by_cause.items():
            if self._count is not None:
                self._count(cause)
            told = self._told.get(cause)
            if told is not None and told[0] == problem.key and now - told[1] < self._remind_s:
                continue
            self._told[cause] = (problem.key, now)
            extra = {
                "event": "prometheus_error",
                "cause": cause.value,
                "error": problem.detail,
                "whole_tick": problem.whole_tick,
            }
            log.warning(problem.message(), extra=extra)
            if problem.debug:
                log.debug("%s: %s", _HEADLINE[cause], problem.debug, extra={"cause": cause.value})
        for cause in [c for c in self._told if c not in by_cause]:
            del self._told[cause]
            log.info(
                _OVER[cause],
                extra={"event": "prometheus_recovered", "cause": cause.value},
            )
