"""The load balancer: each chat request goes to the ready pod with the fewest requests in flight
from here (ties in turn), as a least-request proxy in front of the Service would send it.

Only pods the pod runner reports ready receive requests. A request no pod accepted is rejected:
429 (queue full), 503 (warming up or stopping), no ready pod at all, a refused or broken
connection, a timeout or any other failure; the answer says which.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from tests.agentloop.pods import Endpoint

__all__ = ["Answer", "Balancer", "Outcome"]

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Outcome(Enum):
    OK = "ok"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class Answer:
    outcome: Outcome
    cause: str  # "200", "429", "503", "no ready pod", "connection", "timeout", ...
    pod: str | None
    seconds: float  # from sending to the last byte of the answer


class Balancer:
    def __init__(self, ready: Callable[[], Sequence[Endpoint]], timeout_s: float = 60.0) -> None:
        self._ready = ready
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._inflight: Counter[str] = Counter()
        self._turn = itertools.count()
        self.rejected: Counter[str] = Counter()  # by cause

    def inflight(self) -> int:
        """Requests sent and not answered yet, over all pods."""
        with self._lock:
            return sum(self._inflight.values())

    def pick(self) -> Endpoint | None:
        """The ready pod with the fewest requests in flight, counted as one more; None if none is."""
        endpoints = list(self._ready())
        if not endpoints:
            return None
        with self._lock:
            # Rotating the list before taking the minimum spreads ties over the pods in turn.
            shift = next(self._turn) % len(endpoints)
            rotated = endpoints[shift:] + endpoints[:shift]
            chosen = min(rotated, key=lambda e: self._inflight[e.pod])
            self._inflight[chosen.pod] += 1
        return chosen

    def send(self, body: dict[str, object]) -> Answer:
        """POST `body` to /v1/chat on a ready pod."""
        began = time.monotonic()
        endpoint = self.pick()
        if endpoint is None:
            return self._reject("no ready pod", None, began)
        data = json.dumps(body).encode()
        request = urllib.request.Request(
            f"{endpoint.url}/v1/chat",
            data=data,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with _OPENER.open(request, timeout=self._timeout_s) as answer:
                answer.read()
                return Answer(Outcome.OK, str(answer.status), endpoint.pod, time.monotonic() - began)
        except urllib.error.HTTPError as error:
            with contextlib.suppress(OSError):
                error.read()
            return self._reject(str(error.code), endpoint.pod, began)
        except TimeoutError:
            return self._reject("timeout", endpoint.pod, began)
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            cause = "timeout" if isinstance(reason, TimeoutError) else "connection"
            return self._reject(cause, endpoint.pod, began)
        finally:
            with self._lock:
                self._inflight[endpoint.pod] -= 1
                if self._inflight[endpoint.pod] <= 0:
                    del self._inflight[endpoint.pod]

    def _reject(self, cause: str, pod: str | None, began: float) -> Answer:
        with self._lock:
            self.rejected[cause] += 1
        return Answer(Outcome.REJECTED, cause, pod, time.monotonic() - began)
