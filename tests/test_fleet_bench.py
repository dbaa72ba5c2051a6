"""The fleet bench (`bench/fleet.py`) on a fleet of three, so the bench cannot rot unnoticed:

* a short run against the real Prometheus and the fake API server gives every figure, and the
  figures are sane: every workload decided on every tick, Prometheus and API requests counted, CPU
  and memory read from the controller process, the models gauge read or reported as absent;
* a bad flag exits 2 with one line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.promserver import require_binaries

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench" / "fleet.py"


def run_bench(*flags: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(BENCH), *flags],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=env,
        cwd=ROOT,
        check=False,
    )


def test_three_workloads_for_a_few_ticks_give_every_figure() -> None:
    require_binaries()
    done = run_bench(
        "--workloads", "3", "--minutes", "0.3", "--interval", "5s", "--json", timeout_s=40
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (result,) = json.loads(done.stdout)["results"]
    assert result["workloads"] == 3
    # A tick before the reader's first lists decides nothing and does not act; every later one acts.
    assert result["acting_ticks"] >= 2
    assert result["ticks_with_every_workload"] == result["acting_ticks"], result
    assert result["all_decided_s"] is not None
    assert result["never_decided"] == 0
    assert result["late_decisions"] == 0
    assert result["failed_ticks"] == 0
    assert result["prometheus_requests_per_tick"] > 0
    assert result["api_requests_per_tick"] > 0
    assert result["api_requests_by_kind"].get("watch", 0) > 0
    assert result["cpu_s_per_tick"] > 0
    assert result["peak_rss_mb"] > 20
    assert result["peak_session_rss_mb"] is not None
    assert 0 < result["peak_session_pss_mb"] <= result["peak_session_rss_mb"]
    assert 0 <= result["tick_p50_s"] <= result["tick_p95_s"] <= result["tick_max_s"]
    assert result["fitted_s"] is not None or result["fitted_note"] == "n/a (no models gauge)"
    assert result["workloads_written_by_two"] is None  # one replica: nothing to compare


@pytest.mark.parametrize(
    ("flags", "names"),
    [
        pytest.param(["--workloads", "0"], "--workloads", id="no-workloads"),
        pytest.param(["--workloads", "ten"], "--workloads", id="workloads-not-counts"),
        pytest.param(["--minutes", "-1"], "--minutes", id="negative-minutes"),
        pytest.param(["--kill-one"], "--kill-one", id="kill-one-without-replicas"),
    ],
)
def test_a_bad_flag_exits_2_with_one_line(flags: list[str], names: str) -> None:
    done = run_bench(*flags, timeout_s=30)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, lines
    assert names in lines[0]
