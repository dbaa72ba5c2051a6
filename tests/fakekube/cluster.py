"""The API semantics, free of HTTP: create / replace / patch / delete with optimistic concurrency,
status and scale subresources, and deployment and statefulset controllers that keep their status in
step."""

from __future__ import annotations

import copy
import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from tests.fakekube import errors, kinds
from tests.fakekube.conversion import to_served, to_stored
from tests.fakekube.patch import PatchError, json_patch, merge_patch, strategic_merge_patch
from tests.fakekube.resources import RESOURCES, Resource, lookup
from tests.fakekube.selectors import FieldSelector, LabelSelector
from tests.fakekube.store import Obj, Store

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, APPLY_PATCH, STRATEGIC_PATCH)

NAMESPACES = lookup("namespaces")
DEPLOYMENTS = lookup("deployments")
STATEFULSETS = lookup("statefulsets")
_NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
# Metadata the server owns: a PUT or patch cannot change it.
_KEPT_ON_UPDATE = ("uid", "creationTimestamp", "namespace", "name", "generation", "deletionTimestamp")
NAMESPACE_MISMATCH = (
    "the namespace of the provided object does not match the namespace sent on the request"
)


def _now() -> datetime:
    return datetime.now(UTC)


class Cluster:
    def __init__(
        self, store: Store, *, auto_ready: bool = True, clock: Callable[[], datetime] = _now
    ) -> None:
        self.store = store
        self.auto_ready = auto_ready
        self.clock = clock

    # --- reads ----------------------------------------------------------------------------------

    def get(self, resource: Resource, namespace: str, name: str) -> Obj:
        return to_served(resource, self._stored(resource, namespace, name))

    def list(
        self, resource: Resource, namespace: str | None, labels: LabelSelector, fields: FieldSelector
    ) -> tuple[list[Obj], int]:
        with self.store.lock:
            rv = self.store.rv
            stored = self.store.list(resource.storage, namespace)
        served = [to_served(resource, obj) for obj in stored]
        matching = [
            obj
            for obj in served
            if labels.matches(obj["metadata"].get("labels")) and fields.matches(obj)
        ]
        return matching, rv

    def _stored(self, resource: Resource, namespace: str, name: str) -> Obj:
        obj = self.store.get(resource.storage, namespace if resource.namespaced else "", name)
        if obj is None:
            raise errors.not_found(resource.group, resource.plural, name)
        return obj

    # --- writes ---------------------------------------------------------------------------------

    def create(self, resource: Resource, namespace: str, body: Obj, *, dry_run: bool = False) -> Obj:
        self._check_kind(resource, body)
        obj = to_stored(resource, body)
        meta = obj.setdefault("metadata", {})
        if resource.namespaced:
            if meta.get("namespace") not in (None, "", namespace):
                raise errors.bad_request(NAMESPACE_MISMATCH)
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            suffix = "".join(random.choices(_NAME_SUFFIX_ALPHABET, k=5))
            meta["name"] = f"{meta['generateName']}{suffix}"
        if not meta.get("name"):
            raise errors.invalid(
                resource.group,
                resource.kind,
                "",
                [("metadata.name", "", "name or generateName is required")],
            )
        with self.store.lock:
            if resource.namespaced and self.store.get(NAMESPACES.storage, "", namespace) is None:
                raise errors.not_found("", "namespaces", namespace)
            if self.store.get(resource.storage, meta.get("namespace", ""), meta["name"]) is not None:
                raise errors.already_exists(resource.group, resource.plural, meta["name"])
            for key in (
                "resourceVersion",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "managedFields",
            ):
                meta.pop(key, None)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = kinds.rfc3339(self.clock())
            if resource.storage in kinds.TRACKS_GENERATION:
                meta["generation"] = 1
            if resource.storage in kinds.HAS_STATUS_SUBRESOURCE:
                status = kinds.initial_status(resource.storage)
                obj["status"] = status
            kinds.apply_defaults(resource.storage, obj)
            kinds.validate(resource, obj, None)
            if dry_run:
                return to_served(resource, obj)
            stored = self.store.put(resource.storage, obj)
            self._after_write(stored, resource.storage)
        return to_served(resource, stored)

    def replace(
        self,
        resource: Resource,
        namespace: str,
        name: str,
        body: Obj,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> Obj:
        if subresource == "scale":
            return self._replace_scale(resource, namespace, name, body, dry_run=dry_run)
        self._check_kind(resource, body)
        meta = body.get("metadata") or {}
        if meta.get("name") not in (None, name):
            raise errors.bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL ({name})"
            )
        if resource.namespaced and meta.get("namespace") not in (None, "", namespace):
            raise errors.bad_request(NAMESPACE_MISMATCH)
        if resource.storage in kinds.REQUIRES_RESOURCE_VERSION_ON_UPDATE and not meta.get(
            "resourceVersion"
        ):
            cause = ("metadata.resourceVersion", 0, "must be specified for an update")
            raise errors.invalid(resource.group, resource.kind, name, [cause])
        with self.store.lock:
            old = self._stored(resource, namespace, name)
            new = to_stored(resource, body)
            stored = self._update(resource, old, new, subresource, meta.get("resourceVersion"), dry_run)
        return to_served(resource, stored)

    def patch(
        self,
        resource: Resource,
        namespace: str,
        name: str,
        patch_type: str,
        patch: Any,
        *,
        subresource: str | None = None,
        field_manager: str | None = None,
        dry_run: bool = False,
    ) -> tuple[Obj, bool]:
        """Apply a patch; the flag says whether the object was created (server-side apply only)."""
        if patch_type == APPLY_PATCH and not field_manager:
            raise errors.invalid(
                resource.group,
                resource.kind,
                name,
                [("fieldManager", "", "is required for apply patch")],
            )
        with self.store.lock:
            old = self.store.get(resource.storage, namespace if resource.namespaced else "", name)
            if old is None:
                if patch_type == APPLY_PATCH and subresource is None and isinstance(patch, dict):
                    return self.create(resource, namespace, patch, dry_run=dry_run), True
                raise errors.not_found(resource.group, resource.plural, name)
            current = kinds.scale_of(old) if subresource == "scale" else to_served(resource, old)
            patched = _apply_patch(patch_type, current, patch)
            if not isinstance(patched, dict):
                raise errors.bad_request("the patch did not produce an object")
            expected = (patched.get("metadata") or {}).get("resourceVersion")
            if subresource == "scale":
                return self._write_scale(resource, old, patched, expected, dry_run), False
            stored = self._update(
                resource, old, to_stored(resource, patched), subresource, expected, dry_run
            )
        return to_served(resource, stored), False

    def delete(
        self,
        resource: Resource,
        namespace: str,
        name: str,
        options: Obj | None,
        *,
        dry_run: bool = False,
    ) -> Obj:
        ns = namespace if resource.namespaced else ""
        with self.store.lock:
            old = self._stored(resource, ns, name)
            preconditions = (options or {}).get("preconditions") or {}
            for field, label in (("resourceVersion", "ResourceVersion"), ("uid", "UID")):
                wanted, actual = preconditions.get(field), old["metadata"].get(field)
                if wanted is not None and wanted != actual:
                    why = _precondition_failed(label, wanted, actual)
                    raise errors.conflict(resource.group, resource.plural, name, why)
            if dry_run:
                return to_served(resource, old)
            if resource.storage == NAMESPACES.storage:
                # No finalizers to wait on: the namespace and everything in it go at once.
                for storage in {r.storage for r in _all_namespaced()}:
                    for obj in self.store.list(storage, name):
                        self.store.remove(storage, name, obj["metadata"]["name"])
            gone = self.store.remove(resource.storage, ns, name)
        assert gone is not None  # it was there under the same lock
        return to_served(resource, gone)

    def get_scale(self, resource: Resource, namespace: str, name: str) -> Obj:
        return kinds.scale_of(self._stored(resource, namespace, name))

    def _replace_scale(
        self, resource: Resource, namespace: str, name: str, body: Obj, *, dry_run: bool
    ) -> Obj:
        meta = body.get("metadata") or {}
        if meta.get("name") not in (None, name):
            raise errors.bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL ({name})"
            )
        with self.store.lock:
            old = self._stored(resource, namespace, name)
            return self._write_scale(resource, old, body, meta.get("resourceVersion"), dry_run)

    def _write_scale(
        self, resource: Resource, old: Obj, scale: Obj, expected: Any, dry_run: bool
    ) -> Obj:
        name = old["metadata"]["name"]
        replicas = kinds.validate_scale(name, scale)
        if expected not in (None, "") and expected != old["metadata"]["resourceVersion"]:
            raise errors.conflict(resource.group, resource.plural, name)
        new = copy.deepcopy(old)
        new["spec"]["replicas"] = replicas
        return kinds.scale_of(self._update(resource, old, new, None, None, dry_run))

    def _update(
        self,
        resource: Resource,
        old: Obj,
        new: Obj,
        subresource: str | None,
        expected: Any,
        dry_run: bool,
    ) -> Obj:
        """Write `new` over `old` (both stored shape) as PUT does; the caller holds the store lock."""
        old_meta = old["metadata"]
        name = old_meta["name"]
        if expected not in (None, "") and expected != old_meta["resourceVersion"]:
            raise errors.conflict(resource.group, resource.plural, name)
        new_meta = new.setdefault("metadata", {})
        if new_meta.get("uid") not in (None, "", old_meta["uid"]):
            why = _precondition_failed("UID", new_meta["uid"], old_meta["uid"])
            raise errors.conflict(resource.group, resource.plural, name, why)
        if subresource == "status":
            result = copy.deepcopy(old)
            result["status"] = new.get("status")
        else:
            result = new
            meta = result["metadata"]
            for key in _KEPT_ON_UPDATE:
                if key in old_meta:
                    meta[key] = old_meta[key]
                else:
                    meta.pop(key, None)
            if resource.storage in kinds.HAS_STATUS_SUBRESOURCE:
                if "status" in old:
                    result["status"] = copy.deepcopy(old["status"])
                else:
                    result.pop("status", None)
            kinds.apply_defaults(resource.storage, result)
            if resource.storage in kinds.TRACKS_GENERATION and result.get("spec") != old.get("spec"):
                meta["generation"] = old_meta.get("generation", 0) + 1
        kinds.validate(resource, result, old)
        if kinds.strip_for_compare(result) == kinds.strip_for_compare(old):
            return old  # a no-op write keeps its resourceVersion and sends no watch event
        if dry_run:
            return result
        stored = self.store.put(resource.storage, result)
        if subresource != "status":
            self._after_write(stored, resource.storage)
        return stored

    def _check_kind(self, resource: Resource, body: Obj) -> None:
        kind, api_version = body.get("kind"), body.get("apiVersion")
        if kind not in (None, "", resource.kind) or api_version not in (None, "", resource.api_version):
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version "
                f"({resource.api_version}) or kind {kind} is not {resource.kind}"
            )

    # --- the deployment and statefulset controllers ---------------------------------------------

    def _after_write(self, stored: Obj, storage: str) -> None:
        meta = stored["metadata"]
        if storage == DEPLOYMENTS.storage:
            self.reconcile_deployment(meta["namespace"], meta["name"])
        elif storage == STATEFULSETS.storage:
            self.reconcile_statefulset(meta["namespace"], meta["name"])

    def reconcile_statefulset(self, namespace: str, name: str, ready: int | None = None) -> Obj | None:
        """Write the status the controller would; `ready` overrides how many pods are ready."""
        with self.store.lock:
            statefulset = self.store.get(STATEFULSETS.storage, namespace, name)
            if statefulset is None:
                return None
            if ready is None:
                wanted = (statefulset.get("spec") or {}).get("replicas", 1)
                ready = wanted if self.auto_ready else kinds.ready_replicas(statefulset)
            status = kinds.statefulset_status(statefulset, ready)
            if status == statefulset.get("status"):
                return statefulset
            statefulset["status"] = status
            return self.store.put(STATEFULSETS.storage, statefulset)

    def reconcile_deployment(self, namespace: str, name: str, ready: int | None = None) -> Obj | None:
        """Write the status the controller would; `ready` overrides how many pods are ready."""
        with self.store.lock:
            deployment = self.store.get(DEPLOYMENTS.storage, namespace, name)
            if deployment is None:
                return None
            if ready is None:
                wanted = (deployment.get("spec") or {}).get("replicas", 1)
                ready = wanted if self.auto_ready else kinds.ready_replicas(deployment)
            status = kinds.deployment_status(deployment, ready, self.clock())
            if status == deployment.get("status"):
                return deployment
            deployment["status"] = status
            return self.store.put(DEPLOYMENTS.storage, deployment)

    # --- test control ---------------------------------------------------------------------------

    def put(self, obj: Obj) -> Obj:
        """Create or overwrite `obj` as given (status included), filling what the server would."""
        resource = lookup(obj.get("kind", ""), obj.get("apiVersion"))
        stored = to_stored(resource, obj)
        meta = stored.setdefault("metadata", {})
        if not meta.get("name"):
            raise ValueError("put_object needs metadata.name")
        if resource.namespaced:
            meta.setdefault("namespace", "default")
        else:
            meta.pop("namespace", None)
        with self.store.lock:
            if resource.namespaced:
                self.ensure_namespace(meta["namespace"])
            old = self.store.get(resource.storage, meta.get("namespace", ""), meta["name"])
            old_meta = (old or {}).get("metadata", {})
            meta.setdefault("uid", old_meta.get("uid") or str(uuid.uuid4()))
            meta.setdefault(
                "creationTimestamp", old_meta.get("creationTimestamp") or kinds.rfc3339(self.clock())
            )
            if resource.storage in kinds.TRACKS_GENERATION and "generation" not in meta:
                changed = old is not None and old.get("spec") != stored.get("spec")
                meta["generation"] = old_meta.get("generation", 1) + (1 if changed else 0)
            kinds.apply_defaults(resource.storage, stored)
            written = self.store.put(resource.storage, stored)
            self._after_write(written, resource.storage)
            latest = self.store.get(resource.storage, meta.get("namespace", ""), meta["name"])
        assert latest is not None
        return to_served(resource, latest)

    def ensure_namespace(self, name: str) -> None:
        with self.store.lock:
            if self.store.get(NAMESPACES.storage, "", name) is None:
                namespace: Obj = {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {
                        "name": name,
                        "uid": str(uuid.uuid4()),
                        "creationTimestamp": kinds.rfc3339(self.clock()),
                    },
                }
                kinds.apply_defaults(NAMESPACES.storage, namespace)
                self.store.put(NAMESPACES.storage, namespace)


def _precondition_failed(label: str, wanted: Any, actual: Any) -> str:
    return f"Precondition failed: {label} in precondition: {wanted}, {label} in object meta: {actual}"


def _all_namespaced() -> list[Resource]:
    return [r for r in RESOURCES if r.namespaced]


def _apply_patch(patch_type: str, current: Obj, patch: Any) -> Any:
    try:
        if patch_type == JSON_PATCH:
            if not isinstance(patch, list):
                raise errors.bad_request(
                    "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
                )
            return json_patch(current, patch)
        if not isinstance(patch, dict):
            raise errors.bad_request("the patch is not a JSON object")
        if patch_type == MERGE_PATCH:
            return merge_patch(current, patch)
        return strategic_merge_patch(current, patch)
    except PatchError as exc:
        raise errors.ApiError(422, str(exc)) from exc
