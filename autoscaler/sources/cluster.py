"""The cluster reader: Deployments and StatefulSets, their HPAs and their pods (kept current by the
informers, `informers.py`) turned into the typed snapshot a tick works on. Until every informer has
listed once the reader reports itself not synced and the tick acts on nothing: a half-filled cache
would look like workloads that lost their HPA.

Both kinds are read alike (annotations, pod template requests, ready and existing pods, the pods
their selector picks for the start-up time, the HPA whose `scaleTargetRef` names their kind and
name); only what a rollout looks like differs. Their refs carry the kind, so a Deployment and a
StatefulSet of one name in one namespace are two targets.

The snapshot says where each opted-in workload stands: decided for, refused by its scale mode,
invalid, or resting after a permission error (what acting showed, `learn`); and which raised HPA
floors belong to nobody any more.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from autoscaler.config import AnnotationError, parse_annotations
from autoscaler.kube import JsonObject, Kind, key_of, quantity
from autoscaler.metrics import METRICS, MetricKind
from autoscaler.model import HpaInfo, Scaling, Target, TargetRef, WorkloadKind, WorkloadState
from autoscaler.modes import MODES
from autoscaler.patches import ORIGINAL_MIN_KEY, STATUS_KEY
from autoscaler.stages import ActOutcome, ActuationResult, Release, SetAside, Snapshot, Standing
from autoscaler.timefmt import parse_time

__all__ = ["ClusterObjects", "ClusterReader", "build_snapshot"]

# Pods that became Ready longer ago than this say little about today's start-up time.
STARTUP_LOOKBACK_S = 3600.0
STARTUP_SAMPLES = 5
# After a 403 a target is left alone this long: RBAC is fixed by a person, not by retrying.
FORBIDDEN_COOLDOWN_S = 300.0


# -- turning JSON into typed state -------------------------------------------------------------


def _pod_requests(workload: JsonObject) -> dict[MetricKind, float]:
    """Summed requests of the pod template's containers, per kind measured against one; a kind is
    left out when a container lacks the request (then its utilization is undefined, as for the
    HPA)."""
    spec = ((workload.get("spec") or {}).get("template") or {}).get("spec") or {}
    containers = spec.get("containers") or []
    totals: dict[MetricKind, float] = {}
    for kind, metric in METRICS.items():
        resource = metric.request_resource
        if resource is None:
            continue
        total: float | None = 0.0
        for container in containers:
            requests = (container.get("resources") or {}).get("requests") or {}
            amount = quantity(requests.get(resource))
            if amount is None or total is None:
                total = None
                continue
            total += amount
        if containers and total:
            totals[kind] = total
    return totals


def _existing_pods(status: Mapping[str, Any]) -> int | None:
    """Pods of the workload that exist, ready or not (its controller's count of the pods it
    created; an omitted count is zero). None before the controller has written any status."""
    if not status:
        return None
    return int(status.get("replicas", 0) or 0)


def _rollout_in_progress(kind: WorkloadKind, workload: JsonObject) -> bool:
    """Pods of an older template are still running, which is what a rollout is (a scale change
    alone creates pods of the current template, so it never counts)."""
    status = workload.get("status") or {}
    if kind is WorkloadKind.STATEFULSET:
        # The StatefulSet controller keeps the old template's revision current until every pod
        # runs the new one (or, with a partition or OnDelete, for as long as old pods are kept).
        current, update = status.get("currentRevision"), status.get("updateRevision")
        if current and update:
            return bool(current != update)
    return int(status.get("replicas", 0) or 0) > int(status.get("updatedReplicas", 0) or 0)


def _matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _startup_s(workload: JsonObject, pods: Sequence[JsonObject], now: float) -> float | None:
    """Median seconds from creation to Ready of the workload's recently started pods."""
    selector = ((workload.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    namespace = key_of(workload)[0]
    durations: list[tuple[float, float]] = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        if meta.get("namespace") != namespace or not _matches(selector, meta.get("labels") or {}):
            continue
        created = parse_time(meta.get("creationTimestamp"))
        conditions = (pod.get("status") or {}).get("conditions") or []
        ready = next(
            (c for c in conditions if c.get("type") == "Ready" and c.get("status") == "True"), None
        )
        ready_at = None if ready is None else parse_time(ready.get("lastTransitionTime"))
        if created is None or ready_at is None or ready_at < created:
            continue
        if now - ready_at <= STARTUP_LOOKBACK_S:
            durations.append((ready_at, ready_at - created))
    if not durations:
        return None
    recent = sorted(durations)[-STARTUP_SAMPLES:]
    return float(statistics.median(d for _, d in recent))


def _hpa_for(target: TargetRef, hpas: Sequence[JsonObject]) -> HpaInfo | None:
    """The HPA whose `scaleTargetRef` names the workload, by kind and name."""
    namespace = target.namespace
    for hpa in hpas:
        meta = hpa.get("metadata") or {}
        spec = hpa.get("spec") or {}
        ref = spec.get("scaleTargetRef") or {}
        if (
            meta.get("namespace") == namespace
            and ref.get("kind") == target.kind.value
            and ref.get("name") == target.name
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


def _invalid(ref: TargetRef, error: AnnotationError) -> SetAside:
    return SetAside(
        ref,
        Standing.INVALID,
        "InvalidAnnotation",
        f"{error}; the {ref.kind.value} is left as it is",
        (error.key, error.value),
    )


def build_snapshot(
    deployments: Sequence[JsonObject],
    hpas: Sequence[JsonObject],
    pods: Sequence[JsonObject],
    now: float,
    statefulsets: Sequence[JsonObject] = (),
) -> Snapshot:
    """Opted-in Deployments and StatefulSets as typed targets, those that cannot be decided for and
    why, and the HPA floors to give back. Pure."""
    targets: list[Target] = []
    invalid: list[SetAside] = []
    refused: list[SetAside] = []
    # Objects in a list carry no `kind` of their own: which list an object came in says it.
    workloads = [
        *((TargetRef(*key_of(obj), WorkloadKind.DEPLOYMENT), obj) for obj in deployments),
        *((TargetRef(*key_of(obj), WorkloadKind.STATEFULSET), obj) for obj in statefulsets),
    ]
    workloads.sort(key=lambda pair: (pair[0].namespace, pair[0].name, pair[0].kind.value))
    for ref, workload in workloads:
        meta = workload.get("metadata") or {}
        annotations: Mapping[str, Any] = meta.get("annotations") or {}
        try:
            settings = parse_annotations({str(k): str(v) for k, v in annotations.items()})
        except AnnotationError as error:
            invalid.append(_invalid(ref, error))
            continue
        if settings is None:
            continue
        hpa = _hpa_for(ref, hpas)
        mode = MODES[settings.mode]
        refusal = mode.admit(hpa, ref.kind)
        if refusal is not None:
            refused.append(SetAside(ref, Standing.REFUSED, refusal.reason, refusal.message, refusal.key))
            continue
        status = workload.get("status") or {}
        spec_replicas = (workload.get("spec") or {}).get("replicas")
        state = WorkloadState(
            ref=ref,
            spec_replicas=int(1 if spec_replicas is None else spec_replicas),
            ready_replicas=int(status.get("readyReplicas", 0) or 0),
            existing_pods=_existing_pods(status),
            pod_requests=_pod_requests(workload),
            rollout_in_progress=_rollout_in_progress(ref.kind, workload),
            measured_startup_s=_startup_s(workload, pods, now),
        )
        scaling = Scaling(
            settings.mode,
            settings.dry_run,
            hpa,
            str(meta.get("resourceVersion", "")),
            annotations.get(STATUS_KEY),
        )
        targets.append(Target(state, mode.configure(settings.config, hpa), scaling))
    # Kept: floors of workloads still planned for in a mode that raises them, and of those whose
    # annotations are unusable this tick (a typo must not undo what the controller set).
    kept = {
        t.state.ref for t in targets if t.scaling is not None and MODES[t.scaling.mode].keeps_hpa_floor
    }
    kept |= {aside.ref for aside in invalid}
    return Snapshot(tuple(targets), (*invalid, *refused), _releases(hpas, kept))


def _releases(hpas: Sequence[JsonObject], kept: set[TargetRef]) -> tuple[Release, ...]:
    """Raised HPA floors nobody plans for any more."""
    out = []
    for hpa in hpas:
        meta = hpa.get("metadata") or {}
        if ORIGINAL_MIN_KEY not in (meta.get("annotations") or {}):
            continue
        ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        kind = next((k for k in WorkloadKind if k.value == ref.get("kind")), None)
        if kind is None:
            continue
        target = TargetRef(str(meta.get("namespace", "")), str(ref.get("name", "")), kind)
        info = _hpa_for(target, [hpa])
        if target not in kept and info is not None:
            out.append(Release(target, info))
    return tuple(sorted(out, key=lambda r: (r.ref.namespace, r.ref.name, r.ref.kind.value)))


class ClusterObjects(Protocol):
    """Where the reader's objects come from: informers in a controller."""

    @property
    def synced(self) -> bool: ...

    def objects(self, kind: Kind) -> list[JsonObject]: ...

    def forget(self, ref: TargetRef) -> None:
        """Drop a workload the server said is gone."""
        ...

    def stale(self) -> Mapping[str | None, str]:
        """Namespaces (None: all) whose view may be out of date, and why."""
        ...


class ClusterReader:
    """The reader stage in a cluster: a snapshot of `objects` every tick, with the targets that
    rest after a permission error set aside until their rest is over."""

    def __init__(self, objects: ClusterObjects, *, rest_s: float = FORBIDDEN_COOLDOWN_S) -> None:
        self._objects = objects
        self._rest_s = rest_s
        self._resting: dict[TargetRef, float] = {}

    def snapshot(self, now: float) -> Snapshot:
        if not self._objects.synced:
            return Snapshot((), synced=False)
        objects = self._objects.objects
        built = build_snapshot(
            objects(Kind.DEPLOYMENT),
            objects(Kind.HPA),
            objects(Kind.POD),
            now,
            objects(Kind.STATEFULSET),
        )
        for ref in [r for r, until in self._resting.items() if until <= now]:
            del self._resting[ref]
        stale = self._objects.stale()
        if not self._resting and not stale:
            return built
        held: list[SetAside] = []
        targets: list[Target] = []
        for target in built.targets:
            ref = target.state.ref
            why = stale.get(None, stale.get(ref.namespace))
            if why is not None:
                # Written from this view, a change made meanwhile (an opt-out, dry-run, someone
                # else's scale) would be undone: hold until the view is current again.
                held.append(SetAside(ref, Standing.STALE_VIEW, "StaleView",
                                     f"held as it is: {why}", ("stale-view", "")))  # fmt: skip
            elif ref in self._resting:
                held.append(SetAside(ref, Standing.COOLING_DOWN))
            else:
                targets.append(target)
        releases = tuple(
            r for r in built.releases if stale.get(None, stale.get(r.ref.namespace)) is None
        )
        return Snapshot(tuple(targets), (*built.set_aside, *held), releases)

    def learn(self, ref: TargetRef, result: ActuationResult, now: float) -> None:
        if result.outcome is ActOutcome.FORBIDDEN:
            self._resting[ref] = now + self._rest_s
        elif result.outcome is ActOutcome.GONE:
            self._objects.forget(ref)
