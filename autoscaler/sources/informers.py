"""Informers: list-then-watch caches of the objects the cluster reader turns into snapshots.

One informer per resource kind and namespace lists once, then follows a watch from the list's
resourceVersion; a watch that ends or drops is resumed from the last version seen, and only a 410
(the server no longer has that history) or an error makes it list again. A tick reads the caches and
never lists anything itself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from autoscaler.kube import JsonObject, Kind, Kube, ResourceVersionExpired, key_of
from autoscaler.model import TargetRef

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
    ) -> None:
        self._kube = kube
        self.kind = kind
        self._namespace = namespace
        self._watch_timeout = watch_timeout_s
        self._backoff = backoff_s
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

    def start(self) -> None:
        where = self._namespace or "all"
        self._thread = threading.Thread(
            target=self._run, name=f"informer-{self.kind.value}-{where}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _relist(self) -> None:
        items, version = self._kube.list(self.kind, self._namespace)
        with self._lock:
            self._objects = {key_of(item): item for item in items}
            self._version = version
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
                    self.kind, self._namespace, self._version, self._watch_timeout
                ):
                    if self._stop.is_set():
                        return
                    self._apply(event.type, event.object)
                failures = 0
            except ResourceVersionExpired:
                need_list = True
            except Exception as error:
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


class Informers:
    """Informers for Deployments, HPAs and pods in the watched namespaces (None: all)."""

    def __init__(
        self,
        kube: Kube,
        namespaces: Sequence[str] | None,
        *,
        watch_timeout_s: int = 300,
        make: Callable[..., Informer] = Informer,
    ) -> None:
        scopes: list[str | None] = list(namespaces) if namespaces else [None]
        self._informers = {
            kind: [make(kube, kind, ns, watch_timeout_s=watch_timeout_s) for ns in scopes]
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

    @property
    def lists(self) -> int:
        return sum(i.lists for group in self._informers.values() for i in group)

    def objects(self, kind: Kind) -> list[JsonObject]:
        return [obj for informer in self._informers[kind] for obj in informer.objects()]

    def forget(self, ref: TargetRef) -> None:
        for informer in self._informers[Kind.DEPLOYMENT]:
            informer.forget(ref.namespace, ref.name)
