"""`predictive-autoscaler run` as a process against the fake API server.

Covers: bad flags exit 2 with one line; with Prometheus unreachable the loop keeps ticking, holds
(an Event says so, nothing is patched) and stops cleanly on SIGTERM with status 0; two processes with
`--leader-elect`: exactly one acts, and when it stops the other takes over within the lease duration.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from autoscaler.config import PREFIX
from tests.fakekube import FakeKube

NS = "shop"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(kubeconfig: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PREDICTIVE_AUTOSCALER_PROMETHEUS_URL": f"http://127.0.0.1:{closed_port()}"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "autoscaler",
            "run",
            "--kubeconfig",
            str(kubeconfig),
            "--interval",
            "1s",
            "--metrics-port",
            "0",
            "--namespaces",
            NS,
            *extra,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def holding_events(fake: FakeKube) -> list[str]:
    return [
        str(e.get("message")) for e in fake.list_objects("Event", NS) if e.get("reason") == "Holding"
    ]


class Lines:
    """Collects a process's stderr (JSON log lines) as it is written."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert process.stderr is not None
        stream = process.stderr
        self._thread = threading.Thread(target=lambda: self.lines.extend(stream), daemon=True)
        self._thread.start()

    def count(self, fragment: str) -> int:
        return sum(1 for line in list(self.lines) if fragment in line)

    def join(self) -> str:
        self._thread.join(timeout=30)
        return "".join(self.lines)


def stop(process: subprocess.Popen[str], lines: Lines) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
    return process.returncode, lines.join()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--interval", "0s"], "--interval", id="interval-zero"),
        pytest.param(["--interval", "soon"], "--interval", id="interval-not-a-duration"),
        pytest.param(["--metrics-port", "70000"], "--metrics-port", id="port-out-of-range"),
        pytest.param(["--namespaces", "Shop_1"], "--namespaces", id="namespace-invalid"),
        pytest.param(
            ["--leader-elect", "--renew-deadline", "20s"], "renew deadline", id="deadline-above-lease"
        ),
        pytest.param(["--kubeconfig", "/nonexistent"], "--kubeconfig", id="kubeconfig-missing"),
    ],
)
def test_bad_flags_exit_2_with_one_line(args: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "autoscaler", "run", "--prometheus-url", "http://127.0.0.1:1", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert message in lines[0]


def test_prometheus_down_holds_and_stops_cleanly(fake_kube: FakeKube, kubeconfig: Path) -> None:
    fake_kube.add_deployment(NS, "web", replicas=5, annotations={PREFIX + "enabled": "true"})
    process = start(kubeconfig)
    lines = Lines(process)
    try:
        assert wait_for(lambda: lines.count('"event": "tick"') >= 3), "the loop keeps ticking"
    finally:
        code, err = stop(process, lines)
    assert code == 0, err
    assert "controller stopped" in err
    assert len(holding_events(fake_kube)) == 1, "one Event for the hold, not one per tick"
    web = fake_kube.get_object("Deployment", NS, "web")
    assert web is not None
    assert web["spec"]["replicas"] == 5
    assert not [r for r in fake_kube.requests if r.path.endswith("/scale")]


def test_two_processes_one_leader_and_takeover(fake_kube: FakeKube, kubeconfig: Path) -> None:
    fake_kube.add_deployment(NS, "web", replicas=5, annotations={PREFIX + "enabled": "true"})
    fake_kube.add_namespace("ops")
    lease = [
        "--leader-elect",
        "--lease-namespace",
        "ops",
        "--lease-duration",
        "4s",
        "--renew-deadline",
        "3s",
        "--retry-period",
        "1s",
    ]
    first = start(kubeconfig, *lease, "--identity", "first")
    first_lines = Lines(first)
    assert wait_for(lambda: len(holding_events(fake_kube)) == 1)
    second = start(kubeconfig, *lease, "--identity", "second")
    second_lines = Lines(second)
    try:
        # Several ticks of both: only the leader acts (the follower would add its own Event).
        assert wait_for(lambda: second_lines.count('"event": "tick"') >= 3)
        assert len(holding_events(fake_kube)) == 1
        leader = fake_kube.get_object("Lease", "ops", "predictive-autoscaler")
        assert leader is not None
        assert leader["spec"]["holderIdentity"] == "first"
        stopped_at = time.monotonic()
        code, _ = stop(first, first_lines)
        assert code == 0
        assert wait_for(lambda: len(holding_events(fake_kube)) == 2, timeout_s=10)
        assert time.monotonic() - stopped_at < 4 + 2, "taken over within the lease duration"
        leader = fake_kube.get_object("Lease", "ops", "predictive-autoscaler")
        assert leader is not None
        assert leader["spec"]["holderIdentity"] == "second"
    finally:
        for process, lines in ((first, first_lines), (second, second_lines)):
            if process.poll() is None:
                stop(process, lines)
