"""Where Prometheus is and how the metrics source reads it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from autoscaler.selectors import SeriesSelector, parse_selector
from autoscaler.timefmt import parse_duration

__all__ = ["PROMETHEUS_POINT_LIMIT", "PrometheusSettings"]

# What PromQL accepts as a range duration (the rate window goes into queries as it is written).
_PROMQL_DURATION = re.compile(r"(?:[0-9]+(?:ms|s|m|h|d|w|y))+")
# Prometheus refuses range queries of more than 11 000 points per series.
PROMETHEUS_POINT_LIMIT = 11_000


@dataclass(frozen=True, slots=True)
class PrometheusSettings:
    """Where Prometheus is and how the source reads it.

    `bearer_token_file` is re-read whenever the client reconnects: on first use, after a transport
    error or a 401/403, and when the file changes, so a rotated service-account token is picked up.
    """

    url: str
    bearer_token_file: Path | None = None
    ca_file: Path | None = None
    insecure_skip_verify: bool = False
    timeout_s: float = 10.0
    retries: int = 2
    # Sleep before retry n (from 0) is backoff_s * 2**n.
    backoff_s: float = 0.5
    step_s: int = 60
    rate_window: str = "2m"
    # The past a new target's models are seeded from, fetched once and kept until read for that.
    history_s: float = 3 * 86400.0
    # What is kept of a target's series once its seed has been read: at least the quality window,
    # which `latest` reads and a tick fetches again; more only serves a model started again.
    cache_s: float = 3600.0
    # The request counter of targets that name none; a selector, e.g. 'http_requests_total{code!~"5.."}'.
    default_requests_metric: str = "http_requests_total"
    # Missing means missing: the latest point must be on the newest grid point at or before now, or at
    # most this many steps behind it (a query that races the boundary's evaluation). A series that
    # stopped (its target gone from the scrape, a relabeling, kube-state-metrics down) is not
    # stretched from what the cache still holds.
    late_steps: int = 1
    quality_window_s: float = 600.0
    max_missing_share: float = 0.3
    # Points per series of one query (Prometheus refuses more than 11 000).
    max_points_per_query: int = 10_000
    # Points of all series of one query: a longer history is fetched in more, shorter chunks, each
    # quick to evaluate (about 2 s for 250 000 on two cores) and far from `timeout_s`.
    max_answer_points: int = 250_000
    # Points parsed and not yet cached, at most, at any time of a tick (or as many as one target's
    # range has, if more): the first read of many targets is fetched and cached a group of targets
    # at a time, so that its transient memory does not grow with their number.
    max_points_in_flight: int = 1_000_000
    # History points (targets' kinds × `history_s` of steps) a tick reads at most for targets seen
    # for the first time, one target's at least: a large fleet's past is read over several ticks, so
    # that no tick waits for all of it. A target whose past is still to come is read from the recent
    # window like the others, decided reactively, and its models wait for their seed.
    history_points_per_tick: int = 1_000_000
    parallel_queries: int = 2
    # Plain transfer is faster than gzip on the fast links a controller has to Prometheus.
    accept_identity_encoding: bool = True

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"prometheus url must be http(s)://…, got {self.url!r}")
        if self.step_s < 1:
            raise ValueError("step_s must be at least one second")
        if not _PROMQL_DURATION.fullmatch(self.rate_window) or not self.rate_window.strip("0msdhwy"):
            raise ValueError(
                f"rate_window must be a positive duration like 2m, got {self.rate_window!r}"
            )
        if self.timeout_s <= 0 or self.retries < 0 or self.backoff_s < 0:
            raise ValueError("timeout_s must be positive, retries and backoff_s non-negative")
        if self.history_s < self.step_s or self.cache_s < self.quality_window_s:
            raise ValueError("history_s must cover a step and cache_s the quality window")
        if self.late_steps < 0 or self.quality_window_s < self.step_s:
            raise ValueError("late_steps must be ≥ 0 and quality_window_s at least one step")
        if not 0.0 <= self.max_missing_share < 1.0:
            raise ValueError("max_missing_share must be in [0, 1)")
        if not 2 <= self.max_points_per_query <= PROMETHEUS_POINT_LIMIT:
            raise ValueError(f"max_points_per_query must be in [2, {PROMETHEUS_POINT_LIMIT}]")
        if self.history_points_per_tick < 1:
            raise ValueError("history_points_per_tick must be at least 1")
        if self.max_answer_points < 2 or self.max_points_in_flight < 2 or self.parallel_queries < 1:
            raise ValueError(
                "max_answer_points and max_points_in_flight must be at least 2, "
                "parallel_queries at least 1"
            )
        parse_selector(self.default_requests_metric)

    @property
    def rate_window_s(self) -> float:
        return parse_duration(self.rate_window).total_seconds()

    @property
    def default_requests_selector(self) -> SeriesSelector:
        return parse_selector(self.default_requests_metric)
