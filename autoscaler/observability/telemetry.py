"""The controller's Prometheus metrics, served on `/metrics`: the one module that imports
`prometheus_client`.

Per target (labels `namespace`, `deployment`; the latter names a Deployment by its name and a
StatefulSet as `statefulset/<name>`, so the two never share series and a Deployment's stay as they
were before StatefulSets were scaled): actual load, the ready capacity (ready replicas times the
per-pod target) and the forecast for the current bucket with its interval bounds, per metric `kind`,
in one family per unit; the forecasts' rolling error and coverage; replicas (`source`: current,
reactive, predictive, final), the mode and the reasons in effect, the lead time, and scale events by
direction (the reasons in effect at an event say why it happened). Per controller: tick duration,
Prometheus query duration, what kept Prometheus from giving a tick its data (by cause), Kubernetes
API errors by status code, actuation outcomes, leader status and shards held, targets by state,
models by the state of their fitting and how long fits take.

Names follow Prometheus' conventions: a family has one unit, named by its suffix (`_cores`,
`_bytes`, `_requests_per_second`, `_seconds`; `_ratio` for shares and ratios; counters end in
`_total`). A metric a workload declares has a unit of its own that Prometheus cannot name, so its
families carry no suffix. No `_created` series: nothing reads them, and they double the counters.

Every label value comes from an enum or from the cluster's own names (namespace, Deployment, the
metrics workloads declare), never from free text, so the number of series is bounded by the number
of targets. A target's series are removed as soon as a tick no longer decides for it (forgotten,
opted out, refused, or this replica stopped leading): a dashboard must not show a stale opinion as
if it were current.

Metrics live in a registry of their own, not the process-wide default one, so that tests (and two
controllers in one process) never see each other's series.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from autoscaler.fitting import ModelState
from autoscaler.kube import KubeError
from autoscaler.metrics import METRICS, MetricKind
from autoscaler.model import Forecasts, LoadSnapshot, Target, TargetRef
from autoscaler.observability.problems import MetricsCause
from autoscaler.policy import Decision, Mode
from autoscaler.stages import ActOutcome, Stage, Standing, TickReport

__all__ = ["PREFIX", "UNIT_SUFFIXES", "Direction", "ReplicaSource", "Telemetry", "unit_suffix"]

PREFIX = "predictive_autoscaler_"
TARGET_LABELS = ("namespace", "deployment")

# The name suffix of each built-in kind's unit (as the metric table writes it).
UNIT_SUFFIXES: Mapping[str, str] = {
    "cores": "_cores",
    "bytes": "_bytes",
    "requests/s": "_requests_per_second",
}
# Families per unit: the load, what the ready replicas carry, and the forecast band.
_PER_UNIT = ("load", "capacity", "forecast_mean", "forecast_lower", "forecast_upper")


def unit_suffix(kind: MetricKind) -> str:
    """The suffix of the families `kind` is exported in; none for a declared metric."""
    spec = METRICS.get(kind)
    return "" if spec is None else UNIT_SUFFIXES[spec.unit]


class Direction(Enum):
    UP = "up"
    DOWN = "down"


class ReplicaSource(Enum):
    CURRENT = "current"
    REACTIVE = "reactive"
    PREDICTIVE = "predictive"
    FINAL = "final"


# A tick takes milliseconds per target once the models are fitted, and seconds when many fit at once.
TICK_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# A fit takes under a second on days of bucketed load, and up to the wall-clock guard on a starved CPU.
FIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
QUERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

_PER_UNIT_HELP = {
    "load": "Latest observed aggregate load",
    "capacity": "Load the ready replicas carry at the per-pod target",
    "forecast_mean": "Forecast mean load for the current bucket",
    "forecast_lower": "Lower bound of the forecast interval for the current bucket",
    "forecast_upper": "Upper bound of the forecast interval for the current bucket",
}
_UNIT_HELP = {
    "_cores": "CPU cores",
    "_bytes": "bytes",
    "_requests_per_second": "requests per second",
    "": "the unit of the metric the workload declares",
}


@dataclass(frozen=True, slots=True)
class _Series:
    gauge: Gauge
    labels: tuple[str, ...]


class Telemetry:
    """The metrics of one controller. The runner reports each tick's summary; the Kubernetes client
    and the Prometheus source report through hooks (they sit below this module), the recorder
    through `target_seen`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated there
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        per_kind = (*TARGET_LABELS, "kind")

        def gauge(name: str, doc: str, labels: tuple[str, ...] = TARGET_LABELS) -> Gauge:
            return Gauge(PREFIX + name, doc, labels, registry=r)

        # family ("load", "forecast_mean", ...) -> unit suffix -> gauge
        self.per_unit: dict[str, dict[str, Gauge]] = {
            family: {
                suffix: gauge(
                    family + suffix, f"{_PER_UNIT_HELP[family]}, in {_UNIT_HELP[suffix]}", per_kind
                )
                for suffix in (*dict.fromkeys(UNIT_SUFFIXES.values()), "")
            }
            for family in _PER_UNIT
        }
        self.forecast_error = gauge(
            "forecast_error_ratio",
            "Rolling mean absolute forecast error over that of 'no change' (below 1 beats it)",
            per_kind,
        )
        self.forecast_relative_error = gauge(
            "forecast_relative_error_ratio",
            "Rolling mean absolute forecast error as a share of the mean load",
            per_kind,
        )
        self.forecast_coverage = gauge(
            "forecast_coverage_ratio",
            "Rolling share of actuals at or under the forecast's upper bound",
            per_kind,
        )
        self.replicas = gauge(
            "replicas",
            "Replicas: current, what the reactive and predictive parts ask for, and the final target",
            (*TARGET_LABELS, "source"),
        )
        self.mode = gauge(
            "mode", "1 for the part of the policy that set the target", (*TARGET_LABELS, "mode")
        )
        self.reason = gauge(
            "reason", "1 for each reason behind the latest decision", (*TARGET_LABELS, "reason")
        )
        self.lead = gauge(
            "lead_time_seconds", "How far ahead the policy provisions: pod start-up plus one tick"
        )
        self.scale_events = Counter(
            PREFIX + "scale_events",
            "Replica changes applied to a workload, by direction",
            (*TARGET_LABELS, "direction"),
            registry=r,
        )
        self.tick_seconds = Histogram(
            PREFIX + "tick_duration_seconds", "Duration of a tick", buckets=TICK_BUCKETS, registry=r
        )
        self.tick_failures = Counter(
            PREFIX + "tick_failures", "Ticks that ended in an unexpected error", registry=r
        )
        self.last_tick = Gauge(
            PREFIX + "last_tick_timestamp_seconds", "When the latest tick ended", registry=r
        )
        self.query_seconds = Histogram(
            PREFIX + "prometheus_query_duration_seconds",
            "Duration of a query to Prometheus, by whether it was answered",
            ("outcome",),
            buckets=QUERY_BUCKETS,
            registry=r,
        )
        self.prometheus_errors = Counter(
            PREFIX + "prometheus_errors",
            "Ticks that went without some of their data, once per tick and cause",
            ("cause",),
            registry=r,
        )
        self.target_errors = Counter(
            PREFIX + "target_errors",
            "Targets whose tick broke (they were held), by the stage that broke",
            ("stage",),
            registry=r,
        )
        self.metrics_unavailable = Counter(
            PREFIX + "metrics_unavailable_ticks",
            "Ticks in which Prometheus could not be read (targets held)",
            registry=r,
        )
        self.kube_errors = Counter(
            PREFIX + "kube_api_errors",
            "Failed Kubernetes API requests by HTTP status (0: no answer)",
            ("code",),
            registry=r,
        )
        self.actuations = Counter(
            PREFIX + "actuations",
            "What became of each decision (the decision log's outcome)",
            ("outcome",),
            registry=r,
        )
        self.leader = Gauge(
            PREFIX + "leader",
            "1 while this replica may act (holds the lease, or a shard's, or no election)",
            registry=r,
        )
        self.shards_held = Gauge(
            PREFIX + "shards_held", "Shards whose Lease this replica holds", registry=r
        )
        self.shard_leader = Gauge(
            PREFIX + "shard_leader",
            "1 while this replica holds the shard's Lease",
            ("shard",),
            registry=r,
        )
        self.targets = Gauge(PREFIX + "targets", "Opted-in workloads by state", ("state",), registry=r)
        self.models = Gauge(
            PREFIX + "models",
            "Models (targets × metrics) by state of their fitting",
            ("state",),
            registry=r,
        )
        self.fit_seconds = Histogram(
            PREFIX + "model_fit_duration_seconds",
            "Time a model's fit took where it ran, the replay that seeds and scores a new one included",
            buckets=FIT_BUCKETS,
            registry=r,
        )
        for model_state in ModelState:
            self.models.labels(model_state.value).set(0)
        # Series shown at zero from the start, so that rates and sums exist before the first event.
        for outcome in ("ok", "error"):
            self.query_seconds.labels(outcome)
        for cause in MetricsCause:
            self.prometheus_errors.labels(cause.value)
        for act in ActOutcome:
            self.actuations.labels(act.value)
        for stage in Stage:
            self.target_errors.labels(stage.value)
        for standing in Standing:
            self.targets.labels(standing.value).set(0)
        self._gauges: dict[TargetRef, set[_Series]] = {}
        # Per target decided in the current tick: what its ready replicas carry, by kind.
        self._capacity: dict[TargetRef, dict[MetricKind, float]] = {}

    # --- per controller -------------------------------------------------------------------------

    def render(self) -> tuple[bytes, str]:
        """The exposition for `/metrics` and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def set_leader(self, leading: bool) -> None:
        self.leader.set(1 if leading else 0)

    def set_shards(self, held: Iterable[int], shards: int) -> None:
        """The shards held out of `shards` (a series per shard; the number of shards is fixed
        for the life of a process). Holding any of them is leading."""
        holding = set(held)
        for shard in range(shards):
            self.shard_leader.labels(str(shard)).set(1 if shard in holding else 0)
        self.shards_held.set(len(holding))
        self.set_leader(bool(holding))

    def set_models(self, counts: Mapping[ModelState, int]) -> None:
        for model_state, count in counts.items():
            self.models.labels(model_state.value).set(count)

    def fit_done(self, seconds: float, finished: bool) -> None:
        """A fit ended (`finished`: it ran to its end, whether or not a model came of it)."""
        if finished:
            self.fit_seconds.observe(seconds)

    def query_done(self, seconds: float, answered: bool) -> None:
        self.query_seconds.labels("ok" if answered else "error").observe(seconds)

    def metrics_problem(self, cause: MetricsCause) -> None:
        self.prometheus_errors.labels(cause.value).inc()

    def kube_error(self, error: KubeError) -> None:
        self.kube_errors.labels(str(error.code)).inc()

    def target_seen(self, target: Target, decision: Decision) -> None:
        """A decision was recorded for `target`: keep what its ready replicas carry per metric, for
        the tick's summary."""
        state = target.state
        capacity = {}
        for kind in target.config.metrics:
            per_pod = target.config.per_pod_target(kind, state)
            if per_pod is not None:
                capacity[kind] = state.ready_replicas * per_pod
        self._capacity[decision.ref] = capacity

    def tick_failed(self, seconds: float, at: float) -> None:
        self._capacity.clear()
        self.tick_failures.inc()
        self.tick_seconds.observe(seconds)
        self.last_tick.set(at)

    def tick_done(self, summary: TickReport, seconds: float, at: float) -> None:
        self.tick_seconds.observe(seconds)
        self.last_tick.set(at)
        if summary.acted and not summary.metrics_available:
            self.metrics_unavailable.inc()
        counts = {
            Standing.ACTIVE: len(summary.decisions),
            Standing.REFUSED: len(summary.refused),
            Standing.INVALID: len(summary.invalid),
            Standing.COOLING_DOWN: len(summary.cooling),
            Standing.STALE_VIEW: len(summary.stale),
        }
        for state, count in counts.items():
            self.targets.labels(state.value).set(count)
        for outcome in summary.outcomes.values():
            self.actuations.labels(outcome.value).inc()
        for stage in summary.failed.values():
            self.target_errors.labels(stage.value).inc()
        capacity, self._capacity = self._capacity, {}
        self._targets(summary.decisions, summary.outcomes, summary.loads, summary.forecasts, capacity)

    # --- per target -----------------------------------------------------------------------------

    def _targets(
        self,
        decisions: Iterable[Decision],
        outcomes: Mapping[TargetRef, ActOutcome],
        loads: Mapping[TargetRef, LoadSnapshot],
        forecasts: Mapping[TargetRef, Forecasts],
        capacity: Mapping[TargetRef, Mapping[MetricKind, float]],
    ) -> None:
        live: set[TargetRef] = set()
        for decision in decisions:
            ref = decision.ref
            live.add(ref)
            values = self._values(decision, loads.get(ref), forecasts.get(ref), capacity.get(ref, {}))
            for stale in self._gauges.get(ref, set()) - set(values):
                stale.gauge.remove(*stale.labels)
            for series, value in values.items():
                series.gauge.labels(*series.labels).set(value)
            if ref not in self._gauges:
                # Both directions from zero: an increase() over the first event must see it rise.
                for direction in Direction:
                    self.scale_events.labels(ref.namespace, ref.workload, direction.value)
            self._gauges[ref] = set(values)
            if outcomes.get(ref) is ActOutcome.APPLIED and decision.changed:
                up = decision.replicas > decision.current
                direction = Direction.UP if up else Direction.DOWN
                self.scale_events.labels(ref.namespace, ref.workload, direction.value).inc()
        for gone in [ref for ref in self._gauges if ref not in live]:
            self.forget(gone)

    def forget(self, ref: TargetRef) -> None:
        """Remove every series of `ref`."""
        if ref not in self._gauges:
            return
        for series in self._gauges.pop(ref):
            series.gauge.remove(*series.labels)
        for direction in Direction:
            self.scale_events.remove(ref.namespace, ref.workload, direction.value)

    def _values(
        self,
        decision: Decision,
        load: LoadSnapshot | None,
        forecasts: Forecasts | None,
        capacity: Mapping[MetricKind, float],
    ) -> dict[_Series, float]:
        ref = decision.ref
        target = (ref.namespace, ref.workload)
        out: dict[_Series, float] = {}

        def put(gauge: Gauge, value: float | None, *extra: str) -> None:
            if value is not None:
                out[_Series(gauge, (*target, *extra))] = float(value)

        kinds = (() if load is None else load.kinds()) + (() if forecasts is None else forecasts.kinds())
        for kind in dict.fromkeys((*kinds, *capacity)):
            unit = {family: gauges[unit_suffix(kind)] for family, gauges in self.per_unit.items()}
            sample = None if load is None else load.get(kind)
            put(unit["load"], None if sample is None else sample.value, kind.value)
            put(unit["capacity"], capacity.get(kind), kind.value)
            forecast = None if forecasts is None else forecasts.get(kind)
            if forecast is None:
                continue
            band = forecast.band_at(decision.at)
            if band is not None:
                mean, lower, upper = band
                put(unit["forecast_mean"], mean, kind.value)
                put(unit["forecast_lower"], lower, kind.value)
                put(unit["forecast_upper"], upper, kind.value)
            put(self.forecast_error, forecast.quality.scaled_error, kind.value)
            put(self.forecast_relative_error, forecast.quality.relative_error, kind.value)
            put(self.forecast_coverage, forecast.quality.coverage, kind.value)
        replicas = {
            ReplicaSource.CURRENT: decision.current,
            ReplicaSource.REACTIVE: decision.reactive_replicas,
            ReplicaSource.PREDICTIVE: decision.predictive_replicas,
            ReplicaSource.FINAL: decision.replicas,
        }
        for source, count in replicas.items():
            put(self.replicas, count, source.value)
        for mode in Mode:
            put(self.mode, 1.0 if decision.mode is mode else 0.0, mode.value)
        for reason in dict.fromkeys(decision.reasons):
            put(self.reason, 1.0, reason.value)
        put(self.lead, decision.lead_s)
        return out
