"""Reading what `dashboards/` ships, for the tests: the Grafana dashboards, every PromQL expression
in them (panel targets and annotations) with its template variables substituted, and the alert rules
of the PrometheusRule."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "ALERTS_DIR",
    "DASHBOARDS_DIR",
    "AlertRule",
    "Query",
    "alert_rules",
    "dashboard_files",
    "load_dashboard",
    "queries",
    "rule_groups",
    "substitute",
]

DASHBOARDS_DIR = Path(__file__).parents[1] / "dashboards"
ALERTS_DIR = DASHBOARDS_DIR / "alerts"
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


@dataclass(frozen=True, slots=True)
class Query:
    """One PromQL expression of a dashboard: where it sits and what it says."""

    dashboard: str  # uid
    panel: str  # panel title, or "annotation: <name>"
    ref_id: str
    expr: str


@dataclass(frozen=True, slots=True)
class AlertRule:
    name: str
    expr: str
    duration: str


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS_DIR.glob("*.json"))


def load_dashboard(path: Path) -> dict[str, Any]:
    board = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(board, dict), f"{path.name}: a dashboard is a JSON object"
    return board


def queries(board: Mapping[str, Any]) -> Iterator[Query]:
    uid = str(board["uid"])
    for panel in board.get("panels", []):
        for target in panel.get("targets", []):
            yield Query(uid, str(panel["title"]), str(target["refId"]), str(target["expr"]))
    for annotation in board.get("annotations", {}).get("list", []):
        if "expr" in annotation:
            yield Query(uid, f"annotation: {annotation['name']}", "-", str(annotation["expr"]))


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """`expr` with `$name` and `${name}` replaced; an unknown variable is an error, not left in."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"no value for template variable ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(one, expr)


def rule_groups() -> list[dict[str, Any]]:
    """`spec.groups` of the PrometheusRule: a plain Prometheus rules file's `groups`."""
    document = yaml.safe_load((ALERTS_DIR / "prometheusrule.yaml").read_text(encoding="utf-8"))
    assert document["apiVersion"] == "monitoring.coreos.com/v1"
    assert document["kind"] == "PrometheusRule"
    groups = document["spec"]["groups"]
    assert isinstance(groups, list)
    return groups


def alert_rules() -> list[AlertRule]:
    return [
        AlertRule(str(rule["alert"]), str(rule["expr"]), str(rule.get("for", "0s")))
        for group in rule_groups()
        for rule in group["rules"]
        if "alert" in rule
    ]
