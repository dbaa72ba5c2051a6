"""The load generator: replays arrival times open-loop, each a `POST /v1/chat` through the
balancer, and records every request's arrival, latency and outcome.

Open loop means a request is sent at its arrival time whether or not earlier ones were answered,
as users of a chat do not wait for each other: a slow service gets more requests in flight, not
fewer arrivals. Each request runs on a worker thread of a pool far larger than what can be in
flight at once, so the pool never holds an arrival back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tests.agentloop.balancer import Answer, Outcome

__all__ = ["LoadGenerator", "RequestRecord"]

MESSAGES = (
    "My invoice shows a charge twice, can you check?",
    "The app logs me out every few minutes.",
    "How do I change the delivery address of an order?",
    "I did not get the confirmation email.",
)


@dataclass(frozen=True, slots=True)
class RequestRecord:
    index: int
    arrival: float  # seconds relative to the ramp, as scheduled
    sent_late_s: float  # how late it left against its schedule (the generator's own lag)
    latency_s: float
    outcome: Outcome
    cause: str
    pod: str | None


class LoadGenerator:
    def __init__(
        self,
        offsets: npt.NDArray[np.float64],
        ramp_at: float,
        send: Callable[[dict[str, object]], Answer],
        *,
        workers: int = 400,
    ) -> None:
        """`offsets`: arrival times relative to `ramp_at` (epoch seconds)."""
        self.offsets = offsets
        self.ramp_at = ramp_at
        self._send = send
        self._workers = workers
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []

    def records(self) -> list[RequestRecord]:
        with self._lock:
            return sorted(self._records, key=lambda r: r.index)

    def run(self, stop: threading.Event, drain_s: float = 60.0) -> list[RequestRecord]:
        """Send every request at its time (until `stop`), then wait up to `drain_s` for the
        answers of those in flight; returns the records, in arrival order."""
        pending: list[Future[None]] = []
        with ThreadPoolExecutor(self._workers, thread_name_prefix="chat") as pool:
            for index, offset in enumerate(self.offsets.tolist()):
                due = self.ramp_at + offset
                if stop.wait(max(0.0, due - time.time())):
                    break
                pending.append(pool.submit(self._one, index, offset, due))
            # Requests time out in the balancer, so the pool's own wait at exit is bounded too.
            wait(pending, timeout=drain_s)
        return self.records()

    def _one(self, index: int, offset: float, due: float) -> None:
        late = time.time() - due
        body: dict[str, object] = {"message": f"ticket {index}: {MESSAGES[index % len(MESSAGES)]}"}
        answer = self._send(body)
        record = RequestRecord(
            index, offset, late, answer.seconds, answer.outcome, answer.cause, answer.pod
        )
        with self._lock:
            self._records.append(record)
