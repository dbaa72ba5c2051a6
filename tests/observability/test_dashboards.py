"""The Grafana dashboards in `dashboards/`, checked as Grafana's JSON model without a Grafana.

Covers: each file is a dashboard (uid, title, schemaVersion of Grafana 10/11, time, templating);
panels have unique ids, a grid position inside the 24-column grid that overlaps no other panel, and
targets with unique refIds and an expression; every panel, target, query variable and annotation
uses the `${datasource}` variable, which is a Prometheus datasource variable; every template
variable an expression uses is defined (or one of Grafana's own); every metric an expression reads
is one the controller exports; the per-target dashboard is chosen by namespace and Deployment; the
kustomization turns exactly these files into ConfigMaps the Grafana sidecar picks up, and
`kubectl kustomize` builds them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from autoscaler.observability.telemetry import Telemetry
from tests.grafana import DASHBOARDS_DIR, dashboard_files, load_dashboard, queries

DATASOURCE = "${datasource}"
GRAFANA_VARIABLES = {"__rate_interval", "__interval", "__range", "__range_s", "__interval_ms"}
# Grafana 10.0 writes schemaVersion 37–38, Grafana 11 39 and up.
SCHEMA_VERSIONS = range(37, 42)
GRID_COLUMNS = 24
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
_METRIC = re.compile(r"\bpredictive_autoscaler_\w+")

BOARDS = [pytest.param(path, id=path.stem) for path in dashboard_files()]


def exported_names() -> set[str]:
    names: set[str] = set()
    for family in Telemetry().registry.collect():
        base = family.name
        names |= {base, f"{base}_total", f"{base}_bucket", f"{base}_sum", f"{base}_count"}
    return names


def uses_datasource_variable(thing: dict[str, Any]) -> bool:
    datasource = thing.get("datasource")
    return isinstance(datasource, dict) and datasource.get("uid") == DATASOURCE


def test_there_are_an_overview_and_a_target_dashboard() -> None:
    uids = {load_dashboard(path)["uid"] for path in dashboard_files()}
    assert uids == {"predictive-autoscaler-overview", "predictive-autoscaler-target"}


@pytest.mark.parametrize("path", BOARDS)
def test_dashboard_model_is_valid(path: Path) -> None:
    board = load_dashboard(path)
    assert isinstance(board["uid"], str)
    assert 0 < len(board["uid"]) <= 40, "Grafana's limit on uids"
    assert isinstance(board["title"], str)
    assert board["title"]
    assert board["schemaVersion"] in SCHEMA_VERSIONS
    assert "id" not in board or board["id"] is None, "a provisioned dashboard carries no database id"
    assert set(board["time"]) == {"from", "to"}
    panels = board["panels"]
    assert panels
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        title = panel["title"]
        assert isinstance(panel["type"], str)
        assert panel["type"]
        grid = panel["gridPos"]
        assert all(isinstance(grid[key], int) for key in ("h", "w", "x", "y")), title
        assert min(grid["w"], grid["h"]) > 0, title
        assert min(grid["x"], grid["y"]) >= 0, title
        assert grid["x"] + grid["w"] <= GRID_COLUMNS, f"{title} sticks out of the grid"
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{title} overlaps {cells[(x, y)]}"
                cells[(x, y)] = title
        targets = panel["targets"]
        assert targets, f"{title} has no query"
        refs = [target["refId"] for target in targets]
        assert len(refs) == len(set(refs)), f"{title}: refIds are unique"
        for target in targets:
            assert isinstance(target["expr"], str), title
            assert target["expr"].strip(), title


@pytest.mark.parametrize("path", BOARDS)
def test_every_panel_and_query_uses_the_datasource_variable(path: Path) -> None:
    board = load_dashboard(path)
    variables = {v["name"]: v for v in board["templating"]["list"]}
    datasource = variables["datasource"]
    assert datasource["type"] == "datasource"
    assert datasource["query"] == "prometheus"
    for panel in board["panels"]:
        assert uses_datasource_variable(panel), panel["title"]
        for target in panel["targets"]:
            assert uses_datasource_variable(target), f"{panel['title']} / {target['refId']}"
    for variable in variables.values():
        if variable["type"] == "query":
            assert uses_datasource_variable(variable), variable["name"]
    for annotation in board["annotations"]["list"]:
        assert uses_datasource_variable(annotation), annotation["name"]


@pytest.mark.parametrize("path", BOARDS)
def test_expressions_use_defined_variables_and_exported_metrics(path: Path) -> None:
    board = load_dashboard(path)
    defined = {v["name"] for v in board["templating"]["list"]} | GRAFANA_VARIABLES
    exported = exported_names()
    texts = [q.expr for q in queries(board)]
    texts += [v["definition"] for v in board["templating"]["list"] if v["type"] == "query"]
    for text in texts:
        for match in _VARIABLE.finditer(text):
            name = match.group(1) or match.group(2)
            assert name in defined, f"${name} in {text!r} is not a variable"
        for metric in _METRIC.findall(text):
            assert metric in exported, f"{metric} in {text!r} is not exported"


def test_the_target_dashboard_is_chosen_by_namespace_and_deployment() -> None:
    board = load_dashboard(DASHBOARDS_DIR / "predictive-autoscaler-target.json")
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["namespace"]["type"] == "query"
    assert variables["deployment"]["type"] == "query"
    assert "$namespace" in variables["deployment"]["definition"], "deployments of that namespace"
    for query in queries(board):
        assert 'namespace="$namespace"' in query.expr, query.panel
        assert 'deployment="$deployment"' in query.expr, query.panel


def test_kustomization_provisions_every_dashboard_for_the_sidecar() -> None:
    kustomization = yaml.safe_load((DASHBOARDS_DIR / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    options = kustomization["generatorOptions"]
    assert options["labels"] == {"grafana_dashboard": "1"}
    assert options["disableNameSuffixHash"] is True
    files = [f for generator in kustomization["configMapGenerator"] for f in generator["files"]]
    assert sorted(files) == sorted(path.name for path in dashboard_files())
    names = [generator["name"] for generator in kustomization["configMapGenerator"]]
    assert len(names) == len(set(names))


def test_kustomize_builds_configmaps_holding_the_dashboards() -> None:
    kubectl = shutil.which("kubectl")
    assert kubectl is not None, "kubectl is required (the fake API server tests use it too)"
    built = subprocess.run(
        [kubectl, "kustomize", str(DASHBOARDS_DIR)], capture_output=True, text=True, check=True
    )
    maps = list(yaml.safe_load_all(built.stdout))
    assert {m["kind"] for m in maps} == {"ConfigMap"}
    held = {}
    for config_map in maps:
        assert config_map["metadata"]["labels"] == {"grafana_dashboard": "1"}
        for key, text in config_map["data"].items():
            held[key] = json.loads(text)["uid"]
    assert held == {path.name: load_dashboard(path)["uid"] for path in dashboard_files()}


# Grafana's unit for the load families of each unit suffix.
LOAD_UNITS = {
    "_cores": "suffix:cores",
    "_bytes": "bytes",
    "_requests_per_second": "reqps",
    "": "short",
}
_LOAD = re.compile(r"predictive_autoscaler_(?:load|capacity|forecast_(?:mean|lower|upper))(\w*?)\{")


def test_load_panels_show_one_unit_each_with_capacity_beside_the_forecast() -> None:
    board = load_dashboard(DASHBOARDS_DIR / "predictive-autoscaler-target.json")
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert "kind)" in variables["metric"]["definition"], "every kind the target reports"
    assert "kind)" in variables["declared"]["definition"], "the metrics the target declares"
    seen = set()
    for panel in board["panels"]:
        suffixes = {m for t in panel["targets"] for m in _LOAD.findall(t["expr"])}
        if not suffixes:
            continue
        assert len(suffixes) == 1, f"{panel['title']} mixes units {suffixes}"
        (suffix,) = suffixes
        seen.add(suffix)
        assert panel["fieldConfig"]["defaults"]["unit"] == LOAD_UNITS[suffix], panel["title"]
        read = [f for t in panel["targets"] for f in re.findall(r"predictive_autoscaler_\w+", t["expr"])]
        families = {re.sub(r"_(cores|bytes|requests_per_second)$", "", f) for f in read}
        assert families == {
            f"predictive_autoscaler_{f}"
            for f in ("load", "capacity", "forecast_mean", "forecast_lower", "forecast_upper")
        }, panel["title"]
        if suffix == "":
            assert panel.get("repeat") == "declared", "one panel per declared metric"
            assert all('kind="$declared"' in t["expr"] for t in panel["targets"])
    assert seen == set(LOAD_UNITS)
