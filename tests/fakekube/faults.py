"""Injected failures: error answers, slow answers and a whole-server outage."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from tests.fakekube import errors


@dataclass
class _Rule:
    method: str | None
    pattern: re.Pattern[str] | None
    remaining: int | None  # None: until healed

    def matches(self, method: str, path: str) -> bool:
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.method is not None and self.method != method:
            return False
        return self.pattern is None or self.pattern.search(path) is not None

    def consume(self) -> None:
        if self.remaining is not None:
            self.remaining -= 1


@dataclass
class _Failure(_Rule):
    status: int = 503
    retry_after: int | None = None


@dataclass
class _Delay(_Rule):
    seconds: float = 0.0


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: list[_Failure] = []
        self._delays: list[_Delay] = []
        self._outage: int | None = None

    def inject(
        self,
        method: str | None,
        path_regex: str | None,
        status: int,
        times: int | None,
        retry_after: int | None,
    ) -> None:
        pattern = re.compile(path_regex) if path_regex is not None else None
        rule = _Failure(method.upper() if method else None, pattern, times, status, retry_after)
        with self._lock:
            self._failures.append(rule)

    def slow(self, path_regex: str | None, seconds: float, times: int | None) -> None:
        pattern = re.compile(path_regex) if path_regex is not None else None
        with self._lock:
            self._delays.append(_Delay(None, pattern, times, seconds))

    def fail_all(self, status: int) -> None:
        with self._lock:
            self._outage = status

    def heal(self) -> None:
        with self._lock:
            self._outage = None
            self._failures.clear()
            self._delays.clear()

    def delay_for(self, method: str, path: str) -> float:
        with self._lock:
            for rule in self._delays:
                if rule.matches(method, path):
                    rule.consume()
                    return rule.seconds
        return 0.0

    def failure_for(self, method: str, path: str) -> errors.ApiError | None:
        with self._lock:
            if self._outage is not None:
                return errors.fault(self._outage)
            for rule in self._failures:
                if rule.matches(method, path):
                    rule.consume()
                    return errors.fault(rule.status, rule.retry_after)
        return None
