"""The fake Kubernetes API server (tests/fakekube) answers like the real one, so controller tests can
drive the official client and kubectl against it without patching either.

Through the official `kubernetes` client:
- list (all namespaces, one namespace, label and field selectors, paging) and get;
- watch: from a resourceVersion it replays a later change; without one it starts with ADDED; with a
  selector objects enter (ADDED) and leave (DELETED); a too-old resourceVersion ends in 410 Expired;
  drop_watches() ends an open stream;
- the deployments/scale subresource: read, patch (strategic, merge, JSON) and replace, written
  through to the Deployment;
- the three patch types and what each does to lists (containers merged by name or replaced);
- optimistic concurrency and the other error answers, each a Status body (404, 409 Conflict and
  AlreadyExists, 422 Invalid, 400, 405, 415);
- Leases as leader election uses them; core/v1 and events.k8s.io/v1 Events (one object seen through
  both APIs, listed by involved object); HPA create/read/patch/replace/list/delete, also as v1; pods
  with their creation and readiness times;
- the simulated deployment controller (status follows spec at once, or waits for set_ready);
- StatefulSets (apps/v1): defaults, the status a statefulset controller writes (revisions; a rolling
  update ends once every pod is ready, a scale is no new revision), the scale subresource and
  generation tracking, validation (selector, replicas, the spec fields an update may not change),
  list and watch beside a Deployment of the same name;
- injected 503/429/500 answers, an outage until heal(), slow answers, and the request log;
- the kubeconfig loads with load_kube_config too, and stop() ends open watches and every thread.
Through the real kubectl: get (tables for a list, one object and -w; -o jsonpath/json/yaml/name/wide;
-l; -A), scale, annotate (new, refused without --overwrite, --overwrite, removal), patch (strategic,
merge, json, --subresource=scale), get hpa/pods/events/ns, get --raw, delete, rollout status,
create -f, api-resources, and NotFound; for StatefulSets get sts (table, wide), scale, patch of the
scale, annotate, a forbidden spec change, rollout status, an HPA on one, api-resources.
JSON patch pointer escaping (RFC 6901) is also checked on the patch module itself.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as typed_client
from kubernetes import config as typed_config
from kubernetes import watch as typed_watch
from kubernetes.client import ApiException

from tests.fakekube import FakeKube
from tests.fakekube.patch import PatchError, json_patch

# The kubernetes package is typed only in part (untyped functions, every field Optional): the tests
# use it as the dynamic library it mostly is.
client: Any = typed_client
config: Any = typed_config
watch: Any = typed_watch

STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


@pytest.fixture
def api_client(kubeconfig: Path) -> Iterator[Any]:
    api = config.new_client_from_config(config_file=str(kubeconfig))
    yield api
    api.close()


@pytest.fixture
def apps(api_client: Any) -> Any:
    return client.AppsV1Api(api_client)


@pytest.fixture
def core(api_client: Any) -> Any:
    return client.CoreV1Api(api_client)


@pytest.fixture
def shop(fake_kube: FakeKube) -> FakeKube:
    """web (2 replicas, tier=front) and api (1, tier=back) in `shop`; batch (1, no tier) in `other`."""
    fake_kube.add_deployment(
        "shop", "web", replicas=2, labels={"tier": "front"}, annotations={"owner": "a"}
    )
    fake_kube.add_deployment("shop", "api", replicas=1, labels={"tier": "back"})
    fake_kube.add_deployment("other", "batch", replicas=1)
    return fake_kube


def dig(obj: Any, path: str) -> Any:
    for step in path.split("."):
        if isinstance(obj, list):
            obj = obj[int(step)]
        elif isinstance(obj, dict):
            obj = obj.get(step)
        else:
            return None
    return obj


def status_of(exc: pytest.ExceptionInfo[ApiException]) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.value.body or "{}")
    return body


def collect(stream: Iterator[dict[str, Any]], count: int, w: Any) -> list[dict[str, Any]]:
    events = []
    for event in stream:
        events.append(event)
        if len(events) == count:
            w.stop()
            break
    return events


# --- reads ---------------------------------------------------------------------------------------

LIST_CASES = [
    pytest.param(
        lambda a: a.list_deployment_for_all_namespaces(), ["api", "batch", "web"], id="all-namespaces"
    ),
    pytest.param(lambda a: a.list_namespaced_deployment("shop"), ["api", "web"], id="one-namespace"),
    pytest.param(
        lambda a: a.list_namespaced_deployment("shop", label_selector="tier=front"), ["web"], id="eq"
    ),
    pytest.param(
        lambda a: a.list_namespaced_deployment("shop", label_selector="tier!=front"), ["api"], id="ne"
    ),
    pytest.param(
        lambda a: a.list_deployment_for_all_namespaces(label_selector="tier in (front, back)"),
        ["api", "web"],
        id="set-in",
    ),
    pytest.param(
        lambda a: a.list_deployment_for_all_namespaces(label_selector="tier notin (front)"),
        ["api", "batch"],
        id="set-notin-matches-missing-key",
    ),
    pytest.param(
        lambda a: a.list_deployment_for_all_namespaces(label_selector="tier"),
        ["api", "web"],
        id="exists",
    ),
    pytest.param(
        lambda a: a.list_deployment_for_all_namespaces(label_selector="!tier"),
        ["batch"],
        id="not-exists",
    ),
    pytest.param(
        lambda a: a.list_deployment_for_all_namespaces(label_selector="app=web,tier=front"),
        ["web"],
        id="and",
    ),
    pytest.param(
        lambda a: a.list_deployment_for_all_namespaces(field_selector="metadata.name=api"),
        ["api"],
        id="field",
    ),
    pytest.param(
        lambda a: a.list_deployment_for_all_namespaces(field_selector="metadata.namespace!=shop"),
        ["batch"],
        id="field-ne",
    ),
]


@pytest.mark.parametrize(("call", "names"), LIST_CASES)
def test_list_filters_like_the_real_server(
    shop: FakeKube, apps: Any, call: Callable[[Any], Any], names: list[str]
) -> None:
    result = call(apps)
    assert sorted(d.metadata.name for d in result.items) == names
    assert int(result.metadata.resource_version) == int(shop.resource_version)


def test_get_fills_server_side_metadata_and_status(shop: FakeKube, apps: Any) -> None:
    web = apps.read_namespaced_deployment("web", "shop")
    assert web.metadata.uid
    assert web.metadata.creation_timestamp.tzinfo is not None
    assert web.metadata.generation == 1
    assert web.status.observed_generation == 1
    assert (web.status.replicas, web.status.ready_replicas, web.status.available_replicas) == (2, 2, 2)
    assert web.spec.template.spec.containers[0].resources.requests == {"cpu": "500m", "memory": "256Mi"}


def test_list_pages_with_limit_and_continue(shop: FakeKube, apps: Any) -> None:
    first = apps.list_deployment_for_all_namespaces(limit=2)
    second = apps.list_deployment_for_all_namespaces(limit=2, _continue=first.metadata._continue)
    assert [d.metadata.name for d in first.items] == ["batch", "api"]  # ordered by namespace, then name
    assert first.metadata.remaining_item_count == 1
    assert [d.metadata.name for d in second.items] == ["web"]
    assert second.metadata._continue is None


# --- watches -------------------------------------------------------------------------------------

WATCH_SCOPES = [
    pytest.param(lambda a: (a.list_deployment_for_all_namespaces, (), {}), id="all-namespaces"),
    pytest.param(lambda a: (a.list_namespaced_deployment, ("shop",), {}), id="one-namespace"),
    pytest.param(
        lambda a: (a.list_namespaced_deployment, ("shop",), {"label_selector": "tier=front"}),
        id="labels",
    ),
    pytest.param(
        lambda a: (a.list_namespaced_deployment, ("shop",), {"field_selector": "metadata.name=web"}),
        id="field",
    ),
]


@pytest.mark.parametrize("scope", WATCH_SCOPES)
def test_watch_from_resource_version_replays_a_later_patch(
    shop: FakeKube, apps: Any, scope: Callable[[Any], Any]
) -> None:
    start = apps.list_namespaced_deployment("shop").metadata.resource_version
    apps.patch_namespaced_deployment("web", "shop", {"spec": {"replicas": 4}})
    func, args, kwargs = scope(apps)
    w = watch.Watch()
    events = collect(w.stream(func, *args, resource_version=start, timeout_seconds=5, **kwargs), 2, w)
    # The spec write, then the deployment controller's status write, each at its own version.
    assert [e["type"] for e in events] == ["MODIFIED", "MODIFIED"]
    assert [e["object"].spec.replicas for e in events] == [4, 4]
    assert [e["object"].status.ready_replicas for e in events] == [2, 4]
    assert int(events[0]["object"].metadata.resource_version) > int(start)
    assert events[0]["raw_object"]["kind"] == "Deployment"


def test_watch_without_resource_version_starts_with_added(shop: FakeKube, apps: Any) -> None:
    w = watch.Watch()
    events = collect(w.stream(apps.list_namespaced_deployment, "shop", timeout_seconds=5), 2, w)
    assert [(e["type"], e["object"].metadata.name) for e in events] == [
        ("ADDED", "api"),
        ("ADDED", "web"),
    ]


def test_watch_with_selector_sees_objects_enter_and_leave(shop: FakeKube, apps: Any) -> None:
    start = shop.resource_version
    apps.patch_namespaced_deployment("api", "shop", {"metadata": {"labels": {"tier": "front"}}})
    apps.patch_namespaced_deployment("web", "shop", {"metadata": {"labels": {"tier": "gone"}}})
    apps.delete_namespaced_deployment("api", "shop")
    w = watch.Watch()
    stream = w.stream(
        apps.list_namespaced_deployment,
        "shop",
        label_selector="tier=front",
        resource_version=start,
        timeout_seconds=5,
    )
    events = collect(stream, 3, w)
    assert [(e["type"], e["object"].metadata.name) for e in events] == [
        ("ADDED", "api"),
        ("DELETED", "web"),
        ("DELETED", "api"),
    ]


def test_watch_from_a_compacted_resource_version_gets_410(shop: FakeKube, apps: Any) -> None:
    start = shop.resource_version
    apps.patch_namespaced_deployment("web", "shop", {"spec": {"replicas": 3}})
    shop.compact()
    w = watch.Watch()
    with pytest.raises(ApiException) as exc:
        list(
            w.stream(apps.list_namespaced_deployment, "shop", resource_version=start, timeout_seconds=5)
        )
    assert exc.value.status == 410
    assert "Expired" in exc.value.reason
    assert "too old resource version" in exc.value.reason


def test_watch_410_is_an_error_event_on_the_wire(shop: FakeKube) -> None:
    shop.add_deployment("shop", "extra")
    shop.compact()
    url = (
        f"{shop.url}/apis/apps/v1/namespaces/shop/deployments?watch=1&resourceVersion=1&timeoutSeconds=5"
    )
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        assert response.headers["Transfer-Encoding"] == "chunked"
        event = json.loads(response.readline())
    assert event["type"] == "ERROR"
    assert event["object"]["kind"] == "Status"
    assert event["object"]["code"] == 410
    assert event["object"]["reason"] == "Expired"


def test_dropped_watch_ends_the_stream(shop: FakeKube, apps: Any) -> None:
    seen: list[str] = []
    w = watch.Watch()

    def consume() -> None:
        # timeout_seconds makes the client end with the stream instead of reconnecting.
        seen.extend(
            e["type"] for e in w.stream(apps.list_namespaced_deployment, "shop", timeout_seconds=60)
        )

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    assert shop.wait_for_watches(1, timeout=5)
    shop.drop_watches()
    consumer.join(timeout=5)
    assert not consumer.is_alive()
    assert seen == ["ADDED", "ADDED"]
    assert shop.open_watches == 0


def test_watch_reports_deletion(shop: FakeKube, apps: Any) -> None:
    start = shop.resource_version
    result = apps.delete_namespaced_deployment("api", "shop")
    # Delete answers are untyped in this client version: the Status comes back as a dict.
    assert result["status"] == "Success"
    assert result["details"]["name"] == "api"
    w = watch.Watch()
    events = collect(
        w.stream(apps.list_namespaced_deployment, "shop", resource_version=start, timeout_seconds=5),
        1,
        w,
    )
    assert (events[0]["type"], events[0]["object"].metadata.name) == ("DELETED", "api")


def test_watch_bookmark_before_server_timeout(shop: FakeKube) -> None:
    url = (
        f"{shop.url}/apis/apps/v1/namespaces/shop/deployments"
        f"?watch=true&resourceVersion={shop.resource_version}&timeoutSeconds=0.2&allowWatchBookmarks=true"
    )
    with urllib.request.urlopen(url, timeout=5) as response:
        lines = [json.loads(line) for line in response.read().splitlines()]
    assert [e["type"] for e in lines] == ["BOOKMARK"]
    assert lines[0]["object"]["metadata"]["resourceVersion"] == shop.resource_version


# --- scale ---------------------------------------------------------------------------------------


def _replace_scale(apps: Any, replicas: int) -> Any:
    scale = apps.read_namespaced_deployment_scale("web", "shop")
    scale.spec.replicas = replicas
    return apps.replace_namespaced_deployment_scale("web", "shop", scale)


SCALE_CASES = [
    pytest.param(
        lambda a: a.patch_namespaced_deployment_scale("web", "shop", {"spec": {"replicas": 5}}),
        5,
        "PATCH",
        STRATEGIC,
        id="patch-default-is-strategic",
    ),
    pytest.param(
        lambda a: a.patch_namespaced_deployment_scale(
            "web", "shop", {"spec": {"replicas": 6}}, _content_type=MERGE
        ),
        6,
        "PATCH",
        MERGE,
        id="patch-merge",
    ),
    pytest.param(
        lambda a: a.patch_namespaced_deployment_scale(
            "web", "shop", [{"op": "replace", "path": "/spec/replicas", "value": 7}]
        ),
        7,
        "PATCH",
        JSON_PATCH,
        id="patch-json-list",
    ),
    pytest.param(lambda a: _replace_scale(a, 8), 8, "PUT", "", id="replace"),
    pytest.param(
        lambda a: a.patch_namespaced_deployment_scale("web", "shop", {"spec": {"replicas": 0}}),
        0,
        "PATCH",
        STRATEGIC,
        id="to-zero",
    ),
]


@pytest.mark.parametrize(("call", "replicas", "method", "content_type"), SCALE_CASES)
def test_scale_subresource_writes_the_deployment(
    shop: FakeKube, apps: Any, call: Callable[[Any], Any], replicas: int, method: str, content_type: str
) -> None:
    shop.clear_log()
    scale = call(apps)
    assert scale.kind == "Scale"
    assert scale.api_version == "autoscaling/v1"
    assert (scale.spec.replicas or 0) == replicas  # ScaleSpec.replicas is omitempty: 0 comes back absent
    assert scale.status.selector == "app=web"
    deployment = shop.get_object("Deployment", "shop", "web")
    assert deployment is not None
    assert deployment["spec"]["replicas"] == replicas
    assert deployment["metadata"]["generation"] == 2
    assert deployment["status"].get("readyReplicas", 0) == replicas
    writes = [r for r in shop.requests if r.path.endswith("/web/scale") and r.method == method]
    assert [(w.content_type, w.status) for w in writes] == [(content_type, 200)]


def test_scale_read_reports_replicas_and_selector(shop: FakeKube, apps: Any) -> None:
    scale = apps.read_namespaced_deployment_scale("web", "shop")
    web = shop.get_object("Deployment", "shop", "web")
    assert web is not None
    assert (scale.spec.replicas, scale.status.replicas, scale.status.selector) == (2, 2, "app=web")
    assert (scale.metadata.uid, scale.metadata.resource_version) == (
        web["metadata"]["uid"],
        web["metadata"]["resourceVersion"],
    )


# --- patches -------------------------------------------------------------------------------------

CONTAINER_IMAGE = {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "web:2"}]}}}}
SIDECAR = {"spec": {"template": {"spec": {"containers": [{"name": "proxy", "image": "envoy"}]}}}}
PATCH_CASES = [
    pytest.param(
        CONTAINER_IMAGE,
        None,
        STRATEGIC,
        "spec.template.spec.containers.0.resources.requests.cpu",
        "500m",
        id="strategic-merges-containers-by-name",
    ),
    pytest.param(
        SIDECAR,
        None,
        STRATEGIC,
        "spec.template.spec.containers.1.name",
        "proxy",
        id="strategic-appends-new-container",
    ),
    pytest.param(
        CONTAINER_IMAGE,
        MERGE,
        MERGE,
        "spec.template.spec.containers.0.resources",
        None,
        id="merge-replaces-lists",
    ),
    pytest.param(
        {"metadata": {"annotations": {"owner": None}}},
        MERGE,
        MERGE,
        "metadata.annotations.owner",
        None,
        id="merge-null-deletes",
    ),
    pytest.param(
        [{"op": "add", "path": "/metadata/annotations/a~1b~0c", "value": "x"}],
        None,
        JSON_PATCH,
        "metadata.annotations.a/b~c",
        "x",
        id="json-add-escaped-pointer",
    ),
    pytest.param(
        [
            {"op": "test", "path": "/spec/replicas", "value": 2},
            {"op": "replace", "path": "/spec/replicas", "value": 3},
        ],
        None,
        JSON_PATCH,
        "spec.replicas",
        3,
        id="json-test-then-replace",
    ),
    pytest.param(
        [{"op": "copy", "from": "/metadata/labels/tier", "path": "/metadata/annotations/tier"}],
        None,
        JSON_PATCH,
        "metadata.annotations.tier",
        "front",
        id="json-copy",
    ),
    pytest.param(
        [{"op": "move", "from": "/metadata/labels/tier", "path": "/metadata/labels/was-tier"}],
        None,
        JSON_PATCH,
        "metadata.labels.tier",
        None,
        id="json-move",
    ),
    pytest.param(
        [{"op": "remove", "path": "/metadata/annotations/owner"}],
        None,
        JSON_PATCH,
        "metadata.annotations.owner",
        None,
        id="json-remove",
    ),
    pytest.param(
        [
            {
                "op": "add",
                "path": "/spec/template/spec/containers/-",
                "value": {"name": "p", "image": "i"},
            }
        ],
        None,
        JSON_PATCH,
        "spec.template.spec.containers.1.name",
        "p",
        id="json-append-to-array",
    ),
]


@pytest.mark.parametrize(("patch", "forced_type", "sent_type", "path", "expected"), PATCH_CASES)
def test_patch_types(
    shop: FakeKube,
    apps: Any,
    patch: Any,
    forced_type: str | None,
    sent_type: str,
    path: str,
    expected: Any,
) -> None:
    shop.clear_log()
    extra = {"_content_type": forced_type} if forced_type else {}
    result = apps.patch_namespaced_deployment("web", "shop", patch, **extra)
    stored = shop.get_object("Deployment", "shop", "web")
    assert dig(stored, path) == expected
    assert result.metadata.resource_version != "0"
    assert [r.content_type for r in shop.requests if r.method == "PATCH"] == [sent_type]


def test_noop_patch_keeps_resource_version(shop: FakeKube, apps: Any) -> None:
    before = apps.read_namespaced_deployment("web", "shop").metadata.resource_version
    after = apps.patch_namespaced_deployment("web", "shop", {"spec": {"replicas": 2}})
    assert after.metadata.resource_version == before


@pytest.mark.parametrize(
    ("doc", "ops", "expected"),
    [
        pytest.param(
            {"a/b": 1}, [{"op": "replace", "path": "/a~1b", "value": 2}], {"a/b": 2}, id="tilde-one"
        ),
        pytest.param({"m~n": 1}, [{"op": "remove", "path": "/m~0n"}], {}, id="tilde-zero"),
        pytest.param(
            {"~1": 1}, [{"op": "copy", "from": "/~01", "path": "/x"}], {"~1": 1, "x": 1}, id="tilde-01"
        ),
        pytest.param([1, 2], [{"op": "add", "path": "/1", "value": 9}], [1, 9, 2], id="insert-in-array"),
        pytest.param(
            {}, [{"op": "add", "path": "", "value": {"new": True}}], {"new": True}, id="whole-document"
        ),
    ],
)
def test_json_pointer_escaping(doc: Any, ops: list[Any], expected: Any) -> None:
    assert json_patch(doc, ops) == expected


@pytest.mark.parametrize(
    "ops",
    [
        pytest.param([{"op": "test", "path": "/n", "value": True}], id="test-1-is-not-true"),
        pytest.param([{"op": "remove", "path": "/missing"}], id="remove-missing"),
        pytest.param([{"op": "add", "path": "/list/01", "value": 0}], id="leading-zero-index"),
        pytest.param([{"op": "frobnicate", "path": "/n"}], id="unknown-op"),
        pytest.param([{"op": "move", "from": "/list", "path": "/list/0"}], id="move-into-child"),
    ],
)
def test_json_patch_rejects(ops: list[Any]) -> None:
    with pytest.raises(PatchError):
        json_patch({"n": 1, "list": [1]}, ops)


# --- errors --------------------------------------------------------------------------------------


def _replace_stale(apps: Any) -> Any:
    old = apps.read_namespaced_deployment("web", "shop")
    apps.patch_namespaced_deployment("web", "shop", {"metadata": {"labels": {"bump": "1"}}})
    return apps.replace_namespaced_deployment("web", "shop", old)


def _create_existing(apps: Any) -> Any:
    web = apps.read_namespaced_deployment("web", "shop")
    web.metadata.resource_version = None
    return apps.create_namespaced_deployment("shop", web)


def _create_in_missing_namespace(apps: Any) -> Any:
    web = apps.read_namespaced_deployment("web", "shop")
    web.metadata.resource_version = None
    web.metadata.namespace = None
    return apps.create_namespaced_deployment("nowhere", web)


ERROR_CASES = [
    pytest.param(
        lambda a: a.read_namespaced_deployment("nope", "shop"),
        404,
        "NotFound",
        'deployments.apps "nope" not found',
        {"name": "nope", "group": "apps", "kind": "deployments"},
        id="get-missing",
    ),
    pytest.param(
        lambda a: a.delete_namespaced_deployment("nope", "shop"),
        404,
        "NotFound",
        'deployments.apps "nope" not found',
        None,
        id="delete-missing",
    ),
    pytest.param(
        lambda a: a.read_namespaced_deployment_scale("nope", "shop"),
        404,
        "NotFound",
        'deployments.apps "nope" not found',
        None,
        id="scale-of-missing",
    ),
    pytest.param(
        _create_existing,
        409,
        "AlreadyExists",
        'deployments.apps "web" already exists',
        {"name": "web", "group": "apps", "kind": "deployments"},
        id="create-existing",
    ),
    pytest.param(
        _replace_stale,
        409,
        "Conflict",
        'Operation cannot be fulfilled on deployments.apps "web": the object has been modified; '
        "please apply your changes to the latest version and try again",
        None,
        id="replace-stale",
    ),
    pytest.param(
        lambda a: a.patch_namespaced_deployment(
            "web", "shop", {"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 3}}
        ),
        409,
        "Conflict",
        None,
        None,
        id="patch-with-stale-version",
    ),
    pytest.param(
        _create_in_missing_namespace,
        404,
        "NotFound",
        'namespaces "nowhere" not found',
        None,
        id="create-in-missing-namespace",
    ),
    pytest.param(
        lambda a: a.patch_namespaced_deployment_scale("web", "shop", {"spec": {"replicas": -1}}),
        422,
        "Invalid",
        'Scale.autoscaling "web" is invalid: spec.replicas: Invalid value: -1: '
        "must be greater than or equal to 0",
        None,
        id="negative-scale",
    ),
    pytest.param(
        lambda a: a.patch_namespaced_deployment("web", "shop", {"spec": {"replicas": -2}}),
        422,
        "Invalid",
        None,
        None,
        id="negative-deployment-replicas",
    ),
    pytest.param(
        lambda a: a.patch_namespaced_deployment(
            "web", "shop", {"spec": {"selector": {"matchLabels": {"app": "other"}}}}
        ),
        422,
        "Invalid",
        None,
        None,
        id="selector-is-immutable",
    ),
    pytest.param(
        lambda a: a.patch_namespaced_deployment(
            "web", "shop", [{"op": "test", "path": "/spec/replicas", "value": 9}]
        ),
        422,
        "Invalid",
        None,
        None,
        id="json-patch-test-fails",
    ),
    pytest.param(
        lambda a: a.patch_namespaced_deployment("web", "shop", {"spec": {"replicas": "five"}}),
        400,
        "BadRequest",
        None,
        None,
        id="wrong-type",
    ),
    pytest.param(
        lambda a: a.list_namespaced_deployment("shop", label_selector="a in b"),
        400,
        "BadRequest",
        None,
        None,
        id="bad-label-selector",
    ),
]


@pytest.mark.parametrize(("call", "code", "reason", "message", "details"), ERROR_CASES)
def test_errors_are_status_objects(
    shop: FakeKube,
    apps: Any,
    call: Callable[[Any], Any],
    code: int,
    reason: str,
    message: str | None,
    details: dict[str, str] | None,
) -> None:
    with pytest.raises(ApiException) as exc:
        call(apps)
    status = status_of(exc)
    assert exc.value.status == code
    assert (status["kind"], status["apiVersion"], status["status"]) == ("Status", "v1", "Failure")
    assert (status["code"], status["reason"]) == (code, reason)
    if message is not None:
        assert status["message"] == message
    if details is not None:
        assert status["details"] == details


RAW_ERROR_CASES = [
    pytest.param(
        "POST",
        "/apis/apps/v1/namespaces/shop/deployments/web",
        "application/json",
        b"{}",
        405,
        "MethodNotAllowed",
        id="post-to-an-object",
    ),
    pytest.param(
        "PATCH",
        "/apis/apps/v1/namespaces/shop/deployments/web",
        "application/xml",
        b"<x/>",
        415,
        "UnsupportedMediaType",
        id="unknown-patch-type",
    ),
    pytest.param(
        "PATCH",
        "/apis/apps/v1/namespaces/shop/deployments/web",
        MERGE,
        b"{not json",
        400,
        "BadRequest",
        id="malformed-patch-body",
    ),
    pytest.param(
        "PATCH",
        "/apis/apps/v1/namespaces/shop/deployments/web",
        JSON_PATCH,
        b'{"op": "add"}',
        400,
        "BadRequest",
        id="json-patch-not-a-list",
    ),
    pytest.param(
        "PUT",
        "/apis/apps/v1/namespaces/shop/deployments/api",
        "application/json",
        b'{"metadata": {"name": "web"}}',
        400,
        "BadRequest",
        id="name-differs-from-url",
    ),
    pytest.param("GET", "/apis/apps/v1/widgets", None, b"", 404, "NotFound", id="unknown-resource"),
    pytest.param("GET", "/openapi/v2", None, b"", 404, "NotFound", id="no-openapi"),
]


@pytest.mark.parametrize(("method", "path", "content_type", "body", "code", "reason"), RAW_ERROR_CASES)
def test_raw_http_errors(
    shop: FakeKube, method: str, path: str, content_type: str | None, body: bytes, code: int, reason: str
) -> None:
    request = urllib.request.Request(shop.url + path, data=body or None, method=method)
    if content_type:
        request.add_header("Content-Type", content_type)
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(request, timeout=5)
    assert exc.value.code == code
    assert exc.value.headers["Content-Type"] == "application/json"
    status = json.loads(exc.value.read())
    assert (status["kind"], status["code"], status["reason"]) == ("Status", code, reason)


# --- leases, events, HPAs, pods ------------------------------------------------------------------


def test_lease_round_of_leader_election(fake_kube: FakeKube, api_client: Any) -> None:
    leases = client.CoordinationV1Api(api_client)
    now = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    body = {
        "metadata": {"name": "autoscaler-leader"},
        "spec": {
            "holderIdentity": "pod-a",
            "leaseDurationSeconds": 15,
            "acquireTime": now,
            "renewTime": now,
        },
    }
    created = leases.create_namespaced_lease("kube-system", body)
    assert created.spec.holder_identity == "pod-a"
    assert created.spec.renew_time == now

    with pytest.raises(ApiException) as exists:
        leases.create_namespaced_lease("kube-system", body)
    assert exists.value.status == 409
    assert status_of(exists)["reason"] == "AlreadyExists"

    renewed = leases.read_namespaced_lease("autoscaler-leader", "kube-system")
    renewed.spec.renew_time = datetime(2024, 5, 1, 12, 0, 5, tzinfo=UTC)
    after = leases.replace_namespaced_lease("autoscaler-leader", "kube-system", renewed)
    assert int(after.metadata.resource_version) > int(created.metadata.resource_version)

    created.spec.holder_identity = "pod-b"  # a rival that read before the renewal
    with pytest.raises(ApiException) as conflict:
        leases.replace_namespaced_lease("autoscaler-leader", "kube-system", created)
    assert conflict.value.status == 409
    assert status_of(conflict)["reason"] == "Conflict"

    created.metadata.resource_version = None  # and one that does not say which version it replaces
    with pytest.raises(ApiException) as blind:
        leases.replace_namespaced_lease("autoscaler-leader", "kube-system", created)
    assert blind.value.status == 422
    assert status_of(blind)["details"]["causes"][0]["field"] == "metadata.resourceVersion"

    taken = leases.patch_namespaced_lease(
        "autoscaler-leader", "kube-system", {"spec": {"holderIdentity": "pod-b"}}
    )
    assert taken.spec.holder_identity == "pod-b"
    assert taken.spec.lease_duration_seconds == 15
    leases.delete_namespaced_lease("autoscaler-leader", "kube-system")
    assert fake_kube.get_object("Lease", "kube-system", "autoscaler-leader") is None


@pytest.mark.parametrize(
    ("api_name", "field_selector", "reasons"),
    [
        pytest.param("core", "involvedObject.name=web", ["ScaledUp"], id="core-by-involved-object"),
        pytest.param(
            "core", "involvedObject.name=api", ["Forecast"], id="core-sees-events-k8s-io-event"
        ),
        pytest.param("core", "", ["Forecast", "ScaledUp"], id="core-all"),
        pytest.param("events", "regarding.name=api", ["Forecast"], id="events-by-regarding"),
        pytest.param(
            "events", "regarding.kind=Deployment,reason=Forecast", ["Forecast"], id="events-two-fields"
        ),
    ],
)
def test_events_create_and_list(
    shop: FakeKube, api_client: Any, core: Any, api_name: str, field_selector: str, reasons: list[str]
) -> None:
    events_api = client.EventsV1Api(api_client)
    core.create_namespaced_event(
        "shop",
        {
            "metadata": {"name": "web.17a"},
            "involvedObject": {
                "kind": "Deployment",
                "namespace": "shop",
                "name": "web",
                "apiVersion": "apps/v1",
            },
            "reason": "ScaledUp",
            "message": "scaled to 4 ahead of the forecast peak",
            "type": "Normal",
            "source": {"component": "predictive-autoscaler"},
        },
    )
    made = events_api.create_namespaced_event(
        "shop",
        {
            "metadata": {"generateName": "api-"},
            "regarding": {"kind": "Deployment", "namespace": "shop", "name": "api"},
            "reason": "Forecast",
            "note": "peak expected in 10m",
            "type": "Normal",
            "action": "Forecast",
            "eventTime": "2024-05-01T12:00:00.000000Z",
            "reportingController": "predictive-autoscaler",
            "reportingInstance": "pod-a",
        },
    )
    assert made.metadata.name.startswith("api-")
    assert made.note == "peak expected in 10m"
    assert core.read_namespaced_event(made.metadata.name, "shop").message == "peak expected in 10m"
    if api_name == "core":
        listed = core.list_namespaced_event("shop", field_selector=field_selector)
    else:
        listed = events_api.list_namespaced_event("shop", field_selector=field_selector)
    assert sorted(e.reason for e in listed.items) == reasons


def test_hpa_crud_in_v2_and_read_as_v1(fake_kube: FakeKube, api_client: Any) -> None:
    fake_kube.add_deployment("shop", "web", replicas=2)
    v2, v1 = client.AutoscalingV2Api(api_client), client.AutoscalingV1Api(api_client)
    target = {"type": "Utilization", "averageUtilization": 70}
    body = {
        "metadata": {"name": "web"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 2,
            "maxReplicas": 10,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": target}}],
        },
    }
    created = v2.create_namespaced_horizontal_pod_autoscaler("shop", body)
    assert created.status.desired_replicas == 0
    assert created.metadata.generation == 1
    patched = v2.patch_namespaced_horizontal_pod_autoscaler("web", "shop", {"spec": {"maxReplicas": 20}})
    assert patched.spec.max_replicas == 20
    assert patched.metadata.generation == 2
    current = v2.read_namespaced_horizontal_pod_autoscaler("web", "shop")
    current.spec.min_replicas = 3
    replaced = v2.replace_namespaced_horizontal_pod_autoscaler("web", "shop", current)
    assert (replaced.spec.min_replicas, replaced.spec.max_replicas) == (3, 20)
    as_v1 = v1.read_namespaced_horizontal_pod_autoscaler("web", "shop")
    assert (as_v1.spec.target_cpu_utilization_percentage, as_v1.spec.max_replicas) == (70, 20)
    assert [h.metadata.name for h in v2.list_horizontal_pod_autoscaler_for_all_namespaces().items] == [
        "web"
    ]
    with pytest.raises(ApiException) as invalid:
        v2.patch_namespaced_horizontal_pod_autoscaler("web", "shop", {"spec": {"maxReplicas": 1}})
    assert invalid.value.status == 422
    v2.delete_namespaced_horizontal_pod_autoscaler("web", "shop")
    with pytest.raises(ApiException) as gone:
        v2.read_namespaced_horizontal_pod_autoscaler("web", "shop")
    assert status_of(gone)["message"] == 'horizontalpodautoscalers.autoscaling "web" not found'


def test_pods_carry_start_up_times(shop: FakeKube, core: Any) -> None:
    created, ready = datetime(2024, 5, 1, 12, 0, tzinfo=UTC), datetime(2024, 5, 1, 12, 0, 42, tzinfo=UTC)
    shop.add_pod("shop", "web-1", owner="web", created_at=created, ready_at=ready)
    shop.add_pod("shop", "web-2", owner="web", ready=False, created_at=created)
    shop.add_pod("shop", "api-1", owner="api")
    pods = core.list_namespaced_pod("shop", label_selector="app=web").items
    assert [p.metadata.name for p in pods] == ["web-1", "web-2"]
    conditions = {p.metadata.name: {c.type: c for c in p.status.conditions} for p in pods}
    assert pods[0].metadata.creation_timestamp == created
    assert conditions["web-1"]["Ready"].status == "True"
    assert conditions["web-1"]["Ready"].last_transition_time == ready
    assert conditions["web-2"]["Ready"].status == "False"
    deleted = core.delete_namespaced_pod("web-2", "shop")
    assert deleted.kind == "Pod"
    assert deleted.metadata.name == "web-2"


# --- the simulated deployment controller ---------------------------------------------------------


def test_readiness_waits_for_set_ready_without_auto_ready(shop: FakeKube, apps: Any) -> None:
    shop.auto_ready = False
    apps.patch_namespaced_deployment_scale("web", "shop", {"spec": {"replicas": 4}})
    status = apps.read_namespaced_deployment("web", "shop").status
    assert (
        status.replicas,
        status.updated_replicas,
        status.ready_replicas,
        status.unavailable_replicas,
    ) == (
        4,
        4,
        2,
        2,
    )
    assert status.observed_generation == 2
    assert {c.type: c.status for c in status.conditions}["Available"] == "False"
    shop.set_ready("shop", "web", 4)
    status = apps.read_namespaced_deployment("web", "shop").status
    assert (status.ready_replicas, status.available_replicas, status.unavailable_replicas) == (
        4,
        4,
        None,
    )
    assert {c.type: c.status for c in status.conditions}["Available"] == "True"


def test_scaling_down_drops_ready_replicas_at_once(shop: FakeKube, apps: Any) -> None:
    shop.auto_ready = False
    apps.patch_namespaced_deployment_scale("web", "shop", {"spec": {"replicas": 1}})
    assert apps.read_namespaced_deployment("web", "shop").status.ready_replicas == 1


# --- statefulsets --------------------------------------------------------------------------------


def _statefulset_body(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": f"{name}:1"}]},
            },
            **spec,
        },
    }


def test_statefulset_defaults_status_scale_and_generation(fake_kube: FakeKube, apps: Any) -> None:
    fake_kube.add_namespace("shop")
    created = apps.create_namespaced_stateful_set("shop", _statefulset_body("db"))
    assert (created.kind, created.api_version, created.metadata.generation) == (
        "StatefulSet",
        "apps/v1",
        1,
    )
    assert created.spec.pod_management_policy == "OrderedReady"
    assert created.spec.update_strategy.rolling_update.partition == 0
    db = apps.read_namespaced_stateful_set("db", "shop")
    status = db.status
    assert (status.observed_generation, status.replicas, status.ready_replicas) == (1, 2, 2)
    assert (status.current_replicas, status.updated_replicas, status.available_replicas) == (2, 2, 2)
    assert status.current_revision == status.update_revision
    assert status.current_revision.startswith("db-")

    scale = apps.patch_namespaced_stateful_set_scale("db", "shop", {"spec": {"replicas": 5}})
    assert (scale.kind, scale.spec.replicas, scale.status.selector) == ("Scale", 5, "app=db")
    db = apps.read_namespaced_stateful_set("db", "shop")
    assert (db.metadata.generation, db.status.observed_generation, db.status.ready_replicas) == (2, 2, 5)
    assert db.status.current_revision == status.current_revision, "a scale is no new revision"
    read = apps.read_namespaced_stateful_set_scale("db", "shop")
    assert (read.spec.replicas, read.status.replicas) == (5, 5)
    # The status endpoint of the object, not its main one, changes the status.
    apps.patch_namespaced_stateful_set("db", "shop", {"status": {"readyReplicas": 1}})
    assert apps.read_namespaced_stateful_set("db", "shop").status.ready_replicas == 5


def test_statefulset_rolling_update_ends_when_every_pod_is_ready(fake_kube: FakeKube, apps: Any) -> None:
    fake_kube.add_statefulset("shop", "db", replicas=3)
    fake_kube.auto_ready = False
    fake_kube.set_ready("shop", "db", 2, kind="StatefulSet")
    before = apps.read_namespaced_stateful_set("db", "shop").status.current_revision
    image = {"spec": {"template": {"spec": {"containers": [{"name": "db", "image": "db:2"}]}}}}
    apps.patch_namespaced_stateful_set("db", "shop", image)
    status = apps.read_namespaced_stateful_set("db", "shop").status
    assert status.current_revision == before != status.update_revision
    assert (status.current_replicas, status.updated_replicas, status.ready_replicas) == (1, 2, 2)
    fake_kube.set_ready("shop", "db", 3, kind="StatefulSet")
    status = apps.read_namespaced_stateful_set("db", "shop").status
    assert status.current_revision == status.update_revision
    assert (status.current_replicas, status.updated_replicas) == (3, 3)


STATEFULSET_ERROR_CASES = [
    pytest.param(
        lambda a: a.create_namespaced_stateful_set(
            "shop", _statefulset_body("db", selector={"matchLabels": {"app": "other"}})
        ),
        "FieldValueInvalid",
        "spec.template.metadata.labels",
        id="selector-does-not-match-template",
    ),
    pytest.param(
        lambda a: a.create_namespaced_stateful_set("shop", _statefulset_body("db", replicas=-1)),
        "FieldValueInvalid",
        "spec.replicas",
        id="negative-replicas",
    ),
    pytest.param(
        lambda a: a.patch_namespaced_stateful_set("web", "shop", {"spec": {"serviceName": "other"}}),
        "FieldValueForbidden",
        "spec",
        id="only-some-spec-fields-may-change",
    ),
    pytest.param(
        lambda a: a.patch_namespaced_stateful_set_scale("web", "shop", {"spec": {"replicas": -2}}),
        "FieldValueInvalid",
        "spec.replicas",
        id="negative-scale",
    ),
]


@pytest.mark.parametrize(("call", "reason", "field"), STATEFULSET_ERROR_CASES)
def test_statefulset_validation_like_the_real_server(
    fake_kube: FakeKube, apps: Any, call: Callable[[Any], Any], reason: str, field: str
) -> None:
    fake_kube.add_statefulset("shop", "web", replicas=2)
    with pytest.raises(ApiException) as exc:
        call(apps)
    status = status_of(exc)
    assert (exc.value.status, status["reason"]) == (422, "Invalid")
    assert [(c["reason"], c["field"]) for c in status["details"]["causes"]] == [(reason, field)]
    web = fake_kube.get_object("StatefulSet", "shop", "web")
    assert web is not None
    assert (web["spec"]["replicas"], web["spec"]["serviceName"]) == (2, "web"), "nothing written"


def test_statefulsets_list_and_watch_beside_deployments_of_the_same_name(
    shop: FakeKube, apps: Any
) -> None:
    shop.add_statefulset("shop", "web", replicas=1, labels={"tier": "data"})
    listed = apps.list_namespaced_stateful_set("shop")
    assert [s.metadata.name for s in listed.items] == ["web"]
    assert sorted(d.metadata.name for d in apps.list_namespaced_deployment("shop").items) == [
        "api",
        "web",
    ]
    w = watch.Watch()
    stream = w.stream(
        apps.list_stateful_set_for_all_namespaces,
        resource_version=listed.metadata.resource_version,
        timeout_seconds=5,
    )
    apps.patch_namespaced_stateful_set_scale("web", "shop", {"spec": {"replicas": 3}})
    apps.patch_namespaced_deployment_scale("web", "shop", {"spec": {"replicas": 4}})
    apps.patch_namespaced_stateful_set_scale("web", "shop", {"spec": {"replicas": 1}})
    # Each scale is a spec write, then the controller's status write; the Deployment is not seen.
    events = collect(stream, 4, w)
    seen = [(e["type"], e["object"].kind, e["object"].spec.replicas) for e in events]
    assert seen == [("MODIFIED", "StatefulSet", n) for n in (3, 3, 1, 1)]


# --- faults and the request log ------------------------------------------------------------------

FAULT_CASES = [
    pytest.param(
        {"status": 503, "path_regex": r"/deployments$"},
        lambda a: a.list_namespaced_deployment("shop"),
        503,
        id="503-on-list",
    ),
    pytest.param(
        {"status": 429, "method": "GET", "path_regex": r"/web$"},
        lambda a: a.read_namespaced_deployment("web", "shop"),
        429,
        id="429-on-get",
    ),
    pytest.param(
        {"status": 500, "method": "PATCH"},
        lambda a: a.patch_namespaced_deployment_scale("web", "shop", {"spec": {"replicas": 3}}),
        500,
        id="500-on-patch-only",
    ),
    pytest.param(
        {"status": 429, "path_regex": r"/scale$", "retry_after": 1},
        lambda a: a.patch_namespaced_deployment_scale("web", "shop", {"spec": {"replicas": 3}}),
        429,
        id="429-with-retry-after-on-patch",
    ),
]


@pytest.mark.parametrize(("fault", "call", "code"), FAULT_CASES)
def test_injected_faults_surface_as_api_exceptions(
    shop: FakeKube, apps: Any, fault: dict[str, Any], call: Callable[[Any], Any], code: int
) -> None:
    shop.inject(**fault)
    apps.read_namespaced_deployment("api", "shop")  # not matched (or not a PATCH): untouched
    with pytest.raises(ApiException) as exc:
        call(apps)
    assert exc.value.status == code
    assert status_of(exc)["code"] == code
    if fault.get("retry_after") is not None:
        assert (exc.value.headers or {}).get("Retry-After") == "1"
        assert status_of(exc)["details"]["retryAfterSeconds"] == 1
    call(apps)  # times=1: the next one goes through


def test_get_with_retry_after_is_retried_by_urllib3(shop: FakeKube, apps: Any) -> None:
    # Worth knowing when testing back-off: urllib3 honours Retry-After on 429/503 for GETs by itself.
    shop.inject(path_regex="/deployments$", status=429, retry_after=0)
    shop.clear_log()
    apps.list_namespaced_deployment("shop")
    assert [r.status for r in shop.requests] == [429, 200]


def test_outage_until_heal(shop: FakeKube, apps: Any) -> None:
    shop.fail_all(503)
    with pytest.raises(ApiException) as listing:
        apps.list_namespaced_deployment("shop")
    with pytest.raises(ApiException) as deleting:
        apps.delete_namespaced_deployment("web", "shop")
    assert (listing.value.status, deleting.value.status) == (503, 503)
    shop.heal()
    assert apps.read_namespaced_deployment("web", "shop").spec.replicas == 2


def test_slow_answer_trips_a_client_timeout(shop: FakeKube, apps: Any) -> None:
    shop.slow(r"/deployments/web/scale$", seconds=5)
    with pytest.raises(Exception, match=r"[Tt]imed? ?out"):
        apps.patch_namespaced_deployment_scale(
            "web", "shop", {"spec": {"replicas": 3}}, _request_timeout=0.2
        )


def test_request_log_records_what_the_client_sent(shop: FakeKube, apps: Any) -> None:
    shop.clear_log()
    apps.list_namespaced_deployment("shop", label_selector="tier=front")
    apps.patch_namespaced_deployment("web", "shop", {"metadata": {"annotations": {"k": "v"}}})
    with pytest.raises(ApiException):
        apps.read_namespaced_deployment("nope", "shop")
    records = shop.requests
    assert [(r.method, r.path, r.status) for r in records] == [
        ("GET", "/apis/apps/v1/namespaces/shop/deployments", 200),
        ("PATCH", "/apis/apps/v1/namespaces/shop/deployments/web", 200),
        ("GET", "/apis/apps/v1/namespaces/shop/deployments/nope", 404),
    ]
    assert records[0].query == {"labelSelector": "tier=front"}
    assert (records[1].content_type, records[1].body) == (
        STRATEGIC,
        {"metadata": {"annotations": {"k": "v"}}},
    )
    assert records[0].timestamp <= records[1].timestamp <= records[2].timestamp
    shop.clear_log()
    assert shop.requests == []


def test_kubeconfig_loads_with_load_kube_config(shop: FakeKube, kubeconfig: Path) -> None:
    configuration = client.Configuration()  # not the process-wide default, which other tests share
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    assert configuration.host == shop.url
    with client.ApiClient(configuration) as api:
        assert client.VersionApi(api).get_code().git_version == "v1.32.0"
        assert client.CoreV1Api(api).read_namespace("shop").status.phase == "Active"


def test_stop_ends_open_watches_and_threads(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    server = FakeKube().start()
    server.add_deployment("shop", "web")
    api = config.new_client_from_config(
        config_file=str(server.write_kubeconfig(tmp_path / "kubeconfig"))
    )
    w = watch.Watch()
    consumer = threading.Thread(
        target=lambda: list(
            w.stream(client.AppsV1Api(api).list_namespaced_deployment, "shop", timeout_seconds=60)
        ),
        daemon=True,
    )
    consumer.start()
    assert server.wait_for_watches(1, timeout=5)
    server.stop()
    consumer.join(timeout=5)
    api.close()
    assert not consumer.is_alive()
    assert set(threading.enumerate()) - before == set()


# --- kubectl -------------------------------------------------------------------------------------

KUBECTL = shutil.which("kubectl")


@pytest.fixture
def kubectl(
    shop: FakeKube, kubeconfig: Path, tmp_path: Path
) -> Callable[..., subprocess.CompletedProcess[str]]:
    if KUBECTL is None:
        pytest.skip("kubectl is not installed")
    kubectl_path = KUBECTL
    shop.add_hpa("shop", "web", "web", min_replicas=2, max_replicas=10)
    shop.add_pod("shop", "web-1", owner="web")
    shop.add_statefulset("shop", "db", replicas=2)
    shop.put_object(
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "web.1", "namespace": "shop"},
            "involvedObject": {"kind": "Deployment", "name": "web", "namespace": "shop"},
            "reason": "ScaledUp",
            "message": "scaled to 4",
            "type": "Normal",
        }
    )

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        # A cache directory per test: kubectl caches discovery per server address otherwise in ~/.kube.
        command = [
            kubectl_path,
            "--kubeconfig",
            str(kubeconfig),
            "--cache-dir",
            str(tmp_path / "cache"),
            *args,
        ]
        return subprocess.run(
            command, capture_output=True, text=True, timeout=30, input=stdin, check=False
        )

    return run


NEW_DEPLOYMENT = json.dumps(
    {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "new", "namespace": "shop"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "new"}},
            "template": {
                "metadata": {"labels": {"app": "new"}},
                "spec": {"containers": [{"name": "n", "image": "i"}]},
            },
        },
    }
)
KUBECTL_CASES = [
    pytest.param(
        ["get", "deploy", "-n", "shop"],
        None,
        0,
        r"^NAME\s+READY\s+UP-TO-DATE\s+AVAILABLE\s+AGE\napi\s+1/1\s+1\s+1\s+\d+s\nweb\s+2/2\s+2\s+2\s+\d+s\n$",
        None,
        id="get-deploy-table",
    ),
    pytest.param(
        ["get", "deploy", "web", "-n", "shop"],
        None,
        0,
        r"^NAME\s+READY.*\nweb\s+2/2\s",
        None,
        id="get-one-table",
    ),
    pytest.param(
        ["get", "deploy", "-n", "shop", "-w", "--output-watch-events", "--request-timeout=300ms"],
        None,
        0,
        r"^EVENT\s+NAME\s+READY.*\nADDED\s+api\s+1/1.*\nADDED\s+web\s+2/2",
        None,
        id="get-watch-tables",
    ),
    pytest.param(
        ["get", "deploy", "web", "-n", "shop", "-o", "jsonpath={.spec.replicas}"],
        None,
        0,
        r"^2$",
        None,
        id="get-jsonpath",
    ),
    pytest.param(
        ["get", "deploy", "web", "-n", "shop", "-o", "json"],
        None,
        0,
        r'"kind": "Deployment"',
        None,
        id="get-json",
    ),
    pytest.param(
        ["get", "deploy", "-n", "shop", "-o", "yaml"],
        None,
        0,
        r"name: web[\s\S]*kind: List",
        None,
        id="get-yaml-list",
    ),
    pytest.param(
        ["get", "deploy", "-A", "-o", "wide"],
        None,
        0,
        r"NAMESPACE\s+NAME\s+READY.*SELECTOR\nother\s+batch[\s\S]*shop\s+web\s+2/2.*app=web",
        None,
        id="get-all-namespaces-wide",
    ),
    pytest.param(
        ["get", "deploy", "-n", "shop", "-l", "tier=front", "-o", "name"],
        None,
        0,
        r"^deployment.apps/web\n$",
        None,
        id="get-label-selector",
    ),
    pytest.param(
        ["get", "deploy", "nope", "-n", "shop"],
        None,
        1,
        r'Error from server \(NotFound\): deployments.apps "nope" not found',
        None,
        id="get-missing",
    ),
    pytest.param(
        ["scale", "deploy/web", "-n", "shop", "--replicas=5"],
        None,
        0,
        r"deployment.apps/web scaled",
        ("spec.replicas", 5),
        id="scale",
    ),
    pytest.param(
        ["scale", "deploy/web", "-n", "shop", "--replicas=0"],
        None,
        0,
        r"scaled",
        ("spec.replicas", 0),
        id="scale-to-zero",
    ),
    pytest.param(
        ["annotate", "deploy", "web", "-n", "shop", "team=search"],
        None,
        0,
        r"deployment.apps/web annotated",
        ("metadata.annotations.team", "search"),
        id="annotate",
    ),
    pytest.param(
        ["annotate", "deploy", "web", "-n", "shop", "owner=b"],
        None,
        1,
        r"--overwrite is false",
        ("metadata.annotations.owner", "a"),
        id="annotate-refuses-without-overwrite",
    ),
    pytest.param(
        ["annotate", "deploy", "web", "-n", "shop", "owner=b", "--overwrite"],
        None,
        0,
        r"annotated",
        ("metadata.annotations.owner", "b"),
        id="annotate-overwrite",
    ),
    pytest.param(
        ["annotate", "deploy", "web", "-n", "shop", "owner-"],
        None,
        0,
        r"annotated",
        ("metadata.annotations", None),
        id="annotate-remove",
    ),
    pytest.param(
        ["patch", "deploy", "web", "-n", "shop", "-p", '{"spec":{"replicas":4}}'],
        None,
        0,
        r"deployment.apps/web patched",
        ("spec.replicas", 4),
        id="patch-strategic",
    ),
    pytest.param(
        [
            "patch",
            "deploy",
            "web",
            "-n",
            "shop",
            "--type=merge",
            "-p",
            '{"metadata":{"labels":{"tier":"edge"}}}',
        ],
        None,
        0,
        r"patched",
        ("metadata.labels.tier", "edge"),
        id="patch-merge",
    ),
    pytest.param(
        [
            "patch",
            "deploy",
            "web",
            "-n",
            "shop",
            "--type=json",
            "-p",
            '[{"op":"replace","path":"/spec/replicas","value":3}]',
        ],
        None,
        0,
        r"patched",
        ("spec.replicas", 3),
        id="patch-json",
    ),
    pytest.param(
        [
            "patch",
            "deploy",
            "web",
            "-n",
            "shop",
            "--subresource=scale",
            "--type=merge",
            "-p",
            '{"spec":{"replicas":6}}',
        ],
        None,
        0,
        r"patched",
        ("spec.replicas", 6),
        id="patch-scale",
    ),
    pytest.param(
        ["get", "hpa", "-n", "shop"],
        None,
        0,
        r"^NAME\s+REFERENCE\s+TARGETS\s+MINPODS\s+MAXPODS\s+REPLICAS\s+AGE\n"
        r"web\s+Deployment/web\s+cpu: <unknown>/80%\s+2\s+10\s+2\s+\d+s\n$",
        None,
        id="get-hpa",
    ),
    pytest.param(
        ["get", "pods", "-n", "shop"],
        None,
        0,
        r"NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE\nweb-1\s+1/1\s+Running\s+0",
        None,
        id="get-pods",
    ),
    pytest.param(
        ["get", "events", "-n", "shop"],
        None,
        0,
        r"Normal\s+ScaledUp\s+deployment/web\s+scaled to 4",
        None,
        id="get-events",
    ),
    pytest.param(["get", "ns", "shop"], None, 0, r"shop\s+Active", None, id="get-namespace"),
    pytest.param(
        ["get", "--raw", "/apis/apps/v1/namespaces/shop/deployments/web/scale"],
        None,
        0,
        r'"selector": "app=web"',
        None,
        id="get-raw-scale",
    ),
    pytest.param(
        ["delete", "deploy", "api", "-n", "shop"],
        None,
        0,
        r'deployment.apps "api" deleted',
        None,
        id="delete",
    ),
    pytest.param(
        ["rollout", "status", "deploy/web", "-n", "shop", "--timeout=5s"],
        None,
        0,
        r'deployment "web" successfully rolled out',
        None,
        id="rollout-status",
    ),
    pytest.param(
        ["create", "namespace", "predictive-autoscaler"],
        None,
        0,
        r"namespace/predictive-autoscaler created",
        None,
        id="create-namespace",
    ),
    pytest.param(
        [
            "label",
            "namespace",
            "shop",
            "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/enforce-version=latest",
        ],
        None,
        0,
        r"namespace/shop labeled",
        None,
        id="label-namespace",
    ),
    pytest.param(
        ["delete", "namespace", "shop"],
        None,
        0,
        r'namespace "shop" deleted',
        None,
        id="delete-namespace",
    ),
    pytest.param(
        ["create", "--validate=false", "-f", "-"],
        NEW_DEPLOYMENT,
        0,
        r"deployment.apps/new created",
        None,
        id="create-from-file",
    ),
    pytest.param(
        ["api-resources", "--api-group=apps"],
        None,
        0,
        r"deployments\s+deploy\s+apps/v1\s+true\s+Deployment",
        None,
        id="api-resources",
    ),
]


@pytest.mark.parametrize(("args", "stdin", "code", "pattern", "expect"), KUBECTL_CASES)
def test_kubectl(
    shop: FakeKube,
    kubectl: Callable[..., subprocess.CompletedProcess[str]],
    args: list[str],
    stdin: str | None,
    code: int,
    pattern: str,
    expect: tuple[str, Any] | None,
) -> None:
    result = kubectl(*args, stdin=stdin)
    assert result.returncode == code, result.stderr
    assert re.search(pattern, result.stdout + result.stderr), result.stdout + result.stderr
    if expect is not None:
        path, value = expect
        assert dig(shop.get_object("Deployment", "shop", "web"), path) == value


KUBECTL_STATEFULSET_CASES = [
    pytest.param(
        ["get", "sts", "-n", "shop"],
        0,
        r"^NAME\s+READY\s+AGE\ndb\s+2/2\s+\d+s\n$",
        None,
        id="get-sts-table",
    ),
    pytest.param(
        ["get", "statefulsets", "-n", "shop", "-o", "wide"],
        0,
        r"^NAME\s+READY\s+AGE\s+CONTAINERS\s+IMAGES\ndb\s+2/2\s+\d+s\s+db\s+registry.local/app:1.0\n$",
        None,
        id="get-sts-wide",
    ),
    pytest.param(
        ["scale", "sts/db", "-n", "shop", "--replicas=4"],
        0,
        r"statefulset.apps/db scaled",
        ("spec.replicas", 4),
        id="scale-sts",
    ),
    pytest.param(
        ["patch", "sts", "db", "-n", "shop", "--subresource=scale", "--type=merge", "-p",
         '{"spec":{"replicas":3}}'],
        0,
        r"scale.autoscaling/db patched",
        ("status.readyReplicas", 3),
        id="patch-sts-scale",
    ),
    pytest.param(
        ["annotate", "sts", "db", "-n", "shop", "team=data"],
        0,
        r"statefulset.apps/db annotated",
        ("metadata.annotations.team", "data"),
        id="annotate-sts",
    ),
    pytest.param(
        ["patch", "sts", "db", "-n", "shop", "-p", '{"spec":{"podManagementPolicy":"Parallel"}}'],
        1,
        r"spec: Forbidden: updates to statefulset spec for fields other than 'replicas'",
        ("spec.podManagementPolicy", "OrderedReady"),
        id="patch-sts-forbidden-field",
    ),
    pytest.param(
        ["rollout", "status", "sts/db", "-n", "shop", "--timeout=5s"],
        0,
        r"partitioned roll out complete: 2 new pods have been updated",
        None,
        id="rollout-status-sts",
    ),
    pytest.param(
        ["get", "hpa", "db", "-n", "shop"],
        0,
        r"db\s+StatefulSet/db\s+cpu: <unknown>/80%\s+2\s+6\s+2\s",
        None,
        id="get-hpa-on-sts",
    ),
    pytest.param(
        ["api-resources", "--api-group=apps"],
        0,
        r"statefulsets\s+sts\s+apps/v1\s+true\s+StatefulSet",
        None,
        id="api-resources-sts",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("args", "code", "pattern", "expect"), KUBECTL_STATEFULSET_CASES)
def test_kubectl_statefulsets(
    shop: FakeKube,
    kubectl: Callable[..., subprocess.CompletedProcess[str]],
    args: list[str],
    code: int,
    pattern: str,
    expect: tuple[str, Any] | None,
) -> None:
    shop.add_hpa("shop", "db", "db", min_replicas=2, max_replicas=6, target_kind="StatefulSet")
    result = kubectl(*args)
    assert result.returncode == code, result.stderr
    assert re.search(pattern, result.stdout + result.stderr), result.stdout + result.stderr
    if expect is not None:
        path, value = expect
        assert dig(shop.get_object("StatefulSet", "shop", "db"), path) == value


def test_kubectl_delete_and_create_are_seen_by_the_client(
    shop: FakeKube, kubectl: Callable[..., subprocess.CompletedProcess[str]], apps: Any
) -> None:
    assert kubectl("delete", "deploy", "api", "-n", "shop").returncode == 0
    assert kubectl("create", "--validate=false", "-f", "-", stdin=NEW_DEPLOYMENT).returncode == 0
    assert sorted(d.metadata.name for d in apps.list_namespaced_deployment("shop").items) == [
        "new",
        "web",
    ]
    assert apps.read_namespaced_deployment("new", "shop").status.ready_replicas == 3


# --- protobuf request bodies ----------------------------------------------------------------------


def _pb_field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (tests only encode strings, bytes and messages)."""
    return bytes([number << 3 | 2, len(payload)]) + payload


def _pb_entry(number: int, name: str, value: bytes) -> bytes:
    return _pb_field(number, _pb_field(1, name.encode()) + _pb_field(2, value))


def _pb_body(api_version: str, kind: str, raw: bytes) -> bytes:
    type_meta = _pb_field(1, api_version.encode()) + _pb_field(2, kind.encode())
    return b"k8s\x00" + _pb_field(1, type_meta) + _pb_field(2, raw)


def test_a_protobuf_secret_is_stored_as_its_json(fake_kube: FakeKube) -> None:
    # As client-go's typed clientset sends it (Helm's release records): empty non-pointer fields
    # included, which JSON would omit.
    meta = _pb_field(1, b"record") + _pb_field(3, b"") + _pb_entry(11, "owner", b"helm")
    secret = _pb_field(1, meta) + _pb_entry(2, "release", b"\x00\x01data") + _pb_field(3, b"Opaque")
    request = urllib.request.Request(
        f"{fake_kube.url}/api/v1/namespaces/default/secrets",
        data=_pb_body("v1", "Secret", secret),
        headers={"Content-Type": "application/vnd.kubernetes.protobuf"},
        method="POST",
    )
    with urllib.request.urlopen(request) as answer:
        assert answer.status == 201
    stored = fake_kube.get_object("Secret", "default", "record")
    assert stored is not None
    assert stored["metadata"]["labels"] == {"owner": "helm"}
    assert stored["data"] == {"release": "AAFkYXRh"}
    assert stored["type"] == "Opaque"


def test_a_protobuf_body_the_fake_cannot_decode_is_refused(fake_kube: FakeKube) -> None:
    request = urllib.request.Request(
        f"{fake_kube.url}/api/v1/namespaces/default/configmaps",
        data=_pb_body("v1", "ConfigMap", _pb_field(1, _pb_field(1, b"settings"))),
        headers={"Content-Type": "application/vnd.kubernetes.protobuf"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request)
    assert refused.value.code == 415
    assert "v1/ConfigMap" in json.loads(refused.value.read())["message"]
    assert fake_kube.list_objects("ConfigMap", "default") == []
