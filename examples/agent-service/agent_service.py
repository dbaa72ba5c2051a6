"""A support agent that behaves like an LLM-backed chat service, without a model.

It is the autoscaler's example workload: each reply is "generated" token by token at a fixed speed,
only --concurrency replies are generated at once, and further requests wait in a bounded queue (429
beyond it). Latency therefore grows with load the way a real model server's does, and the number
of admitted requests (agent_inflight_requests) is the per-pod concurrency signal to scale on.
A warm-up period stands in for loading a model: /ready and /v1/chat answer 503 until it has passed.

    python agent_service.py --port 5000 --concurrency 4 --tokens-per-second 40

Every flag can also come from an environment variable, AGENT_ plus its upper-case name
(AGENT_TOKENS_PER_SECOND=40); a flag given on the command line wins. Endpoints: POST /v1/chat,
GET /ready, /health and /metrics. SIGTERM or SIGINT stops taking connections, lets the requests
already admitted finish (for at most DRAIN_SECONDS; a second signal cuts that short) and exits 0.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any, NoReturn

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

MAX_TOKENS = 4096
MAX_BODY_BYTES = 64 * 1024
# Tokens are counted as they are produced, so a scrape mid-reply sees the rate, not bursts.
TICK_SECONDS = 0.05
# Within Kubernetes' default 30 s grace period, and longer than the last of a full queue takes with
# the defaults (8 waiting behind 4 slots: three rounds of 3 s replies).
DRAIN_SECONDS = 10.0
DURATION_BUCKETS = (0.25, 0.5, 1, 2, 4, 8, 16, 32, 64)
# The listen backlog: a burst of new connections must not overflow the default of 5.
LISTEN_BACKLOG = 128
# An idle keep-alive connection holds a thread; this bounds how long.
IDLE_CONNECTION_SECONDS = 60
CANNED_REPLY = (
    "Thanks for reaching out. I have looked into your account and the issue you describe is known: "
    "a recent change delayed some updates. Please sign out, clear the cache of the app and sign in "
    "again. If the problem persists, reply with the order number and I will escalate it to the team "
    "that owns billing, who usually answer within one business day."
)
WORDS = tuple(CANNED_REPLY.split())


# --- configuration ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    host: str
    port: int
    tokens_per_second: float
    reply_tokens: int
    concurrency: int
    queue_limit: int
    warmup_seconds: float


def int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer within [low, high]."""
    bound = f">= {low}" if high is None else f"in {low}..{high}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer {bound}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value

    return parse


def float_from(low: float, *, inclusive: bool) -> Callable[[str], float]:
    """An argparse type: a finite number >= low (or > low)."""
    bound = f"{'>=' if inclusive else '>'} {low:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number {bound}, got {text!r}") from None
        if not math.isfinite(value) or value < low or (value == low and not inclusive):
            raise argparse.ArgumentTypeError(f"must be a finite number {bound}, got {text}")
        return value

    return parse


def non_empty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


@dataclass(frozen=True)
class Flag:
    name: str
    parse: Callable[[str], Any]
    default: Any
    help: str

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    @property
    def env(self) -> str:
        return "AGENT_" + self.dest.upper()


FLAGS = (
    Flag("host", non_empty, "0.0.0.0", "address to listen on"),
    Flag("port", int_in(0, 65535), 5000, "port to listen on (0: any free port)"),
    Flag("tokens-per-second", float_from(0, inclusive=False), 40.0, "generation speed of one reply"),
    Flag("reply-tokens", int_in(1, MAX_TOKENS), 120, "tokens per reply unless max_tokens is asked"),
    Flag("concurrency", int_in(1), 4, "replies generated at once"),
    Flag("queue-limit", int_in(0), 8, "requests that may wait for a slot; more get 429"),
    Flag("warmup-seconds", float_from(0, inclusive=True), 20.0, "time before /ready turns 200"),
)


class OneLineParser(argparse.ArgumentParser):
    """Reports a bad flag in one line: the usage block would bury it in a pod's log."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_config(argv: Sequence[str] | None, environ: Mapping[str, str]) -> Config:
    parser = OneLineParser(prog="agent_service", description="A simulated LLM support agent.")
    for flag in FLAGS:
        parser.add_argument(
            f"--{flag.name}",
            type=flag.parse,
            default=None,
            help=f"{flag.help} (env {flag.env}; default {flag.default})",
        )
    given = vars(parser.parse_args(argv))
    values = {flag.dest: resolve(flag, given[flag.dest], environ, parser) for flag in FLAGS}
    return Config(**values)


def resolve(flag: Flag, given: Any, environ: Mapping[str, str], parser: argparse.ArgumentParser) -> Any:
    """The flag's value if given, else its environment variable's, else its default."""
    if given is not None:
        return given
    raw = environ.get(flag.env)
    if raw is None:
        return flag.default
    try:
        return flag.parse(raw)
    except argparse.ArgumentTypeError as error:
        parser.error(f"{flag.env}: {error}")


# --- admission: generation slots and a bounded FIFO queue ------------------------------------------


class Admission:
    """Up to `slots` requests generate at once; up to `queue_limit` more wait, in arrival order."""

    def __init__(self, slots: int, queue_limit: int) -> None:
        self._slots = slots
        self._queue_limit = queue_limit
        self._cond = threading.Condition()
        self._generating = 0
        self._waiting = 0
        # Tickets keep the queue in arrival order: a waiter takes a slot only when its turn comes.
        self._tickets = itertools.count()
        self._next_served = 0

    def enter(self) -> bool:
        """Takes a slot, waiting in the queue if need be; False at once when the queue is full."""
        with self._cond:
            if self._waiting == 0 and self._generating < self._slots:
                self._generating += 1
                return True
            if self._waiting >= self._queue_limit:
                return False
            self._waiting += 1
            ticket = next(self._tickets)
            self._cond.wait_for(lambda: ticket == self._next_served and self._generating < self._slots)
            self._waiting -= 1
            self._generating += 1
            self._next_served += 1
            # The next waiter may be able to go too (several slots freed at once).
            self._cond.notify_all()
            return True

    def leave(self) -> None:
        with self._cond:
            self._generating -= 1
            self._cond.notify_all()

    def inflight(self) -> int:
        with self._cond:
            return self._waiting + self._generating

    def waiting(self) -> int:
        with self._cond:
            return self._waiting


# --- the agent -------------------------------------------------------------------------------------


class BadRequest(Exception):
    pass


@dataclass(frozen=True)
class Response:
    status: HTTPStatus
    payload: dict[str, Any]


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "agent_requests", "Chat requests by outcome: ok, rejected (429/503) or error.",
            ["outcome"], registry=registry,
        )  # fmt: skip
        for outcome in ("ok", "rejected", "error"):
            self.requests.labels(outcome)  # every series from the start, so rate() sees the first
        self.inflight = Gauge(
            "agent_inflight_requests", "Chat requests admitted and not finished.", registry=registry
        )
        self.queue_depth = Gauge(
            "agent_queue_depth", "Chat requests waiting for a generation slot.", registry=registry
        )
        self.tokens = Counter("agent_tokens_generated", "Tokens generated.", registry=registry)
        self.duration = Histogram(
            "agent_request_duration_seconds", "Time from arrival to reply of ok chat requests.",
            buckets=DURATION_BUCKETS, registry=registry,
        )  # fmt: skip
        self.ready = Gauge("agent_ready", "1 once warmed up and not stopping.", registry=registry)


class Agent:
    def __init__(self, config: Config, started: float) -> None:
        self.config = config
        self.registry = CollectorRegistry(auto_describe=True)
        self.metrics = Metrics(self.registry)
        self.admission = Admission(config.concurrency, config.queue_limit)
        self.stopping = threading.Event()
        self._ready_at = started + config.warmup_seconds
        # Read at scrape time: one source of truth, no updates to forget.
        self.metrics.inflight.set_function(lambda: float(self.admission.inflight()))
        self.metrics.queue_depth.set_function(lambda: float(self.admission.waiting()))
        self.metrics.ready.set_function(lambda: float(self.ready()))

    def ready(self) -> bool:
        return time.monotonic() >= self._ready_at and not self.stopping.is_set()

    def chat(self, body: bytes, arrived: float) -> Response:
        if not self.ready():
            why = "shutting down" if self.stopping.is_set() else "warming up"
            return self._count("rejected", Response(HTTPStatus.SERVICE_UNAVAILABLE, {"error": why}))
        try:
            tokens = parse_chat(body, self.config.reply_tokens)
        except BadRequest as error:
            return self._count("error", Response(HTTPStatus.BAD_REQUEST, {"error": str(error)}))
        if not self.admission.enter():
            full = {"error": f"queue full ({self.config.queue_limit} waiting)"}
            return self._count("rejected", Response(HTTPStatus.TOO_MANY_REQUESTS, full))
        try:
            queued = time.monotonic() - arrived
            self._generate(tokens)
        finally:
            self.admission.leave()
        seconds = time.monotonic() - arrived
        self.metrics.duration.observe(seconds)
        payload = {
            "reply": reply_text(tokens),
            "tokens": tokens,
            "queued_seconds": round(queued, 4),
            "seconds": round(seconds, 4),
        }
        return self._count("ok", Response(HTTPStatus.OK, payload))

    def count_error(self) -> None:
        self.metrics.requests.labels("error").inc()

    def _count(self, outcome: str, response: Response) -> Response:
        self.metrics.requests.labels(outcome).inc()
        return response

    def _generate(self, tokens: int) -> None:
        """Sleeps as long as generating `tokens` takes, counting them as they come."""
        rate = self.config.tokens_per_second
        start = time.monotonic()
        end = start + tokens / rate
        produced = 0
        while produced < tokens:
            now = time.monotonic()
            due = tokens if now >= end else min(tokens, int((now - start) * rate))
            if due > produced:
                self.metrics.tokens.inc(due - produced)
                produced = due
            if produced < tokens:
                time.sleep(min(TICK_SECONDS, end - now))


def parse_chat(body: bytes, default_tokens: int) -> int:
    """The number of tokens to generate for a valid request; BadRequest says what is wrong."""
    try:
        request = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BadRequest(f"body is not JSON: {error}") from None
    if not isinstance(request, dict):
        raise BadRequest("body must be a JSON object")
    if not isinstance(request.get("message"), str):
        raise BadRequest('"message" must be a string')
    tokens = request.get("max_tokens")
    if tokens is None:
        return default_tokens
    # bool is an int in Python, but true is no token count.
    if isinstance(tokens, bool) or not isinstance(tokens, int) or not 1 <= tokens <= MAX_TOKENS:
        raise BadRequest(f'"max_tokens" must be an integer in 1..{MAX_TOKENS}')
    return tokens


def reply_text(tokens: int) -> str:
    """A canned answer of exactly `tokens` words (a word stands for a token)."""
    return " ".join(itertools.islice(itertools.cycle(WORDS), tokens))


# --- HTTP ------------------------------------------------------------------------------------------


class AgentServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, address: tuple[str, int], agent: Agent) -> None:
        self.agent = agent
        super().__init__(address, Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-reply is normal under load, not worth a traceback.
        error = sys.exc_info()[1]
        if not isinstance(error, ConnectionError | TimeoutError):
            print(f"agent_service: error serving {client_address}: {error!r}", file=sys.stderr)


class Handler(BaseHTTPRequestHandler):
    # Keep-alive: a load generator or Prometheus reuses its connections.
    protocol_version = "HTTP/1.1"
    server_version = "agent-service/1.0"
    timeout = IDLE_CONNECTION_SECONDS

    @property
    def agent(self) -> Agent:
        assert isinstance(self.server, AgentServer)
        return self.server.agent

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a line per request would swamp the log of a pod under load."""

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/health":
            self.send_json(HTTPStatus.OK, {"status": "ok"})
        elif path == "/ready":
            ready = self.agent.ready()
            status = HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE
            self.send_json(status, {"ready": ready})
        elif path == "/metrics":
            text = prometheus_client.generate_latest(self.agent.registry)
            self.send_body(HTTPStatus.OK, text, prometheus_client.CONTENT_TYPE_LATEST, {})
        else:
            self.send_json(HTTPStatus.NOT_FOUND, {"error": f"no such path: {path}"})

    def do_POST(self) -> None:
        arrived = time.monotonic()
        path = self.path.split("?", 1)[0]
        body = self.read_body()
        if path != "/v1/chat":
            self.send_json(HTTPStatus.NOT_FOUND, {"error": f"no such path: {path}"})
        elif body is None:
            self.agent.count_error()
            error = f"a body of at most {MAX_BODY_BYTES} bytes with a Content-Length is needed"
            self.send_json(HTTPStatus.BAD_REQUEST, {"error": error})
        else:
            self.answer_chat(body, arrived)

    def answer_chat(self, body: bytes, arrived: float) -> None:
        try:
            response = self.agent.chat(body, arrived)
        except Exception as error:
            self.agent.count_error()
            self.send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": repr(error)})
            raise
        retry = response.status in (HTTPStatus.TOO_MANY_REQUESTS, HTTPStatus.SERVICE_UNAVAILABLE)
        self.send_json(response.status, response.payload, {"Retry-After": "1"} if retry else {})

    def read_body(self) -> bytes | None:
        """The request body, or None when it cannot be read (then the connection is closed)."""
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if "Transfer-Encoding" in self.headers or not 0 <= length <= MAX_BODY_BYTES:
            # What follows on the connection cannot be found: it must not be read as a request.
            self.close_connection = True
            return None
        return self.rfile.read(length)

    def send_json(
        self, status: HTTPStatus, payload: dict[str, Any], headers: Mapping[str, str] | None = None
    ) -> None:
        body = json.dumps(payload).encode()
        self.send_body(status, body, "application/json", headers or {})

    def send_body(
        self, status: HTTPStatus, body: bytes, content_type: str, headers: Mapping[str, str]
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


# --- running ---------------------------------------------------------------------------------------


def install_signal_handlers(agent: Agent, hurry: threading.Event) -> None:
    """The first SIGTERM/SIGINT starts a graceful stop; a second skips waiting for requests."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        if agent.stopping.is_set():
            hurry.set()
        agent.stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def drain(agent: Agent, hurry: threading.Event) -> None:
    """Waits for admitted requests to be answered, within DRAIN_SECONDS."""
    deadline = time.monotonic() + DRAIN_SECONDS
    while agent.admission.inflight() > 0 and time.monotonic() < deadline and not hurry.is_set():
        hurry.wait(0.05)


def serve(config: Config) -> int:
    started = time.monotonic()
    agent = Agent(config, started)
    try:
        server = AgentServer((config.host, config.port), agent)
    except OSError as error:
        where = f"{config.host}:{config.port}"
        print(f"agent_service: error: cannot listen on {where}: {error}", file=sys.stderr)
        return 1
    hurry = threading.Event()
    install_signal_handlers(agent, hurry)
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    print(
        f"agent_service: listening on {config.host}:{server.server_address[1]} "
        f"(concurrency {config.concurrency}, queue {config.queue_limit}, "
        f"{config.tokens_per_second:g} tokens/s, {config.reply_tokens} tokens per reply, "
        f"warm-up {config.warmup_seconds:g}s)",
        file=sys.stderr,
        flush=True,
    )
    # A timed wait, so that the main thread returns to Python often enough to run signal handlers.
    while not agent.stopping.wait(0.5):
        pass
    server.shutdown()
    drain(agent, hurry)
    server.server_close()
    return 0


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    config = parse_config(argv, os.environ if environ is None else environ)
    # The counters' _created series only double the exposition; nothing here reads them.
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated there
    return serve(config)


if __name__ == "__main__":
    sys.exit(main())
