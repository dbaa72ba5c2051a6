"""The cluster reader: Deployments, their HPAs and their pods, kept current by watches, turned into the
typed targets a tick works on.

One informer per resource kind and namespace lists once, then follows a watch from the list's
resourceVersion; a watch that ends or drops is resumed from the last version seen, and only a 410
(the server no longer has that history) or an error makes it list again. A tick reads the caches and
never lists anything itself. Until every informer has listed once the reader reports itself not
synced and the tick acts on nothing: a half-filled cache would look like Deployments that lost
their HPA.
"""

from __future__ import annotations

import logging
import statistics
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from autoscaler.config import AnnotationError, ScaleMode, Settings, parse_annotations
from autoscaler.kube import JsonObject, Kind, Kube, ResourceVersionExpired, quantity
from autoscaler.model import Bounds, Target, TargetRef, WorkloadState

__all__ = [
    "ClusterReader",
    "ClusterSnapshot",
    "ConfigProblem",
    "HpaInfo",
    "Informer",
    "ManagedTarget",
    "build_snapshot",
]

log = logging.getLogger(__name__)

# Pods that became Ready longer ago than this say little about today's start-up time.
STARTUP_LOOKBACK_S = 3600.0
STARTUP_SAMPLES = 5


@dataclass(frozen=True, slots=True)
class HpaInfo:
    """The HPA that scales a Deployment, with the floor its owner set (before we raised it)."""

    namespace: str
    name: str
    resource_version: str
    min_replicas: int
    max_replicas: int
    # The floor the user set, remembered in an annotation while ours is in place.
    original_min: int
    raised: bool


@dataclass(frozen=True, slots=True)
class ManagedTarget:
    """An opted-in Deployment with its settings, and the HPA that targets it if there is one."""

    target: Target
    settings: Settings
    hpa: HpaInfo | None
    resource_version: str
    status_annotation: str | None


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """An opted-in (or trying to be) Deployment whose annotations cannot be used this tick."""

    ref: TargetRef
    error: AnnotationError
    resource_version: str


@dataclass(frozen=True, slots=True)
class ClusterSnapshot:
    synced: bool
    targets: tuple[ManagedTarget, ...]
    problems: tuple[ConfigProblem, ...]
    # HPAs whose floor we raised for a Deployment that is no longer ours in mode hpa (opted out,
    # switched mode, or deleted): the floor goes back to its owner's. With the Deployment, if any.
    stranded: tuple[tuple[TargetRef, HpaInfo], ...] = ()


ORIGINAL_MIN_KEY = "predictive-autoscaler.io/original-min-replicas"


def _key(obj: JsonObject) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


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
            self._objects = {_key(item): item for item in items}
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
                self._objects[_key(obj)] = obj
            elif kind == "DELETED":
                self._objects.pop(_key(obj), None)
            if version:
                self._version = version

    def forget(self, namespace: str, name: str) -> None:
        """Drop an object the server said is gone; the watch's DELETED event may still be on its way."""
        with self._lock:
            self._objects.pop((namespace, name), None)


# -- turning JSON into typed state -------------------------------------------------------------


def _parse_time(text: object) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _pod_requests(deployment: JsonObject) -> tuple[float | None, float | None]:
    """Summed requests of the pod template's containers; None when a container lacks one (then a
    utilization of that resource is undefined, as for the HPA)."""
    spec = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    containers = spec.get("containers") or []
    totals: list[float | None] = []
    for resource in ("cpu", "memory"):
        total: float | None = 0.0
        for container in containers:
            requests = (container.get("resources") or {}).get("requests") or {}
            amount = quantity(requests.get(resource))
            if amount is None or total is None:
                total = None
                continue
            total += amount
        totals.append(total if containers and total else None)
    return totals[0], totals[1]


def _rollout_in_progress(deployment: JsonObject) -> bool:
    """Pods of an older template are still running, which is what a rollout is (a scale change
    alone creates pods of the current template, so it never counts)."""
    status = deployment.get("status") or {}
    return int(status.get("replicas", 0) or 0) > int(status.get("updatedReplicas", 0) or 0)


def _matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _startup_s(deployment: JsonObject, pods: Sequence[JsonObject], now: float) -> float | None:
    """Median seconds from creation to Ready of the Deployment's recently started pods."""
    selector = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    namespace = _key(deployment)[0]
    durations: list[tuple[float, float]] = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        if meta.get("namespace") != namespace or not _matches(selector, meta.get("labels") or {}):
            continue
        created = _parse_time(meta.get("creationTimestamp"))
        conditions = (pod.get("status") or {}).get("conditions") or []
        ready = next(
            (c for c in conditions if c.get("type") == "Ready" and c.get("status") == "True"), None
        )
        ready_at = None if ready is None else _parse_time(ready.get("lastTransitionTime"))
        if created is None or ready_at is None or ready_at < created:
            continue
        if now - ready_at <= STARTUP_LOOKBACK_S:
            durations.append((ready_at, ready_at - created))
    if not durations:
        return None
    recent = sorted(durations)[-STARTUP_SAMPLES:]
    return float(statistics.median(d for _, d in recent))


def _hpa_for(deployment: JsonObject, hpas: Sequence[JsonObject]) -> HpaInfo | None:
    namespace, name = _key(deployment)
    for hpa in hpas:
        meta = hpa.get("metadata") or {}
        spec = hpa.get("spec") or {}
        ref = spec.get("scaleTargetRef") or {}
        if (
            meta.get("namespace") == namespace
            and ref.get("kind") == "Deployment"
            and ref.get("name") == name
        ):
            current_min = int(spec.get("minReplicas", 1) or 1)
            remembered = (meta.get("annotations") or {}).get(ORIGINAL_MIN_KEY)
            original = current_min
            if remembered is not None and str(remembered).isdigit():
                original = int(remembered)
            return HpaInfo(
                namespace=namespace,
                name=str(meta.get("name", "")),
                resource_version=str(meta.get("resourceVersion", "")),
                min_replicas=current_min,
                max_replicas=int(spec.get("maxReplicas", current_min) or current_min),
                original_min=original,
                raised=remembered is not None,
            )
    return None


def build_snapshot(
    deployments: Sequence[JsonObject],
    hpas: Sequence[JsonObject],
    pods: Sequence[JsonObject],
    now: float,
    synced: bool = True,
) -> ClusterSnapshot:
    """Opted-in Deployments as typed targets, and those whose annotations are unusable. Pure."""
    targets: list[ManagedTarget] = []
    problems: list[ConfigProblem] = []
    for deployment in sorted(deployments, key=_key):
        namespace, name = _key(deployment)
        meta = deployment.get("metadata") or {}
        annotations: Mapping[str, Any] = meta.get("annotations") or {}
        ref = TargetRef(namespace, name)
        version = str(meta.get("resourceVersion", ""))
        try:
            settings = parse_annotations({str(k): str(v) for k, v in annotations.items()})
        except AnnotationError as error:
            problems.append(ConfigProblem(ref, error, version))
            continue
        if settings is None:
            continue
        hpa = _hpa_for(deployment, hpas)
        config = settings.config
        if settings.mode is ScaleMode.HPA and hpa is not None:
            # The HPA owns the bounds in this mode; the floor we plan from is the user's own.
            upper = max(hpa.max_replicas, hpa.original_min)
            config = replace(config, bounds=Bounds(hpa.original_min, upper))
            settings = Settings(settings.mode, settings.dry_run, config)
        cpu, memory = _pod_requests(deployment)
        status = deployment.get("status") or {}
        spec_replicas = (deployment.get("spec") or {}).get("replicas")
        state = WorkloadState(
            ref=ref,
            spec_replicas=int(1 if spec_replicas is None else spec_replicas),
            ready_replicas=int(status.get("readyReplicas", 0) or 0),
            pod_cpu_request=cpu,
            pod_memory_request=memory,
            rollout_in_progress=_rollout_in_progress(deployment),
            measured_startup_s=_startup_s(deployment, pods, now),
        )
        targets.append(
            ManagedTarget(
                target=Target(state, config),
                settings=settings,
                hpa=hpa,
                resource_version=version,
                status_annotation=annotations.get("predictive-autoscaler.io/status"),
            )
        )
    return ClusterSnapshot(synced, tuple(targets), tuple(problems), _stranded(hpas, targets, problems))


def _stranded(
    hpas: Sequence[JsonObject],
    targets: Sequence[ManagedTarget],
    problems: Sequence[ConfigProblem],
) -> tuple[tuple[TargetRef, HpaInfo], ...]:
    """Raised HPA floors nobody plans for any more. A Deployment whose annotations are unusable
    this tick keeps its floor: a typo must not undo what the controller set."""
    kept = {m.target.state.ref for m in targets if m.settings.mode is ScaleMode.HPA}
    kept |= {p.ref for p in problems}
    out = []
    for hpa in hpas:
        meta = hpa.get("metadata") or {}
        if ORIGINAL_MIN_KEY not in (meta.get("annotations") or {}):
            continue
        ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        if ref.get("kind") != "Deployment":
            continue
        target = TargetRef(str(meta.get("namespace", "")), str(ref.get("name", "")))
        info = _hpa_for({"metadata": {"namespace": target.namespace, "name": target.name}}, [hpa])
        if target not in kept and info is not None:
            out.append((target, info))
    return tuple(sorted(out, key=lambda pair: (pair[0].namespace, pair[0].name)))


class ClusterReader:
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

    def _all(self, kind: Kind) -> list[JsonObject]:
        return [obj for informer in self._informers[kind] for obj in informer.objects()]

    def snapshot(self, now: float) -> ClusterSnapshot:
        if not self.synced:
            return ClusterSnapshot(False, (), ())
        return build_snapshot(self._all(Kind.DEPLOYMENT), self._all(Kind.HPA), self._all(Kind.POD), now)

    def forget(self, ref: TargetRef) -> None:
        for informer in self._informers[Kind.DEPLOYMENT]:
            informer.forget(ref.namespace, ref.name)
