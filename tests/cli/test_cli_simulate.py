"""`predictive-autoscaler simulate`: the table, the JSON object with BENCHMARK.md's score names, the
sweep, the timeline CSV and the plot; bad input of every kind exits 2 with one line that names the
flag or the file and line; the console script and `python -m autoscaler` both run."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from autoscaler.cli import main
from autoscaler.simulate import POLICIES
from tests.conftest import write_trace

SCORES = {"overload_pct", "unserved_pct", "hot_pct", "pod_hours", "cost_vs_oracle",
          "mean_utilization", "scale_events"}  # fmt: skip


@pytest.fixture(scope="module")
def short_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three days of a daily wave at 5-minute steps with a sharp afternoon burst each day."""

    def value(k: int) -> float:
        minute = (k % 288) * 5
        burst = 900 if 900 <= minute < 930 else 0
        return 600 + 400 * math.sin(2 * math.pi * minute / 1440) + burst

    return write_trace(tmp_path_factory.mktemp("traces") / "wave.csv", 3, value)


def test_table_shows_both_policies_and_scenario(
    short_trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", "--trace", str(short_trace)]) == 0
    out = capsys.readouterr().out
    assert "target_utilization=0.7 startup_delay=120s replicas=1..200" in out
    assert {"hpa", "phpa", "scheduled", "predictive", "oracle"} <= set(POLICIES)
    for policy in POLICIES:  # every policy, by default
        assert out.count(f"\n{policy} ") == 1
    assert "oracle: overload_ratio=0.000" in out
    assert "predictive: overload_ratio=" in out


def test_json_has_benchmark_score_names(short_trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["simulate", "--trace", str(short_trace), "--json", "--startup-delay", "60",
                 "--capacity", "5", "--policy", "hpa,oracle"])  # fmt: skip
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc["policies"]) == {"hpa", "oracle"}
    assert set(doc["policies"]["hpa"]) == SCORES
    assert doc["scenario"]["startup_delay_s"] == 60
    assert doc["scenario"]["capacity"] == 5.0
    assert doc["policies"]["oracle"]["cost_vs_oracle"] == 1.0
    assert doc["policies"]["hpa"]["cost_vs_oracle"] > 1.0


def test_sweep_reports_cost_at_slo(short_trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["simulate", "--trace", str(short_trace), "--json", "--sweep", "0.9,0.5,0.7",
                 "--policy", "hpa,oracle"])  # fmt: skip
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    hpa = doc["sweep"]["hpa"]
    assert [r["target_utilization"] for r in hpa["runs"]] == [0.5, 0.7, 0.9]
    assert set(hpa["runs"][0]) == SCORES | {"target_utilization"}
    pod_hours = [r["pod_hours"] for r in hpa["runs"]]
    assert pod_hours == sorted(pod_hours, reverse=True)  # more utilization, fewer pods
    assert hpa["cost_at_slo"] is None or min(pod_hours) <= hpa["cost_at_slo"] <= max(pod_hours)
    assert doc["sweep"]["oracle"]["cost_at_slo_vs_oracle"] == 1.0


def test_timeline_and_plot(
    short_trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    timeline, plot = tmp_path / "t.csv", tmp_path / "p.png"
    code = main(["simulate", "--trace", str(short_trace), "--kind", "cpu", "--timeline",
                 str(timeline), "--plot", str(plot), "--sweep", "0.6,0.8",
                 "--policy", "hpa,oracle"])  # fmt: skip
    assert code == 0
    with timeline.open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["time", "demand", "observed", "hpa_ready", "hpa_desired",
                             "hpa_observed", "oracle_ready", "oracle_desired"]  # fmt: skip
    assert len(rows) == 3 * 288 * 20 - 19  # 15 s steps from the first to the last trace point
    assert rows[0]["observed"] == ""
    assert rows[-1]["observed"] != ""
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot.stat().st_size > 20_000


def test_plot_sweeps_the_headline_policies_by_default(
    short_trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The picture's frontier needs a sweep: without --sweep, BENCHMARK.md's five points for hpa,
    predictive and oracle among the policies asked for, none for the peers."""
    plot = tmp_path / "p.png"
    code = main(["simulate", "--trace", str(short_trace), "--json", "--plot", str(plot),
                 "--policy", "hpa,scheduled,oracle"])  # fmt: skip
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc["sweep"]) == {"hpa", "oracle"}
    assert [r["target_utilization"] for r in doc["sweep"]["hpa"]["runs"]] == [0.5, 0.6, 0.7, 0.8, 0.9]
    assert doc["sweep"]["hpa"]["runs"][2] == {"target_utilization": 0.7, **doc["policies"]["hpa"]}
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_plot_nothing_is_swept(short_trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--trace", str(short_trace), "--json", "--policy", "hpa,oracle"]) == 0
    assert "sweep" not in json.loads(capsys.readouterr().out)


# The CLI in a process where matplotlib cannot be imported, as in the controller's image.
WITHOUT_MATPLOTLIB = """
import sys

class NoMatplotlib:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "matplotlib":
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None

sys.meta_path.insert(0, NoMatplotlib())
from autoscaler.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize(
    ("command", "args"),
    [
        pytest.param("simulate", ["--policy", "hpa,oracle"], id="simulate"),
        pytest.param("backtest", ["--model", "naive"], id="backtest"),
        pytest.param(
            "backtest", ["--prometheus-url", "http://127.0.0.1:9", "--target", "a/b"], id="history"
        ),
    ],
)
def test_plot_without_matplotlib_exits_2_with_one_line(
    short_trace: Path, tmp_path: Path, command: str, args: list[str]
) -> None:
    plot = tmp_path / "p.png"
    trace = [] if "--prometheus-url" in args else ["--trace", str(short_trace)]
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_MATPLOTLIB, command, *trace, *args, "--plot", str(plot)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"predictive-autoscaler {command}: error: --plot: ")
    assert "install predictive-autoscaler[plot]" in lines[0]
    assert done.stdout == ""  # refused before simulating
    assert not plot.exists()


def test_without_matplotlib_the_rest_of_simulate_runs(short_trace: Path) -> None:
    table = subprocess.run(
        [sys.executable, "-c", WITHOUT_MATPLOTLIB, "simulate", "--trace", str(short_trace),
         "--policy", "hpa,oracle"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert table.returncode == 0, table.stderr
    assert "\nhpa " in table.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--policy", "hpa,magic"], "unknown policy 'magic'", id="unknown-policy"),
        pytest.param(["--policy", ""], "no policy named", id="empty-policy"),
        pytest.param(
            ["--startup-delay", "ten"],
            "argument --startup-delay: 'ten' is not a whole",
            id="non-numeric-delay",
        ),
        pytest.param(
            ["--startup-delay", "-15"],
            "--startup-delay: '-15' is not a non-negative",
            id="negative-delay",
        ),
        pytest.param(["--startup-delay", "100"], "multiple of 15", id="delay-off-grid"),
        pytest.param(["--target-utilization", "1.5"], "'1.5' is not in (0, 1]", id="u-above-1"),
        pytest.param(["--target-utilization", "nan"], "'nan' is not in (0, 1]", id="u-nan"),
        pytest.param(["--capacity", "0"], "'0' is not a positive number", id="zero-capacity"),
        pytest.param(["--sweep", "0.5,x"], "argument --sweep: 'x' is not a number", id="bad-sweep"),
        pytest.param(["--kind", "gpu"], "invalid choice: 'gpu'", id="unknown-kind"),
        pytest.param(
            ["--min-replicas", "5", "--max-replicas", "2"], "1 <= min <= max", id="min-above-max"
        ),
        pytest.param(["--warmup-days", "9"], "not more than the 9-day warm-up", id="too-short"),
        pytest.param(
            ["--plot", "/nonexistent/dir/p.png"],
            "directory /nonexistent/dir does not",
            id="plot-dir-missing",
        ),
        pytest.param(["--bogus"], "unrecognized arguments: --bogus", id="unknown-flag"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    short_trace: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    try:
        code = main(["simulate", "--trace", str(short_trace), *args])
    except SystemExit as exited:  # argparse's own errors leave through SystemExit
        code = exited.code  # type: ignore[assignment]
    assert code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert message in lines[0]
    assert lines[0].startswith("predictive-autoscaler")
    assert ": error: " in lines[0]
    assert captured.out == ""


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(None, "missing.csv: no such file", id="missing-file"),
        pytest.param("when,what\n", "bad.csv:1: header is 'when,what'", id="wrong-header"),
        pytest.param(
            "timestamp,value\n2024-01-01T00:00:00Z,1\n2024-01-01T00:05:00Z,-1\n",
            "bad.csv:3: value '-1' is negative",
            id="negative-value",
        ),
    ],
)
def test_bad_trace_exits_2_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    name = "missing.csv" if content is None else "bad.csv"
    if content is not None:
        (tmp_path / name).write_text(content)
    assert main(["simulate", "--trace", str(tmp_path / name)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert message in err[0]


@pytest.mark.parametrize(
    "command",
    [
        pytest.param([str(Path(sys.executable).parent / "predictive-autoscaler")], id="script"),
        pytest.param([sys.executable, "-m", "autoscaler"], id="python-m"),
    ],
)
def test_entry_points(short_trace: Path, command: list[str]) -> None:
    done = subprocess.run(
        [*command, "simulate", "--trace", str(short_trace), "--policy", "oracle", "--json"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["policies"]["oracle"]["overload_pct"] == 0.0
    bad = subprocess.run([*command, "simulate", "--policy", "x"], capture_output=True, text=True,
                         check=False, timeout=120)  # fmt: skip
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
