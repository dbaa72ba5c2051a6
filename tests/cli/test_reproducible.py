"""Every figure is reproducible: the same command prints the same JSON, byte for byte, even when two
runs share the cores (ARIMA's order selection is bounded by work, not by seconds, so a busy machine
fits the same models)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import autoscaler

BUNDLED = Path(autoscaler.__file__).parent / "data" / "nasa-http-1995-jul-5m.csv"
DAYS = 4  # two of warm-up, two scored: ARIMA is fitted, refitted and trusted within them


@pytest.fixture(scope="module")
def nasa_days(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first days of the bundled NASA trace."""
    lines = BUNDLED.read_text().splitlines()
    path = tmp_path_factory.mktemp("traces") / "nasa-4d.csv"
    path.write_text("\n".join(lines[: 1 + DAYS * 288]) + "\n")
    return path


def twice_at_once(args: list[str]) -> tuple[bytes, bytes]:
    """The command run twice in parallel processes, each competing with the other for the cores."""
    command = [sys.executable, "-m", "autoscaler", *args]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outputs = [run.communicate(timeout=600) for run in runs]
    for run, (_, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err.decode(errors="replace")
    return outputs[0][0], outputs[1][0]


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["simulate", "--json"], id="simulate"),
        pytest.param(["backtest", "--json", "--model", "arima", "--horizon", "15m"], id="backtest"),
    ],
)
def test_two_runs_sharing_the_cores_print_identical_json(nasa_days: Path, args: list[str]) -> None:
    first, second = twice_at_once([*args, "--trace", str(nasa_days)])
    assert first.strip().startswith(b"{")
    assert first == second
