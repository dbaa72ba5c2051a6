"""A fault-injecting reverse proxy in front of a real Prometheus, for tests of how the autoscaler
copes with a Prometheus that misbehaves in ways the real server cannot be made to on demand.

`FaultProxy(upstream_url)` listens on a free loopback port and forwards GET and POST requests (path,
query string, form body, headers) to the upstream server, answering with its status, headers and
body. `proxy.set(fault, match=...)` turns one `Fault` on, for every request or only for those whose
PromQL `query` parameter matches; `proxy.heal()` turns it off. Both may be called while requests are
in flight: a request reads the fault once, when it arrives.

The answer-rewriting faults (`EMPTY`, `NAN`, `STALE`, `PARTIAL`) ask the upstream server first and
change only a successful query result; any other answer passes through unchanged and does not count
as faulted. `ERROR`, `BAD_QUERY` and `RESET` never reach the upstream server.

    with FaultProxy(prometheus.url) as proxy:
        proxy.set(Fault.EMPTY, match="container_cpu_usage_seconds_total")
        ...  # point the code under test at proxy.url
"""

from __future__ import annotations

import contextlib
import enum
import json
import re
import socket
import struct
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["Fault", "FaultProxy"]

DEFAULT_STALE_S = 600.0
DEFAULT_DELAY_S = 1.0
DEFAULT_UPSTREAM_TIMEOUT_S = 60.0

# Per-connection headers (RFC 9110 §7.6.1) and those the proxy sets itself: the body may be
# rewritten, so its length is recomputed, and the upstream is asked for an uncompressed answer.
_NOT_FORWARDED = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "accept-encoding",
    }
)
# BaseHTTPRequestHandler.send_response writes these itself; the upstream's would be duplicates.
_NOT_RETURNED = _NOT_FORWARDED | {"server", "date", "content-encoding"}


class Fault(enum.Enum):
    """How the proxy misbehaves for the requests a fault applies to."""

    ERROR = "error"  # 503, Prometheus-style `unavailable` error body
    BAD_QUERY = "bad_query"  # 400, Prometheus-style `bad_data` error body (a parse error)
    EMPTY = "empty"  # 200, the upstream's result type with no series
    NAN = "nan"  # 200, the upstream's answer with every sample value "NaN"
    STALE = "stale"  # 200, the upstream's answer without the last `stale_s` seconds of samples
    PARTIAL = "partial"  # 200, the upstream's answer without the series matching `drop`
    SLOW = "slow"  # the upstream's answer, `delay_s` seconds late
    RESET = "reset"  # the connection is aborted (TCP RST) without an answer


@dataclass(frozen=True, slots=True)
class _Rule:
    fault: Fault
    match: str | re.Pattern[str] | None
    stale_s: float
    delay_s: float
    drop: Mapping[str, str] = field(default_factory=dict)

    def applies_to(self, query: str | None) -> bool:
        if self.match is None:
            return True
        if query is None:
            return False
        if isinstance(self.match, str):
            return self.match in query
        return self.match.search(query) is not None


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A reverse proxy hands redirects to the client instead of following them."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Message,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


class FaultProxy:
    """A reverse proxy on 127.0.0.1 in front of `upstream` (a Prometheus base URL), with faults
    switched on and off by the test. Counters and the query log are safe to read from any thread."""

    def __init__(self, upstream: str, *, upstream_timeout_s: float = DEFAULT_UPSTREAM_TIMEOUT_S) -> None:
        self.upstream = upstream.rstrip("/")
        self.upstream_timeout_s = upstream_timeout_s
        self._lock = threading.Lock()
        self._rule: _Rule | None = None
        self._requests = 0
        self._faulted = 0
        self._queries: list[str] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        # No proxies from the environment: the upstream is on loopback and must be reached directly.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())

    # --- life cycle -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._server is not None:
            return
        self._stopping.clear()
        # Port 0: the kernel picks a free port, with no window for another process to take it.
        server = _Server(self, ("127.0.0.1", 0))
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name="faultproxy", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # wakes requests held by SLOW
        server.shutdown()
        server.server_close()
        # Idle keep-alive connections would otherwise keep answering from their handler threads
        # after the proxy was stopped.
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the proxy is not running: call start() first")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # --- faults ---------------------------------------------------------------------------------

    def set(
        self,
        fault: Fault,
        match: str | re.Pattern[str] | None = None,
        *,
        stale_s: float = DEFAULT_STALE_S,
        delay_s: float = DEFAULT_DELAY_S,
        drop: Mapping[str, str] | None = None,
    ) -> None:
        """Apply `fault` from now on, replacing any other, to every request or, with `match`, only to
        requests whose PromQL `query` contains that string (a `str`) or in which that regular
        expression is found (a compiled `re.Pattern`); requests without a query never match.

        `stale_s` (STALE): samples newer than the query's `end` (range) or `time` (instant) minus
        this are removed. `delay_s` (SLOW): how late the answer is. `drop` (PARTIAL, required):
        label values; a series carrying all of them is left out."""
        if fault is Fault.PARTIAL and not drop:
            raise ValueError("Fault.PARTIAL needs drop={label: value, ...}")
        if drop and fault is not Fault.PARTIAL:
            raise ValueError(f"drop= applies to Fault.PARTIAL only, not {fault}")
        if stale_s < 0 or delay_s < 0:
            raise ValueError("stale_s and delay_s must not be negative")
        rule = _Rule(fault, match, stale_s, delay_s, dict(drop or {}))
        with self._lock:
            self._rule = rule

    def heal(self) -> None:
        """Forward every request unchanged from now on."""
        with self._lock:
            self._rule = None

    @property
    def fault(self) -> Fault | None:
        with self._lock:
            return None if self._rule is None else self._rule.fault

    # --- what was seen --------------------------------------------------------------------------

    @property
    def requests(self) -> int:
        """Requests received, faulted or not."""
        with self._lock:
            return self._requests

    @property
    def faulted(self) -> int:
        """Requests the fault was applied to."""
        with self._lock:
            return self._faulted

    @property
    def queries(self) -> list[str]:
        """The PromQL `query` parameter of every request that carried one, in order of arrival."""
        with self._lock:
            return list(self._queries)

    # --- serving (called from the handler threads) ----------------------------------------------

    def _arrived(self, query: str | None) -> _Rule | None:
        with self._lock:
            self._requests += 1
            if query is not None:
                self._queries.append(query)
            rule = self._rule
        return rule if rule is not None and rule.applies_to(query) else None

    def _count_fault(self) -> None:
        with self._lock:
            self._faulted += 1

    def _forward(
        self, method: str, path: str, headers: list[tuple[str, str]], body: bytes | None
    ) -> _Answer:
        request = urllib.request.Request(self.upstream + path, data=body, method=method)
        for name, value in headers:
            request.add_header(name, value)
        request.add_header("Accept-Encoding", "identity")
        try:
            with self._opener.open(request, timeout=self.upstream_timeout_s) as response:
                return _Answer(response.status, list(response.headers.items()), response.read())
        except urllib.error.HTTPError as err:
            # An error status is an answer to pass on, not a failure of the proxy.
            with err:
                return _Answer(err.code, list(err.headers.items()), err.read())
        except OSError as err:  # URLError included: refused, unresolvable, timed out
            reason = getattr(err, "reason", err)
            return _error_answer(502, "unavailable", f"upstream {self.upstream} unreachable: {reason}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, proxy: FaultProxy, address: tuple[str, int]) -> None:
        self.proxy = proxy
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def close_connections(self) -> None:
        with self.connections_lock:
            connections = list(self.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gives up (its timeout during SLOW, a test that stopped the proxy) is
        # routine; anything else is a bug in the proxy and keeps the standard traceback.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    # Keep-alive, as Prometheus serves: clients reuse pooled connections, and RESET then hits one.
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; with Nagle's algorithm the body would wait
        # for the client's delayed ACK.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # `FaultProxy.queries` and the counters replace the access log

    def do_GET(self) -> None:
        self._proxy("GET")

    def do_POST(self) -> None:
        self._proxy("POST")

    def _proxy(self, method: str) -> None:
        proxy = self.server.proxy
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        params = _params(self.path, self.headers.get("Content-Type", ""), body)
        query = params.get("query")
        rule = proxy._arrived(query)
        fault = None if rule is None else rule.fault

        if fault is Fault.RESET:
            proxy._count_fault()
            self._abort()
            return
        if fault is Fault.ERROR:
            proxy._count_fault()
            self._send(_error_answer(503, "unavailable", "fault injected by FaultProxy: unavailable"))
            return
        if fault is Fault.BAD_QUERY:
            proxy._count_fault()
            message = 'invalid parameter "query": 1:1: parse error: fault injected by FaultProxy'
            self._send(_error_answer(400, "bad_data", message))
            return
        if rule is not None and fault is Fault.SLOW:
            proxy._count_fault()
            if proxy._stopping.wait(rule.delay_s):
                self._abort()  # stopped while waiting: the proxy is gone, as a stopped server is
                return

        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in _NOT_FORWARDED]
        answer = proxy._forward(method, self.path, headers, body)
        if rule is not None and fault in _REWRITES:
            rewritten = _rewrite(rule, answer, _evaluated_at(urlsplit(self.path).path, params))
            if rewritten is not None:
                proxy._count_fault()
                answer = rewritten
        self._send(answer)

    def _send(self, answer: _Answer) -> None:
        self.send_response(answer.status)
        for name, value in answer.headers:
            if name.lower() not in _NOT_RETURNED:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    def _abort(self) -> None:
        # A zero linger makes close() send RST instead of FIN: the client sees a connection reset,
        # as from a crashed server or a load balancer dropping it, not a clean end of stream.
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # The descriptor closes once finish() has closed the socket's files as well.
        self.connection.close()


# --- pure helpers ---------------------------------------------------------------------------------

_REWRITES = frozenset({Fault.EMPTY, Fault.NAN, Fault.STALE, Fault.PARTIAL})


def _error_answer(status: int, error_type: str, message: str) -> _Answer:
    body = json.dumps({"status": "error", "errorType": error_type, "error": message})
    return _Answer(status, [("Content-Type", "application/json")], body.encode())


def _params(path: str, content_type: str, body: bytes | None) -> dict[str, str]:
    """The request's parameters, the form body's winning over the query string's (as Go's
    `FormValue`, which Prometheus reads them with)."""
    params = {k: v[0] for k, v in parse_qs(urlsplit(path).query, keep_blank_values=True).items()}
    if body and content_type.partition(";")[0].strip().lower() == "application/x-www-form-urlencoded":
        form = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
        params.update({k: v[0] for k, v in form.items()})
    return params


def _timestamp(value: str) -> float:
    """A Prometheus API time: Unix seconds or RFC 3339."""
    try:
        return float(value)
    except ValueError:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _evaluated_at(path: str, params: Mapping[str, str]) -> float:
    """When the query is evaluated: a range query's end, an instant query's time (now if absent)."""
    value = params.get("end") if path.endswith("/query_range") else params.get("time")
    if value:
        with contextlib.suppress(ValueError):
            return _timestamp(value)
    return time.time()


def _rewrite(rule: _Rule, answer: _Answer, evaluated_at: float) -> _Answer | None:
    """The answer with `rule`'s fault applied, or None when it is not a successful query result."""
    if answer.status != 200:
        return None
    try:
        payload = json.loads(answer.body)
    except ValueError:
        return None
    if not isinstance(payload, dict) or payload.get("status") != "success":
        return None
    data = payload.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("result"), list):
        return None
    result_type = str(data.get("resultType"))
    result: list[Any] = data["result"]
    if rule.fault is Fault.EMPTY:
        data["result"] = []
    elif rule.fault is Fault.NAN:
        data["result"] = _nan(result_type, result)
    elif rule.fault is Fault.STALE:
        data["result"] = _stale(result_type, result, evaluated_at - rule.stale_s)
    elif rule.fault is Fault.PARTIAL:
        data["result"] = [s for s in result if not _carries(s, rule.drop)]
    body = json.dumps(payload, separators=(",", ":")).encode()
    return _Answer(200, answer.headers, body)


def _nan(result_type: str, result: list[Any]) -> list[Any]:
    if result_type == "scalar":
        return [result[0], "NaN"]
    for series in result:
        if "value" in series:
            series["value"] = [series["value"][0], "NaN"]
        if "values" in series:
            series["values"] = [[t, "NaN"] for t, _ in series["values"]]
    return result


def _stale(result_type: str, result: list[Any], cutoff: float) -> list[Any]:
    # Instant vectors carry the evaluation time, not the sample's: past the cutoff they all go,
    # which is what Prometheus answers once the data are older than its lookback (5 minutes).
    if result_type == "vector":
        return [s for s in result if float((s.get("value") or s.get("histogram"))[0]) <= cutoff]
    if result_type != "matrix":
        return result
    kept = []
    for series in result:
        for key in ("values", "histograms"):
            if key in series:
                series[key] = [point for point in series[key] if float(point[0]) <= cutoff]
        if series.get("values") or series.get("histograms"):
            kept.append(series)
    return kept


def _carries(series: Any, labels: Mapping[str, str]) -> bool:
    metric = series.get("metric", {}) if isinstance(series, dict) else {}
    return all(metric.get(name) == value for name, value in labels.items())
