"""Progress of the slow commands on stderr: plain lines when stderr is not a terminal (a CI log), one
per stage each time it reaches another 10 % and none at 0 %, so the lines depend only on the work
done; live bars (rich) on a terminal, cleared when the command ends. Each command runs as a process
with stderr piped (or on a pseudo-terminal), as a CI job or a person would run it."""

from __future__ import annotations

import io
import math
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from autoscaler.cli.common import ProgressLines
from tests.conftest import write_trace

DECILES = [f"{p}%" for p in range(10, 101, 10)]


@pytest.fixture(scope="module")
def wave(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three days of a daily wave at 5-minute steps: past the 2-day warm-up of both commands."""

    def value(k: int) -> float:
        return 600 + 400 * math.sin(2 * math.pi * (k % 288) / 288)

    return write_trace(tmp_path_factory.mktemp("progress") / "wave.csv", 3, value)


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "autoscaler", *args]


def run_piped(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command(*args), capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done


def stages(stderr: str) -> dict[str, list[str]]:
    """The progress lines by stage, in the order written: `label: n%`."""
    seen: dict[str, list[str]] = {}
    for line in stderr.splitlines():
        label, _, percent = line.rpartition(": ")
        seen.setdefault(label, []).append(percent)
    return seen


def test_simulate_piped_writes_a_line_per_tenth_of_each_policy(wave: Path) -> None:
    done = run_piped("simulate", "--trace", str(wave), "--policy", "hpa,scheduled")
    assert stages(done.stderr) == {"hpa u*=0.7": DECILES, "scheduled u*=0.7": DECILES}
    assert "\r" not in done.stderr, "no bar drawing off a terminal"
    assert "hpa " in done.stdout, "the table still goes to stdout"


def test_backtest_piped_writes_a_line_per_tenth_of_each_model(wave: Path) -> None:
    done = run_piped("backtest", "--trace", str(wave), "--model", "naive,seasonal-naive", "--json")
    assert list(stages(done.stderr).items()) == [
        ("forecast naive", DECILES),
        ("forecast seasonal-naive", DECILES),
    ]
    assert done.stdout.startswith("{"), "stdout is the JSON object alone"


def test_a_terminal_gets_live_bars_and_no_plain_lines(wave: Path) -> None:
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        command("backtest", "--trace", str(wave), "--model", "naive", "--json"),
        stdout=subprocess.PIPE,
        stderr=terminal,
        env={**os.environ, "TERM": "xterm", "COLUMNS": "100"},
    )
    os.close(terminal)
    written = bytearray()
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the process closed the terminal's last writer
            break
        if not chunk:
            break
        written += chunk
    os.close(controller)
    assert process.stdout is not None
    out = process.stdout.read()
    process.stdout.close()
    assert process.wait(timeout=60) == 0
    screen = written.decode(errors="replace")
    assert "forecast naive" in screen
    assert "━" in screen, "rich draws the bar"
    assert "100%" in screen
    assert "forecast naive: " not in screen, "no plain lines on a terminal"
    assert out.startswith(b"{")


def lines_for(*calls: tuple[str, float]) -> list[str]:
    stream = io.StringIO()
    progress = ProgressLines(stream)
    for label, fraction in calls:
        progress(label, fraction)
    progress.close()
    return stream.getvalue().splitlines()


@pytest.mark.parametrize(
    ("calls", "expected"),
    [
        pytest.param([("a", 0.0)], [], id="nothing-at-zero"),
        pytest.param(
            [("a", k / 100) for k in range(101)], [f"a: {p}" for p in DECILES], id="every-percent"
        ),
        pytest.param([("a", 0.3)], ["a: 30%"], id="float-tenths-not-held-back"),
        pytest.param([("a", 0.05), ("a", 0.55), ("a", 1.0)], ["a: 50%", "a: 100%"], id="jumps"),
        pytest.param([("a", 0.5), ("a", 0.4), ("a", 0.5)], ["a: 50%"], id="never-twice"),
        pytest.param([("a", 0.2), ("b", 0.2), ("b", 1.0)], ["a: 20%", "b: 20%", "b: 100%"],
                     id="each-stage-its-own"),
        pytest.param([("a", 1.7), ("b", -1.0)], ["a: 100%"], id="clamped"),
    ],
)  # fmt: skip
def test_plain_lines_depend_only_on_the_fractions(
    calls: list[tuple[str, float]], expected: list[str]
) -> None:
    assert lines_for(*calls) == expected
