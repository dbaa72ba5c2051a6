"""The study's picture: its panels (headline, frontier with a sweep, ramp, whole trace), headline
figures that are the text report's own, the ramp it zooms on (the largest rise that recurs, not a
one-off spike), and matplotlib imported only when a picture is drawn."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.table import Table

from autoscaler.metrics import MetricKind
from autoscaler.simulate.plot import PANEL_TITLES, find_ramp, render
from autoscaler.simulate.report import to_text
from autoscaler.simulate.scenario import default_scenario
from autoscaler.simulate.study import Study, run_study
from autoscaler.simulate.trace import load_trace
from tests.conftest import write_trace

DAY_ROWS = 288  # 5-minute rows
SPIKE_DAY = 3


def wave(k: int) -> float:
    """A day that ramps up from 08:00 to 12:00, then slowly down, the same every day."""
    minute = (k % DAY_ROWS) * 5
    up = min(1.0, max(0.0, (minute - 480) / 240))
    down = min(1.0, max(0.0, (minute - 720) / 720))
    return 200 + 400 * (up - down)


def wave_with_spike(k: int) -> float:
    """The wave, plus a one-off spike far steeper than the ramp, in the night of one day."""
    in_spike = k // DAY_ROWS == SPIKE_DAY and 12 <= k % DAY_ROWS < 36
    return wave(k) + (2000 if in_spike else 0)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Study:
    """Three days of the wave (two of warm-up): the headline policies at the default and a sweep."""
    path = write_trace(tmp_path_factory.mktemp("traces") / "wave.csv", 3, wave)
    trace = load_trace(path)
    scenario = default_scenario(trace, MetricKind.REQUESTS)
    return run_study(trace, scenario, ["hpa", "predictive", "oracle"], (0.6, 0.7, 0.8))


def oracle_only(path: Path) -> Study:
    trace = load_trace(path)
    return run_study(trace, default_scenario(trace, MetricKind.REQUESTS), ["oracle"])


def titles(fig: Figure) -> list[str]:
    return [ax.get_title() for ax in fig.axes]


def panel(fig: Figure, name: str) -> Axes:
    found = [ax for ax in fig.axes if ax.get_title().startswith(PANEL_TITLES[name])]
    assert len(found) == 1, titles(fig)
    return found[0]


def table_rows(ax: Axes) -> list[list[str]]:
    tables = [child for child in ax.get_children() if isinstance(child, Table)]
    assert len(tables) == 1
    cells = tables[0].get_celld()
    rows = 1 + max(r for r, _ in cells)
    columns = 1 + max(c for _, c in cells)
    return [[cells[r, c].get_text().get_text() for c in range(columns)] for r in range(rows)]


def test_picture_has_headline_frontier_ramp_and_trace_panels(study: Study) -> None:
    fig = render(study)
    shown = [
        name for title in titles(fig) for name, start in PANEL_TITLES.items() if title.startswith(start)
    ]
    assert shown == ["headline", "frontier", "ramp", "trace"]
    assert study.trace.name in panel(fig, "headline").get_title()
    frontier = panel(fig, "frontier")
    assert frontier.get_xscale() == "log"
    assert frontier.get_xlabel().startswith("load unserved, %")
    assert frontier.get_ylabel() == "pod-hours / oracle's"
    for name in ("ramp", "trace"):
        assert panel(fig, name).get_ylabel() == "load units / s"
    legend = panel(fig, "ramp").get_legend()
    assert legend is not None
    labels = [text.get_text() for text in legend.get_texts()]
    assert "predictive forecast: mean to upper bound" in labels
    assert {"hpa ready capacity", "predictive ready capacity", "demand"} <= set(labels)


def test_without_a_sweep_there_is_no_frontier_panel(tmp_path: Path) -> None:
    fig = render(oracle_only(write_trace(tmp_path / "wave.csv", 3, wave)))
    assert not any(t.startswith(PANEL_TITLES["frontier"]) for t in titles(fig))
    assert [t for t in titles(fig) if t.startswith(PANEL_TITLES["ramp"])] != []
    assert "pod-hours / oracle's at the objective" not in " ".join(table_rows(panel(fig, "headline"))[0])


def report_figures(study: Study) -> dict[str, list[str]]:
    """Per headline policy, as the text report prints them: unserved %, pod-hours, pod-hours /
    oracle's, and the cost at the objective × oracle."""
    lines = to_text(study).splitlines()
    header = next(line.split() for line in lines if line.startswith("policy "))
    figures: dict[str, list[str]] = {}
    for policy in ("predictive", "hpa", "oracle"):
        row = next(line.split() for line in lines if line.startswith(f"{policy} "))
        slo = next(line for line in lines if line.startswith(f"  {policy}: cost_at_slo"))
        # "… cost_at_slo P pod-hours = X x oracle", or "… cost_at_slo not reached (…)"
        said = slo.split("cost_at_slo ", 1)[1]
        cost = said.split(" = ")[1].removesuffix(" x oracle") if " = " in said else said
        figures[policy] = [
            row[header.index(name)] for name in ("unserved_pct", "pod_hours", "cost_vs_oracle")
        ] + [cost]
    return figures


def test_headline_figures_are_the_reports(study: Study) -> None:
    fig = render(study)
    rows = table_rows(panel(fig, "headline"))
    assert rows[0][:4] == ["policy", "load unserved, %", "pod-hours", "pod-hours\n/ oracle's"]
    assert {row[0]: row[1:] for row in rows[1:]} == report_figures(study)
    ratios = " ".join(t.get_text() for t in panel(fig, "headline").texts)
    report = to_text(study)
    predictive = next(line for line in report.splitlines() if line.startswith("  predictive: "))
    for name, words in (("unserved_ratio", "load unserved"), ("slo_cost_ratio", "at the objective")):
        value = predictive.split(f"{name}=")[1].split()[0]
        assert f"{words} × {value}" in ratios


def test_ramp_is_the_largest_rise_that_recurs_not_a_one_off_spike(tmp_path: Path) -> None:
    spiky = oracle_only(write_trace(tmp_path / "spiky.csv", 5, wave_with_spike))
    ramp = find_ramp(spiky)
    times = spiky.runs[0].grid.times
    start = (times[ramp.rise_lo] - times[0]) / 86_400
    end = (times[ramp.rise_hi - 1] - times[0]) / 86_400
    # A morning ramp (08:00 to 12:00) of a scored day, never the spike's night (00:45 to 03:00).
    assert int(start) >= 2
    assert start % 1 >= 8 / 24
    assert end % 1 <= 12 / 24 + 1e-9
    assert ramp.lo <= ramp.rise_lo < ramp.rise_hi <= ramp.hi
    assert find_ramp(spiky) == ramp  # the same data, the same window


def test_drawing_is_the_only_user_of_matplotlib() -> None:
    """The controller and every command's module import without it; the plotting module loads
    it only to draw."""
    script = (
        "import sys\n"
        "import autoscaler.cli, autoscaler.runner, autoscaler.history_backtest\n"
        "import autoscaler.simulate.plot\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
