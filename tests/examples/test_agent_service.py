"""The example workload, examples/agent-service/agent_service.py, run for real as a process.

Covers: warm-up (/ready and /v1/chat answer 503 until it has passed); a reply has the asked number
of tokens and the tokens counter grows by it; the reply length defaults to --reply-tokens, here from
its environment variable; past concurrency + queue-limit simultaneous requests the rest get 429 at
once and are counted as rejected; the in-flight and queue-depth gauges follow running requests and
return to 0; a request that queued takes longer than its generation alone; malformed requests get
400 with a JSON error; a bad flag or environment variable exits non-zero with one line on stderr;
SIGTERM and SIGINT exit 0, after answering the requests already admitted.

Generation runs at RATE tokens per second, so 100 tokens take half a second: fast enough for the
whole file to take seconds, slow enough for requests to overlap on purpose.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "agent-service" / "agent_service.py"
RATE = 200.0  # tokens per second
SLOTS = 2
QUEUE = 2


@dataclass(frozen=True)
class Service:
    process: subprocess.Popen[str]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]
    seconds: float  # as the client saw it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(*flags: str, env: Mapping[str, str] | None = None, port: int = 0) -> subprocess.Popen[str]:
    # The test's own environment must not configure the service behind its back.
    clean = {name: value for name, value in os.environ.items() if not name.startswith("AGENT_")}
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), "--host", "127.0.0.1", "--port", str(port), *flags],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**clean, **(env or {})},
    )


@contextlib.contextmanager
def running(*flags: str, env: Mapping[str, str] | None = None) -> Iterator[Service]:
    """The service on a free port, answering /health; stopped (and reaped) afterwards."""
    port = free_port()
    service = Service(spawn(*flags, env=env, port=port), port)
    try:
        wait_for(lambda: status_of(service, "/health") == 200, "/health", service)
        yield service
    finally:
        if service.process.poll() is None:
            service.process.kill()
        service.process.communicate(timeout=10)


def wait_for(condition: Callable[[], bool], what: str, service: Service, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if service.process.poll() is not None:
            pytest.fail(f"the service exited ({service.process.returncode}) before {what}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def fetch(url: str, body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), bytes(error.read())


def status_of(service: Service, path: str) -> int:
    try:
        return fetch(service.url + path)[0]
    except OSError:  # not listening yet
        return 0


def post_chat(service: Service, body: bytes) -> Reply:
    start = time.monotonic()
    status, raw = fetch(service.url + "/v1/chat", body)
    return Reply(status, json.loads(raw), time.monotonic() - start)


def chat(service: Service, max_tokens: int | None = None) -> Reply:
    payload: dict[str, Any] = {"message": "my order has not arrived"}
    if max_tokens is not None:
        payload["max_tokens"] = max_tokens
    return post_chat(service, json.dumps(payload).encode())


@contextlib.contextmanager
def chats_underway(service: Service, count: int, max_tokens: int) -> Iterator[list[Future[Reply]]]:
    """`count` chats sent at the same moment, on their own threads; all answered on leaving."""
    barrier = threading.Barrier(count)

    def one() -> Reply:
        barrier.wait(timeout=10)
        return chat(service, max_tokens)

    with ThreadPoolExecutor(count) as pool:
        yield [pool.submit(one) for _ in range(count)]


def chat_together(service: Service, count: int, max_tokens: int) -> list[Reply]:
    with chats_underway(service, count, max_tokens) as futures:
        return [future.result() for future in futures]


def metrics(service: Service) -> dict[str, float]:
    """Every sample of /metrics, keyed as name{label="value"}."""
    status, raw = fetch(service.url + "/metrics")
    assert status == 200
    samples = {}
    for family in text_string_to_metric_families(raw.decode()):
        for sample in family.samples:
            labels = ",".join(f'{key}="{value}"' for key, value in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def requests_total(outcome: str) -> str:
    return f'agent_requests_total{{outcome="{outcome}"}}'


@pytest.fixture(scope="module")
def agent() -> Iterator[Service]:
    """One service for the tests that leave it as they found it: no warm-up, two slots, two queued.

    The reply length comes from the environment; the concurrency is set both ways, and the flag's
    value is the one that the overload test sees.
    """
    env = {"AGENT_REPLY_TOKENS": "30", "AGENT_CONCURRENCY": "9"}
    flags = ["--concurrency", str(SLOTS), "--queue-limit", str(QUEUE)]
    flags += ["--tokens-per-second", str(RATE), "--warmup-seconds", "0"]
    with running(*flags, env=env) as service:
        wait_for(lambda: status_of(service, "/ready") == 200, "/ready", service)
        yield service


def test_not_ready_during_warm_up_then_ready() -> None:
    warmup = 2.5
    spawned = time.monotonic()
    with running("--warmup-seconds", str(warmup), "--tokens-per-second", str(RATE)) as service:
        assert time.monotonic() - spawned < warmup / 2, "started too slowly to see the warm-up"
        assert status_of(service, "/ready") == 503
        assert chat(service, 5).status == 503
        before = metrics(service)
        assert before["agent_ready"] == 0
        assert before[requests_total("rejected")] == 1

        wait_for(lambda: status_of(service, "/ready") == 200, "/ready", service)
        assert time.monotonic() - spawned >= warmup
        assert metrics(service)["agent_ready"] == 1
        assert chat(service, 5).status == 200


def test_chat_reply_has_the_asked_tokens_and_counts_them(agent: Service) -> None:
    before = metrics(agent)
    reply = chat(agent, 50)
    after = metrics(agent)

    assert reply.status == 200
    assert reply.body["tokens"] == 50
    assert len(reply.body["reply"].split()) == 50
    assert reply.body["seconds"] >= 50 / RATE * 0.9
    assert after["agent_tokens_generated_total"] - before["agent_tokens_generated_total"] == 50
    assert after[requests_total("ok")] - before[requests_total("ok")] == 1
    count = "agent_request_duration_seconds_count"
    assert after[count] - before[count] == 1
    assert not [name for name in after if "_created" in name]


def test_reply_length_defaults_to_reply_tokens_from_the_environment(agent: Service) -> None:
    reply = chat(agent)
    assert reply.status == 200
    assert reply.body["tokens"] == 30


def test_requests_beyond_concurrency_and_queue_get_429(agent: Service) -> None:
    before = metrics(agent)
    sent = SLOTS + QUEUE + 3
    replies = chat_together(agent, sent, max_tokens=200)
    after = metrics(agent)

    statuses = sorted(reply.status for reply in replies)
    assert statuses == [200] * (SLOTS + QUEUE) + [429] * 3
    rejected = [reply for reply in replies if reply.status == 429]
    assert all(reply.seconds < 200 / RATE / 2 for reply in rejected), "rejected at once"
    assert all("error" in reply.body for reply in rejected)
    assert after[requests_total("rejected")] - before[requests_total("rejected")] == 3
    assert after[requests_total("ok")] - before[requests_total("ok")] == SLOTS + QUEUE


def test_inflight_gauge_follows_running_requests_back_to_zero(agent: Service) -> None:
    seen: list[dict[str, float]] = []

    def all_admitted() -> bool:
        seen.append(metrics(agent))
        return seen[-1]["agent_inflight_requests"] == SLOTS + 1

    with chats_underway(agent, SLOTS + 1, max_tokens=200) as futures:
        wait_for(all_admitted, "all requests in flight", agent)
        assert seen[-1]["agent_queue_depth"] == 1
        assert all(future.result().status == 200 for future in futures)
    after = metrics(agent)
    assert after["agent_inflight_requests"] == 0
    assert after["agent_queue_depth"] == 0


def test_a_queued_request_takes_longer_than_its_generation(agent: Service) -> None:
    generation = 100 / RATE
    replies = chat_together(agent, SLOTS + 1, max_tokens=100)
    assert all(reply.status == 200 for reply in replies)

    last = max(replies, key=lambda reply: reply.body["queued_seconds"])
    # It waited for a slot about as long as the first two took to generate, then generated.
    assert last.body["queued_seconds"] >= generation * 0.5
    assert last.body["seconds"] >= last.body["queued_seconds"] + generation * 0.9
    assert last.seconds > generation * 1.3


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'{"max_tokens": 5}',
        b'{"message": 7}',
        b'{"message": "hi", "max_tokens": 0}',
        b'{"message": "hi", "max_tokens": 4097}',
        b'{"message": "hi", "max_tokens": "5"}',
        b'{"message": "hi", "max_tokens": true}',
        b'{"message": "' + b"x" * 70_000 + b'"}',  # over the 64 KiB limit
    ],
)
def test_malformed_chat_is_a_400_with_a_json_error(agent: Service, body: bytes) -> None:
    before = metrics(agent)
    reply = post_chat(agent, body)
    after = metrics(agent)

    assert reply.status == 400
    assert isinstance(reply.body["error"], str)
    assert after[requests_total("error")] - before[requests_total("error")] == 1
    assert after[requests_total("ok")] == before[requests_total("ok")]


@pytest.mark.parametrize(
    ("flags", "env", "named"),
    [
        (["--concurrency", "0"], {}, "--concurrency"),
        (["--tokens-per-second", "-1"], {}, "--tokens-per-second"),
        (["--queue-limit", "many"], {}, "--queue-limit"),
        (["--reply-tokens", "5000"], {}, "--reply-tokens"),
        (["--no-such-flag"], {}, "--no-such-flag"),
        ([], {"AGENT_WARMUP_SECONDS": "soon"}, "AGENT_WARMUP_SECONDS"),
    ],
)
def test_bad_flag_exits_non_zero_with_one_line(
    flags: list[str], env: dict[str, str], named: str
) -> None:
    process = spawn(*flags, env=env)
    try:
        _, stderr = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail("it ran instead of refusing the flag")
    assert process.returncode != 0
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert named in lines[0]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_it_with_exit_0(signum: signal.Signals) -> None:
    with running("--warmup-seconds", "0") as service:
        service.process.send_signal(signum)
        assert service.process.wait(timeout=10) == 0


def test_sigterm_answers_admitted_requests_before_exiting() -> None:
    with running("--warmup-seconds", "0", "--tokens-per-second", str(RATE)) as service:
        with ThreadPoolExecutor(1) as pool:
            future = pool.submit(chat, service, 200)
            wait_for(lambda: metrics(service)["agent_inflight_requests"] == 1, "admitted", service)
            service.process.send_signal(signal.SIGTERM)
            assert future.result().status == 200
        assert service.process.wait(timeout=10) == 0
