"""RBAC from the code: the roles in deploy/ grant exactly what the controller asks the API server for.

`predictive-autoscaler run` runs as a process, with the Deployment's args and the settings
ConfigMap's environment as rendered from deploy/, against the fake API server and a real Prometheus
(`prometheus_live`). Its scenarios: mode replicas scales a Deployment and a StatefulSet up, mode hpa
raises the floor of an HPA on a Deployment and of one on a StatefulSet, a dry-run annotation makes it
explain instead of act, a bad annotation gets its Event, the informers list and watch Deployments,
StatefulSets, HPAs and pods, and the replica creates, renews and (on SIGTERM) releases the Lease of
every shard the settings name. Every request in the fake's log becomes a Kubernetes access (verb, API
group, resource/subresource, namespace, name). Then, for the roles bound to the Deployment's
ServiceAccount: no wildcard anywhere, every access is allowed by some rule (namespace and
resourceNames included), every verb/resource a rule names was used, and every Lease name it names
was renewed. Cases: the cluster-wide
base (ClusterRole + leader-election Role) and the namespaced component (Roles only).

Also covers the mapping from HTTP requests to RBAC verbs itself.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from autoscaler.actuation.shards import lease_names
from autoscaler.config import PREFIX
from tests.fakekube import FakeKube
from tests.polling import eventually
from tests.promserver import PromEnv
from tests.test_deploy import (
    COMPONENTS,
    CONTROLLER_NS,
    DEPLOY,
    ENV_PREFIX,
    Obj,
    controller_container,
    find,
    render,
    render_overlay,
    settings_of,
)

NS = "shop"  # where prometheus_live has load for the Deployments web and api, StatefulSets db and queue
WATCHED_IN_COMPONENT = "agents"  # the namespace deploy/components/namespaced gives access to
REQUESTS_ON = {
    PREFIX + "enabled": "true",
    PREFIX + "metrics": "requests",
    PREFIX + "target-requests-per-pod": "10",
    PREFIX + "startup-seconds": "30",
}
# Quicker than in a cluster: a tick a second, and a lease renewed every second.
QUICK = [
    "--interval", "1s", "--lease-duration", "4s", "--renew-deadline", "3s", "--retry-period", "1s",
]  # fmt: skip
# Paths every authenticated client may read (system:discovery, system:public-info-viewer).
DISCOVERY = ("/version", "/api", "/apis", "/openapi", "/healthz", "/livez", "/readyz")


# --- HTTP requests → RBAC accesses ----------------------------------------------------------------


@dataclass(frozen=True)
class Access:
    verb: str
    group: str
    resource: str  # "deployments", or "deployments/scale" for a subresource
    namespace: str | None  # None: a cluster-scoped request (e.g. a list across all namespaces)
    name: str | None


def access_of(method: str, path: str, query: dict[str, str]) -> Access | None:
    """The access a request needs, as the API server's request-info resolver reads it; None for a
    discovery path, which needs no role."""
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, rest = parts[1], parts[3:]
    else:
        if path == "/" or any(path == d or path.startswith(d + "/") for d in DISCOVERY):
            return None
        raise ValueError(f"not a resource path: {path}")
    if not rest:
        return None  # discovery of one group version
    watch_path = rest[0] == "watch"
    if watch_path:
        rest = rest[1:]
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else None
    if len(rest) > 2:
        resource = f"{resource}/{rest[2]}"
    if method == "GET":
        if watch_path or query.get("watch", "").lower() in ("true", "1"):
            verb = "watch"
        else:
            verb = "get" if name is not None else "list"
    else:
        verb = {
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete" if name is not None else "deletecollection",
        }[method]
    return Access(verb, group, resource, namespace, name)


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        pytest.param(
            "GET", "/apis/apps/v1/deployments", {}, Access("list", "apps", "deployments", None, None),
            id="list-all-namespaces",
        ),
        pytest.param(
            "GET", "/apis/apps/v1/namespaces/shop/deployments", {"watch": "True"},
            Access("watch", "apps", "deployments", "shop", None), id="watch-by-query",
        ),
        pytest.param(
            "GET", "/api/v1/watch/namespaces/shop/pods", {},
            Access("watch", "", "pods", "shop", None), id="watch-by-path",
        ),
        pytest.param(
            "PATCH", "/apis/apps/v1/namespaces/shop/deployments/web/scale", {},
            Access("patch", "apps", "deployments/scale", "shop", "web"), id="patch-subresource",
        ),
        pytest.param(
            "POST", "/api/v1/namespaces/shop/events", {},
            Access("create", "", "events", "shop", None), id="create-core",
        ),
        pytest.param(
            "GET", "/apis/coordination.k8s.io/v1/namespaces/ops/leases/pa", {},
            Access("get", "coordination.k8s.io", "leases", "ops", "pa"), id="get-named",
        ),
        pytest.param(
            "PUT", "/apis/coordination.k8s.io/v1/namespaces/ops/leases/pa", {},
            Access("update", "coordination.k8s.io", "leases", "ops", "pa"), id="put-is-update",
        ),
        pytest.param(
            "GET", "/api/v1/namespaces/shop", {}, Access("get", "", "namespaces", None, "shop"),
            id="get-namespace-itself",
        ),
        pytest.param(
            "DELETE", "/api/v1/namespaces/shop/pods", {},
            Access("deletecollection", "", "pods", "shop", None), id="delete-collection",
        ),
        pytest.param("GET", "/apis/apps/v1", {}, None, id="group-discovery"),
        pytest.param("GET", "/version", {}, None, id="version"),
    ],
)  # fmt: skip
def test_request_maps_to_rbac_access(
    method: str, path: str, query: dict[str, str], expected: Access | None
) -> None:
    assert access_of(method, path, query) == expected


# --- roles → what they allow ----------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    source: str  # "ClusterRole/x" or "Role/ns/x", for messages
    namespace: str | None  # None: bound cluster-wide
    groups: frozenset[str]
    resources: frozenset[str]
    verbs: frozenset[str]
    names: frozenset[str]

    def allows(self, access: Access) -> bool:
        if self.namespace is not None and access.namespace != self.namespace:
            return False
        if access.verb not in self.verbs or access.group not in self.groups:
            return False
        if access.resource not in self.resources:
            return False
        if self.names:
            # The API server cannot match a name for create (not known yet) or for collections.
            return access.name is not None and access.verb != "create" and access.name in self.names
        return True

    def grants(self) -> set[tuple[str, str, str]]:
        return {(v, g, r) for v in self.verbs for g in self.groups for r in self.resources}


def bound_rules(objects: Sequence[Obj], account: str, account_ns: str) -> list[Rule]:
    """The rules of every role bound to the ServiceAccount, each confined to its binding's scope."""
    roles = {
        (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o
        for o in objects
        if o["kind"] in ("Role", "ClusterRole")
    }
    rules: list[Rule] = []
    for binding in objects:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        subject = {"kind": "ServiceAccount", "name": account, "namespace": account_ns}
        if subject not in binding.get("subjects", []):
            continue
        scope = binding["metadata"].get("namespace") if binding["kind"] == "RoleBinding" else None
        ref = binding["roleRef"]
        role_ns = scope if ref["kind"] == "Role" else None
        role = roles.get((ref["kind"], role_ns, ref["name"]))
        assert role is not None, f"{binding['kind']} {binding['metadata']['name']} binds a missing role"
        source = "/".join(p for p in (ref["kind"], role_ns, ref["name"]) if p)
        for rule in role.get("rules", []):
            rules.append(
                Rule(
                    source,
                    scope,
                    frozenset(rule.get("apiGroups", [])),
                    frozenset(rule.get("resources", [])),
                    frozenset(rule.get("verbs", [])),
                    frozenset(rule.get("resourceNames", [])),
                )
            )
    return rules


# --- the controller as it runs in the pod ---------------------------------------------------------


class Controller:
    """`predictive-autoscaler run` with the pod's args and environment; stderr collected."""

    def __init__(self, args: Sequence[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "autoscaler", "run", *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        stream = self.process.stderr
        assert stream is not None
        self._reader = threading.Thread(target=lambda: self.lines.extend(stream), daemon=True)
        self._reader.start()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=30)
        self._reader.join(timeout=10)
        return code


def pod_environment(objects: Sequence[Obj], prometheus_url: str) -> dict[str, str]:
    """The controller container's environment: the settings ConfigMap, then its own `env` (the
    downward API answered as the kubelet would)."""
    container = controller_container(objects)
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env.update(settings_of(objects))
    field_values = {"metadata.namespace": CONTROLLER_NS, "metadata.name": "predictive-autoscaler-0"}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            env[var["name"]] = field_values[var["valueFrom"]["fieldRef"]["fieldPath"]]
    # The one address that differs out of the cluster.
    env[ENV_PREFIX + "PROMETHEUS_URL"] = prometheus_url
    return env


def events(fake: FakeKube, reason: str) -> list[Obj]:
    return [e for e in fake.list_objects("Event", NS) if e.get("reason") == reason]


def run_scenarios(fake: FakeKube, kubeconfig: Path, objects: Sequence[Obj], prometheus_url: str) -> None:
    fake.add_namespace(CONTROLLER_NS)
    fake.add_deployment(NS, "web", replicas=2, annotations=REQUESTS_ON)
    fake.add_deployment(NS, "api", replicas=2, annotations={**REQUESTS_ON, PREFIX + "mode": "hpa"})
    fake.add_hpa(NS, "api", "api", min_replicas=2, max_replicas=20)
    fake.add_statefulset(NS, "db", replicas=2, annotations=REQUESTS_ON)
    fake.add_statefulset(NS, "queue", replicas=2, annotations={**REQUESTS_ON, PREFIX + "mode": "hpa"})
    fake.add_hpa(NS, "queue", "queue", min_replicas=2, max_replicas=20, target_kind="StatefulSet")
    fake.add_deployment(
        NS, "typo", annotations={PREFIX + "enabled": "true", PREFIX + "min-replica": "2"}
    )
    for i in range(2):
        fake.add_pod(NS, f"web-{i}", owner="web")

    container = controller_container(objects)
    settings = settings_of(objects)
    shard_leases = lease_names(settings[ENV_PREFIX + "LEASE_NAME"], int(settings[ENV_PREFIX + "SHARDS"]))
    args = [*container.get("args", []), "--kubeconfig", str(kubeconfig), "--metrics-port", "0", *QUICK]

    def holders() -> list[str]:
        leases = [fake.get_object("Lease", CONTROLLER_NS, name) or {} for name in shard_leases]
        return [lease.get("spec", {}).get("holderIdentity", "?") for lease in leases]

    def deployment(name: str) -> Obj:
        found = fake.get_object("Deployment", NS, name)
        assert found is not None
        return found

    def statefulset(name: str) -> Obj:
        found = fake.get_object("StatefulSet", NS, name)
        assert found is not None
        return found

    def hpa_floor(name: str = "api") -> int:
        found = fake.get_object("HorizontalPodAutoscaler", NS, name)
        assert found is not None
        return int(found["spec"]["minReplicas"])

    def renewals() -> int:
        return sum(1 for r in fake.requests if r.method == "PUT" and "/leases/" in r.path)

    controller = Controller(args, pod_environment(objects, prometheus_url))
    try:
        # One replica alone holds every shard.
        eventually(lambda: set(holders()) == {"predictive-autoscaler-0"}, "the shard leases")
        eventually(lambda: deployment("web")["spec"]["replicas"] != 2, "scale-up in mode replicas")
        eventually(lambda: hpa_floor() != 2, "HPA floor raised in mode hpa")
        eventually(lambda: statefulset("db")["spec"]["replicas"] != 2, "a StatefulSet scaled up")
        eventually(lambda: hpa_floor("queue") != 2, "a StatefulSet's HPA floor raised")
        eventually(lambda: bool(events(fake, "InvalidAnnotation")), "the bad annotation's Event")
        eventually(lambda: renewals() >= 2, "lease renewals")

        # Dry-run: web is now asked for more than it has, and only explained.
        web = deployment("web")
        web["metadata"]["annotations"].update(
            {PREFIX + "dry-run": "true", PREFIX + "target-requests-per-pod": "2"}
        )
        fake.put_object(web)
        scaled_to = web["spec"]["replicas"]
        eventually(lambda: bool(events(fake, "DryRun")), "the dry-run Event")
        assert deployment("web")["spec"]["replicas"] == scaled_to
    except AssertionError as failure:
        controller.stop()
        raise AssertionError(
            f"{failure}\ncontroller log:\n{''.join(controller.lines)[-6000:]}"
        ) from None
    finally:
        code = controller.stop()
    log = "".join(controller.lines)
    assert code == 0, log
    assert "tick failed" not in log
    assert set(holders()) == {""}, "released on SIGTERM"


@pytest.mark.parametrize(
    "namespaced",
    [
        pytest.param(False, id="cluster-role"),
        pytest.param(True, id="namespaced-roles"),
    ],
)
def test_roles_grant_exactly_what_the_controller_uses(
    namespaced: bool,
    fake_kube: FakeKube,
    kubeconfig: Path,
    prometheus_live: PromEnv,
    tmp_path: Path,
) -> None:
    if namespaced:
        # A user's copy of the namespaced component, for the namespace with the load.
        component = tmp_path / "namespaced"
        shutil.copytree(COMPONENTS / "namespaced", component)
        for file in component.iterdir():
            file.write_text(file.read_text().replace(WATCHED_IN_COMPONENT, NS))
        objects = render_overlay(tmp_path / "overlay", [component])
    else:
        objects = render(DEPLOY)
    pod = find(objects, "Deployment", "predictive-autoscaler")["spec"]["template"]["spec"]
    rules = bound_rules(objects, pod["serviceAccountName"], CONTROLLER_NS)

    wildcards = [r.source for r in rules if "*" in r.groups | r.resources | r.verbs]
    assert wildcards == []

    fake_kube.clear_log()
    run_scenarios(fake_kube, kubeconfig, objects, prometheus_live.url)
    used = {access_of(r.method, r.path, r.query) for r in fake_kube.requests}
    used.discard(None)
    accesses = [a for a in used if a is not None]

    denied = sorted(f"{a}" for a in accesses if not any(rule.allows(a) for rule in rules))
    assert denied == [], "the controller would be refused these"
    used_grants = {(a.verb, a.group, a.resource) for a in accesses}
    unused = sorted(f"{rule.source}: {grant}" for rule in rules for grant in rule.grants() - used_grants)
    assert unused == [], "granted but never used"
    named = {name for rule in rules if "leases" in rule.resources for name in rule.names}
    renewed = {a.name for a in accesses if a.resource == "leases" and a.verb == "update"}
    assert renewed == named, "every shard Lease the role names is renewed, and no other"
    # The scenarios did reach every kind of request the controller makes.
    assert used_grants == EXPECTED_GRANTS


EXPECTED_GRANTS = {
    ("get", "apps", "deployments"),
    ("list", "apps", "deployments"),
    ("watch", "apps", "deployments"),
    ("patch", "apps", "deployments"),
    ("patch", "apps", "deployments/scale"),
    ("get", "apps", "statefulsets"),
    ("list", "apps", "statefulsets"),
    ("watch", "apps", "statefulsets"),
    ("patch", "apps", "statefulsets"),
    ("patch", "apps", "statefulsets/scale"),
    ("list", "autoscaling", "horizontalpodautoscalers"),
    ("watch", "autoscaling", "horizontalpodautoscalers"),
    ("patch", "autoscaling", "horizontalpodautoscalers"),
    ("list", "", "pods"),
    ("watch", "", "pods"),
    ("create", "", "events"),
    ("get", "coordination.k8s.io", "leases"),
    ("create", "coordination.k8s.io", "leases"),
    ("update", "coordination.k8s.io", "leases"),
}
