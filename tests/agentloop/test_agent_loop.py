"""The agent loop (`tests/agentloop/`): its pieces, and a short closed loop in real time.

Covers:
* the pod runner against the fake API server with real agent processes: a Pod object per pod, a pod
  reported Ready (Pod condition, Deployment status, endpoints, file-SD target) only after its
  `/ready` answered 200 and never during its warm-up; scale-up and scale-down (the newest pod goes,
  its process exits, its Pod object and target disappear); kube-state-metrics' ownership series;
  every process gone after `close`;
* the file-SD file: one group per target with `namespace` and `pod` labels, replaced atomically;
* arrivals: the same seed gives the same arrivals wherever the ramp is, another seed others, and
  their rate follows the day (base, ramp, peak);
* the history: past days with the ramp at the same time of day, labelled as the live scrapes are;
* the balancer: least in flight, ties in turn, and what counts as rejected;
* the comparison table: p95 latency, rejections, pod-seconds, pods ready at the ramp;
* `demo`: a bad flag is one line on stderr and exit 2;
* the closed loop, predictive only (under three minutes): the controller, deciding in predictive
  mode, raises the Deployment before the ramp and more pods than the base are ready when it comes;
  the pod runner reported every pod ready only after its `/ready` answered, never in its warm-up.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from tests.agentloop.balancer import Answer, Balancer, Outcome
from tests.agentloop.day import DAY_S, ChatDay, arrival_offsets
from tests.agentloop.demo import DEMO
from tests.agentloop.history import AgentHistory
from tests.agentloop.loadgen import LoadGenerator, RequestRecord
from tests.agentloop.loop import Moment, RunResult, run_loop
from tests.agentloop.pods import AgentSpec, Endpoint, PodRecord, PodRunner
from tests.agentloop.report import format_table, ready_at, summarize
from tests.agentloop.scrape import write_file_sd
from tests.agentloop.workload import Workload
from tests.fakekube import FakeKube
from tests.polling import wait_for
from tests.promserver import free_port, require_binaries

REPO = Path(__file__).resolve().parents[2]
# Fast agents for the unit tests: replies of 0.1 s, ready after a short warm-up.
QUICK = AgentSpec(tokens_per_second=100.0, reply_tokens=10, concurrency=2, queue_limit=1, warmup_s=2.0)
WORKLOAD = Workload()


# --- the pod runner ---------------------------------------------------------------------------------


@pytest.fixture
def cluster() -> Iterator[FakeKube]:
    with FakeKube(auto_ready=False) as fake:
        fake.add_deployment(WORKLOAD.namespace, WORKLOAD.name, replicas=1)
        yield fake


def _status(fake: FakeKube) -> dict[str, int]:
    deployment = fake.get_object("Deployment", WORKLOAD.namespace, WORKLOAD.name)
    assert deployment is not None
    return {k: int(v) for k, v in (deployment.get("status") or {}).items() if isinstance(v, int)}


def _targets(sd_file: Path) -> list[tuple[str, str, str]]:
    groups = json.loads(sd_file.read_text())
    return [(g["labels"]["namespace"], g["labels"]["pod"], g["targets"][0]) for g in groups]


def _scale(fake: FakeKube, replicas: int) -> None:
    deployment = fake.get_object("Deployment", WORKLOAD.namespace, WORKLOAD.name)
    assert deployment is not None
    deployment["spec"]["replicas"] = replicas
    fake.put_object(deployment)


def test_pod_runner_follows_replicas_and_reports_ready_only_after_the_probe(
    cluster: FakeKube, tmp_path: Path
) -> None:
    sd_file = tmp_path / "targets.json"
    runner = PodRunner(
        cluster.url, WORKLOAD, QUICK, sd_file, tmp_path / "logs", first_pods=WORKLOAD.first_pods(1)
    )
    processes: list[PodRecord] = []
    with runner:
        # Started, not ready: a Pod object exists, nothing is reported ready or scraped.
        assert wait_for(lambda: runner.existing() == 1, 5)
        first = WORKLOAD.first_pods(1)[0]
        pod = cluster.get_object("Pod", WORKLOAD.namespace, first)
        assert pod is not None
        assert pod["metadata"]["labels"] == WORKLOAD.labels
        assert _status(cluster).get("readyReplicas", 0) == 0
        assert _targets(sd_file) == []
        assert runner.ready() == ()

        assert wait_for(lambda: len(runner.ready()) == 1, 15)
        (record,) = runner.records()
        assert record.probed_ready is not None
        assert record.reported_ready is not None
        assert record.probed_ready >= record.started + QUICK.warmup_s
        assert record.reported_ready >= record.probed_ready
        assert wait_for(lambda: _status(cluster).get("readyReplicas") == 1, 5)
        status = _status(cluster)
        assert (status["replicas"], status["availableReplicas"], status["updatedReplicas"]) == (1, 1, 1)
        pod = cluster.get_object("Pod", WORKLOAD.namespace, first)
        assert pod is not None
        ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
        assert ready["Ready"] == "True"
        assert _targets(sd_file) == [(WORKLOAD.namespace, first, f"127.0.0.1:{record.port}")]
        with urllib.request.urlopen(f"http://{runner.ksm_address}/metrics", timeout=5) as answer:
            exposition = answer.read().decode()
        assert f'kube_pod_owner{{namespace="support",pod="{first}",owner_kind="ReplicaSet"' in exposition
        assert (
            'kube_replicaset_owner{namespace="support",replicaset="chat-agent-7c9d6b5f4"' in exposition
        )

        # Up: a second pod, under a generated name, ready after its own warm-up.
        _scale(cluster, 2)
        assert wait_for(lambda: len(runner.ready()) == 2, 15)
        assert wait_for(lambda: _status(cluster).get("readyReplicas") == 2, 5)
        newest = next(r for r in runner.records() if r.name != first)
        assert newest.name.startswith(WORKLOAD.replicaset + "-")

        # Down: the newest pod goes, target and Pod object first, then its process.
        _scale(cluster, 1)
        assert wait_for(lambda: [e.pod for e in runner.ready()] == [first], 5)
        assert wait_for(lambda: cluster.get_object("Pod", WORKLOAD.namespace, newest.name) is None, 5)
        assert [pod for _, pod, _ in _targets(sd_file)] == [first]
        assert wait_for(lambda: _status(cluster).get("replicas") == 1, 5)
        assert wait_for(
            lambda: next(r for r in runner.records() if r.name == newest.name).exit_code is not None, 20
        )
        processes = runner.records()
    assert runner.errors == []
    assert all(r.exit_code is not None for r in runner.records()), runner.records()
    assert {r.name for r in processes} == {first, newest.name}


def test_a_pod_warming_up_is_never_reported_ready(cluster: FakeKube, tmp_path: Path) -> None:
    slow = replace(QUICK, warmup_s=4.0)
    runner = PodRunner(cluster.url, WORKLOAD, slow, tmp_path / "sd.json", tmp_path / "logs")
    seen: list[int] = []
    with runner:
        began = time.time()
        while time.time() < began + 3.0:  # well within the warm-up, allowing for the start
            seen.append(_status(cluster).get("readyReplicas", 0) + len(runner.ready()))
            time.sleep(0.1)
        assert wait_for(lambda: len(runner.ready()) == 1, 15)
    assert set(seen) == {0}


def test_file_sd_is_one_group_per_target_and_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "targets.json"
    write_file_sd(path, "support", [("a-1", "127.0.0.1:5001"), ("a-2", "127.0.0.1:5002")])
    assert json.loads(path.read_text()) == [
        {"targets": ["127.0.0.1:5001"], "labels": {"namespace": "support", "pod": "a-1"}},
        {"targets": ["127.0.0.1:5002"], "labels": {"namespace": "support", "pod": "a-2"}},
    ]
    write_file_sd(path, "support", [])
    assert json.loads(path.read_text()) == []
    assert [p.name for p in tmp_path.iterdir()] == ["targets.json"]  # no temporary left behind


# --- arrivals, history ------------------------------------------------------------------------------


def test_arrivals_are_the_same_for_a_seed_wherever_the_ramp_is() -> None:
    day = ChatDay(2.0, 8.0, ramp_at=1_000.0, ramp_s=60.0)
    first = arrival_offsets(day, -60.0, 180.0, seed=11)
    again = arrival_offsets(day.moved_to(5_000_000.0), -60.0, 180.0, seed=11)
    other = arrival_offsets(day, -60.0, 180.0, seed=12)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert np.all(np.diff(first) >= 0)
    assert first[0] >= -60.0
    assert first[-1] < 180.0
    # The rate follows the day: 2/s before the ramp, 8/s after it.
    before = np.count_nonzero(first < 0) / 60.0
    after = np.count_nonzero(first >= 60.0) / 120.0
    assert 1.4 < before < 2.6, before
    assert 7.0 < after < 9.0, after


def test_the_day_repeats_daily_with_its_ramp_at_the_same_time() -> None:
    day = ChatDay(2.0, 8.0, ramp_at=10 * DAY_S + 3600.0, ramp_s=60.0)
    for days in (0, 1, 3):
        at = day.ramp_at - days * DAY_S
        assert day.rate(at - 1.0) == pytest.approx(2.0)
        assert day.rate(at + 30.0) == pytest.approx(5.0)
        assert day.rate(at + 600.0) == pytest.approx(8.0)


def test_history_is_labelled_as_the_live_scrapes_and_follows_the_day(tmp_path: Path) -> None:
    ramp_at = 100 * DAY_S + 7200.0
    day = ChatDay(1.5, 6.0, ramp_at, 60.0)
    history = AgentHistory(day, WORKLOAD, ramp_at - 2 * DAY_S - 600.0, ramp_at - 60.0, pods=2,
                           service_s=2.0, scrape_s=60.0)  # fmt: skip
    path = tmp_path / "history.om.txt"
    samples = history.write_openmetrics(path)
    lines = path.read_text().splitlines()
    assert lines[-1] == "# EOF"
    assert samples == sum(1 for x in lines if not x.startswith("#"))
    pod = WORKLOAD.first_pods(2)[0]
    labels = f'namespace="support",pod="{pod}",job="agents",instance="{pod}"'
    inflight = {
        float(t): float(v)
        for name, v, t in (x.split(" ") for x in lines if x.startswith("agent_inflight_requests{"))
        if labels in name
    }
    counter = [x for x in lines if x.startswith(f'agent_requests_total{{{labels},outcome="ok"}}')]
    # Two points in every 30-s rate window the controller uses.
    assert len(counter) == 4 * len(inflight)
    assert any('job="kube-state-metrics",instance="kube-state-metrics"' in x for x in lines)
    # Each past day: quiet (1.5/s x 2 s / 2 pods) before the ramp, four times that after it.
    for days in (1, 2):
        at = ramp_at - days * DAY_S
        quiet = np.mean([v for t, v in inflight.items() if at - 3600 <= t < at])
        busy = np.mean([v for t, v in inflight.items() if at + 120 <= t < at + 3600])
        assert quiet == pytest.approx(1.5, rel=0.25)
        assert busy == pytest.approx(6.0, rel=0.15)


# --- the balancer -----------------------------------------------------------------------------------


class _Stub(BaseHTTPRequestHandler):
    status = 200

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = b"{}"
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def answering_429() -> Iterator[str]:
    handler = type("Busy", (_Stub,), {"status": 429})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_balancer_sends_to_the_least_busy_pod_and_spreads_ties() -> None:
    pods = [Endpoint(f"p{i}", f"http://127.0.0.1:{i}") for i in range(3)]
    balancer = Balancer(lambda: pods)
    picked = [balancer.pick() for _ in range(6)]
    assert sorted(e.pod for e in picked if e is not None) == ["p0", "p0", "p1", "p1", "p2", "p2"]


def test_balancer_counts_429_no_pod_and_refused_connections_as_rejected(answering_429: str) -> None:
    busy = Balancer(lambda: [Endpoint("busy", answering_429)])
    assert busy.send({"message": "hi"}).cause == "429"
    nobody = Balancer(list).send({"message": "hi"})
    assert (nobody.outcome, nobody.cause, nobody.pod) == (Outcome.REJECTED, "no ready pod", None)
    refused = Balancer(lambda: [Endpoint("gone", f"http://127.0.0.1:{free_port()}")])
    answer = refused.send({"message": "hi"})
    assert (answer.outcome, answer.cause) == (Outcome.REJECTED, "connection")
    assert busy.inflight() == refused.inflight() == 0


def test_load_generator_sends_each_arrival_at_its_time() -> None:
    sent: list[float] = []

    def send(body: dict[str, object]) -> Answer:
        sent.append(time.time())
        return Answer(Outcome.OK, "200", "p0", 0.01)

    offsets = np.array([0.0, 0.1, 0.3, 0.6])
    ramp_at = time.time() + 0.2
    records = LoadGenerator(offsets, ramp_at, send).run(threading.Event())
    assert [r.index for r in records] == [0, 1, 2, 3]
    assert [r.arrival for r in records] == offsets.tolist()
    assert all(abs(at - (ramp_at + o)) < 0.1 for at, o in zip(sorted(sent), offsets, strict=True))


# --- the table --------------------------------------------------------------------------------------


def _record(index: int, arrival: float, latency: float, ok: bool = True) -> RequestRecord:
    outcome = Outcome.OK if ok else Outcome.REJECTED
    return RequestRecord(index, arrival, 0.0, latency, outcome, "200" if ok else "429", "p")


def test_summary_and_table() -> None:
    ramp_at = 1_000.0
    scenario = replace(DEMO, base_s=10.0, ramp_s=10.0, hold_s=10.0)
    # 20 answered in 1..20 s (p95 19.05 s), 5 rejected; one pod ready all along, a second from the
    # ramp on for 10 s.
    requests = [_record(i, -5.0 + i, 1.0 + i) for i in range(20)]
    requests += [_record(20 + i, 5.0, 0.0, ok=False) for i in range(5)]
    pods = [
        PodRecord("a", 1, 900.0, 950.0, 950.0),
        PodRecord("b", 2, 960.0, 999.0, 1_000.0, stopped=1_010.0),
    ]
    moments = [Moment(-10.0, 2, 1, 1), Moment(-5.0, 3, 1, 2), Moment(0.0, 3, 2, 2)]
    log = "\n".join(
        json.dumps({"time": datetime.fromtimestamp(ramp_at + at, UTC).isoformat(), "event": event,
                    "current": current, "desired": desired, "mode": mode, "reasons": reasons})
        for at, event, current, desired, mode, reasons in (
            (-9.0, "decision", 2, 2, "hold", ["metrics-missing"]),
            (-8.0, "tick", 0, 0, "", []),
            (-5.0, "decision", 2, 3, "predictive", ["predictive-scale-up"]),
            (9.0, "decision", 3, 4, "predictive", ["scale-up"]),
        )
    )  # fmt: skip
    run = RunResult("predictive", scenario, ramp_at, requests, moments, pods, [], [], [], log)
    summary = summarize(run)
    assert summary.requests == 25
    assert summary.rejected == 5
    assert summary.rejected_pct == pytest.approx(20.0)
    assert summary.p95_latency_s == pytest.approx(float(np.percentile(np.arange(1, 21), 95)))
    assert summary.ready_pod_seconds == pytest.approx(30.0 + 10.0)
    assert summary.ready_at_ramp == 2 == ready_at(pods, ramp_at)
    assert summary.desired_at_ramp == 3
    assert summary.first_scale_up_s == -5.0
    assert summary.first_scale_up_why == "predictive: predictive-scale-up"
    assert summary.rejected_by_cause == {"429": 5}
    table = format_table([summary, replace(summary, name="reactive", rejected=0)])
    assert table.splitlines()[0].split() == ["predictive", "reactive"]
    assert "5 (20.0%)" in table
    assert "0 (0.0%)" in table


def test_demo_rejects_a_bad_flag_in_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.agentloop.demo", "--hold-seconds", "5"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert "--hold-seconds" in done.stderr


# --- the closed loop --------------------------------------------------------------------------------

# The demo's day, cut short after the start of the ramp: what is checked happens before it. Under
# three minutes in all.
SHORT = replace(DEMO, base_s=70.0, ramp_s=20.0, hold_s=0.0)


def test_closed_loop_has_pods_ready_before_the_ramp(tmp_path: Path) -> None:
    require_binaries()
    began = time.monotonic()
    run = run_loop(SHORT, predictive=True, workdir=tmp_path, say=print)
    elapsed = time.monotonic() - began
    print(format_table([summarize(run)]))
    summary = summarize(run)
    assert "Traceback" not in run.controller_log, run.controller_log[-3000:]
    assert run.runner_errors == []
    # The model is fitted beside the tick: until then the controller decides as the HPA would, and
    # may follow the in-flight count's noise. It was ready before the ramp, and from then on
    # the forecast raised the Deployment ahead of the ramp; the pods were ready by then.
    fitted = [d for d in run.decisions if "fallback-model-fitting" not in d.reasons]
    assert fitted, run.decisions[-5:]
    assert fitted[0].at < 0, run.decisions[:5]
    first = next((d for d in fitted if d.desired > d.current), None)
    assert first is not None, run.moments
    assert first.at < 0, first
    assert first.mode == "predictive", first
    assert summary.ready_at_ramp > SHORT.base_pods, run.moments
    # Every pod was reported ready only after its /ready said so, never within its warm-up.
    for pod in run.pods:
        if pod.reported_ready is None:
            continue
        assert pod.probed_ready is not None, pod
        assert pod.reported_ready >= pod.probed_ready, pod
        assert pod.probed_ready >= pod.started + SHORT.agent.warmup_s, pod
    assert elapsed < 180, f"the loop took {elapsed:.0f} s"
