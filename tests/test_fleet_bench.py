"""The fleet bench (`bench/fleet.py`) on a fleet of three, so the bench cannot rot unnoticed:

* a short run against the real Prometheus and the fake API server gives every figure, and the
  figures are sane: every workload decided on every tick, Prometheus and API requests counted, CPU
  and memory read from the controller process, the models gauge read or reported as absent;
* a bad flag exits 2 with one line;
* on synthetic controller logs of a sharded run with a kill (`analyse`, no process started): the
  take-over's bound met or not, the hand-back's gaps over two ticks counted and those within not,
  and the ticks held without metrics counted by cause.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest

from tests.promserver import require_binaries

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench" / "fleet.py"

if TYPE_CHECKING:
    import fleet  # mypy names bench/fleet.py `fleet`: bench/ is no package
else:
    # Loaded from its path, as mypy sees it, without putting bench/ on sys.path.
    _spec = importlib.util.spec_from_file_location("fleet", BENCH)
    fleet = importlib.util.module_from_spec(_spec)
    sys.modules["fleet"] = fleet  # the dataclasses look their module up while it loads
    _spec.loader.exec_module(fleet)


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
        "--workloads", "3", "--minutes", "0.5", "--interval", "5s", "--json", timeout_s=60
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


# --- the figures of a sharded run with a kill, from synthetic logs ----------------------------------

T0 = 1_700_000_000.0
INTERVAL_S = 10.0
RUN_S = 200.0  # so the kill is at T0 + 80 s and the restart at T0 + 140 s
KILLED_AT, RESTARTED_AT = T0 + fleet.KILL_AT * RUN_S, T0 + fleet.RESTART_AT * RUN_S
A, B, C = "team-0/svc-0000", "team-1/svc-0001", "team-2/svc-0002"  # the fleet of 3's workloads
BOUND_S = fleet.LEASE_DURATION_S + 2 * INTERVAL_S


def table_rows(out: str) -> dict[str, str]:
    """`print_table`'s rows, label to value."""
    rows = [re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in out.splitlines()[1:]]
    return {row[0]: row[1] for row in rows if len(row) == 2}


def _stamp(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")


def _tick(
    began: float, refs: Sequence[str], metrics: bool = True, causes: Sequence[str] = ()
) -> list[str]:
    """The lines of one acting tick that began at `began`, as the controller logs them."""
    lines = [
        json.dumps({"time": _stamp(began + 0.1), "level": "info", "event": "decision", "target": ref})
        for ref in refs
    ]
    done = {
        "time": _stamp(began + 0.5),
        "level": "info",
        "message": "tick done",
        "event": "tick",
        "acted": True,
        "targets": len(refs),
        "metrics_available": metrics,
        "prometheus_errors": list(causes),
        "seconds": 0.5,
    }
    return [*lines, json.dumps(done)]


def _starts(phase: float, first: float, last: float) -> list[float]:
    """Tick starts of a replica ticking at `phase` s into each interval, within [first, last)."""
    return [T0 + phase + k * INTERVAL_S for k in range(40) if first <= phase + k * INTERVAL_S < last]


def _process(tmp: Path, name: str, lines: list[str], ended: float | None = None) -> fleet.Process:
    log = tmp / f"{name}.log"
    log.write_text("\n".join(lines) + "\n")
    identity = name.rsplit("-", 1)[0]
    process = fleet.Process(identity, cast(Any, None), log, 0, cast(Any, None), started=T0, proxy_base=0)
    process.ended, process.killed = ended, ended is not None
    return process


def sharded_run(
    tmp: Path, taken_after_s: float, back_after_s: float, held: Sequence[tuple[bool, list[str]]] = ()
) -> fleet.Result:
    """Three replicas deciding A, B and C; replica-0 (A's) is killed at KILLED_AT. replica-1's ticks
    (4 s into each interval) decide A from the first one `taken_after_s` after the kill until the
    restart; the restarted replica-0's (2 s in) from the first one `back_after_s` after the restart
    on. replica-2's first ticks are `held` (metrics available?, causes listed), the rest are not."""
    r0 = [line for at in _starts(2, 0, 80) for line in _tick(at, [A])]
    r1: list[str] = []
    for at in _starts(4, 0, RUN_S):
        owns_a = KILLED_AT + taken_after_s <= at < RESTARTED_AT
        r1 += _tick(at, [B, A] if owns_a else [B])
    r2: list[str] = []
    for k, at in enumerate(_starts(6, 0, RUN_S)):
        metrics, causes = held[k] if k < len(held) else (True, [])
        r2 += _tick(at, [C], metrics, causes)
    r0_back = [
        line
        for at in _starts(2, 140, RUN_S)
        if at >= RESTARTED_AT + back_after_s
        for line in _tick(at, [A])
    ]
    processes = [
        _process(tmp, "replica-0-0", r0, ended=KILLED_AT),
        _process(tmp, "replica-1-0", r1),
        _process(tmp, "replica-2-0", r2),
        _process(tmp, "replica-0-1", r0_back),
    ]
    args = argparse.Namespace(interval_s=INTERVAL_S, replicas=3, shards=6, dry_run=False)
    bench_fleet = fleet.Fleet(args, tmp / "kubeconfig", "http://127.0.0.1:9", tmp)
    bench_fleet.processes = processes
    return fleet.analyse(args, 3, bench_fleet, [], T0, T0 + RUN_S, 0.0, (KILLED_AT, RESTARTED_AT))


def test_takeover_within_lease_duration_and_two_ticks_is_met(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # replica-1's first tick 30 s after the kill (T0 + 114 s) decides A at 34.1 s: within 35 s.
    result = sharded_run(tmp_path, taken_after_s=30, back_after_s=0)
    assert result.takeover_bound_s == BOUND_S == 35.0
    assert result.takeover_s == 34.1
    assert result.takeover_within_bound is True
    fleet.print_table([result])
    rows = table_rows(capsys.readouterr().out)
    assert rows["take-over within lease duration + 2 ticks"] == f"{BOUND_S:g} s: met"


def test_takeover_past_lease_duration_and_two_ticks_is_not_met(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The first tick that decides A is 40 s after the kill (T0 + 124 s), decision at 44.1 s.
    result = sharded_run(tmp_path, taken_after_s=40, back_after_s=0)
    assert result.takeover_s == 44.1
    assert result.takeover_within_bound is False
    fleet.print_table([result])
    rows = table_rows(capsys.readouterr().out)
    assert rows["take-over within lease duration + 2 ticks"] == f"{BOUND_S:g} s: NOT met"


@pytest.mark.parametrize(
    ("taken", "watched_s", "within"),
    [
        pytest.param({A: 35.0, B: 12.0}, 60.0, True, id="all-taken-at-the-bound"),
        pytest.param({A: 35.1, B: 12.0}, 60.0, False, id="one-taken-past-the-bound"),
        pytest.param({B: 12.0}, 60.0, False, id="one-never-taken-in-a-window-past-the-bound"),
        pytest.param({B: 12.0}, 30.0, None, id="one-not-taken-yet-when-the-restart-came-first"),
        pytest.param({A: 40.0}, 30.0, False, id="past-the-bound-whatever-the-window"),
    ],
)
def test_takeover_within_bound_by_each_orphan(
    taken: dict[str, float], watched_s: float, within: bool | None
) -> None:
    assert fleet.takeover_within_bound(taken, {A, B}, watched_s, 35.0) is within


def test_takeover_with_nothing_to_take_over_is_neither_met_nor_not() -> None:
    assert fleet.takeover_within_bound({}, set(), 60.0, 35.0) is None


def test_a_handback_gap_over_two_ticks_is_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # replica-1 decides A last at T0 + 134.1 s; the restarted replica first at T0 + 172.1 s: 38 s,
    # across the restart, three ticks undecided.
    result = sharded_run(tmp_path, taken_after_s=30, back_after_s=30)
    assert result.handback_max_gap_s == 38.0
    assert result.handback_max_ticks_undecided == 3
    assert result.handback_worst_workload == A
    assert result.handback_bound_ticks == 2
    assert result.handback_workloads_over_bound == 1
    fleet.print_table([result])
    rows = table_rows(capsys.readouterr().out)
    assert rows["hand-back, restart to end: longest without a decision"] == (
        f"38.0 s, 3 tick(s) undecided ({A})"
    )
    assert rows["hand-back: workloads undecided more than 2 ticks"] == "1"


def test_a_handback_gap_of_two_ticks_is_not_counted(tmp_path: Path) -> None:
    # From T0 + 134.1 s to T0 + 162.1 s: 28 s, two ticks undecided.
    result = sharded_run(tmp_path, taken_after_s=30, back_after_s=20)
    assert result.handback_max_gap_s == 28.0
    assert result.handback_max_ticks_undecided == 2
    assert result.handback_worst_workload == A
    assert result.handback_workloads_over_bound == 0


def test_the_gap_to_the_last_acting_tick_counts_in_the_handback() -> None:
    # B is decided at the restart and never again: 45 s to the end of the last tick.
    decided = {A: [100.0, 110.0, 120.0, 130.0, 140.0], B: [100.0, 105.0]}
    back = fleet.handback(decided, 102.0, 0.0, 150.0, 10.0)
    assert back == fleet.HandBack(45.0, 3, B, 1)


def test_a_workload_never_decided_is_undecided_through_the_handback() -> None:
    back = fleet.handback({A: [], B: [95.0, 105.0]}, 100.0, 0.0, 110.0, 10.0)
    assert back == fleet.HandBack(110.0, 10, A, 1)


def test_gaps_that_end_before_the_restart_are_not_in_the_handback() -> None:
    back = fleet.handback({A: [10.0, 90.0, 100.0, 110.0]}, 95.0, 0.0, 110.5, 10.0)
    assert back.max_gap_s == 10.0
    assert back.over_bound == 0


@pytest.mark.parametrize(
    ("gap_s", "ticks"),
    [(10.0, 0), (15.0, 0), (15.1, 1), (25.0, 1), (30.0, 2), (35.0, 2), (35.1, 3), (45.0, 3)],
)
def test_ticks_undecided_in_a_gap(gap_s: float, ticks: int) -> None:
    assert fleet.ticks_undecided(gap_s, 10.0) == ticks


def test_ticks_held_without_metrics_are_counted_by_cause(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    held = [
        (False, ["timeout"]),
        (False, ["timeout"]),
        (True, ["no-data"]),  # some targets without data: the tick had its metrics
        (False, ["unreachable", "no-data"]),
        (False, []),
    ]
    result = sharded_run(tmp_path, taken_after_s=30, back_after_s=0, held=held)
    assert result.ticks_without_metrics == 4
    assert result.ticks_without_metrics_by_cause == {
        "no-data": 1,
        "timeout": 2,
        "unreachable": 1,
        "unspecified": 1,
    }
    fleet.print_table([result])
    rows = table_rows(capsys.readouterr().out)
    assert rows["ticks held without metrics (Prometheus failed), by cause"] == (
        "4 (no-data 1, timeout 2, unreachable 1, unspecified 1)"
    )


def test_a_run_with_its_metrics_has_no_ticks_held_without_them(tmp_path: Path) -> None:
    result = sharded_run(tmp_path, taken_after_s=30, back_after_s=0)
    assert result.ticks_without_metrics == 0
    assert result.ticks_without_metrics_by_cause == {}
    assert json.loads(json.dumps(asdict(result)))["ticks_without_metrics"] == 0


def _scheduler_line(at: float, job: str, words: str) -> str:
    message = f'Execution of job "run_controller.<locals>.{job} (trigger: interval[0:00:30])" {words}'
    return json.dumps({"time": _stamp(at), "level": "warning", "message": message})


def test_only_the_tick_job_s_scheduler_warnings_count_as_skipped_ticks(tmp_path: Path) -> None:
    lines = [
        *_tick(T0, [A]),
        _scheduler_line(T0 + 1, "tick", "skipped: maximum number of running instances reached (1)"),
        _scheduler_line(T0 + 2, "lease_round", "was missed by 0:00:01.2"),
        _scheduler_line(T0 + 3, "lease_round", "skipped: maximum number of running instances"),
        *_tick(T0 + 10, [A]),
    ]
    log = tmp_path / "replica-0-0.log"
    log.write_text("\n".join(lines) + "\n")
    read = fleet.read_log(0, log)
    assert (read.skipped, read.lease_rounds_late) == (1, 2)
