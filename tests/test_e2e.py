"""End to end, closed loop, in real time, as a user runs it.

A real Prometheus holds three days of a Deployment's history (backfilled with promtool) and scrapes,
every second, the load-replay process (`tests/loadreplay.py`), which plays the same daily pattern on
as many pods as the fake API server's Deployment has ready (each ready a few seconds after it was
asked for). `predictive-autoscaler run --kubeconfig … --prometheus-url …` runs as a subprocess.

The scenario: a ramp from 20 to 80 requests/s (over ten minutes) starts 90 s after the test, at the
time of day it started on each of the days before. The controller must scale the Deployment up
before the ramp arrives and keep enough pods ready as the load climbs. Then Prometheus is stopped:
the controller must hold (no scale-down, one Holding Event). Then Prometheus comes back and the
controller picks up again. The timeline is printed (`pytest -s`).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from autoscaler.config import PREFIX
from tests.fakekube import FakeKube
from tests.loadreplay import DailyRamp, History
from tests.polling import wait_for
from tests.promserver import PromServer, backfill, free_port, require_binaries

NS, NAME = "shop", "checkout"
BASE, PEAK = 20.0, 80.0
RAMP_IN_S = 90.0
CLIMB_CHECKED_S = 30  # seconds of the climb checked for capacity, before Prometheus is stopped
DAY_S = 86_400
PER_POD = 10  # requests/s one pod should carry: 2 pods at the base, 8 at the peak
ANNOTATIONS = {
    PREFIX + "enabled": "true",
    PREFIX + "metrics": "requests",
    PREFIX + "target-requests-per-pod": str(PER_POD),
    # Plan 90 s ahead, as for a service slow to start (the replay's pods are ready in 5 s): with a
    # shorter lead, whether the ramp's first 5-minute bucket is in view before the ramp depends on
    # where in its bucket the ramp starts, and the test would be at the mercy of the clock.
    PREFIX + "startup-seconds": "90",
    PREFIX + "max-replicas": "20",
    PREFIX + "confidence": "90",
}


@dataclass(frozen=True, slots=True)
class Moment:
    at: float  # seconds since the start
    wanted: int
    ready: int


class Timeline:
    """The Deployment's wanted and ready replicas, sampled while the scenario runs."""

    def __init__(self, fake: FakeKube, began: float) -> None:
        self.fake = fake
        self.began = began
        self.moments: list[Moment] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def now(self) -> float:
        return time.time() - self.began

    def _sample(self) -> None:
        while not self._stop.is_set():
            deployment = self.fake.get_object("Deployment", NS, NAME)
            if deployment is not None:
                wanted = int(deployment["spec"]["replicas"])
                ready = int(deployment.get("status", {}).get("readyReplicas", 0))
                if not self.moments or (self.moments[-1].wanted, self.moments[-1].ready) != (
                    wanted,
                    ready,
                ):
                    self.moments.append(Moment(round(self.now(), 1), wanted, ready))
            self._stop.wait(0.2)

    def at(self, second: float) -> Moment:
        """The state at `second` since the start: the last change at or before it."""
        return [m for m in list(self.moments) if m.at <= second][-1]

    def first(self, test: Callable[[Moment], bool]) -> Moment | None:
        return next((m for m in list(self.moments) if test(m)), None)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def events(fake: FakeKube) -> list[tuple[str, str]]:
    return [(str(e.get("reason")), str(e.get("message"))) for e in fake.list_objects("Event", NS)]


def scale_writes(fake: FakeKube) -> int:
    return sum(1 for r in fake.requests if r.method == "PATCH" and r.path.endswith(f"/{NAME}/scale"))


def terminate(process: subprocess.Popen[str], output: Path) -> str:
    """Stop `process` and return what it wrote (into `output`: a pipe nobody reads while the
    scenario runs would fill up and block the process on its next log line)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return output.read_text(errors="replace")


def test_closed_loop_scales_before_the_ramp_and_holds_through_an_outage(
    fake_kube: FakeKube, kubeconfig: Path, tmp_path: Path
) -> None:
    require_binaries()
    began = time.time()
    ramp_at = began + RAMP_IN_S
    pattern = DailyRamp(BASE, PEAK, ramp_at)
    replay_port = free_port()
    target = (("instance", f"127.0.0.1:{replay_port}"), ("job", "replay"))
    history = History(
        pattern, NS, NAME, began - 3 * DAY_S - 600, began, pods=2, scrape_s=15, target=target
    )
    server = PromServer(backfill(history, tmp_path / "prometheus"), scrape=[f"127.0.0.1:{replay_port}"])

    fake_kube.auto_ready = False
    fake_kube.add_deployment(NS, NAME, replicas=2, annotations=ANNOTATIONS)
    fake_kube.set_ready(NS, NAME, 2)
    replay_out, controller_out = tmp_path / "replay.log", tmp_path / "controller.log"
    with replay_out.open("w") as out:  # the child keeps its own handle
        replay = subprocess.Popen(
            [sys.executable, "-m", "tests.loadreplay", "--api", fake_kube.url, "--namespace", NS,
             "--deployment", NAME, "--port", str(replay_port), "--ramp-at", str(ramp_at),
             "--base", str(BASE), "--peak", str(PEAK), "--startup-seconds", "5",
             "--history-start", str(history.start)],
            stdout=out, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    server.start()
    with controller_out.open("w") as out:
        controller = subprocess.Popen(
            [sys.executable, "-m", "autoscaler", "run", "--kubeconfig", str(kubeconfig),
             "--prometheus-url", server.url, "--namespaces", NS, "--interval", "2s",
             "--metrics-port", "0", "--prometheus-step", "5s", "--prometheus-rate-window", "30s"],
            stdout=out, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    timeline = Timeline(fake_kube, began)
    log = ""
    try:
        # 1. Scaled up ahead of the ramp, while the load is still the base.
        assert wait_for(lambda: timeline.first(lambda m: m.wanted > 2) is not None, RAMP_IN_S)
        up = timeline.first(lambda m: m.wanted > 2)
        assert up is not None
        assert up.at < RAMP_IN_S, f"scaled up at {up.at} s, the ramp came at {RAMP_IN_S} s"
        scaled = [m for r, m in events(fake_kube) if r == "ScaledUp"]
        assert "forecast" in scaled[0], scaled[0]

        # 2. Ahead of the load as it climbs: ready pods cover it at the target rate all along.
        assert wait_for(lambda: timeline.now() > RAMP_IN_S + CLIMB_CHECKED_S, RAMP_IN_S + 60)
        short = [
            (at, ready, load)
            for at in range(int(RAMP_IN_S), int(RAMP_IN_S + CLIMB_CHECKED_S))
            if (ready := timeline.at(at).ready) * PER_POD < (load := float(pattern.rate(began + at)))
        ]
        assert not short, f"(second, ready pods, requests/s) short of capacity: {short}"

        # 3. Prometheus stops: the controller holds, and nothing is scaled while it is blind.
        outage_at = timeline.now()
        server.stop()
        assert wait_for(lambda: any(r == "Holding" for r, _ in events(fake_kube)), 20)
        held = timeline.now()
        writes, wanted = scale_writes(fake_kube), timeline.moments[-1].wanted
        time.sleep(8)  # a real-time scenario: four ticks of the controller while blind
        assert scale_writes(fake_kube) == writes
        assert timeline.moments[-1].wanted == wanted

        # 4. Prometheus is back: the controller is on its feet again.
        before = len(events(fake_kube))
        server.start()
        assert wait_for(
            lambda: any(r in ("Predictive", "Reactive") for r, _ in events(fake_kube)[before:]), 30
        )
        recovered = timeline.now()
        assert timeline.first(lambda m: m.at > outage_at and m.wanted < wanted) is None
        assert timeline.now() < 180, "the scenario finishes within three minutes"
    finally:
        timeline.close()
        log = terminate(controller, controller_out)
        replay_log = terminate(replay, replay_out)
        server.stop()
        print("events:", *events(fake_kube), sep="\n  ")
        print("controller log (tail):", *log.splitlines()[-15:], sep="\n  ")
        print("replay log:", replay_log)
    assert "tick failed" not in log
    assert "loadreplay:" not in replay_log
    print(f"\nend-to-end timeline (seconds from start; the ramp arrives at {RAMP_IN_S:g}):")
    for moment in timeline.moments:
        print(f"  {moment.at:6.1f}  wanted {moment.wanted:2d}  ready {moment.ready:2d}")
    print(f"  first scale-up {up.at:.1f}, Prometheus stopped "
          f"{outage_at:.1f}, Holding by {held:.1f}, back {recovered:.1f}")  # fmt: skip
    for reason, message in events(fake_kube):
        print(f"  event {reason}: {message}")


@pytest.fixture(autouse=True)
def _no_stray_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The replay and the controller talk to 127.0.0.1 only; a proxy from the environment must not
    intercept them."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
