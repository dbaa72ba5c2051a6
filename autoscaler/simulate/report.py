"""A study as a readable table or as one JSON object, with the score names of BENCHMARK.md."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from autoscaler.simulate.scoring import SLO_UNSERVED_PCT, Scores
from autoscaler.simulate.study import Study, SweepResult
from autoscaler.timefmt import iso_utc

__all__ = [
    "HEADLINE_POLICIES",
    "Headline",
    "HeadlineRow",
    "headline",
    "ratios_against_hpa",
    "to_json",
    "to_text",
]

SCORE_COLUMNS = (
    ("overload_pct", "{:.3f}"),
    ("unserved_pct", "{:.4f}"),
    ("hot_pct", "{:.3f}"),
    ("pod_hours", "{:.1f}"),
    ("cost_vs_oracle", "{:.3f}"),
    ("mean_utilization", "{:.3f}"),
    ("scale_events", "{:d}"),
)


def _ratio(ours: float, theirs: float) -> float | None:
    return ours / theirs if theirs > 0 else None


def ratios_against_hpa(study: Study) -> dict[str, dict[str, float | None]]:
    """BENCHMARK.md's headline ratios; None where the HPA's figure is 0 (undefined)."""
    hpa = study.scores_of("hpa")
    if hpa is None:
        return {}
    out: dict[str, dict[str, float | None]] = {}
    for run_, scores in zip(study.runs, study.scores, strict=True):
        if run_.policy == "hpa":
            continue
        out[run_.policy] = {
            "overload_ratio": _ratio(scores.overload_pct, hpa.overload_pct),
            "unserved_ratio": _ratio(scores.unserved_pct, hpa.unserved_pct),
            "cost_ratio": _ratio(scores.pod_hours, hpa.pod_hours),
        }
    hpa_sweep = _sweep_of(study, "hpa")
    for sweep in study.sweep:
        if sweep.policy == "hpa" or sweep.policy not in out:
            continue
        theirs = hpa_sweep.slo.pod_hours if hpa_sweep is not None else None
        ours = sweep.slo.pod_hours
        out[sweep.policy]["slo_cost_ratio"] = (
            ours / theirs if ours is not None and theirs is not None else None
        )
    return out


def _sweep_of(study: Study, policy: str) -> SweepResult | None:
    return next((s for s in study.sweep if s.policy == policy), None)


def _trace_json(study: Study) -> dict[str, Any]:
    trace = study.trace
    return {
        "name": trace.name,
        "start": iso_utc(trace.start),
        "end": iso_utc(trace.end),
        "step_s": trace.step_s,
        "rows": len(trace.times),
        "days": trace.duration_s / 86_400,
    }


def to_json(study: Study) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "trace": _trace_json(study),
        "scenario": study.scenario.describe(),
        "oracle_pod_hours": study.oracle_pod_hours,
        "policies": {r.policy: s.as_dict() for r, s in zip(study.runs, study.scores, strict=True)},
    }
    ratios = ratios_against_hpa(study)
    if ratios:
        doc["ratios_vs_hpa"] = ratios
    if study.sweep:
        doc["sweep"] = {
            s.policy: {
                "cost_at_slo": s.slo.pod_hours,
                "cost_at_slo_vs_oracle": (
                    s.slo.pod_hours / study.oracle_pod_hours if s.slo.pod_hours is not None else None
                ),
                "lowest_unserved_pct": s.slo.lowest_unserved_pct,
                "runs": [{"target_utilization": u, **sc.as_dict()} for u, sc in s.points],
            }
            for s in study.sweep
        }
        doc["slo_unserved_pct"] = SLO_UNSERVED_PCT
    return doc


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def fmt(row: list[str]) -> str:
        cells = zip(row, widths, strict=True)
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(cells))

    return [fmt(header), *(fmt(r) for r in rows)]


def _score_cells(scores: Scores) -> list[str]:
    values = scores.as_dict()
    return [spec.format(values[name]) for name, spec in SCORE_COLUMNS]


def _score_text(scores: Scores, name: str) -> str:
    return dict(SCORE_COLUMNS)[name].format(scores.as_dict()[name])


def _ratio_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _slo_text(study: Study, sweep: SweepResult) -> str:
    if sweep.slo.pod_hours is None:
        return f"not reached (lowest unserved_pct {sweep.slo.lowest_unserved_pct:.4f})"
    return f"{sweep.slo.pod_hours / study.oracle_pod_hours:.3f}"


# The comparison a first look is about: ours, the HPA it replaces, and the physical limit.
HEADLINE_POLICIES = ("predictive", "hpa", "oracle")


@dataclass(frozen=True, slots=True)
class HeadlineRow:
    """One policy's headline figures, as the report prints them."""

    policy: str
    unserved_pct: str
    pod_hours: str
    cost_vs_oracle: str
    cost_at_slo_vs_oracle: str | None  # None without a sweep


@dataclass(frozen=True, slots=True)
class Headline:
    rows: tuple[HeadlineRow, ...]
    # predictive against hpa, as in the report's ratio lines; empty unless both ran.
    ratios: tuple[tuple[str, str], ...]


def headline(study: Study) -> Headline:
    """The headline policies that ran, in the text report's own formatting."""
    sweeps = {s.policy: s for s in study.sweep}
    rows = []
    for policy in HEADLINE_POLICIES:
        scores = study.scores_of(policy)
        if scores is None:
            continue
        sweep = sweeps.get(policy)
        rows.append(
            HeadlineRow(
                policy,
                _score_text(scores, "unserved_pct"),
                _score_text(scores, "pod_hours"),
                _score_text(scores, "cost_vs_oracle"),
                None if sweep is None else _slo_text(study, sweep),
            )
        )
    ours = ratios_against_hpa(study).get("predictive", {})
    return Headline(tuple(rows), tuple((name, _ratio_text(value)) for name, value in ours.items()))


def to_text(study: Study) -> str:
    sc = study.scenario
    trace = study.trace
    scored_days = (trace.duration_s - sc.warmup_s) / 86_400
    lines = [
        f"trace     {trace.name}: {iso_utc(trace.start)} .. {iso_utc(trace.end)}, "
        f"step {trace.step_s} s, {trace.duration_s / 86_400:.2f} days "
        f"(first {sc.warmup_s / 86_400:g} days warm-up, {scored_days:.2f} days scored)",
        f"scenario  kind={sc.kind.value} capacity={sc.capacity:.4g} units/s per pod "
        f"target_utilization={sc.target_utilization:g} startup_delay={sc.startup_delay_s}s "
        f"replicas={sc.min_replicas}..{sc.max_replicas} step={sc.step_s}s "
        f"hpa_sync={sc.hpa_sync_s}s metrics: {sc.metric_window_s}s mean, {sc.metric_lag_s}s late",
        "",
    ]
    header = ["policy", *(name for name, _ in SCORE_COLUMNS)]
    rows = [[r.policy, *_score_cells(s)] for r, s in zip(study.runs, study.scores, strict=True)]
    lines += _table(header, rows)

    ratios = ratios_against_hpa(study)
    if ratios:
        lines += ["", "against hpa (ratio = policy / hpa; n/a where the hpa figure is 0):"]
        for policy, values in ratios.items():
            cells = [f"{name}={_ratio_text(value)}" for name, value in values.items()]
            lines.append(f"  {policy}: " + "  ".join(cells))

    if study.sweep:
        lines += [
            "",
            f"cost at equal service level (objective: unserved_pct <= {SLO_UNSERVED_PCT:g}):",
        ]
        sweep_rows: list[list[str]] = []
        for sweep in study.sweep:
            for u, s in sweep.points:
                sweep_rows.append(
                    [
                        sweep.policy,
                        f"{u:g}",
                        f"{s.unserved_pct:.4f}",
                        f"{s.overload_pct:.3f}",
                        f"{s.pod_hours:.1f}",
                        f"{s.cost_vs_oracle:.3f}",
                    ]
                )
        lines += _table(
            ["policy", "u*", "unserved_pct", "overload_pct", "pod_hours", "cost_vs_oracle"],
            sweep_rows,
        )
        lines.append("")
        for sweep in study.sweep:
            if sweep.slo.pod_hours is None:
                lines.append(f"  {sweep.policy}: cost_at_slo {_slo_text(study, sweep)}")
            else:
                lines.append(
                    f"  {sweep.policy}: cost_at_slo {sweep.slo.pod_hours:.1f} pod-hours = "
                    f"{_slo_text(study, sweep)} x oracle"
                )
    return "\n".join(lines) + "\n"
