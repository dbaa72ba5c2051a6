"""The Prometheus metrics source: settings, transport (the only user of `prometheus-api-client`),
the series cache, and the batching source built on them."""

from autoscaler.sources.prometheus.cache import FILL_STEPS, regular_series
from autoscaler.sources.prometheus.settings import PrometheusSettings
from autoscaler.sources.prometheus.source import FetchPurpose, FetchRecord, PrometheusSource
from autoscaler.sources.prometheus.transport import (
    PrometheusError,
    PrometheusRejected,
    PrometheusServerError,
    PrometheusTimeout,
    PrometheusUnreachable,
)

__all__ = [
    "FILL_STEPS",
    "FetchPurpose",
    "FetchRecord",
    "PrometheusError",
    "PrometheusRejected",
    "PrometheusServerError",
    "PrometheusSettings",
    "PrometheusSource",
    "PrometheusTimeout",
    "PrometheusUnreachable",
    "regular_series",
]
