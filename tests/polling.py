"""Waiting on real processes and servers in the tests: poll a condition until a deadline (a process
we do not control has no clock to inject), never a fixed sleep standing in for an event."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["eventually", "wait_for"]

_POLL_S = 0.05


def wait_for(condition: Callable[[], bool], timeout_s: float = 15.0) -> bool:
    """Whether `condition` held before `timeout_s` passed (checked once more at the deadline)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(_POLL_S)
    return condition()


def eventually(condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    """Fail the test naming `what` unless `condition` holds within `timeout_s`."""
    assert wait_for(condition, timeout_s), f"timed out waiting for {what}"
