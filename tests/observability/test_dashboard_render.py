"""The dashboards drawn from what the controller exports, without a Grafana.

The controller runs in-process (the fake API server, the real Prometheus source on a backfilled
day of one Deployment's load in cores, bytes, requests/s and a metric it declares, ARIMA
forecasts) for two hours of one-minute ticks on a manual clock; after each tick its `/metrics`
exposition is kept with the tick's time. Those samples are backfilled into a second Prometheus, every
panel's queries run there as range queries (template variables substituted), and each dashboard is
drawn with matplotlib (Agg) in its Grafana layout (one PNG per dashboard).

Covers: every query of a panel reads metrics in the panel's unit (one unit per axis: a load panel
never mixes cores, bytes and requests/s); every panel has data; the per-unit load panels draw the
ready capacity beside the load and the forecast band. `PA_DASHBOARD_PNG_DIR=docs` writes the
pictures there (docs/dashboard-target.png is the README's).
"""

from __future__ import annotations

import json
import math
import os
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from autoscaler.config import PREFIX
from autoscaler.forecast_stage import ModelForecaster
from autoscaler.kube import connect
from autoscaler.observability.telemetry import Telemetry
from autoscaler.policy import PredictivePolicy
from autoscaler.sources.prometheus import PrometheusSettings, PrometheusSource
from autoscaler.wiring import Controller, cluster_stages
from tests.fakekube import FakeKube
from tests.grafana import dashboard_files, load_dashboard, substitute
from tests.promserver import Dataset, Pod, PromServer, Workload, backfill, require_binaries
from tests.test_controller import Listed

NS, NAME, DECLARED = "shop", "web", "hits"
TICK_S = 60
RUN_S = 2 * 3600
OUTAGE = (70, 80)  # ticks without Prometheus
VARIABLES = {
    "namespace": NS,
    "deployment": NAME,
    "metric": "cpu|memory|requests|" + DECLARED,
    "declared": DECLARED,
    "__rate_interval": "4m",
    "datasource": "prometheus",
}
_METRIC = re.compile(r"\bpredictive_autoscaler_\w+")
_FUNCTION = re.compile(r"\b(rate|increase|histogram_quantile|time)\s*\(")

# A query's unit, from the metrics it reads: the unit suffix of a family; a counter or a histogram's
# count is a number of events (per second under rate()); a family without suffix is a count, or,
# for the load families, a declared metric's own unit.
_SUFFIX_UNITS = (
    ("_requests_per_second", "requests/s"),
    ("_cores", "cores"),
    ("_bytes", "bytes"),
    ("_seconds", "seconds"),
    ("_ratio", "ratio"),
)
# Grafana unit of a panel → the query units it may show.
PANEL_UNITS: dict[str, set[str]] = {
    "suffix:cores": {"cores"},
    "bytes": {"bytes"},
    "reqps": {"requests/s", "per-second"},
    "ops": {"per-second"},
    "s": {"seconds"},
    "percentunit": {"ratio", "share"},
    "none": {"ratio", "count"},
    "short": {"count", "declared"},
}


def family_unit(name: str) -> str | None:
    """The unit of a metric as read, or None for a count of things or events."""
    if name.endswith(("_total", "_count")):
        return None
    base = name.removesuffix("_bucket").removesuffix("_sum")
    for suffix, unit in _SUFFIX_UNITS:
        if base.endswith(suffix):
            return unit
    if base.removeprefix("predictive_autoscaler_") in {
        "load", "capacity", "forecast_mean", "forecast_lower", "forecast_upper"
    }:  # fmt: skip
        return "declared"
    return None


def query_unit(expr: str) -> str:
    """The unit a PromQL expression of the dashboards returns; see `family_unit`."""
    if expr.lstrip().startswith("count("):
        return "count"  # of series, whatever they measure
    units = {u for u in map(family_unit, _METRIC.findall(expr)) if u is not None}
    functions = set(_FUNCTION.findall(expr))
    if "time" in functions and "seconds" in units:
        return "seconds"  # an age: now minus a timestamp
    assert len(units) <= 1, f"{expr} mixes {sorted(units)}"
    if units:
        return units.pop()
    if "rate" in functions:
        return "per-second"
    if "/" in expr:
        return "share"
    return "count"


@pytest.mark.parametrize(
    ("expr", "unit"),
    [
        pytest.param('predictive_autoscaler_load_cores{kind="cpu"}', "cores", id="cores"),
        pytest.param("predictive_autoscaler_capacity_bytes", "bytes", id="bytes"),
        pytest.param("predictive_autoscaler_forecast_upper_requests_per_second", "requests/s",
                     id="requests"),
        pytest.param('predictive_autoscaler_load{kind="hits"}', "declared", id="declared"),
        pytest.param("histogram_quantile(0.5, sum by (le) (rate(x_seconds_bucket[1m])))".replace(
            "x_", "predictive_autoscaler_tick_duration_"), "seconds", id="quantile"),
        pytest.param("rate(predictive_autoscaler_prometheus_query_duration_seconds_count[1m])",
                     "per-second", id="query-rate"),
        pytest.param("time() - max(predictive_autoscaler_last_tick_timestamp_seconds)", "seconds",
                     id="age"),
        pytest.param("sum(predictive_autoscaler_mode{mode!=\"predictive\"}) / "
                     "sum(predictive_autoscaler_mode)", "share", id="share"),
        pytest.param("predictive_autoscaler_replicas", "count", id="count"),
        pytest.param("count(predictive_autoscaler_last_tick_timestamp_seconds)", "count",
                     id="count-of-series"),
    ],
)  # fmt: skip
def test_query_units_are_read_from_the_metric_names(expr: str, unit: str) -> None:
    assert query_unit(expr) == unit


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in dashboard_files()])
def test_every_query_of_a_panel_is_in_the_panel_unit(path: Path) -> None:
    for panel in load_dashboard(path)["panels"]:
        unit = panel["fieldConfig"]["defaults"].get("unit")
        assert unit in PANEL_UNITS, f"{panel['title']}: unit {unit!r} is not one the tests know"
        for target in panel["targets"]:
            got = query_unit(target["expr"])
            assert got in PANEL_UNITS[unit], f"{panel['title']} / {target['refId']}: {got} on {unit}"


# --- the controller's exposition, tick by tick --------------------------------------------------


@dataclass
class Exposition:
    """Samples of `/metrics` kept per tick, written as OpenMetrics for `backfill`."""

    series: dict[str, dict[tuple[tuple[str, str], ...], list[tuple[float, float]]]] = field(
        default_factory=dict
    )

    def keep(self, telemetry: Telemetry, at: float) -> None:
        for family in telemetry.registry.collect():
            for sample in family.samples:
                labels = tuple(sorted(sample.labels.items()))
                by_labels = self.series.setdefault(sample.name, {})
                by_labels.setdefault(labels, []).append((at, float(sample.value)))

    def write_openmetrics(self, path: Path) -> int:
        def esc(v: str) -> str:
            return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

        count = 0
        with path.open("w", encoding="utf-8") as out:
            for name, by_labels in self.series.items():
                out.write(f"# TYPE {name} unknown\n")
                for labels, points in by_labels.items():
                    head = name + "{" + ",".join(f'{k}="{esc(v)}"' for k, v in labels) + "}"
                    for at, value in points:
                        text = "+Inf" if value == math.inf else repr(value)
                        out.write(f"{head} {text} {int(at)}\n")
                        count += 1
            out.write("# EOF\n")
        return count


def load_data(anchor: float) -> Dataset:
    """A day of one Deployment's load ending at `anchor`: two-hour waves with a slower swell, so
    the two hours drawn rise and fall."""
    start = anchor - 86400
    pods = tuple(Pod(f"{NAME}-7d9f-{i}", f"{NAME}-7d9f", start, anchor + 1) for i in range(3))
    workload = Workload(NS, NAME, pods, 0.3, 180e6, 14.0)
    return Dataset(start, anchor, 30, (workload,), detailed=False, period_s=2 * 3600.0,
                   extra_waves=((7 * 3600.0, 0.6),))  # fmt: skip


@dataclass(frozen=True, slots=True)
class Scraped:
    server: PromServer
    start: float
    end: float

    def query_range(self, expr: str) -> list[dict[str, Any]]:
        params = urllib.parse.urlencode(
            {"query": expr, "start": self.start, "end": self.end, "step": TICK_S}
        )
        url = f"{self.server.url}/api/v1/query_range?{params}"
        with urllib.request.urlopen(url, timeout=20) as answer:
            body = json.load(answer)
        assert body["status"] == "success", f"{expr}: {body}"
        return list(body["data"]["result"])


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    require_binaries()
    workdir = tmp_path_factory.mktemp("render")
    anchor = float(int(time.time()) // 3600 * 3600)
    load = PromServer(backfill(load_data(anchor), workdir / "load"))
    load.start()
    try:
        with FakeKube() as fake:
            kubeconfig = fake.write_kubeconfig(workdir / "kubeconfig")
            exposition = run_controller(fake, kubeconfig, load, anchor)
    finally:
        load.stop()
    server = PromServer(backfill(exposition, workdir / "controller"))
    server.start()
    try:
        yield Scraped(server, anchor - RUN_S + TICK_S, anchor)
    finally:
        server.stop()


def run_controller(fake: FakeKube, kubeconfig: Path, load: PromServer, anchor: float) -> Exposition:
    """Two hours of ticks; Prometheus is down for ten of them in the middle (the targets hold, and
    the error panels have something to show)."""
    fake.add_deployment(
        NS,
        NAME,
        replicas=3,
        annotations={
            PREFIX + "enabled": "true",
            PREFIX + "metrics": f"cpu,memory,requests,{DECLARED}",
            PREFIX + "target-requests-per-pod": "10",
            PREFIX + f"metric.{DECLARED}": 'counter per-pod 12 http_requests_total{code="200"}',
            PREFIX + "startup-seconds": "60",
            PREFIX + "scale-down-stabilization-seconds": "300",
        },
    )
    # The first scale is refused once (a conflict, retried next tick): the API error panel's data.
    fake.inject("PATCH", r"/scale$", 409, times=1)
    telemetry = Telemetry()
    kube = connect(kubeconfig, user_agent="predictive-autoscaler/test", on_error=telemetry.kube_error)
    source = PrometheusSource(
        PrometheusSettings(url=load.url, history_s=12 * 3600.0),
        sleep=lambda _: None,
        on_query=telemetry.query_done,
    )
    forecaster = ModelForecaster()  # ARIMA, as `run` uses
    stages = cluster_stages(kube, Listed(kube), source, forecaster, PredictivePolicy(interval_s=TICK_S),
                            on_record=telemetry.target_seen)  # fmt: skip
    controller = Controller(stages, on_problem=telemetry.metrics_problem)
    telemetry.set_leader(True)
    exposition = Exposition()
    try:
        ticks = range(int(anchor) - RUN_S + TICK_S, int(anchor) + 1, TICK_S)
        for tick, now in enumerate(ticks):
            if tick == OUTAGE[0]:
                load.stop()
            if tick == OUTAGE[1]:
                load.start()
            began = time.monotonic()
            report = controller.tick(float(now))
            telemetry.tick_done(report, time.monotonic() - began, float(now))
            exposition.keep(telemetry, float(now))
    finally:
        source.close()
    return exposition


# --- drawing ---------------------------------------------------------------------------------------


def _formatter(unit: str) -> FuncFormatter:
    def fmt(value: float, _: object) -> str:
        if unit == "bytes":
            return f"{value / 2**20:.0f} MiB"
        if unit == "percentunit":
            return f"{value:.0%}"
        if unit == "suffix:cores":
            return f"{value:.2g} cores"
        return f"{value:.3g}"

    return FuncFormatter(fmt)


_UNIT_LABEL = {"reqps": "requests/s", "ops": "per second", "s": "seconds", "short": "", "none": ""}


def legend(fmt: str, labels: Mapping[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt) or "value"


@dataclass
class Drawn:
    panel: str
    unit: str
    series: int


def draw(board: Mapping[str, Any], scraped: Scraped, out: Path) -> list[Drawn]:
    panels = board["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    row_in = 0.42
    # A Figure of its own, drawn by Agg when saved as PNG: no pyplot state shared with other tests.
    fig = Figure(figsize=(18, rows * row_in + 0.5), dpi=80)
    fig.suptitle(str(board["title"]), fontsize=14, x=0.01, y=0.998, ha="left", va="top")
    top = 1 - 0.3 / (rows * row_in + 0.5)
    drawn = []
    for panel in panels:
        grid = panel["gridPos"]
        # Room for the title above and the tick labels below and left, in rows and columns.
        left, right, above, below = 1.1, 0.25, 0.9, 1.3
        if panel["type"] == "state-timeline":
            left = 3.0  # the rows' names
        box = (
            (grid["x"] + left) / 24,
            top * (1 - (grid["y"] + grid["h"] - below) / rows),
            (grid["w"] - left - right) / 24,
            top * (grid["h"] - above - below) / rows,
        )
        ax = fig.add_axes(box)
        unit = str(panel["fieldConfig"]["defaults"].get("unit"))
        title = substitute(str(panel["title"]), VARIABLES)
        drawn.append(Drawn(title, unit, draw_panel(ax, panel, unit, scraped)))
        ax.set_title(title, fontsize=10, loc="left")
    fig.savefig(out)
    return drawn


def _style(panel: Mapping[str, Any]) -> tuple[dict[str, str], set[str]]:
    """Colours and dashed lines the panel's overrides give its queries, by refId."""
    colors: dict[str, str] = {}
    dashed: set[str] = set()
    for override in panel["fieldConfig"].get("overrides", []):
        ref = override["matcher"].get("options")
        for prop in override["properties"]:
            if prop["id"] == "color":
                colors[ref] = prop["value"]["fixedColor"]
            if prop["id"] == "custom.lineStyle":
                dashed.add(ref)
    return colors, dashed


@dataclass(frozen=True, slots=True)
class Line:
    ref_id: str
    name: str
    hours: list[float]
    values: list[float]


def draw_panel(ax: Axes, panel: Mapping[str, Any], unit: str, scraped: Scraped) -> int:
    lines = []
    for target in panel["targets"]:
        for result in scraped.query_range(substitute(target["expr"], VARIABLES)):
            lines.append(
                Line(
                    target["refId"],
                    legend(str(target.get("legendFormat", "")), result["metric"]),
                    [(float(t) - scraped.end) / 3600 for t, _ in result["values"]],
                    [float(v) for _, v in result["values"]],
                )
            )
    kind = panel["type"]
    if kind == "stat":
        _draw_stat(ax, lines, unit)
    elif kind == "table":
        _draw_table(ax, lines)
    elif kind == "state-timeline":
        _draw_states(ax, lines)
    else:
        _draw_series(ax, panel, lines, unit)
    return len(lines)


def _draw_stat(ax: Axes, lines: list[Line], unit: str) -> None:
    ax.set_axis_off()
    if lines:
        text = _formatter(unit)(lines[0].values[-1], None)
        ax.text(0.5, 0.4, text, ha="center", va="center", fontsize=22, transform=ax.transAxes)


def _draw_table(ax: Axes, lines: list[Line]) -> None:
    ax.set_axis_off()
    rows = [f"{line.name}: {line.values[-1]:g}" for line in lines]
    ax.text(0.01, 0.95, "\n".join(rows), va="top", fontsize=9, family="monospace",
            transform=ax.transAxes)  # fmt: skip


def _draw_states(ax: Axes, lines: list[Line]) -> None:
    """One row per series, filled where it is 1 (or present, for a series filtered to `== 1`)."""
    step = TICK_S / 3600
    cmap = matplotlib.colormaps["tab10"]
    for row, line in enumerate(lines):
        spans = [(h, step) for h, v in zip(line.hours, line.values, strict=True) if v == 1]
        ax.broken_barh(spans, (row - 0.4, 0.8), color=cmap(row % 10))
    ax.set_yticks(range(len(lines)), [line.name for line in lines], fontsize=7)
    ax.set_xlabel("hours before the end", fontsize=7)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3, axis="x")


def _draw_series(ax: Axes, panel: Mapping[str, Any], lines: list[Line], unit: str) -> None:
    colors, dashed = _style(panel)
    bars = panel["fieldConfig"]["defaults"].get("custom", {}).get("drawStyle") == "bars"
    named = {}
    for line in lines:
        if bars:
            ax.plot(line.hours, line.values, marker="o", markersize=3, linestyle="none",
                    label=line.name)  # fmt: skip
            continue
        ax.plot(line.hours, line.values, label=line.name, color=colors.get(line.ref_id),
                linestyle="--" if line.ref_id in dashed else "-",
                linewidth=2 if line.ref_id == "A" and colors else 1.2,
                drawstyle="steps-post" if "capacity" in line.name else "default")  # fmt: skip
        named[line.name] = line
    lower, upper = named.get("lower"), named.get("upper")
    if lower is not None and upper is not None and lower.hours == upper.hours:
        ax.fill_between(lower.hours, lower.values, upper.values, color="orange", alpha=0.2,
                        linewidth=0)  # fmt: skip
    ax.yaxis.set_major_formatter(_formatter(unit))
    ax.set_ylabel(_UNIT_LABEL.get(unit, ""), fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_xlabel("hours before the end", fontsize=7)
    ax.grid(alpha=0.3)
    if lines:
        ax.legend(fontsize=7, loc="best", ncol=3, framealpha=0.7)


def test_every_panel_draws_data_in_one_unit(scraped: Scraped, tmp_path: Path) -> None:
    where = Path(os.environ.get("PA_DASHBOARD_PNG_DIR", tmp_path))
    empty = []
    for path in dashboard_files():
        board = load_dashboard(path)
        out = where / f"dashboard-{path.stem.removeprefix('predictive-autoscaler-')}.png"
        drawn = draw(board, scraped, out)
        assert out.stat().st_size > 20_000, f"{out} is nearly blank"
        empty += [f"{board['uid']} / {d.panel}" for d in drawn if d.series == 0]
    assert not empty, "panels without data:\n" + "\n".join(empty)


def test_load_panels_draw_capacity_beside_load_and_forecast(scraped: Scraped) -> None:
    board = load_dashboard(dashboard_files()[-1])
    assert board["uid"] == "predictive-autoscaler-target"
    for panel in board["panels"]:
        if "actual, ready capacity and forecast" not in panel["title"]:
            continue
        legends = {t["legendFormat"] for t in panel["targets"]}
        assert {"actual", "ready capacity", "forecast", "lower", "upper"} == legends
        capacity = next(t for t in panel["targets"] if t["legendFormat"] == "ready capacity")
        (result,) = scraped.query_range(substitute(capacity["expr"], VARIABLES))
        assert max(float(v) for _, v in result["values"]) > 0, panel["title"]
