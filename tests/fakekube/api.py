"""The REST surface: URL routing, discovery, verbs, content types, list paging, tables and watches.

`Api.handle` turns a parsed request into a `Reply`, or into a `WatchStream` whose events the HTTP
layer writes out as chunked JSON lines."""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from tests.fakekube import errors, protobuf, tables
from tests.fakekube.cluster import APPLY_PATCH, PATCH_TYPES, Cluster
from tests.fakekube.conversion import to_served
from tests.fakekube.resources import (
    SERVER_VERSION,
    Resource,
    api_group,
    api_group_list,
    api_resource_list,
    api_versions,
    find,
    is_group_version,
)
from tests.fakekube.selectors import FieldSelector, LabelSelector, SelectorError
from tests.fakekube.store import Change, Obj, Store

# How often an idle watch wakes to let the HTTP layer notice a client that went away.
WATCH_TICK_SECONDS = 0.25
_TRUE = ("true", "1")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    content_type: str
    accept: str
    body: bytes


@dataclass
class Reply:
    status: int
    body: Obj
    headers: dict[str, str] = field(default_factory=dict)


WatchStream = Generator[Obj | None, None, None]  # None is an idle tick, not an event


@dataclass(frozen=True)
class _Route:
    resource: Resource
    namespace: str | None
    name: str | None
    subresource: str | None
    legacy_watch: bool


def parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise errors.bad_request(f"error decoding the request body: {exc}") from exc


class Api:
    def __init__(self, cluster: Cluster, store: Store, server_address: Callable[[], str]) -> None:
        self.cluster = cluster
        self.store = store
        self.server_address = server_address

    def handle(self, request: Request) -> Reply | WatchStream:
        discovery = self._discovery(request.path)
        if discovery is not None:
            if request.method != "GET":
                raise errors.method_not_allowed()
            return Reply(200, discovery)
        route = _route(request.path)
        if route is None:
            raise errors.path_not_found()
        return self._serve(request, route)

    # --- discovery ------------------------------------------------------------------------------

    def _discovery(self, path: str) -> Obj | None:
        parts = [p for p in path.split("/") if p]
        if parts == ["version"]:
            return dict(SERVER_VERSION)
        if parts == ["api"]:
            return api_versions(self.server_address())
        if parts == ["api", "v1"]:
            return api_resource_list("", "v1")
        if parts == ["apis"]:
            return api_group_list()
        if len(parts) == 2 and parts[0] == "apis":
            return api_group(parts[1])
        if len(parts) == 3 and parts[0] == "apis" and is_group_version(parts[1], parts[2]):
            return api_resource_list(parts[1], parts[2])
        return None

    # --- verbs ----------------------------------------------------------------------------------

    def _serve(self, request: Request, route: _Route) -> Reply | WatchStream:
        resource, ns, name, sub = route.resource, route.namespace or "", route.name, route.subresource
        query = request.query
        dry_run = query.get("dryRun") == "All"
        method = request.method
        if name is None:
            if method == "GET":
                if route.legacy_watch or query.get("watch", "").lower() in _TRUE:
                    return self._watch(request, resource, route.namespace)
                return self._list(request, resource, route.namespace)
            if method == "POST":
                body = self._object_body(request)
                return Reply(201, self.cluster.create(resource, ns, body, dry_run=dry_run))
            if method == "DELETE":
                return self._delete_collection(request, resource, route.namespace)
            raise errors.method_not_allowed()
        if route.legacy_watch:
            raise errors.path_not_found()
        if method == "GET":
            if sub == "scale":
                return Reply(200, self.cluster.get_scale(resource, ns, name))
            obj = self.cluster.get(resource, ns, name)
            if tables.wants_table(request.accept) and sub is None:
                rv = int(obj["metadata"]["resourceVersion"])
                return Reply(
                    200, tables.table(resource, [obj], rv, query.get("includeObject", "Metadata"))
                )
            return Reply(200, obj)
        if method == "PUT":
            body = self._object_body(request)
            return Reply(
                200, self.cluster.replace(resource, ns, name, body, subresource=sub, dry_run=dry_run)
            )
        if method == "PATCH":
            patch_type = request.content_type
            if patch_type not in PATCH_TYPES:
                raise errors.unsupported_media_type(patch_type, list(PATCH_TYPES))
            patch = _parse_apply(request.body) if patch_type == APPLY_PATCH else parse_json(request.body)
            obj, created = self.cluster.patch(
                resource,
                ns,
                name,
                patch_type,
                patch,
                subresource=sub,
                field_manager=query.get("fieldManager"),
                dry_run=dry_run,
            )
            return Reply(201 if created else 200, obj)
        if method == "DELETE":
            if sub is not None:
                raise errors.method_not_allowed()
            options = _options_body(request) if request.body.strip() else None
            gone = self.cluster.delete(resource, ns, name, options, dry_run=dry_run)
            return Reply(200, _deleted_reply(resource, gone))
        raise errors.method_not_allowed()

    def _object_body(self, request: Request) -> Obj:
        if request.content_type == protobuf.CONTENT_TYPE:
            return protobuf.decode(request.body)
        if request.content_type not in ("", "application/json"):
            raise errors.unsupported_media_type(request.content_type, ["application/json"])
        body = parse_json(request.body)
        if not isinstance(body, dict):
            raise errors.bad_request("the request body must be a JSON object")
        return body

    def _selectors(self, request: Request) -> tuple[LabelSelector, FieldSelector]:
        try:
            return (
                LabelSelector(request.query.get("labelSelector")),
                FieldSelector(request.query.get("fieldSelector")),
            )
        except SelectorError as exc:
            raise errors.bad_request(str(exc)) from exc

    def _list(self, request: Request, resource: Resource, namespace: str | None) -> Reply:
        labels, fields = self._selectors(request)
        items, rv = self.cluster.list(resource, namespace, labels, fields)
        query = request.query
        rv_param = query.get("resourceVersion", "")
        if (
            query.get("resourceVersionMatch") == "Exact"
            and rv_param.isdigit()
            and int(rv_param) < self.store.compacted
        ):
            raise errors.expired(f"too old resource version: {rv_param} ({self.store.compacted + 1})")
        meta: Obj = {"resourceVersion": str(rv)}
        token = query.get("continue")
        if token:
            start, rv = _decode_continue(token, self.store.compacted)
            meta["resourceVersion"] = str(rv)
            items = [obj for obj in items if _key(obj) > start]
        limit = int(query["limit"]) if query.get("limit", "").isdigit() else 0
        if 0 < limit < len(items):
            meta["continue"] = _encode_continue(_key(items[limit - 1]), rv)
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        if tables.wants_table(request.accept):
            body = tables.table(resource, items, rv, query.get("includeObject", "Metadata"))
            body["metadata"].update(meta)
            return Reply(200, body)
        for obj in items:  # list items carry no kind/apiVersion, as in the real server's JSON
            obj.pop("kind", None)
            obj.pop("apiVersion", None)
        return Reply(
            200,
            {
                "kind": resource.list_kind,
                "apiVersion": resource.api_version,
                "metadata": meta,
                "items": items,
            },
        )

    def _delete_collection(self, request: Request, resource: Resource, namespace: str | None) -> Reply:
        labels, fields = self._selectors(request)
        items, rv = self.cluster.list(resource, namespace, labels, fields)
        dry_run = request.query.get("dryRun") == "All"
        gone = [
            self.cluster.delete(
                resource,
                obj["metadata"].get("namespace", ""),
                obj["metadata"]["name"],
                None,
                dry_run=dry_run,
            )
            for obj in items
        ]
        return Reply(
            200,
            {
                "kind": resource.list_kind,
                "apiVersion": resource.api_version,
                "metadata": {"resourceVersion": str(self.store.rv if gone else rv)},
                "items": gone,
            },
        )

    # --- watch ----------------------------------------------------------------------------------

    def _watch(self, request: Request, resource: Resource, namespace: str | None) -> WatchStream:
        labels, fields = self._selectors(request)
        query = request.query
        rv_param = query.get("resourceVersion", "")
        if rv_param not in ("", "0") and not rv_param.isdigit():
            raise errors.bad_request(f"invalid resource version: {rv_param!r}")
        timeout = query.get("timeoutSeconds", "")
        try:
            seconds = float(timeout) if timeout else None
        except ValueError as exc:
            raise errors.bad_request(f"invalid timeoutSeconds: {timeout!r}") from exc
        return self._stream(
            resource,
            namespace,
            labels,
            fields,
            start=int(rv_param) if rv_param not in ("", "0") else None,
            seconds=seconds,
            bookmarks=query.get("allowWatchBookmarks", "").lower() in _TRUE,
            initial=query.get("sendInitialEvents", "").lower() in _TRUE,
            as_table=tables.wants_table(request.accept),
        )

    def _stream(
        self,
        resource: Resource,
        namespace: str | None,
        labels: LabelSelector,
        fields: FieldSelector,
        *,
        start: int | None,
        seconds: float | None,
        bookmarks: bool,
        initial: bool,
        as_table: bool,
    ) -> WatchStream:
        def matches(obj: Obj) -> bool:
            if namespace is not None and obj["metadata"].get("namespace") != namespace:
                return False
            return labels.matches(obj["metadata"].get("labels")) and fields.matches(obj)

        def visible(stored: Obj | None) -> bool:
            return stored is not None and matches(to_served(resource, stored))

        def event(kind: str, stored: Obj) -> Obj:
            obj = to_served(resource, stored)
            if as_table:
                obj = tables.table(
                    resource, [obj], int(stored["metadata"]["resourceVersion"]), "Metadata"
                )
            return {"type": kind, "object": obj}

        def translate(change: Change) -> Obj | None:
            # With a selector, objects that start or stop matching appear as ADDED or DELETED.
            now, before = visible(change.obj), visible(change.old)
            if change.type == "MODIFIED":
                if now and before:
                    return event("MODIFIED", change.obj)
                if now:
                    return event("ADDED", change.obj)
                return event("DELETED", change.obj) if before else None
            return event(change.type, change.obj) if now else None

        def bookmark(rv: int, annotations: dict[str, str] | None = None) -> Obj:
            meta: Obj = {"resourceVersion": str(rv)}
            if annotations:
                meta["annotations"] = annotations
            return {
                "type": "BOOKMARK",
                "object": {"kind": resource.kind, "apiVersion": resource.api_version, "metadata": meta},
            }

        self.store.watcher_started()
        try:
            deadline = time.monotonic() + seconds if seconds is not None else None
            with self.store.lock:
                epoch, compacted = self.store.drop_epoch, self.store.compacted
                snapshot: list[Obj] = []
                if start is None or initial:
                    cursor = self.store.rv
                    snapshot = [o for o in self.store.list(resource.storage) if visible(o)]
                else:
                    cursor = start
            if start is not None and start < compacted:
                message = f"too old resource version: {start} ({compacted + 1})"
                yield {"type": "ERROR", "object": errors.expired(message).status()}
                return
            for obj in snapshot:
                yield event("ADDED", obj)
            if initial and bookmarks:
                yield bookmark(cursor, {"k8s.io/initial-events-end": "true"})
            while True:
                waited = self.store.wait(resource.storage, cursor, epoch, deadline, WATCH_TICK_SECONDS)
                for change in waited.changes:
                    translated = translate(change)
                    if translated is not None:
                        yield translated
                cursor = waited.cursor
                if waited.ended == "expired":
                    message = f"too old resource version: {cursor} ({self.store.compacted + 1})"
                    yield {"type": "ERROR", "object": errors.expired(message).status()}
                    return
                if waited.ended == "timeout":
                    if bookmarks:
                        yield bookmark(cursor)
                    return
                if waited.ended == "dropped":
                    return
                if not waited.changes:
                    yield None
        finally:
            self.store.watcher_ended()


def _route(path: str) -> _Route | None:
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    legacy_watch = bool(rest) and rest[0] == "watch"
    if legacy_watch:
        rest = rest[1:]
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces" and find(group, version, rest[2]) is not None:
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        return None
    resource = find(group, version, rest[0])
    if resource is None:
        return None
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if sub is not None and sub not in resource.subresources:
        return None
    if resource.namespaced and namespace is None and name is not None:
        return None
    if not resource.namespaced and namespace is not None:
        return None
    return _Route(resource, namespace, name, sub, legacy_watch)


def _deleted_reply(resource: Resource, gone: Obj) -> Obj:
    if resource.storage == "pods":
        return gone  # graceful deletion answers with the pod itself
    details: Obj = {
        "name": gone["metadata"]["name"],
        "kind": resource.plural,
        "uid": gone["metadata"].get("uid"),
    }
    if resource.group:
        details["group"] = resource.group
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    }


def _key(obj: Obj) -> tuple[str, str]:
    return (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])


def _encode_continue(start: tuple[str, str], rv: int) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": list(start)}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_continue(token: str, compacted: int) -> tuple[tuple[str, str], int]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        start, rv = (str(data["start"][0]), str(data["start"][1])), int(data["rv"])
    except (ValueError, KeyError, IndexError, TypeError, binascii.Error) as exc:
        raise errors.bad_request(f"continue key is not valid: {exc}") from exc
    if rv < compacted:
        raise errors.expired(
            "The provided continue parameter is too old to display a consistent list result. "
            "You can start a new list without the continue parameter."
        )
    return start, rv


def _options_body(request: Request) -> Any:
    if request.content_type == protobuf.CONTENT_TYPE:
        return protobuf.decode(request.body)
    return parse_json(request.body)


def _parse_apply(raw: bytes) -> Any:
    # Apply bodies are YAML in principle, but the kubernetes client and kubectl both send JSON.
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise errors.unsupported_media_type(
            APPLY_PATCH + " (YAML body)", ["JSON-encoded apply patches"]
        ) from exc
