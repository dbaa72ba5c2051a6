"""The resources the fake serves and the discovery documents that describe them to kubectl."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SERVER_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-12-11T00:00:00Z",
    "goVersion": "go1.23.3",
    "compiler": "gc",
    "platform": "linux/amd64",
}

VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
SUBRESOURCE_VERBS = ("get", "patch", "update")


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    # Several served versions can share one stored collection (HPA v1/v2, the two Event APIs).
    shared_storage: str | None = None

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def storage(self) -> str:
        return self.shared_storage or (f"{self.plural}.{self.group}" if self.group else self.plural)

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"


HPA_STORAGE = "horizontalpodautoscalers.autoscaling"

RESOURCES: tuple[Resource, ...] = (
    Resource(
        "",
        "v1",
        "namespaces",
        "Namespace",
        namespaced=False,
        short_names=("ns",),
        subresources=("status",),
    ),
    Resource(
        "", "v1", "pods", "Pod", short_names=("po",), subresources=("status",), categories=("all",)
    ),
    Resource("", "v1", "events", "Event", short_names=("ev",)),
    Resource("", "v1", "configmaps", "ConfigMap", short_names=("cm",)),
    Resource(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        short_names=("deploy",),
        subresources=("scale", "status"),
        categories=("all",),
    ),
    Resource(
        "apps",
        "v1",
        "statefulsets",
        "StatefulSet",
        short_names=("sts",),
        subresources=("scale", "status"),
        categories=("all",),
    ),
    Resource(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        short_names=("hpa",),
        subresources=("status",),
        categories=("all",),
        shared_storage=HPA_STORAGE,
    ),
    Resource(
        "autoscaling",
        "v1",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        short_names=("hpa",),
        subresources=("status",),
        categories=("all",),
        shared_storage=HPA_STORAGE,
    ),
    Resource("coordination.k8s.io", "v1", "leases", "Lease"),
    Resource("events.k8s.io", "v1", "events", "Event", short_names=("ev",), shared_storage="events"),
    # What installing the controller itself writes (kubectl apply -k deploy/, helm install): plain
    # objects with no controller behind them here. Secrets also hold Helm's release records.
    Resource("", "v1", "secrets", "Secret"),
    Resource("", "v1", "serviceaccounts", "ServiceAccount", short_names=("sa",)),
    Resource(
        "",
        "v1",
        "services",
        "Service",
        short_names=("svc",),
        subresources=("status",),
        categories=("all",),
    ),
    Resource("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False),
    Resource(
        "rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", namespaced=False
    ),
    Resource("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    Resource(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        short_names=("pdb",),
        subresources=("status",),
    ),
    Resource("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", short_names=("netpol",)),
    # The Prometheus operator's CRDs, as on a cluster where they are installed (kube-prometheus-stack).
    Resource(
        "monitoring.coreos.com",
        "v1",
        "servicemonitors",
        "ServiceMonitor",
        short_names=("smon",),
        categories=("prometheus-operator",),
    ),
    Resource(
        "monitoring.coreos.com",
        "v1",
        "prometheusrules",
        "PrometheusRule",
        short_names=("promrule",),
        categories=("prometheus-operator",),
    ),
)

# The order of versions is the server's preference, as in APIGroup.preferredVersion.
GROUP_VERSIONS: dict[str, tuple[str, ...]] = {
    "apps": ("v1",),
    "autoscaling": ("v2", "v1"),
    "coordination.k8s.io": ("v1",),
    "events.k8s.io": ("v1",),
    "rbac.authorization.k8s.io": ("v1",),
    "policy": ("v1",),
    "networking.k8s.io": ("v1",),
    "monitoring.coreos.com": ("v1",),
}


def find(group: str, version: str, plural: str) -> Resource | None:
    for resource in RESOURCES:
        if (resource.group, resource.version, resource.plural) == (group, version, plural):
            return resource
    return None


def storage_version(storage: str) -> Resource:
    """The resource whose shape objects have at rest (the first one listed for that storage)."""
    return next(resource for resource in RESOURCES if resource.storage == storage)


def lookup(kind_or_name: str, api_version: str | None = None) -> Resource:
    """Resolve a kind, plural or short name (case-insensitive) as the test-control API accepts them."""
    wanted = kind_or_name.lower()
    for resource in RESOURCES:
        if api_version is not None and resource.api_version != api_version:
            continue
        names = {resource.kind.lower(), resource.plural, resource.singular, *resource.short_names}
        if wanted in names:
            # Prefer the stored version, so helpers read objects in their stored shape.
            return storage_version(resource.storage) if api_version is None else resource
    raise KeyError(f"the fake serves no resource {kind_or_name!r} {api_version or ''}".strip())


def is_group_version(group: str, version: str) -> bool:
    if group == "":
        return version == "v1"
    return version in GROUP_VERSIONS.get(group, ())


def _group_entry(group: str) -> dict[str, Any]:
    versions = [{"groupVersion": f"{group}/{v}", "version": v} for v in GROUP_VERSIONS[group]]
    return {"name": group, "versions": versions, "preferredVersion": versions[0]}


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def api_group_list() -> dict[str, Any]:
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group_entry(g) for g in GROUP_VERSIONS],
    }


def api_group(group: str) -> dict[str, Any] | None:
    if group not in GROUP_VERSIONS:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_entry(group)}


def api_resource_list(group: str, version: str) -> dict[str, Any]:
    entries: list[dict[str, Any]] = []
    for resource in RESOURCES:
        if (resource.group, resource.version) != (group, version):
            continue
        entry: dict[str, Any] = {
            "name": resource.plural,
            "singularName": resource.singular,
            "namespaced": resource.namespaced,
            "kind": resource.kind,
            "verbs": list(VERBS),
        }
        if resource.short_names:
            entry["shortNames"] = list(resource.short_names)
        if resource.categories:
            entry["categories"] = list(resource.categories)
        entries.append(entry)
        for sub in resource.subresources:
            sub_entry: dict[str, Any] = {
                "name": f"{resource.plural}/{sub}",
                "singularName": "",
                "namespaced": resource.namespaced,
                "kind": resource.kind,
                "verbs": list(SUBRESOURCE_VERBS),
            }
            if sub == "scale":
                sub_entry.update(group="autoscaling", version="v1", kind="Scale")
            entries.append(sub_entry)
    group_version = f"{group}/{version}" if group else version
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": entries,
    }
