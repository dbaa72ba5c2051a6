"""The controller's HTTP endpoints: for the kubelet `/healthz` (the tick loop is alive: a tick ended
recently) and `/readyz` (the cluster caches are filled and current, so ticks act on a whole and
fresh picture, whether this replica leads or stands by; otherwise 503 with the reason); for
Prometheus `/metrics`, whose exposition the caller renders."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["HealthServer"]


class HealthServer:
    def __init__(
        self,
        port: int,
        not_ready: Callable[[], str | None],
        *,
        metrics: Callable[[], tuple[bytes, str]] | None = None,
        stale_after_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        host: str = "0.0.0.0",
    ) -> None:
        self._not_ready = not_ready
        self._metrics = metrics
        self._stale = stale_after_s
        self._clock = clock
        # Until the first tick ends the loop counts as alive from its start.
        self._last_beat = clock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                content_type = "text/plain; charset=utf-8"
                if path == "/metrics" and owner._metrics is not None:
                    status, (payload, content_type) = 200, owner._metrics()
                else:
                    status, body = owner.answer(path)
                    payload = body.encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    # The scraper or probe gave up before the answer was out (a slow exposition
                    # of a large fleet): that answer is lost, and nothing else is wrong.
                    self.close_connection = True

            def log_message(self, format: str, *args: object) -> None:
                # Probes every few seconds would drown the controller's own log.
                return

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def beat(self, at: float) -> None:
        self._last_beat = at

    def answer(self, path: str) -> tuple[int, str]:
        if path == "/healthz":
            age = self._clock() - self._last_beat
            if age <= self._stale:
                return 200, "ok\n"
            return 503, f"no tick has ended for {age:.0f} s\n"
        if path == "/readyz":
            why = self._not_ready()
            return (200, "ok\n") if why is None else (503, why + "\n")
        return 404, "not found\n"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
