"""Talking to Prometheus: the only module that imports `prometheus-api-client`. One HTTP client,
re-made after a transport or credential error and whenever the bearer token file changes (a rotated
service-account token is picked up); retries with exponential backoff; every failure mapped to a
`PrometheusError` that says whether it passes by itself. Its text is one short line (it is logged every
tick Prometheus stays away, and a command prints it); the query and the full answer are attributes."""

from __future__ import annotations

import ast
import json
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from autoscaler.sources.prometheus.settings import PrometheusSettings
from autoscaler.stages import MetricsUnavailable

__all__ = [
    "PrometheusError",
    "PrometheusRejected",
    "PrometheusServerError",
    "PrometheusTimeout",
    "PrometheusUnreachable",
    "Transport",
]

_STATUS = re.compile(r"HTTP Status Code (\d+)")
# The connection pool urllib3 names at the head of a message ("HTTPConnectionPool(host=…, port=…): ").
_POOL = re.compile(r"^\w*Connection\w*\(host=[^)]*\): ")
_BODY = re.compile(r"HTTP Status Code \d+ \((b'.*'|b\".*\")\)", re.DOTALL)
# Where in the query Prometheus found a fault ("1:83: parse error: …"): a position in a query the
# reader of the message never sees.
_POSITION = re.compile(r"^\d+:\d+: ")
# The noise around a socket error's own words ("Failed to establish a new connection: [Errno 111] …",
# "… (_ssl.c:1006)").
_SOCKET_NOISE = re.compile(
    r"^.*?Failed to establish a new connection: |\[Errno -?\d+\] | \(_ssl\.c:\d+\)"
)
# Prometheus' own words are kept to this many characters in a message; `answer` keeps them all.
_MAX_WORDS = 160


class PrometheusError(MetricsUnavailable):
    """Prometheus gave no usable answer this tick. `temporary` errors are expected to pass by
    themselves (the next tick retries); the others need someone to fix a query or credentials.

    `str()` is one line: the cause, in a few words. `query` is the PromQL that failed and `answer`
    everything known of the failure (the client's whole message, with the server's body), for a
    debug log; either is None when there is none."""

    temporary: ClassVar[bool] = True

    def __init__(self, message: str, *, query: str | None = None, answer: str | None = None) -> None:
        super().__init__(message)
        self.query = query
        self.answer = answer


class PrometheusUnreachable(PrometheusError):
    """No connection (refused, DNS, TLS)."""


class PrometheusTimeout(PrometheusError):
    """Connected, but no answer within `timeout_s`."""


class PrometheusServerError(PrometheusError):
    """A 5xx, 408 or 429 status, or an answer that is not a query result."""


class PrometheusRejected(PrometheusError):
    """A 4xx status: the query is invalid, or the credentials are refused (401, 403). `detail` is
    Prometheus' own words where it gave them (the `error` of its answer), else the message."""

    temporary: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        status: int,
        detail: str | None = None,
        *,
        query: str | None = None,
        answer: str | None = None,
    ) -> None:
        super().__init__(message, query=query, answer=answer)
        self.status = status
        self.detail = message if detail is None else detail


def _server_words(error: PrometheusApiClientException) -> str | None:
    """The `error` of the answer Prometheus gave with a failed status, if it gave one; the client
    puts the body's bytes, as Python writes them, into its message."""
    match = _BODY.search(str(error))
    if match is None:
        return None
    try:
        body = ast.literal_eval(match.group(1))
        answer = json.loads(body) if isinstance(body, bytes) else None
    except (ValueError, SyntaxError):
        return None
    words = answer.get("error") if isinstance(answer, dict) else None
    return words if isinstance(words, str) and words else None


def _status_of(error: PrometheusApiClientException) -> int | None:
    match = _STATUS.search(str(error))
    return int(match.group(1)) if match else None


def _cause(error: requests.RequestException) -> str:
    """The root of a transport error, without the URL `requests` writes into its message: the query
    it carries runs to kilobytes, and the message is logged every tick Prometheus stays away."""
    inner: object = error.args[0] if error.args else error
    reason = getattr(inner, "reason", None)  # urllib3's MaxRetryError wraps the real cause
    if isinstance(reason, BaseException):
        inner = reason
    words = _SOCKET_NOISE.sub("", _POOL.sub("", str(inner)))
    return _shortened(words) or type(error).__name__


def _shortened(text: str) -> str:
    """`text` on one line, without a position in the query, at most `_MAX_WORDS` characters."""
    words = _POSITION.sub("", " ".join(text.split()))
    return words if len(words) <= _MAX_WORDS else words[: _MAX_WORDS - 1] + "…"


def _status_words(status: int | None, words: str | None) -> str:
    """`HTTP 400: parse error: …`, or `HTTP 503` when the server said nothing readable."""
    head = "an error" if status is None else f"HTTP {status}"
    return head if words is None else f"{head}: {_shortened(words)}"


def _to_datetime(t: float) -> datetime:
    return datetime.fromtimestamp(t, tz=UTC)


class Transport:
    """Range queries against one Prometheus. `sleep` is what waits between retries (tests pass a
    recorder so they never sleep); `on_query` hears of every HTTP query: its duration in seconds and
    whether it was answered. Safe to use from several threads."""

    def __init__(
        self,
        settings: PrometheusSettings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        on_query: Callable[[float, bool], None] | None = None,
    ) -> None:
        self.settings = settings
        self._sleep = sleep
        self._on_query = on_query
        self._lock = threading.Lock()  # guards the client and the query counter across workers
        self._client: PrometheusConnect | None = None
        self._token_stamp: tuple[int, int] | None = None
        self._queries = 0

    @property
    def queries_made(self) -> int:
        """HTTP queries sent so far, retries included."""
        return self._queries

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def query_range(self, query: str, start: int, end: int, abort: threading.Event) -> Any:
        """The answer of a range query, after retries; a query `abort`ed by another that failed is not
        asked again. Raises a `PrometheusError`."""
        attempts = self.settings.retries + 1
        error: PrometheusError = PrometheusServerError("no answer")
        for attempt in range(attempts):
            # Another query failing has already decided this tick: stop asking.
            if abort.is_set():
                if attempt == 0:
                    raise PrometheusServerError("abandoned: another query of this tick failed")
                break
            if attempt:
                self._sleep(self.settings.backoff_s * 2 ** (attempt - 1))
            client = self._connect()
            with self._lock:
                self._queries += 1
            began = time.monotonic()
            answered = False
            try:
                answer = client.custom_query_range(
                    query,
                    _to_datetime(start),
                    _to_datetime(end),
                    str(self.settings.step_s),
                    params={"timeout": str(self.settings.timeout_s)},
                )
                answered = True
                return answer
            except requests.Timeout as err:
                error = PrometheusTimeout(
                    f"Prometheus at {self.settings.url} did not answer within "
                    f"{self.settings.timeout_s:g} s",
                    query=query,
                    answer=str(err),
                )
                self._disconnect(client)
            except requests.JSONDecodeError as err:  # a RequestException, but the server did answer
                error = PrometheusServerError(
                    f"Prometheus at {self.settings.url} answered something that is not JSON",
                    query=query,
                    answer=str(err),
                )
            except requests.RequestException as err:
                error = PrometheusUnreachable(
                    f"cannot reach Prometheus at {self.settings.url}: {_cause(err)}",
                    query=query,
                    answer=str(err),
                )
                self._disconnect(client)
            except PrometheusApiClientException as err:
                status = _status_of(err)
                words = _server_words(err)
                if status in (401, 403):
                    # Possibly a token that rotated since it was read: read it again and retry.
                    error = PrometheusRejected(
                        f"Prometheus refused the credentials (HTTP {status})",
                        status,
                        query=query,
                        answer=str(err),
                    )
                    self._disconnect(client)
                elif status is not None and 400 <= status < 500 and status not in (408, 429):
                    raise PrometheusRejected(
                        f"Prometheus rejected the query ({_status_words(status, words)})",
                        status,
                        words,
                        query=query,
                        answer=str(err),
                    ) from None
                else:
                    error = PrometheusServerError(
                        f"Prometheus answered {_status_words(status, words)}",
                        query=query,
                        answer=str(err),
                    )
            except (ValueError, KeyError, TypeError) as err:
                error = PrometheusServerError(
                    f"malformed answer from Prometheus: {_shortened(repr(err))}",
                    query=query,
                    answer=repr(err),
                )
            finally:
                if self._on_query is not None:
                    self._on_query(time.monotonic() - began, answered)
        raise error

    # --- connection -------------------------------------------------------------------------------

    def _token_file_stamp(self) -> tuple[int, int] | None:
        path = self.settings.bearer_token_file
        if path is None:
            return None
        try:
            info = path.stat()
        except OSError:
            return None
        return (info.st_mtime_ns, info.st_size)

    def _connect(self) -> PrometheusConnect:
        stamp = self._token_file_stamp()
        with self._lock:
            if self._client is not None and stamp == self._token_stamp:
                return self._client
            stale, self._client = self._client, self._new_client()
            self._token_stamp = stamp
            client = self._client
        if stale is not None:
            stale.close()
        return client

    def _new_client(self) -> PrometheusConnect:
        settings = self.settings
        headers: dict[str, str] = {}
        if settings.accept_identity_encoding:
            headers["Accept-Encoding"] = "identity"
        if settings.bearer_token_file is not None:
            try:
                token = settings.bearer_token_file.read_text().strip()
            except OSError as err:
                raise PrometheusRejected(f"cannot read the bearer token file: {err}", 401) from None
            headers["Authorization"] = f"Bearer {token}"
        session = requests.Session()
        if settings.insecure_skip_verify:
            session.verify = False
        elif settings.ca_file is not None:
            session.verify = str(settings.ca_file)
        return PrometheusConnect(
            url=settings.url.rstrip("/"),
            headers=headers,
            disable_ssl=settings.insecure_skip_verify,
            # Retries are ours (counted, with an injectable sleep); read=False keeps a read timeout
            # a Timeout instead of a generic connection error.
            retry=Retry(total=0, read=False),
            session=session,
            timeout=settings.timeout_s,
        )

    def _disconnect(self, client: PrometheusConnect) -> None:
        """Drop `client` after a transport or credential error so the next attempt reconnects (and
        re-reads the token); another worker may already have replaced it."""
        with self._lock:
            current = self._client is client
            if current:
                self._client = None
        if current:
            client.close()
