"""The Kubernetes API, as the controller uses it: the one module that imports the official client.

Objects are read as plain JSON (the client's models validate strictly and would turn a field the
server added into an error) and handed to `cluster.py`, which turns them into typed values at once.
Every failure leaves here as one of the `KubeError` subclasses, each saying what to do about it:
`Conflict` is retried on the next tick, `Forbidden` is reported and not retried in a loop, `Gone`
(404) makes the target forgotten, `Unavailable` (5xx, 429, timeouts, refused connections) holds
the target until the API server answers again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client
from kubernetes import config as _config
from kubernetes import utils as _utils
from kubernetes import watch as _watch
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from autoscaler.model import TargetRef, WorkloadKind
from autoscaler.patches import Patch, Patched

__all__ = [
    "Conflict",
    "Forbidden",
    "Gone",
    "Invalid",
    "Kind",
    "Kube",
    "KubeError",
    "ResourceVersionExpired",
    "Unavailable",
    "WatchEvent",
    "connect",
    "key_of",
    "quantity",
]

JsonObject = dict[str, Any]
# Parts of the client without type annotations, used through Any on purpose.
config: Any = _config
watch: Any = _watch
utils: Any = _utils


def key_of(obj: JsonObject) -> tuple[str, str]:
    """(namespace, name) of an object as the server sent it."""
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


def quantity(value: object) -> float | None:
    """A resource quantity ("500m", "256Mi", 2) as a number of cores or bytes; None if unreadable."""
    if value is None:
        return None
    try:
        return float(utils.parse_quantity(value))
    except (ValueError, TypeError, ArithmeticError):
        return None


class KubeError(Exception):
    """A request the API server did not carry out."""

    # The HTTP status of the server's answer; 0 when there was none (refused, timed out, unreadable).
    code: int = 0


class Unavailable(KubeError):
    """The server could not be reached or asked us to come back later; retry on a later tick."""


class Conflict(KubeError):
    """The object changed under us (409); re-read and retry on the next tick."""


class Forbidden(KubeError):
    """RBAC does not allow the request (401/403); retrying will not help until someone acts."""


class Gone(KubeError):
    """The object does not exist (404)."""


class Invalid(KubeError):
    """The server rejected the request as malformed (400/422): a bug of ours, never retried blindly."""


class ResourceVersionExpired(KubeError):
    """A watch asked for history the server no longer keeps (410); re-list."""


class Kind(Enum):
    """The resources the controller reads."""

    DEPLOYMENT = "deployments"
    STATEFULSET = "statefulsets"
    HPA = "horizontalpodautoscalers"
    POD = "pods"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED or BOOKMARK
    object: JsonObject


def _error(exc: ApiException | urllib3.exceptions.HTTPError | OSError, what: str) -> KubeError:
    if not isinstance(exc, ApiException):
        return Unavailable(f"{what}: {exc}")
    status = int(exc.status or 0)
    message = what
    body = exc.body
    if isinstance(body, bytes | str) and body:
        try:
            message = f"{what}: {json.loads(body).get('message', '')}"
        except (ValueError, AttributeError):
            message = f"{what}: HTTP {status}"
    error: KubeError
    if status in (401, 403):
        error = Forbidden(message)
    elif status == 404:
        error = Gone(message)
    elif status == 409:
        error = Conflict(message)
    elif status == 410:
        error = ResourceVersionExpired(message)
    elif status in (400, 415, 422):
        error = Invalid(message)
    else:
        error = Unavailable(message or f"{what}: HTTP {status}")
    error.code = status
    return error


_FAILURES = (ApiException, urllib3.exceptions.HTTPError, OSError)
_Failure = ApiException | urllib3.exceptions.HTTPError | OSError


def connect(
    kubeconfig: Path | None,
    user_agent: str,
    on_error: Callable[[KubeError], None] | None = None,
    timeout_s: float = 10.0,
    write_timeout_s: float | None = None,
    context: str | None = None,
) -> Kube:
    """A client from the kubeconfig file if one is given, else the in-cluster service account when
    running in a pod, else the default kubeconfig ($KUBECONFIG, ~/.kube/config) as kubectl does.
    `context` picks a kubeconfig context other than the current one (and so rules out in-cluster)."""
    configuration = client.Configuration()
    in_cluster = kubeconfig is None and context is None and "KUBERNETES_SERVICE_HOST" in os.environ
    try:
        if in_cluster:
            config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_kube_config(
                config_file=None if kubeconfig is None else str(kubeconfig),
                context=context,
                client_configuration=configuration,
            )
    except (ConfigException, OSError, TypeError, ValueError) as error:
        source = (
            "the in-cluster service account"
            if in_cluster
            else str(kubeconfig or "the default kubeconfig")
        )
        raise ValueError(f"cannot load Kubernetes credentials from {source}: {error}") from None
    api = client.ApiClient(configuration)
    api.user_agent = user_agent
    return Kube(api, timeout_s=timeout_s, on_error=on_error, write_timeout_s=write_timeout_s)


class Kube:
    """Typed verbs over the official client; every request has a timeout. `on_error` hears of every
    failed request (the controller counts them by status code)."""

    def __init__(
        self,
        api: client.ApiClient,
        timeout_s: float = 10.0,
        on_error: Callable[[KubeError], None] | None = None,
        write_timeout_s: float | None = None,
    ) -> None:
        """`write_timeout_s` bounds a patch (default `timeout_s`): a leader gives a write up before
        its lease could pass to another replica."""
        self._api = api
        self._on_error = on_error
        self._apps = client.AppsV1Api(api)
        self._autoscaling = client.AutoscalingV2Api(api)
        self._core = client.CoreV1Api(api)
        self._coordination = client.CoordinationV1Api(api)
        self._timeout = timeout_s
        self._write_timeout = timeout_s if write_timeout_s is None else write_timeout_s

    @property
    def server(self) -> str:
        """The API server's address, for messages."""
        return str(self._api.configuration.host)

    def _failed(self, exc: _Failure, what: str) -> KubeError:
        return self._heard(_error(exc, what))

    def _heard(self, error: KubeError) -> KubeError:
        if self._on_error is not None:
            self._on_error(error)
        return error

    # -- reading -------------------------------------------------------------------------------
    def _lister(self, kind: Kind, namespace: str | None) -> Any:
        if kind is Kind.DEPLOYMENT:
            return (
                self._apps.list_deployment_for_all_namespaces
                if namespace is None
                else self._apps.list_namespaced_deployment
            )
        if kind is Kind.STATEFULSET:
            return (
                self._apps.list_stateful_set_for_all_namespaces
                if namespace is None
                else self._apps.list_namespaced_stateful_set
            )
        if kind is Kind.HPA:
            return (
                self._autoscaling.list_horizontal_pod_autoscaler_for_all_namespaces
                if namespace is None
                else self._autoscaling.list_namespaced_horizontal_pod_autoscaler
            )
        return (
            self._core.list_pod_for_all_namespaces
            if namespace is None
            else self._core.list_namespaced_pod
        )

    def read_workload(self, ref: TargetRef) -> JsonObject | None:
        """The workload as the server has it now, or None when it is gone."""
        read: Any
        if ref.kind is WorkloadKind.STATEFULSET:
            read = self._apps.read_namespaced_stateful_set
        else:
            read = self._apps.read_namespaced_deployment
        return self._read(read, ref.kind.value.lower(), ref.namespace, ref.name)

    def _read(self, read: Any, what: str, namespace: str, name: str) -> JsonObject | None:
        """One named object through the client's `read_namespaced_…`, or None when it is gone."""
        try:
            response: Any = read(name, namespace, _preload_content=False, _request_timeout=self._timeout)
            body = json.loads(response.data)
        except _FAILURES as exc:
            error = _error(exc, f"read {what} {namespace}/{name}")
            if isinstance(error, Gone):
                return None
            raise self._heard(error) from None
        except ValueError as exc:
            raise Unavailable(f"read {what}: unreadable answer: {exc}") from None
        return body if isinstance(body, dict) else None

    def list_events(self, namespace: str | None, field_selector: str = "") -> list[JsonObject]:
        """core/v1 Events (in `namespace`, or everywhere), narrowed by a field selector if given."""
        lister: Any = (
            self._core.list_event_for_all_namespaces
            if namespace is None
            else self._core.list_namespaced_event
        )
        args = () if namespace is None else (namespace,)
        try:
            response = lister(
                *args,
                field_selector=field_selector or None,
                _preload_content=False,
                _request_timeout=self._timeout,
            )
            body = json.loads(response.data)
        except _FAILURES as exc:
            raise self._failed(exc, "list events") from None
        except ValueError as exc:
            raise self._heard(Unavailable(f"list events: unreadable answer: {exc}")) from None
        items = (body.get("items") or []) if isinstance(body, dict) else []
        return [item for item in items if isinstance(item, dict)]

    def list(self, kind: Kind, namespace: str | None) -> tuple[list[JsonObject], str]:
        """All objects of `kind` (in `namespace`, or everywhere) and the list's resourceVersion."""
        lister = self._lister(kind, namespace)
        args = () if namespace is None else (namespace,)
        try:
            response = lister(*args, _preload_content=False, _request_timeout=self._timeout)
            body = json.loads(response.data)
        except _FAILURES as exc:
            raise self._failed(exc, f"list {kind.value}") from None
        except ValueError as exc:
            raise self._heard(Unavailable(f"list {kind.value}: unreadable answer: {exc}")) from None
        items = body.get("items") or []
        version = str((body.get("metadata") or {}).get("resourceVersion", ""))
        return [item for item in items if isinstance(item, dict)], version

    def watch(
        self, kind: Kind, namespace: str | None, resource_version: str, timeout_s: int
    ) -> Iterator[WatchEvent]:
        """Changes after `resource_version` until the server ends the stream (about `timeout_s`)."""
        lister = self._lister(kind, namespace)
        args = () if namespace is None else (namespace,)
        stream = watch.Watch()
        try:
            for event in stream.stream(
                lister,
                *args,
                resource_version=resource_version,
                timeout_seconds=timeout_s,
                allow_watch_bookmarks=True,
                _request_timeout=timeout_s + self._timeout,
            ):
                kind_of = str(event.get("type", ""))
                # The plain JSON; the client's model of it ("object") is not used.
                raw = event.get("raw_object")
                if kind_of == "ERROR":
                    code = int((raw or {}).get("code", 0)) if isinstance(raw, dict) else 0
                    if code == 410:
                        raise ResourceVersionExpired(f"watch {kind.value}: resourceVersion too old")
                    raise Unavailable(f"watch {kind.value}: error event {raw}")
                if isinstance(raw, dict):
                    yield WatchEvent(kind_of, raw)
        except ApiException as exc:
            raise self._failed(exc, f"watch {kind.value}") from None
        except (urllib3.exceptions.HTTPError, OSError, ValueError, KeyError, TypeError) as exc:
            # A malformed event ends this watch like a dropped connection would; the informer
            # resumes from the last version it applied.
            raise self._heard(Unavailable(f"watch {kind.value}: {exc!r}")) from None
        finally:
            stream.stop()

    # -- writing -------------------------------------------------------------------------------
    def patch(self, patch: Patch) -> None:
        """Send a JSON merge patch built by `autoscaler.patches`."""
        senders: dict[Patched, Any] = {
            Patched.SCALE: self._apps.patch_namespaced_deployment_scale,
            Patched.DEPLOYMENT: self._apps.patch_namespaced_deployment,
            Patched.STATEFULSET_SCALE: self._apps.patch_namespaced_stateful_set_scale,
            Patched.STATEFULSET: self._apps.patch_namespaced_stateful_set,
            Patched.HPA: self._autoscaling.patch_namespaced_horizontal_pod_autoscaler,
        }
        send = senders[patch.what]
        try:
            send(
                patch.name,
                patch.namespace,
                dict(patch.body),
                _content_type="application/merge-patch+json",
                _preload_content=False,
                _request_timeout=self._write_timeout,
            )
        except _FAILURES as exc:
            raise self._failed(exc, f"patch {patch.description}") from None

    def create_event(self, namespace: str, event: JsonObject) -> None:
        try:
            self._core.create_namespaced_event(
                namespace,
                client.CoreV1Event.model_validate(event),
                _preload_content=False,
                _request_timeout=self._timeout,
            )
        except _FAILURES as exc:
            raise self._failed(exc, f"create event in {namespace}") from None

    # -- leases --------------------------------------------------------------------------------
    def read_lease(self, namespace: str, name: str) -> JsonObject | None:
        return self._read(self._coordination.read_namespaced_lease, "lease", namespace, name)

    def create_lease(self, namespace: str, lease: JsonObject) -> None:
        try:
            self._coordination.create_namespaced_lease(
                namespace,
                client.V1Lease.model_validate(lease),
                _preload_content=False,
                _request_timeout=self._timeout,
            )
        except _FAILURES as exc:
            raise self._failed(exc, f"create lease in {namespace}") from None

    def replace_lease(self, namespace: str, name: str, lease: JsonObject) -> None:
        """PUT with the lease's resourceVersion: a stale one is a `Conflict`, never an overwrite."""
        try:
            self._coordination.replace_namespaced_lease(
                name,
                namespace,
                client.V1Lease.model_validate(lease),
                _preload_content=False,
                _request_timeout=self._timeout,
            )
        except _FAILURES as exc:
            raise self._failed(exc, f"replace lease {namespace}/{name}") from None
