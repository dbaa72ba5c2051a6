"""Informers: list-then-watch caches of the objects the cluster reader turns into snapshots.

One informer per resource kind and namespace lists once, then follows a watch from the list's
resourceVersion; a watch that ends or drops is resumed from the last version seen, and a 410 (the
server no longer has that history) or an error makes it list again. A tick reads the caches and
never lists anything itself.

Each informer knows how fresh its cache is: it is *confirmed* by a list, by every event and by every
watch that ends as asked; it is *stale* from the first failure of a list or a watch until a list
succeeds again, and when nothing confirmed it for longer than a watch lasts plus `grace_s` (a
stream that hangs without an error). The reader holds the targets a stale cache covers, and the
controller reports itself not ready, rather than write from an old view.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from autoscaler.kube import JsonObject, Kind, Kube, ResourceVersionExpired, key_of
from autoscaler.model import TargetRef, WorkloadKind

__all__ = ["Informer", "Informers"]

log = logging.getLogger(__name__)


class Informer:
    """List-then-watch cache of one resource kind in one namespace (None: all namespaces)."""

    def __init__(
        self,
        kube: Kube,
        kind: Kind,
        namespace: str | None,
        *,
        watch_timeout_s: int = 300,
        backoff_s: float = 1.0,
        grace_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kube = kube
        self.kind = kind
        self.namespace = namespace
        self._watch_timeout = watch_timeout_s
        self._backoff = backoff_s
        self._grace = grace_s
        self._clock = clock
        self._confirmed_at = clock()
        self._failure: str | None = None
        self._lock = threading.Lock()
        self._objects: dict[tuple[str, str], JsonObject] = {}
        self._version = ""
        self._synced = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lists = 0  # how often it listed: tests check that a warm cache does not re-list

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    def wait_synced(self, timeout_s: float) -> bool:
        return self._synced.wait(timeout_s)

    def objects(self) -> list[JsonObject]:
        with self._lock:
            return list(self._objects.values())

    def staleness(self) -> str | None:
        """Why the cache may no longer be the server's state, or None while it is confirmed."""
        with self._lock:
            failure, confirmed_at = self._failure, self._confirmed_at
        if failure is not None:
            return f"the {self.kind.value} watch is failing ({failure})"
        quiet = self._clock() - confirmed_at
        if quiet > self._watch_timeout + self._grace:
            return f"the {self.kind.value} watch has not been confirmed for {quiet:.0f} s"
        return None

    def _confirm(self) -> None:
        with self._lock:
            self._confirmed_at = self._clock()
            self._failure = None

    def start(self) -> None:
        where = self.namespace or "all"
        self._thread = threading.Thread(
            target=self._run, name=f"informer-{self.kind.value}-{where}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _relist(self) -> None:
        items, version = self._kube.list(self.kind, self.namespace)
        with self._lock:
            self._objects = {key_of(item): item for item in items}
            self._version = version
        self._confirm()
        self.lists += 1
        self._synced.set()

    def _run(self) -> None:
        need_list = True
        failures = 0
        while not self._stop.is_set():
            try:
                if need_list:
                    self._relist()
                    need_list = False
                for event in self._kube.watch(
                    self.kind, self.namespace, self._version, self._watch_timeout
                ):
                    if self._stop.is_set():
                        return
                    self._apply(event.type, event.object)
                    if self._failure is None:
                        self._confirm()
                # Ended as asked: everything up to now was seen.
                self._confirm()
                failures = 0
            except ResourceVersionExpired:
                need_list = True
            except Exception as error:
                with self._lock:
                    self._failure = f"{type(error).__name__}: {error}"[:200]
                # Only a successful list shows the cache is whole again; events missed while the
                # watch was down are not replayed by resuming from an old version for certain.
                need_list = True
                failures += 1
                log.warning(
                    "watch of %s failed (%s); resuming",
                    self.kind.value,
                    error,
                    extra={"event": "watch_failed", "kind": self.kind.value},
                )
                # Back off so an API server outage is not hammered; stop() cuts the wait short.
                self._stop.wait(min(30.0, self._backoff * 2 ** min(failures, 5)))

    def _apply(self, kind: str, obj: JsonObject) -> None:
        version = str((obj.get("metadata") or {}).get("resourceVersion", ""))
        with self._lock:
            if kind in ("ADDED", "MODIFIED"):
                self._objects[key_of(obj)] = obj
            elif kind == "DELETED":
                self._objects.pop(key_of(obj), None)
            if version:
                self._version = version

    def forget(self, namespace: str, name: str) -> None:
        """Drop an object the server said is gone; the watch's DELETED event may still be on its way."""
        with self._lock:
            self._objects.pop((namespace, name), None)


# The informer that holds each kind of workload.
_WORKLOADS = {WorkloadKind.DEPLOYMENT: Kind.DEPLOYMENT, WorkloadKind.STATEFULSET: Kind.STATEFULSET}


class Informers:
    """Informers for Deployments, StatefulSets, HPAs and pods in the watched namespaces (None: all)."""

    def __init__(
        self,
        kube: Kube,
        namespaces: Sequence[str] | None,
        *,
        watch_timeout_s: int = 300,
        make: Callable[..., Informer] = Informer,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        scopes: list[str | None] = list(namespaces) if namespaces else [None]
        self._informers = {
            kind: [make(kube, kind, ns, watch_timeout_s=watch_timeout_s, clock=clock) for ns in scopes]
            for kind in Kind
        }

    def start(self) -> None:
        for group in self._informers.values():
            for informer in group:
                informer.start()

    def stop(self) -> None:
        for group in self._informers.values():
            for informer in group:
                informer.stop()

    @property
    def synced(self) -> bool:
        return all(i.synced for group in self._informers.values() for i in group)

    def wait_synced(self, timeout_s: float) -> bool:
        return all(i.wait_synced(timeout_s) for group in self._informers.values() for i in group)

    def stale(self) -> Mapping[str | None, str]:
        """Namespaces (None: all) whose workloads or HPAs may be out of date, and why; pods only
        inform the start-up estimate, so a stale pod cache holds nothing."""
        out: dict[str | None, str] = {}
        for kind in (*_WORKLOADS.values(), Kind.HPA):
            for informer in self._informers[kind]:
                reason = informer.staleness()
                if reason is not None and informer.namespace not in out:
                    out[informer.namespace] = reason
        return out

    def not_ready(self) -> str | None:
        """Why `/readyz` should fail: caches not filled yet, or a view that is not current."""
        if not self.synced:
            return "cluster caches not synced yet"
        stale = self.stale()
        if stale:
            where, reason = next(iter(stale.items()))
            return f"stale view of {where or 'all namespaces'}: {reason}"
        return None

    @property
    def lists(self) -> int:
        return sum(i.lists for group in self._informers.values() for i in group)

    def objects(self, kind: Kind) -> list[JsonObject]:
        return [obj for informer in self._informers[kind] for obj in informer.objects()]

    def forget(self, ref: TargetRef) -> None:
        for informer in self._informers[_WORKLOADS[ref.kind]]:
            informer.forget(ref.namespace, ref.name)
