"""The record of every request the fake answered, for tests that assert on what a client sent."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    query: dict[str, str]
    content_type: str
    body: Any  # parsed JSON, the raw text when it is not JSON, or None when empty
    status: int  # 0: never answered (held up until its client had gone, then dropped)
    timestamp: float  # time.time() when the request arrived
    user_agent: str = ""
    answered: float = 0.0  # time.time() when it was answered (or dropped)


class RequestLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []

    def append(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    def records(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
