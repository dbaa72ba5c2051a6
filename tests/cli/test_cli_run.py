"""`predictive-autoscaler run` as a process against the fake API server.

Covers: bad flags exit 2 with one line; with Prometheus unreachable the loop keeps ticking, holds
(an Event says so, nothing is patched) and stops cleanly on SIGTERM with status 0; two processes with
`--leader-elect`: exactly one acts, and when it stops the other takes over within the lease duration;
two with `--shards 2`: the shard the first hands over is decided by the second's tick at once, not an
interval on, and neither skips a tick.

Fed by a real Prometheus (`prometheus_live`): mode replicas patches the scale to what the load needs;
dry-run patches nothing and records the decision in an Event; mode hpa raises the HPA floor and,
when `kubectl annotate` makes the load fit one pod, restores it; a replicas-mode Deployment that an
HPA scales is refused with one Event; Prometheus stopped mid-run → hold, no scale write, then
recovery; slow API responses delay ticks but fail none.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from autoscaler.config import PREFIX, STATUS_KEY
from autoscaler.patches import ORIGINAL_MIN_KEY
from tests.fakekube import FakeKube
from tests.polling import wait_for
from tests.promserver import PromEnv, PromServer

NS = "shop"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(kubeconfig: Path, *extra: str, prometheus_url: str | None = None) -> subprocess.Popen[str]:
    url = prometheus_url or f"http://127.0.0.1:{closed_port()}"
    env = {**os.environ, "PREDICTIVE_AUTOSCALER_PROMETHEUS_URL": url}
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


def holding_events(fake: FakeKube) -> list[str]:
    return [
        str(e.get("message")) for e in fake.list_objects("Event", NS) if e.get("reason") == "Holding"
    ]


Launcher = Callable[..., tuple[subprocess.Popen[str], "Lines"]]


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


def logged(lines: Lines, event: str) -> list[dict[str, Any]]:
    found = [json.loads(line) for line in list(lines.lines) if line.startswith("{")]
    return [entry for entry in found if entry.get("event") == event]


def test_a_shard_handed_over_is_decided_at_once_not_an_interval_on(
    fake_kube: FakeKube, running: Launcher
) -> None:
    """Two shards and a five-minute interval, which the test never waits out: the second replica
    asks the first for a shard, and when it takes it, it ticks at once; the first, which only lost
    one, ticks no more than at its start; neither skips a tick."""
    fake_kube.add_deployment(NS, "web", replicas=5, annotations={PREFIX + "enabled": "true"})
    fake_kube.add_namespace("ops")
    flags = ["--leader-elect", "--shards", "2", "--lease-namespace", "ops", "--lease-duration", "4s",
             "--renew-deadline", "3s", "--retry-period", "1s", "--interval", "5m"]  # fmt: skip
    prometheus = f"http://127.0.0.1:{closed_port()}"

    def holder(shard: int) -> str:
        lease = fake_kube.get_object("Lease", "ops", f"predictive-autoscaler-{shard}")
        return "" if lease is None else str(lease["spec"].get("holderIdentity") or "")

    _, first = running(*flags, "--identity", "first", prometheus_url=prometheus)
    assert wait_for(lambda: first.count('"event": "tick"') == 1)
    assert wait_for(lambda: holder(0) == holder(1) == "first")
    _, second = running(*flags, "--identity", "second", prometheus_url=prometheus)
    assert wait_for(lambda: len(logged(second, "shards_gained")) == 1, timeout_s=60)
    [gained] = logged(second, "shards_gained")
    assert wait_for(lambda: second.count('"event": "tick"') == 2), "ticked at once"
    assert holder(gained["shards"][0]) == "second"
    assert {holder(0), holder(1)} == {"first", "second"}
    assert logged(first, "shards_gained") == []
    assert first.count('"event": "tick"') == 1, "losing a shard wakes nothing"
    for lines in (first, second):
        # About the tick job; a lease round on a busy machine may be late, which is not a tick.
        skips = [line for line in lines.lines if "maximum number of running instances" in line]
        assert not [line for line in skips if ".tick (trigger" in line]


# --- fed by a real Prometheus ---------------------------------------------------------------------
# `prometheus_live` serves two Deployments of shop, web and api, with a steady 60 and 75 requests/s
# around the wall clock; at 10 requests/s per pod that asks for 6 and 8 replicas.

REQUESTS_ON = {
    PREFIX + "enabled": "true",
    PREFIX + "metrics": "requests",
    PREFIX + "target-requests-per-pod": "10",
    PREFIX + "startup-seconds": "30",
}
WANTED = range(5, 13)  # 6 or 8, with room for the forecast's interval


def reasons(fake: FakeKube) -> list[str]:
    return [str(e.get("reason")) for e in fake.list_objects("Event", NS)]


def replicas_of(fake: FakeKube, name: str) -> int:
    deployment = fake.get_object("Deployment", NS, name)
    assert deployment is not None
    return int(deployment["spec"]["replicas"])


def workload_writes(fake: FakeKube) -> list[str]:
    """Writes to Deployments and HPAs (Events and Leases are the controller's own records)."""
    return [
        f"{r.method} {r.path}"
        for r in fake.requests
        if r.method in ("PATCH", "PUT", "POST", "DELETE")
        and ("/deployments" in r.path or "/horizontalpodautoscalers" in r.path)
    ]


def scale_writes(fake: FakeKube) -> list[str]:
    return [w for w in workload_writes(fake) if w.endswith("/scale")]


@pytest.fixture
def running(kubeconfig: Path) -> Iterator[Launcher]:
    """Starts `run` processes and stops each one at the end, whatever the test did."""
    started: list[tuple[subprocess.Popen[str], Lines]] = []

    def launch(*extra: str, prometheus_url: str) -> tuple[subprocess.Popen[str], Lines]:
        process = start(kubeconfig, *extra, prometheus_url=prometheus_url)
        started.append((process, Lines(process)))
        return started[-1]

    yield launch
    for process, lines in started:
        if process.poll() is None:
            code, err = stop(process, lines)
            assert code == 0, err
        assert "tick failed" not in lines.join(), "no tick may die of an exception"


def test_run_replicas_mode_scales_to_the_load_in_prometheus(
    fake_kube: FakeKube, prometheus_live: PromEnv, running: Launcher
) -> None:
    fake_kube.add_deployment(NS, "web", replicas=2, annotations=REQUESTS_ON)
    running(prometheus_url=prometheus_live.url)
    assert wait_for(lambda: replicas_of(fake_kube, "web") != 2, timeout_s=60)
    assert replicas_of(fake_kube, "web") in WANTED

    def status_annotation() -> str | None:
        web = fake_kube.get_object("Deployment", NS, "web")
        assert web is not None
        found = web["metadata"].get("annotations", {}).get(STATUS_KEY)
        return None if found is None else str(found)

    # The Event and the status annotation follow the scale patch, in the same tick.
    assert wait_for(lambda: status_annotation() is not None and "ScaledUp" in reasons(fake_kube))
    writes = workload_writes(fake_kube)
    scale = f"PATCH /apis/apps/v1/namespaces/{NS}/deployments/web/scale"
    annotate = f"PATCH /apis/apps/v1/namespaces/{NS}/deployments/web"
    assert scale in writes
    assert set(writes) == {scale, annotate}
    status = json.loads(status_annotation() or "{}")
    assert status["target"] == replicas_of(fake_kube, "web")
    assert status["mode"] in ("predictive", "reactive")


def test_run_dry_run_patches_nothing_and_records_its_decision(
    fake_kube: FakeKube, prometheus_live: PromEnv, running: Launcher
) -> None:
    fake_kube.add_deployment(NS, "web", replicas=2, annotations=REQUESTS_ON)
    _, lines = running("--dry-run", prometheus_url=prometheus_live.url)
    assert wait_for(lambda: "DryRun" in reasons(fake_kube), timeout_s=60)
    assert wait_for(lambda: lines.count('"event": "tick"') >= 3)
    messages = [
        str(e.get("message")) for e in fake_kube.list_objects("Event", NS) if e.get("reason") == "DryRun"
    ]
    assert messages[0].startswith("would set replicas 2→"), messages[0]
    assert workload_writes(fake_kube) == []
    assert replicas_of(fake_kube, "web") == 2


def test_run_hpa_mode_moves_the_floor_up_and_back(
    fake_kube: FakeKube, prometheus_live: PromEnv, running: Launcher, kubeconfig: Path
) -> None:
    annotations = {
        **REQUESTS_ON,
        PREFIX + "mode": "hpa",
        PREFIX + "scale-down-stabilization-seconds": "0",
    }
    fake_kube.add_deployment(NS, "api", replicas=2, annotations=annotations)
    fake_kube.add_hpa(NS, "api", "api", min_replicas=2, max_replicas=20)

    def hpa() -> dict[str, Any]:
        found = fake_kube.get_object("HorizontalPodAutoscaler", NS, "api")
        assert found is not None
        return found

    running(prometheus_url=prometheus_live.url)
    assert wait_for(lambda: hpa()["spec"]["minReplicas"] != 2, timeout_s=60)
    assert hpa()["spec"]["minReplicas"] in WANTED
    assert hpa()["metadata"]["annotations"][ORIGINAL_MIN_KEY] == "2"
    assert wait_for(lambda: "RaisedHPAFloor" in reasons(fake_kube)), "the Event follows the patch"
    assert replicas_of(fake_kube, "api") == 2, "the HPA scales the Deployment, not us"

    def kubectl(*args: str) -> str:
        cache = str(kubeconfig.parent / "kubectl-cache")
        command = ["kubectl", "--kubeconfig", str(kubeconfig), "--cache-dir", cache, "-n", NS, *args]
        return subprocess.run(command, check=True, capture_output=True, text=True, timeout=30).stdout

    # What a user sees of it.
    raised = hpa()["spec"]["minReplicas"]
    assert kubectl("get", "hpa", "api", "-o", "jsonpath={.spec.minReplicas}") == str(raised)
    assert "RaisedHPAFloor" in kubectl("get", "events")

    # The load now fits in one pod: the floor goes back to the owner's.
    kubectl("annotate", "deploy", "api", f"{PREFIX}target-requests-per-pod=1000", "--overwrite")
    assert wait_for(lambda: hpa()["spec"]["minReplicas"] == 2, timeout_s=30)
    assert ORIGINAL_MIN_KEY not in hpa()["metadata"].get("annotations", {})
    assert wait_for(lambda: "RestoredHPAFloor" in reasons(fake_kube))
    floor = f"PATCH /apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers/api"
    status_annotation = f"PATCH /apis/apps/v1/namespaces/{NS}/deployments/api"
    assert set(workload_writes(fake_kube)) == {floor, status_annotation}


def test_run_refuses_replicas_mode_on_a_deployment_an_hpa_scales(
    fake_kube: FakeKube, prometheus_live: PromEnv, running: Launcher
) -> None:
    fake_kube.add_deployment(NS, "web", replicas=2, annotations=REQUESTS_ON)
    fake_kube.add_hpa(NS, "web", "web", min_replicas=2, max_replicas=20)
    _, lines = running(prometheus_url=prometheus_live.url)
    assert wait_for(lambda: "RefusedHPAConflict" in reasons(fake_kube), timeout_s=60)
    assert wait_for(lambda: lines.count('"event": "tick"') >= 3)
    assert reasons(fake_kube).count("RefusedHPAConflict") == 1
    assert workload_writes(fake_kube) == []


def test_run_holds_through_a_prometheus_outage_and_recovers(
    fake_kube: FakeKube, prometheus_live: PromEnv, running: Launcher, tmp_path: Path
) -> None:
    server = PromServer(PromServer.copy_blocks(prometheus_live.server.tsdb, tmp_path / "tsdb"))
    server.start()
    try:
        fake_kube.add_deployment(NS, "web", replicas=2, annotations=REQUESTS_ON)
        _, lines = running(prometheus_url=server.url)
        assert wait_for(lambda: replicas_of(fake_kube, "web") != 2, timeout_s=60)
        scaled_to, writes_before = replicas_of(fake_kube, "web"), len(scale_writes(fake_kube))

        server.stop()
        assert wait_for(lambda: "Holding" in reasons(fake_kube), timeout_s=30)
        ticks = lines.count('"event": "tick"')
        assert wait_for(lambda: lines.count('"event": "tick"') >= ticks + 3)
        assert replicas_of(fake_kube, "web") == scaled_to
        assert len(scale_writes(fake_kube)) == writes_before, "nothing is scaled blind"

        footing = len(reasons(fake_kube))
        server.start()
        # Back on its feet: a Predictive or Reactive Event follows the Holding one.
        assert wait_for(
            lambda: any(r in ("Predictive", "Reactive") for r in reasons(fake_kube)[footing:]),
            timeout_s=30,
        )
        assert replicas_of(fake_kube, "web") in WANTED
    finally:
        server.stop()


def test_run_survives_slow_api_responses(
    fake_kube: FakeKube, prometheus_live: PromEnv, running: Launcher
) -> None:
    """A scale patch that takes longer than several ticks: later ticks wait (one at a time), none
    fails, and the patch lands once."""
    fake_kube.add_deployment(NS, "web", replicas=2, annotations=REQUESTS_ON)
    fake_kube.slow(r"/deployments/web/scale", 4.0, times=1)
    fake_kube.slow(r"/namespaces/shop/events", 2.0, times=2)
    _, lines = running(prometheus_url=prometheus_live.url)
    assert wait_for(lambda: replicas_of(fake_kube, "web") != 2, timeout_s=60)
    assert wait_for(lambda: lines.count('"event": "tick"') >= 6, timeout_s=30)
    assert replicas_of(fake_kube, "web") in WANTED
    assert scale_writes(fake_kube) == [f"PATCH /apis/apps/v1/namespaces/{NS}/deployments/web/scale"]
