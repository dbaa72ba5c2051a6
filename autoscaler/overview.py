"""What `predictive-autoscaler status` shows: every opted-in workload, how it is scaled and why, in
rows a person reads at a glance. Pure: the objects the API server sent in, rows and text out.

The workloads are read the way the controller reads them (`build_snapshot`: the same annotation
parser, the same HPA matching, the same refusals), so the command never disagrees with the
controller about which workloads are in, invalid or refused. The rest comes from what the controller
wrote: the status annotation (`autoscaler.workload_status`) and the Events it posts on each workload.
A workload in dry-run has no status (dry-run writes nothing on the workload), so its proposal is read
from its latest `DryRun` Event and its footing from its latest `Predictive`/`Reactive`/`Holding`
Event.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from autoscaler.config import AnnotationError, parse_annotations
from autoscaler.metrics import MetricKind
from autoscaler.model import HpaInfo, ScaleMode, TargetRef, WorkloadKind
from autoscaler.observability.events import COMPONENT
from autoscaler.policy import Mode, Reason
from autoscaler.sources.cluster import build_snapshot
from autoscaler.stages import Standing
from autoscaler.timefmt import iso_utc, parse_time
from autoscaler.workload_status import LastChange, StatusError, WorkloadStatus, decode_status

__all__ = [
    "Row",
    "State",
    "Trust",
    "WorkloadEvent",
    "details",
    "document",
    "survey",
    "table",
]

JsonObject = Mapping[str, Any]


class State(Enum):
    """Where a workload stands, as far as what the controller wrote tells."""

    ACTIVE = "active"  # decided, and the status annotation says how
    WARNING = "warning"  # decided, but the controller's latest word on it is a Warning Event
    DRY_RUN = "dry-run"  # decided without writing: the proposal is in its Events
    PENDING = "pending"  # opted in, valid, nothing decided yet
    INVALID = "invalid"  # annotations the controller cannot use: it is left alone
    REFUSED = "refused"  # its scale mode cannot act on it (an HPA in mode replicas, none in mode hpa)
    UNREADABLE = "unreadable"  # a status annotation that cannot be read


class Trust(Enum):
    """What became of the forecasts in the latest decision, the worst metric first."""

    TRUSTED = "trusted"
    UNTRUSTED = "untrusted"  # rejected for poor accuracy (it re-arms with hysteresis)
    STALE = "stale"  # too old or too short to cover the lead
    WARMING = "warming-up"  # too few forecasts scored yet to judge, or the model still fitting
    NONE = "no-forecast"
    UNKNOWN = "-"


class Severity(Enum):
    NORMAL = "Normal"
    WARNING = "Warning"


@dataclass(frozen=True, slots=True)
class WorkloadEvent:
    """One Event the controller posted on a workload."""

    ref: TargetRef
    at: float
    severity: Severity
    reason: str
    message: str
    count: int = 1


@dataclass(frozen=True, slots=True)
class Proposal:
    """What a workload in dry-run would be set to (its latest `DryRun` Event)."""

    at: float
    before: int
    after: int
    # "replicas", or "HPA <name> minReplicas" in mode hpa.
    what: str


@dataclass(frozen=True, slots=True)
class Row:
    ref: TargetRef
    state: State
    scale_mode: ScaleMode | None
    dry_run: bool
    current: int
    ready: int
    desired: int | None
    by: Mode | None
    trust: Trust
    status: WorkloadStatus | None = None
    hpa: HpaInfo | None = None
    proposal: Proposal | None = None
    # Why the state is what it is, in the controller's words (invalid key, refusal, latest warning).
    note: str = ""
    # The controller's Events on this workload, newest first.
    events: tuple[WorkloadEvent, ...] = ()
    # The latest change written on it (kept by the status annotation, also through a dry run).
    last: LastChange | None = None


# --- from the API server's objects ---------------------------------------------------------------

_FOOTING = {"Predictive": Mode.PREDICTIVE, "Reactive": Mode.REACTIVE, "Holding": Mode.HOLD}
# How the recorder words a dry run's Event: `would set <Setpoint.describe()>: <explanation>`.
_PROPOSAL = re.compile(r"would set (replicas|HPA \S+ minReplicas) (\d+)→(\d+):")
_KINDS = {kind.value: kind for kind in WorkloadKind}


def event_of(obj: JsonObject) -> WorkloadEvent | None:
    """An Event the controller posted on a Deployment or StatefulSet; None for any other Event."""
    source = obj.get("source") or {}
    if COMPONENT not in (obj.get("reportingComponent"), source.get("component")):
        return None
    involved = obj.get("involvedObject") or {}
    kind = _KINDS.get(str(involved.get("kind", "")))
    meta = obj.get("metadata") or {}
    at = next(
        (
            t
            for t in (
                parse_time(obj.get("lastTimestamp")),
                parse_time(obj.get("eventTime")),
                parse_time(obj.get("firstTimestamp")),
                parse_time(meta.get("creationTimestamp")),
            )
            if t is not None
        ),
        None,
    )
    namespace = str(involved.get("namespace") or meta.get("namespace") or "")
    name = str(involved.get("name") or "")
    if kind is None or at is None or not namespace or not name:
        return None
    severity = Severity.WARNING if obj.get("type") == Severity.WARNING.value else Severity.NORMAL
    count = obj.get("count")
    return WorkloadEvent(
        TargetRef(namespace, name, kind),
        at,
        severity,
        str(obj.get("reason") or ""),
        str(obj.get("message") or ""),
        count if isinstance(count, int) and count > 0 else 1,
    )


def _replicas(obj: JsonObject) -> tuple[int, int]:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    wanted = spec.get("replicas")
    return int(1 if wanted is None else wanted), int(status.get("readyReplicas", 0) or 0)


def _ref(obj: JsonObject, kind: WorkloadKind) -> TargetRef:
    meta = obj.get("metadata") or {}
    return TargetRef(str(meta.get("namespace", "")), str(meta.get("name", "")), kind)


def survey(
    deployments: Sequence[JsonObject],
    statefulsets: Sequence[JsonObject],
    hpas: Sequence[JsonObject],
    events: Iterable[JsonObject],
    now: float,
) -> tuple[Row, ...]:
    """One row per opted-in workload (valid or not), sorted by namespace, name and kind."""
    snapshot = build_snapshot(
        [dict(d) for d in deployments], [dict(h) for h in hpas], [], now, [dict(s) for s in statefulsets]
    )
    objects = {
        **{_ref(obj, WorkloadKind.DEPLOYMENT): obj for obj in deployments},
        **{_ref(obj, WorkloadKind.STATEFULSET): obj for obj in statefulsets},
    }
    told: dict[TargetRef, list[WorkloadEvent]] = {}
    for obj in events:
        event = event_of(obj)
        if event is not None:
            told.setdefault(event.ref, []).append(event)
    history = {ref: tuple(sorted(found, key=lambda e: -e.at)) for ref, found in told.items()}
    rows: list[Row] = []
    for target in snapshot.targets:
        scaling = target.scaling
        found = target.state
        rows.append(
            _decided(
                found.ref,
                found.spec_replicas,
                found.ready_replicas,
                None if scaling is None else scaling.mode,
                scaling is not None and scaling.dry_run,
                None if scaling is None else scaling.status,
                None if scaling is None else scaling.hpa,
                history.get(found.ref, ()),
            )
        )
    for aside in snapshot.set_aside:
        workload = objects.get(aside.ref)
        if workload is None:
            continue
        current, ready = _replicas(workload)
        mode, dry = _settings(workload)
        state = State.INVALID if aside.standing is Standing.INVALID else State.REFUSED
        rows.append(
            Row(
                aside.ref,
                state,
                mode,
                dry,
                current,
                ready,
                None,
                None,
                Trust.UNKNOWN,
                note=aside.message,
                events=history.get(aside.ref, ()),
            )
        )
    return tuple(sorted(rows, key=lambda r: (r.ref.namespace, r.ref.name, r.ref.kind.value)))


def _settings(obj: JsonObject) -> tuple[ScaleMode | None, bool]:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    try:
        settings = parse_annotations({str(k): str(v) for k, v in annotations.items()})
    except AnnotationError:
        return None, False
    return (None, False) if settings is None else (settings.mode, settings.dry_run)


def _latest(events: Sequence[WorkloadEvent], reasons: Iterable[str]) -> WorkloadEvent | None:
    wanted = set(reasons)
    return next((e for e in events if e.reason in wanted), None)


def _proposal(event: WorkloadEvent) -> Proposal | None:
    found = _PROPOSAL.match(event.message)
    if found is None:
        return None
    return Proposal(event.at, int(found.group(2)), int(found.group(3)), found.group(1))


def _decided(
    ref: TargetRef,
    current: int,
    ready: int,
    mode: ScaleMode | None,
    dry_annotated: bool,
    raw_status: str | None,
    hpa: HpaInfo | None,
    events: tuple[WorkloadEvent, ...],
) -> Row:
    status: WorkloadStatus | None = None
    if raw_status is not None:
        try:
            status = decode_status(raw_status)
        except StatusError as error:
            return Row(
                ref,
                State.UNREADABLE,
                mode,
                dry_annotated,
                current,
                ready,
                None,
                None,
                Trust.UNKNOWN,
                hpa=hpa,
                note=f"status annotation: {error}",
                events=events,
            )
    dry_event = _latest(events, ("DryRun",))
    # A controller run with --dry-run writes no status either: a proposal newer than the status
    # shows the workload is in dry-run though its annotations do not say so.
    dry = dry_annotated or (dry_event is not None and (status is None or dry_event.at > status.at))
    if dry:
        footing = _latest(events, _FOOTING)
        proposal = None if dry_event is None else _proposal(dry_event)
        return Row(
            ref,
            State.DRY_RUN,
            mode,
            True,
            current,
            ready,
            None if proposal is None else proposal.after,
            None if footing is None else _FOOTING[footing.reason],
            Trust.UNKNOWN,
            hpa=hpa,
            proposal=proposal,
            last=None if status is None else status.last,
            note="dry run: nothing proposed yet"
            if proposal is None
            else f"dry run: would set {proposal.what} {proposal.before}→{proposal.after}",
            events=events,
        )
    if status is None:
        return Row(
            ref,
            State.PENDING,
            mode,
            False,
            current,
            ready,
            None,
            None,
            Trust.UNKNOWN,
            hpa=hpa,
            note="not decided yet",
            events=events,
        )
    warning = next(
        (e for e in events if e.severity is Severity.WARNING and e.reason not in _FOOTING), None
    )
    state, note = State.ACTIVE, ""
    if warning is not None and warning.at > status.at:
        state, note = State.WARNING, f"{warning.reason}: {warning.message}"
    elif status.mode is Mode.HOLD and status.missing:
        note = "metrics missing: " + ",".join(k.value for k in status.missing)
    return Row(
        ref,
        state,
        mode,
        False,
        current,
        ready,
        status.target,
        status.mode,
        _trust(status),
        status=status,
        hpa=hpa,
        note=note,
        events=events,
        last=status.last,
    )


def _trust(status: WorkloadStatus) -> Trust:
    reasons = set(status.reasons)
    if status.untrusted or Reason.FALLBACK_POOR_ACCURACY in reasons:
        return Trust.UNTRUSTED
    if Reason.FALLBACK_STALE_FORECAST in reasons:
        return Trust.STALE
    if Reason.FALLBACK_SHORT_HISTORY in reasons or Reason.FALLBACK_MODEL_FITTING in reasons:
        return Trust.WARMING
    if Reason.FALLBACK_NO_FORECAST in reasons:
        return Trust.NONE
    if status.errors or (status.forecast is not None and status.forecast.level is not None):
        return Trust.TRUSTED
    return Trust.UNKNOWN


# --- for people -----------------------------------------------------------------------------------


def age(seconds: float) -> str:
    """As kubectl writes ages: 45s, 12m, 5h, 3d."""
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    if s < 2 * 3600:
        return f"{s // 60}m"
    if s < 2 * 86400:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def _workload(ref: TargetRef) -> str:
    return f"{ref.kind.value.lower()}/{ref.name}"


def _replica_text(row: Row) -> str:
    if row.desired is None:
        return f"{row.current}→?" if row.state in (State.DRY_RUN, State.PENDING) else str(row.current)
    return str(row.current) if row.desired == row.current else f"{row.current}→{row.desired}"


def _by_text(row: Row) -> str:
    if row.by is None:
        return "-"
    if row.by is Mode.HOLD and row.status is not None and row.status.missing:
        return f"hold ({','.join(k.value for k in row.status.missing)} missing)"
    return row.by.value


def _forecast_text(row: Row) -> str:
    forecast = None if row.status is None else row.status.forecast
    if forecast is None:
        return "-"
    level = "recurring" if forecast.level is None else f"@{forecast.level:.0%}"
    lead = "" if forecast.lead_s is None else f" in {forecast.lead_s:.0f}s"
    return f"{forecast.metric.value} {forecast.peak:.4g} {level}{lead}"


def _error_of(row: Row) -> float | None:
    """The error of the metric the forecast rests on, else the worst one."""
    if row.status is None or not row.status.errors:
        return None
    errors = dict(row.status.errors)
    forecast = row.status.forecast
    if forecast is not None and forecast.metric in errors:
        return errors[forecast.metric]
    return max(errors.values())


def _errors_text(errors: Iterable[tuple[MetricKind, float]]) -> str:
    return ",".join(f"{kind.value}={error:.2f}" for kind, error in errors) or "-"


def _last_text(row: Row, now: float) -> str:
    last = row.last
    if last is None:
        return "-"
    knob = "floor " if last.event.endswith("HPAFloor") else ""
    why = next((r.value for r in last.why), last.event)
    return f"{knob}{last.before}→{last.after} {why} ({age(now - last.at)})"


def _cells(row: Row, now: float, wide: bool) -> list[str]:
    error = _error_of(row)
    cells = [
        row.ref.namespace,
        _workload(row.ref),
        "-" if row.scale_mode is None else row.scale_mode.value,
        row.state.value,
        _replica_text(row),
        _by_text(row),
        _forecast_text(row),
        "-" if error is None else f"{error:.2f}",
        row.trust.value,
        _last_text(row, now),
    ]
    if wide:
        status = row.status
        floor = "-" if row.hpa is None else f"{row.hpa.min_replicas} (owner {row.hpa.original_min})"
        cells += [
            str(row.ready),
            "-" if status is None or status.reactive is None else str(status.reactive),
            "-" if status is None or status.predictive is None else str(status.predictive),
            "-" if row.hpa is None else f"{row.hpa.name} {floor}",
            "-" if status is None else _errors_text(status.errors),
            "-" if status is None else age(now - status.at),
            "-" if status is None else ",".join(r.value for r in status.reasons) or "-",
            row.note or "-",
        ]
    return cells


HEADERS = [
    "NAMESPACE",
    "WORKLOAD",
    "MODE",
    "STATE",
    "REPLICAS",
    "BY",
    "FORECAST",
    "ERROR",
    "TRUST",
    "LAST CHANGE",
]
WIDE_HEADERS = ["READY", "REACTIVE", "PREDICTIVE", "HPA FLOOR", "ERRORS", "DECIDED", "REASONS", "NOTE"]


def _columns(lines: Sequence[Sequence[str]]) -> str:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join(
        "   ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def table(rows: Sequence[Row], now: float, *, wide: bool = False) -> str:
    """The rows as kubectl prints a list: a header, one line each, columns padded."""
    if not rows:
        return "No opted-in workloads found."
    headers = HEADERS + (WIDE_HEADERS if wide else [])
    return _columns([headers, *(_cells(row, now, wide) for row in rows)])


def _mode_text(row: Row) -> str:
    if row.scale_mode is None:
        return "-"
    return row.scale_mode.value + (" (dry-run)" if row.dry_run else "")


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def details(row: Row, now: float) -> str:
    """One workload: every field of its row, then the controller's Events on it, newest first."""
    status = row.status

    def when(at: float) -> str:
        return f"{iso_utc(at)} ({age(now - at)} ago)"

    lines = [
        ("Workload", f"{row.ref.namespace}/{_workload(row.ref)}"),
        ("Mode", _mode_text(row)),
        ("State", row.state.value),
        ("Replicas", f"{_replica_text(row)} (ready {row.ready})"),
    ]
    if row.note:
        lines.append(("Note", row.note))
    if row.hpa is not None:
        hpa = row.hpa
        floor = f"minReplicas {hpa.min_replicas} (owner's {hpa.original_min}), max {hpa.max_replicas}"
        lines.append(("HPA", f"{hpa.name}: {floor}"))
    if row.proposal is not None:
        proposal = row.proposal
        lines.append(
            ("Proposal", f"{proposal.what} {proposal.before}→{proposal.after} at {when(proposal.at)}")
        )
    if status is not None:
        parts = [f"reactive {_count(status.reactive)}", f"predictive {_count(status.predictive)}"]
        lines += [
            ("Decided by", f"{_by_text(row)} at {when(status.at)}"),
            ("Proposals", ", ".join(parts)),
            ("Reasons", ", ".join(r.value for r in status.reasons) or "-"),
            ("Forecast", _forecast_text(row)),
            ("Forecast error", _errors_text(status.errors)),
            (
                "Trust",
                row.trust.value
                + (
                    f" (untrusted: {','.join(k.value for k in status.untrusted)})"
                    if status.untrusted
                    else ""
                ),
            ),
            ("Explanation", status.message or "-"),
        ]
    if row.last is not None:
        last = row.last
        why = ", ".join(r.value for r in last.why)
        lines.append(
            ("Last change", f"{last.event} {last.before}→{last.after} at {when(last.at)}: {why}")
        )
    width = max(len(label) for label, _ in lines) + 2
    text = "\n".join(f"{label + ':':<{width}}{value}" for label, value in lines)
    if not row.events:
        return text + "\n\nEvents: none (the API server keeps Events for about an hour)"
    history = [["AGE", "TYPE", "REASON", "MESSAGE"]] + [
        [age(now - e.at), e.severity.value, e.reason, e.message] for e in row.events
    ]
    return f"{text}\n\nEvents (newest first):\n{_columns(history)}"


def _event_document(event: WorkloadEvent) -> dict[str, object]:
    return {
        "time": iso_utc(event.at),
        "type": event.severity.value,
        "reason": event.reason,
        "message": event.message,
        "count": event.count,
    }


def document(row: Row, *, with_events: bool) -> dict[str, object]:
    """The row for `-o json` / `-o yaml`: every field, machine-readable, times in RFC 3339."""
    status = row.status
    forecast = None if status is None else status.forecast
    last = row.last
    out: dict[str, object] = {
        "namespace": row.ref.namespace,
        "name": row.ref.name,
        "kind": row.ref.kind.value,
        "mode": None if row.scale_mode is None else row.scale_mode.value,
        "dryRun": row.dry_run,
        "state": row.state.value,
        "replicas": {"current": row.current, "ready": row.ready, "desired": row.desired},
        "decidedBy": None if row.by is None else row.by.value,
        "reasons": [] if status is None else [r.value for r in status.reasons],
        "missing": [] if status is None else [k.value for k in status.missing],
        "reactive": None if status is None else status.reactive,
        "predictive": None if status is None else status.predictive,
        "forecast": None
        if forecast is None
        else {
            "metric": forecast.metric.value,
            "peak": forecast.peak,
            "level": forecast.level,
            "risingTo": forecast.rising_to,
            "leadSeconds": forecast.lead_s,
        },
        "forecastError": {} if status is None else {k.value: e for k, e in status.errors},
        "trust": row.trust.value,
        "untrusted": [] if status is None else [k.value for k in status.untrusted],
        "decidedAt": None if status is None else iso_utc(status.at),
        "explanation": None if status is None else status.message,
        "lastChange": None
        if last is None
        else {
            "time": iso_utc(last.at),
            "event": last.event,
            "from": last.before,
            "to": last.after,
            "reasons": [r.value for r in last.why],
        },
        "hpa": None
        if row.hpa is None
        else {
            "name": row.hpa.name,
            "minReplicas": row.hpa.min_replicas,
            "ownerMinReplicas": row.hpa.original_min,
            "maxReplicas": row.hpa.max_replicas,
        },
        "proposal": None
        if row.proposal is None
        else {
            "time": iso_utc(row.proposal.at),
            "what": row.proposal.what,
            "from": row.proposal.before,
            "to": row.proposal.after,
        },
        "note": row.note,
    }
    if with_events:
        out["events"] = [_event_document(e) for e in row.events]
    return out
