"""The status annotation (`predictive-autoscaler.io/status`): what the controller writes on a workload
about its last decision, and how it is read back (`predictive-autoscaler status`). Pure.

The value is one line of JSON, kept small because every watcher of the workload receives it:

- `target`, `current`: replicas decided, and replicas found when deciding;
- `mode`: the part of the policy that set the target (`predictive`, `reactive`, `hold`);
- `reasons`: the policy's reasons, in the order they acted; `missing`: metrics without a usable
  sample (the cause of a `hold`);
- `reactive`, `predictive`: what the HPA formula and the forecast each asked for (null: not computed);
- `forecast`: the forecast the target rests on, or null: `metric`, `peak` (the upper bound over the
  lead), `level` (of that bound; null for a recurring load), `risingTo` (the recent rise carried to
  the end of the lead, where that drove the replicas), `leadSeconds`;
- `dryRun`, `time` (of the decision, RFC 3339), `message` (the one-line explanation);
- `err` (only when there are scored forecasts): per metric, the forecasts' error over that of "no
  change" (below 1 beats it), as the trust gate judged it at `time`;
- `untrusted` (only when not empty): metrics whose forecasts the trust gate rejects;
- `last` (only once a change was applied): the latest change written, `t` (when), `ev` (its Event
  reason, e.g. `ScaledUp`), `from` and `to` (replicas, or the HPA floor in mode hpa), `why` (the
  reasons of the decision that made it). Carried from status to status until the next change, so it
  outlives the Events that told it.

The annotation is rewritten only when its substance changes (see the recorder), so `time` is when the
decision last changed, not the latest tick.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from autoscaler.metrics import MetricKind
from autoscaler.policy import Decision, Mode, Reason
from autoscaler.timefmt import iso_utc, parse_time

__all__ = [
    "ForecastNote",
    "LastChange",
    "StatusError",
    "WorkloadStatus",
    "decode_status",
    "encode_status",
    "forecast_fields",
]


class StatusError(ValueError):
    """A status annotation that cannot be read (hand-edited, truncated, or from another version)."""


@dataclass(frozen=True, slots=True)
class ForecastNote:
    """The forecast a decision rested on."""

    metric: MetricKind
    peak: float
    level: float | None
    rising_to: float | None
    lead_s: float | None


@dataclass(frozen=True, slots=True)
class LastChange:
    """The latest write that moved the workload (its replicas, or its HPA's floor)."""

    at: float
    event: str
    before: int
    after: int
    why: tuple[Reason, ...]


@dataclass(frozen=True, slots=True)
class WorkloadStatus:
    """The status annotation, read back."""

    target: int
    current: int
    mode: Mode
    reasons: tuple[Reason, ...]
    at: float
    message: str = ""
    missing: tuple[MetricKind, ...] = ()
    reactive: int | None = None
    predictive: int | None = None
    forecast: ForecastNote | None = None
    dry_run: bool = False
    errors: tuple[tuple[MetricKind, float], ...] = ()
    untrusted: tuple[MetricKind, ...] = ()
    last: LastChange | None = None


def forecast_fields(decision: Decision) -> dict[str, object] | None:
    """The forecast a decision rested on, for the status annotation and the decision log."""
    if decision.forecast_metric is None or decision.forecast_peak is None:
        return None
    return {
        "metric": decision.forecast_metric.value,
        "peak": round(decision.forecast_peak, 6),
        "level": decision.forecast_level,
        # The load the recent rise reaches by the end of the lead, where that drove the replicas.
        "risingTo": None if decision.trend_load is None else round(decision.trend_load, 6),
        "leadSeconds": decision.lead_s,
    }


def encode_status(decision: Decision, dry_run: bool, last: LastChange | None = None) -> str:
    """The last decision, as the status annotation holds it."""
    fields: dict[str, object] = {
        "target": decision.replicas,
        "current": decision.current,
        "mode": decision.mode.value,
        "reasons": [r.value for r in decision.reasons],
        "missing": [kind.value for kind in decision.missing],
        "reactive": decision.reactive_replicas,
        "predictive": decision.predictive_replicas,
        "forecast": forecast_fields(decision),
        "dryRun": dry_run,
        "time": iso_utc(decision.at),
        "message": decision.explain(),
    }
    # The newer keys are left out when empty: most workloads most of the time have nothing in them.
    errors = {
        kind.value: round(error, 3) for kind, error in decision.forecast_errors if math.isfinite(error)
    }
    if errors:
        fields["err"] = errors
    if decision.untrusted:
        fields["untrusted"] = sorted(kind.value for kind in decision.untrusted)
    if last is not None:
        fields["last"] = {
            "t": iso_utc(last.at),
            "ev": last.event,
            "from": last.before,
            "to": last.after,
            "why": [r.value for r in last.why],
        }
    return json.dumps(fields, separators=(",", ":"), sort_keys=True)


def decode_status(text: str) -> WorkloadStatus:
    """The status annotation as written by `encode_status`; `StatusError` naming what is wrong."""
    try:
        raw = json.loads(text)
    except ValueError:
        raise StatusError("not JSON") from None
    if not isinstance(raw, dict):
        raise StatusError("not a JSON object")
    last = raw.get("last")
    forecast = raw.get("forecast")
    return WorkloadStatus(
        target=_count(raw, "target"),
        current=_count(raw, "current"),
        mode=_enum(Mode, raw.get("mode"), "mode"),
        reasons=_reasons(raw.get("reasons"), "reasons"),
        at=_time(raw.get("time"), "time"),
        message=str(raw.get("message") or ""),
        missing=_kinds(raw.get("missing"), "missing"),
        reactive=_optional_count(raw, "reactive"),
        predictive=_optional_count(raw, "predictive"),
        forecast=None if forecast is None else _forecast(forecast),
        dry_run=raw.get("dryRun") is True,
        errors=_errors(raw.get("err")),
        untrusted=_kinds(raw.get("untrusted"), "untrusted"),
        last=None if last is None else _last(last),
    )


def _count(raw: Mapping[str, Any], key: str) -> int:
    value = raw.get(key)
    # bool is an int to Python, never a replica count.
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise StatusError(f"{key} is not a replica count: {value!r}")
    return value


def _optional_count(raw: Mapping[str, Any], key: str) -> int | None:
    return None if raw.get(key) is None else _count(raw, key)


def _number(value: object, key: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise StatusError(f"{key} is not a number: {value!r}")
    return float(value)


def _optional_number(value: object, key: str) -> float | None:
    return None if value is None else _number(value, key)


def _time(value: object, key: str) -> float:
    at = parse_time(value)
    if at is None:
        raise StatusError(f"{key} is not a time: {value!r}")
    return at


def _enum(choices: type[Mode], value: object, key: str) -> Mode:
    for member in choices:
        if member.value == value:
            return member
    raise StatusError(f"{key} {value!r} is unknown")


def _reasons(value: object, key: str) -> tuple[Reason, ...]:
    if not isinstance(value, list):
        raise StatusError(f"{key} is not a list")
    known = {r.value: r for r in Reason}
    unknown = [v for v in value if v not in known]
    if unknown:
        raise StatusError(f"{key}: unknown reason {unknown[0]!r}")
    return tuple(known[v] for v in value)


def _kinds(value: object, key: str) -> tuple[MetricKind, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise StatusError(f"{key} is not a list of metric names")
    return tuple(MetricKind(v) for v in value)


def _errors(value: object) -> tuple[tuple[MetricKind, float], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise StatusError("err is not an object")
    return tuple((MetricKind(str(k)), _number(v, f"err.{k}")) for k, v in sorted(value.items()) if k)


def _forecast(value: object) -> ForecastNote:
    if not isinstance(value, dict) or not isinstance(value.get("metric"), str) or not value["metric"]:
        raise StatusError("forecast is not an object naming its metric")
    return ForecastNote(
        metric=MetricKind(value["metric"]),
        peak=_number(value.get("peak"), "forecast.peak"),
        level=_optional_number(value.get("level"), "forecast.level"),
        rising_to=_optional_number(value.get("risingTo"), "forecast.risingTo"),
        lead_s=_optional_number(value.get("leadSeconds"), "forecast.leadSeconds"),
    )


def _last(value: object) -> LastChange:
    if not isinstance(value, dict):
        raise StatusError("last is not an object")
    return LastChange(
        at=_time(value.get("t"), "last.t"),
        event=str(value.get("ev") or ""),
        before=_count(value, "from"),
        after=_count(value, "to"),
        why=_reasons(value.get("why", []), "last.why"),
    )
