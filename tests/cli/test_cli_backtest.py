"""`predictive-autoscaler backtest`: the JSON object of the issue (`horizon_s`, per-model `mase`,
`smape`, `coverage`, and MASE against no change and calibrated coverage, overall, at the horizon and
per step), the table and the plot; bad flags exit 2 with one line naming the flag."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from autoscaler.cli import main
from tests.conftest import write_trace


@pytest.fixture(scope="module")
def daily_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four days of a daily wave at 5-minute steps with a little deterministic jitter."""

    def value(k: int) -> float:
        minute = (k % 288) * 5
        return 600 + 400 * math.sin(2 * math.pi * minute / 1440) + 37 * ((k * 7) % 5 - 2)

    return write_trace(tmp_path_factory.mktemp("bt") / "daily.csv", 4, value)


def test_json_shape_and_scores(daily_trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["backtest", "--trace", str(daily_trace), "--model", "seasonal-naive,naive",
                 "--horizon", "15m", "--json"])  # fmt: skip
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["horizon_s"] == 900
    assert set(doc["models"]) == {"seasonal-naive", "naive"}
    sn = doc["models"]["seasonal-naive"]
    assert {"mase", "smape", "coverage"} <= set(sn)
    # On an exactly repeating day with jitter, "same time yesterday" is the yardstick itself.
    assert sn["mase"] == pytest.approx(1.0, abs=0.05)
    assert 0.0 <= sn["coverage"] <= 1.0
    for model, scores in doc["models"].items():
        assert {"mase_no_change", "mase_no_change_at_horizon", "coverage_calibrated",
                "coverage_calibrated_at_horizon", "by_step"} <= set(scores), model  # fmt: skip
        assert [s["step"] for s in scores["by_step"]] == [1, 2, 3], model
        assert 0.0 <= scores["coverage_calibrated"] <= 1.0, model
    # "Naive" is the last value carried forward: no change itself.
    assert doc["models"]["naive"]["mase_no_change"] == pytest.approx(1.0)
    assert doc["calibration"]["window"] > 0


def test_table_and_plot(daily_trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plot = tmp_path / "bt.png"
    code = main(["backtest", "--trace", str(daily_trace), "--model", "naive", "--horizon", "30m",
                 "--plot", str(plot)])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "horizon 1800 s (6 steps), 80% interval" in out
    header = out.splitlines()[3].split()
    assert header[:6] == ["model", "mase", "mase-nc", "smape", "coverage", "cal-cov"]
    assert header[6:10] == ["mase@h", "mase-nc@h", "coverage@h", "cal-cov@h"]
    assert out.count("\nnaive ") == 1
    row = next(line for line in out.splitlines() if line.startswith("naive "))
    assert row.split()[2] == "1.000"  # naive against no change
    assert plot.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--model", "prophet"], "unknown model 'prophet'", id="unknown-model"),
        pytest.param(["--horizon", "soon"], "'soon' is not a duration", id="bad-horizon"),
        pytest.param(["--horizon", "0m"], "'0m' is not a positive duration", id="zero-horizon"),
        pytest.param(["--level", "1"], "--level: '1' is not in (0, 1)", id="level-one"),
        pytest.param(
            ["--trace", "/nonexistent.csv"], "/nonexistent.csv: no such file", id="missing-trace"
        ),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    try:
        code = main(["backtest", *args])
    except SystemExit as exited:  # argparse's own errors leave through SystemExit
        code = exited.code  # type: ignore[assignment]
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert message in lines[0]
