"""Objects at rest, the global resourceVersion counter and the event history that watches replay.

Every write gets the next resourceVersion and is appended to a bounded history; a watch from
resourceVersion R replays the history after R, and R older than what the history still holds is
answered with 410 Expired, as etcd compaction makes the real server do.
"""

from __future__ import annotations

import copy
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]


@dataclass(frozen=True)
class Change:
    rv: int
    storage: str
    type: str  # ADDED | MODIFIED | DELETED
    obj: Obj
    old: Obj | None


@dataclass(frozen=True)
class Wait:
    changes: list[Change]
    cursor: int
    ended: str | None  # None, "timeout", "dropped", "expired"


class Store:
    def __init__(self, history_limit: int = 1000) -> None:
        self._lock = threading.RLock()
        self.changed = threading.Condition(self._lock)
        self._objects: dict[str, dict[tuple[str, str], Obj]] = {}
        self._rv = 0
        self._history: deque[Change] = deque()
        self._history_limit = history_limit
        self._compacted = 0
        self._drop_epoch = 0
        self._closed = False
        self._watchers = 0

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    @property
    def rv(self) -> int:
        with self._lock:
            return self._rv

    @property
    def compacted(self) -> int:
        with self._lock:
            return self._compacted

    @property
    def drop_epoch(self) -> int:
        with self._lock:
            return self._drop_epoch

    def get(self, storage: str, namespace: str, name: str) -> Obj | None:
        with self._lock:
            obj = self._objects.get(storage, {}).get((namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def list(self, storage: str, namespace: str | None = None) -> list[Obj]:
        with self._lock:
            items = sorted(self._objects.get(storage, {}).items())
            return [copy.deepcopy(obj) for (ns, _), obj in items if namespace is None or ns == namespace]

    def namespaces_in_use(self) -> set[str]:
        with self._lock:
            return {ns for objects in self._objects.values() for ns, _ in objects if ns}

    def put(self, storage: str, obj: Obj) -> Obj:
        """Store `obj` under the next resourceVersion and record ADDED or MODIFIED."""
        with self._lock:
            meta = obj["metadata"]
            key = (meta.get("namespace", ""), meta["name"])
            old = self._objects.setdefault(storage, {}).get(key)
            self._rv += 1
            stored = copy.deepcopy(obj)
            stored["metadata"]["resourceVersion"] = str(self._rv)
            self._objects[storage][key] = stored
            self._record(Change(self._rv, storage, "ADDED" if old is None else "MODIFIED", stored, old))
            return copy.deepcopy(stored)

    def remove(self, storage: str, namespace: str, name: str) -> Obj | None:
        with self._lock:
            old = self._objects.get(storage, {}).pop((namespace, name), None)
            if old is None:
                return None
            self._rv += 1
            # The DELETED event carries the object at a new resourceVersion, as the real server's does.
            gone = copy.deepcopy(old)
            gone["metadata"]["resourceVersion"] = str(self._rv)
            self._record(Change(self._rv, storage, "DELETED", gone, old))
            return copy.deepcopy(gone)

    def _record(self, change: Change) -> None:
        self._history.append(change)
        while len(self._history) > self._history_limit:
            self._compacted = self._history.popleft().rv
        self.changed.notify_all()

    def compact(self) -> None:
        """Forget the whole history: a watch from any older resourceVersion now gets 410."""
        with self._lock:
            self._history.clear()
            self._compacted = self._rv

    def drop_watches(self) -> None:
        with self._lock:
            self._drop_epoch += 1
            self.changed.notify_all()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self.changed.notify_all()

    def wait(self, storage: str, cursor: int, epoch: int, deadline: float | None, tick: float) -> Wait:
        """Changes to `storage` after `cursor`, waiting up to `tick` seconds for some to arrive."""
        with self._lock:
            end = time.monotonic() + tick
            while True:
                if self._closed or self._drop_epoch != epoch:
                    return Wait([], cursor, "dropped")
                if cursor < self._compacted:
                    return Wait([], cursor, "expired")
                if self._history and self._history[-1].rv > cursor:
                    changes = [c for c in self._history if c.rv > cursor and c.storage == storage]
                    return Wait(changes, self._rv, None)
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    return Wait([], self._rv, "timeout")
                if now >= end:
                    return Wait([], cursor, None)
                limit = end if deadline is None else min(end, deadline)
                self.changed.wait(limit - now)

    def watcher_started(self) -> None:
        with self._lock:
            self._watchers += 1
            self.changed.notify_all()

    def watcher_ended(self) -> None:
        with self._lock:
            self._watchers -= 1
            self.changed.notify_all()

    def wait_for_watchers(self, count: int, timeout: float) -> bool:
        with self._lock:
            return self.changed.wait_for(lambda: self._watchers >= count, timeout)

    @property
    def watchers(self) -> int:
        with self._lock:
            return self._watchers
