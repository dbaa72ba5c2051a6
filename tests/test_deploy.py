"""The deployment manifests (deploy/), rendered by `kubectl kustomize` as `kubectl apply -k` would.

Covers: the base, each component (ServiceMonitor, alert rules, dashboards, namespaced RBAC) and the
examples render; every object validates offline against the Kubernetes schemas of the oldest and the
newest version `kubernetes-validate` knows (strict: no unknown fields), except the Prometheus
operator's CRDs (ServiceMonitor, PrometheusRule), which have no bundled schema and are checked for
what they must say instead; yamllint passes over deploy/ and dashboards/; the controller's pod is
locked down (non-root as the image's user, read-only root, no privilege escalation, no
capabilities, RuntimeDefault seccomp) and has requests and limits; probes, Service, ServiceMonitor
and NetworkPolicy all use the metrics port the settings give `run`; PDB, Service and NetworkPolicy
select the controller's pods; three replicas share shards on the Leases the Role names; every setting
is a `run` flag's environment variable and `run` accepts them all; the namespaced component leaves no
cluster-wide access; the examples' annotations are valid for the controller.

The RBAC rules themselves are checked against the controller's requests in tests/test_rbac.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from autoscaler.actuation.shards import lease_names
from autoscaler.config import parse_annotations
from autoscaler.metrics import MetricKind, Scope, Signal
from autoscaler.model import ScaleMode

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
COMPONENTS = DEPLOY / "components"
DASHBOARDS = ROOT / "dashboards"
CONTROLLER_NS = "predictive-autoscaler"
ENV_PREFIX = "PREDICTIVE_AUTOSCALER_"
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
# Custom resources of the Prometheus operator: kubernetes-validate has no schema for them.
CRD_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
OLDEST_KUBERNETES = "1.27.0"

Obj = dict[str, Any]


# --- rendering ------------------------------------------------------------------------------------


def render(directory: Path) -> list[Obj]:
    """The objects `kubectl kustomize DIRECTORY` renders."""
    done = subprocess.run(
        ["kubectl", "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"kubectl kustomize {directory}: {done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def render_overlay(where: Path, components: Sequence[str | Path], base: Path = DEPLOY) -> list[Obj]:
    """An overlay as a user writes one: `base` plus components (a name: one of deploy/components)."""
    where.mkdir(parents=True, exist_ok=True)
    kustomization: Obj = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(base, where)],
        "components": [
            os.path.relpath(COMPONENTS / c if isinstance(c, str) else c, where) for c in components
        ],
    }
    (where / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return render(where)


def need_dashboards(component: str) -> None:
    """The alerts and dashboards components take their resources from dashboards/."""
    folder = {"alerts": DASHBOARDS / "alerts", "dashboards": DASHBOARDS}.get(component)
    if folder is not None and not (folder / "kustomization.yaml").is_file():
        pytest.skip(f"{folder.relative_to(ROOT)} does not exist yet")


def find(objects: Sequence[Obj], kind: str, name: str | None = None) -> Obj:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"one {kind} {name or ''} expected, found {len(found)}"
    return found[0]


def settings_of(objects: Sequence[Obj]) -> dict[str, str]:
    """The controller's settings ConfigMap (its generated name has a hash suffix)."""
    maps = [
        o
        for o in objects
        if o["kind"] == "ConfigMap"
        and o["metadata"]["name"].startswith("predictive-autoscaler-settings")
    ]
    assert len(maps) == 1
    return {str(k): str(v) for k, v in maps[0]["data"].items()}


def controller_container(objects: Sequence[Obj]) -> Obj:
    pod = find(objects, "Deployment", "predictive-autoscaler")["spec"]["template"]["spec"]
    containers: list[Obj] = pod["containers"]
    assert [c["name"] for c in containers] == ["controller"]
    return containers[0]


def selects(selector: Obj, labels: Obj) -> bool:
    wanted = selector.get("matchLabels") or {}
    return bool(wanted) and all(labels.get(k) == v for k, v in wanted.items())


@dataclass(frozen=True)
class Rendering:
    id: str
    components: tuple[str, ...] = ()
    directory: Path = DEPLOY


RENDERINGS = [
    Rendering("base"),
    Rendering("servicemonitor", ("servicemonitor",)),
    Rendering("alerts", ("alerts",)),
    Rendering("dashboards", ("dashboards",)),
    Rendering("namespaced", ("namespaced",)),
    Rendering("all-components", ("servicemonitor", "alerts", "dashboards", "namespaced")),
    Rendering("example-agent", directory=DEPLOY / "examples" / "agent"),
    Rendering("example-agent-hpa", directory=DEPLOY / "examples" / "agent-hpa"),
]


def rendered(case: Rendering, tmp_path: Path) -> list[Obj]:
    for component in case.components:
        need_dashboards(component)
    if not case.components:
        return render(case.directory)
    return render_overlay(tmp_path / "overlay", case.components)


@pytest.fixture(scope="module")
def base() -> list[Obj]:
    return render(DEPLOY)


@pytest.fixture(scope="module")
def all_components(tmp_path_factory: pytest.TempPathFactory) -> list[Obj]:
    for component in ("alerts", "dashboards"):
        need_dashboards(component)
    return render_overlay(
        tmp_path_factory.mktemp("overlay"), ["servicemonitor", "alerts", "dashboards", "namespaced"]
    )


# --- rendering and schemas ------------------------------------------------------------------------


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in RENDERINGS])
def test_renders_with_every_namespaced_object_placed(case: Rendering, tmp_path: Path) -> None:
    objects = rendered(case, tmp_path)
    assert objects
    unplaced = [
        f"{o['kind']}/{o['metadata']['name']}"
        for o in objects
        if o["kind"] not in CLUSTER_SCOPED and not o["metadata"].get("namespace")
    ]
    assert unplaced == [], "would land in whatever namespace kubectl happens to use"


SCHEMA_VERSIONS = [
    pytest.param(version, id=f"k8s-{version}")
    for version in (OLDEST_KUBERNETES, kubernetes_validate.latest_version())
]


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in RENDERINGS])
def test_objects_validate_against_kubernetes_schemas(
    case: Rendering, version: str, tmp_path: Path
) -> None:
    objects = rendered(case, tmp_path)
    problems: list[str] = []
    unchecked: set[str] = set()
    for obj in objects:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            unchecked.add(obj["kind"])
        except kubernetes_validate.ValidationError as error:
            problems.append(f"{where}: {error.message} at {list(error.path)}")
    assert problems == []
    # Only the operator's CRDs may go unchecked here; their own tests below say what they must hold.
    assert unchecked <= CRD_KINDS


def test_yamllint_passes_over_manifests_and_dashboards() -> None:
    targets = [str(DEPLOY), str(ROOT / ".yamllint")]
    if DASHBOARDS.is_dir():
        targets.append(str(DASHBOARDS))
    done = subprocess.run(
        [sys.executable, "-m", "yamllint", "--strict", "-c", str(ROOT / ".yamllint"), *targets],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# --- the controller's Deployment ------------------------------------------------------------------


def dockerfile_user() -> tuple[int, int]:
    users = re.findall(r"^USER\s+(\d+):(\d+)\s*$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert len(users) == 1, "the image names one numeric user:group"
    return int(users[0][0]), int(users[0][1])


def test_controller_pod_is_locked_down_and_bounded(base: list[Obj]) -> None:
    deployment = find(base, "Deployment", "predictive-autoscaler")
    pod = deployment["spec"]["template"]["spec"]
    container = controller_container(base)
    uid, gid = dockerfile_user()

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (uid, gid)
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    # A read-only root needs a writable /tmp (Python's tempfile).
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]

    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}, kind
    assert pod["serviceAccountName"] == find(base, "ServiceAccount")["metadata"]["name"]

    namespace = find(base, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_probes_service_and_policies_use_the_metrics_port(base: list[Obj]) -> None:
    container = controller_container(base)
    settings = settings_of(base)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": int(settings[ENV_PREFIX + "METRICS_PORT"])}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}

    labels = find(base, "Deployment")["spec"]["template"]["metadata"]["labels"]
    service = find(base, "Service", "predictive-autoscaler")
    assert all(labels.get(k) == v for k, v in service["spec"]["selector"].items())
    assert [(p["name"], p["targetPort"]) for p in service["spec"]["ports"]] == [("metrics", "metrics")]
    assert selects(find(base, "PodDisruptionBudget")["spec"]["selector"], labels)
    assert find(base, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    policy = find(base, "NetworkPolicy")["spec"]
    assert selects(policy["podSelector"], labels)
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    assert [p["port"] for rule in policy["ingress"] for p in rule["ports"]] == ["metrics"]
    egress_ports = {p["port"] for rule in policy["egress"] for p in rule["ports"]}
    prometheus_port = int(settings[ENV_PREFIX + "PROMETHEUS_URL"].rsplit(":", 1)[1])
    assert {53, 443, prometheus_port} <= egress_ports


def test_replicas_share_shards_on_the_leases_the_role_names(base: list[Obj]) -> None:
    deployment = find(base, "Deployment", "predictive-autoscaler")
    container = controller_container(base)
    settings = settings_of(base)
    shards = int(settings[ENV_PREFIX + "SHARDS"])
    assert deployment["spec"]["replicas"] == 3
    assert shards > deployment["spec"]["replicas"], "more shards than replicas, for an even load"
    assert "--leader-elect" in container["args"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    role = find(base, "Role", "predictive-autoscaler-leader-election")
    assert role["metadata"]["namespace"] == deployment["metadata"]["namespace"] == CONTROLLER_NS
    named = [r for r in role["rules"] if r.get("resourceNames")]
    leases = list(lease_names(settings[ENV_PREFIX + "LEASE_NAME"], shards))
    assert [r["resourceNames"] for r in named] == [leases]


def run_help_env_vars() -> set[str]:
    done = subprocess.run(
        [sys.executable, "-m", "autoscaler", "run", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)} | {"COLUMNS": "400"},
    )
    return set(re.findall(r"\[env (" + ENV_PREFIX + r"[A-Z_]+)\]", done.stdout))


def test_settings_are_run_flags_that_run_accepts(base: list[Obj], tmp_path: Path) -> None:
    settings = settings_of(base)
    assert set(settings) <= run_help_env_vars()
    # With every setting in the environment, the only complaint left is the missing kubeconfig:
    # each value parsed.
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)} | settings
    done = subprocess.run(
        [sys.executable, "-m", "autoscaler", "run", "--kubeconfig", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "--kubeconfig" in lines[0]


def test_the_deployment_uses_the_settings_and_the_image(base: list[Obj]) -> None:
    container = controller_container(base)
    settings_name = next(
        o["metadata"]["name"]
        for o in base
        if o["kind"] == "ConfigMap"
        and o["metadata"]["name"].startswith("predictive-autoscaler-settings")
    )
    assert container["envFrom"] == [{"configMapRef": {"name": settings_name}}]
    assert container["image"].split("/")[-1].startswith("predictive-autoscaler:")


# --- components -----------------------------------------------------------------------------------


def test_servicemonitor_scrapes_the_metrics_service(all_components: list[Obj]) -> None:
    monitor = find(all_components, "ServiceMonitor")
    service = find(all_components, "Service", "predictive-autoscaler")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    assert selects(monitor["spec"]["selector"], service["metadata"]["labels"])
    port_names = {p["name"] for p in service["spec"]["ports"]}
    assert [(e["port"], e["path"]) for e in monitor["spec"]["endpoints"]] == [("metrics", "/metrics")]
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= port_names
    # The per-target series' own `namespace` label must survive the scrape (the dashboards use it).
    assert all(e.get("honorLabels") is True for e in monitor["spec"]["endpoints"])
    # The alert rules name the scrape job after the Service, which is the operator's default job.
    rule = find(all_components, "PrometheusRule")
    expressions = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    jobs = set(re.findall(r'job="([^"]+)"', " ".join(expressions)))
    assert jobs <= {service["metadata"]["name"]}


def test_alert_rules_are_well_formed(all_components: list[Obj]) -> None:
    rule = find(all_components, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == CONTROLLER_NS
    rules = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    assert rules
    for r in rules:
        assert ("alert" in r) != ("record" in r), r
        assert isinstance(r["expr"], str)
        assert r["expr"].strip()


def test_dashboards_are_configmaps_for_the_grafana_sidecar(all_components: list[Obj]) -> None:
    dashboards = [
        o
        for o in all_components
        if o["kind"] == "ConfigMap" and o["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
    ]
    assert len(dashboards) == len(list(DASHBOARDS.glob("*.json")))
    for config_map in dashboards:
        assert config_map["metadata"]["namespace"] == CONTROLLER_NS
        for name, text in config_map["data"].items():
            assert name.endswith(".json")
            assert "panels" in json.loads(text)


def test_namespaced_component_leaves_no_cluster_wide_access(
    base: list[Obj], all_components: list[Obj]
) -> None:
    assert not [o for o in all_components if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    cluster_role = find(base, "ClusterRole", "predictive-autoscaler")
    role = find(all_components, "Role", "predictive-autoscaler")
    assert role["rules"] == cluster_role["rules"], "the same rules, confined to a namespace"
    binding = find(all_components, "RoleBinding", "predictive-autoscaler")
    assert binding["metadata"]["namespace"] == role["metadata"]["namespace"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "predictive-autoscaler", "namespace": CONTROLLER_NS}
    ]
    watched = settings_of(all_components)[ENV_PREFIX + "NAMESPACES"].split(",")
    assert watched == [role["metadata"]["namespace"]]
    # The leader-election Role stays in the controller's namespace.
    assert find(all_components, "Role", "predictive-autoscaler-leader-election")["metadata"][
        "namespace"
    ] == (CONTROLLER_NS)


# --- examples -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("example", "mode"),
    [
        pytest.param("agent", ScaleMode.REPLICAS, id="agent-replicas-mode"),
        pytest.param("agent-hpa", ScaleMode.HPA, id="agent-hpa-mode"),
    ],
)
def test_example_agent_is_opted_in_validly(example: str, mode: ScaleMode) -> None:
    objects = render(DEPLOY / "examples" / example)
    deployment = find(objects, "Deployment", "support-agent")
    settings = parse_annotations(deployment["metadata"]["annotations"])
    assert settings is not None, "opted in"
    assert settings.mode is mode
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert [p["containerPort"] for p in container["ports"]] == [5000]
    assert set(container["resources"]["requests"]) == {"cpu", "memory"}
    service = find(objects, "Service", "support-agent")
    assert [p["port"] for p in service["spec"]["ports"]] == [5000]
    # It scales on the agent's own in-flight gauge, which the PodMonitor has scraped from its pods.
    inflight = MetricKind("inflight")
    assert settings.config.metrics == (inflight,)
    spec = settings.config.spec(inflight)
    assert spec.series is not None
    assert spec.series.metric == "agent_inflight_requests"
    assert (spec.signal, spec.scope) == (Signal.GAUGE, Scope.PODS)
    monitor = find(objects, "PodMonitor", "support-agent")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= (
        deployment["spec"]["template"]["metadata"]["labels"].items()
    )
    assert [e["port"] for e in monitor["spec"]["podMetricsEndpoints"]] == ["http"]
    assert container["image"] == "agent-service:0.1.0", "built from examples/agent-service"
    hpas = [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]
    if mode is ScaleMode.REPLICAS:
        assert deployment["spec"]["replicas"] == 3
        assert hpas == [], "mode replicas refuses a Deployment that an HPA scales"
    else:
        assert "replicas" not in deployment["spec"], "the HPA owns spec.replicas"
        assert [h["spec"]["scaleTargetRef"]["name"] for h in hpas] == ["support-agent"]
        assert hpas[0]["spec"]["minReplicas"] == 3


# --- paths named in comments ----------------------------------------------------------------------

# A word with a slash in a comment is a path unless it is absolute (an HTTP path like /healthz), a
# URL, numbers (443/6443), an API version (apps/v1) or starts with a domain (a label key such as
# app.kubernetes.io/name, an annotation prefix, an API group).
_NOT_A_PATH = re.compile(r"^/|://|^[\d/]+$|^[a-z0-9.]*/v\d+((alpha|beta)\d+)?$|^[^./][^/]*\.[^/]*/")
_WORD_SEPARATORS = re.compile(r"[\s()`\"',;{}<>\[\]=*]+")


def paths_in_comments(manifest: Path) -> list[str]:
    words: list[str] = []
    for line in manifest.read_text().splitlines():
        comment = re.search(r"(?:^|\s)#(.*)$", line)
        if comment is None:
            continue
        for raw in _WORD_SEPARATORS.split(comment.group(1)):
            word = raw.rstrip(".:")
            if "/" in word and not _NOT_A_PATH.search(word):
                words.append(word)
    return words


def test_paths_named_in_deploy_comments_exist() -> None:
    manifests = sorted(DEPLOY.rglob("*.yaml"))  # rglob does not descend into the chart's link
    named = {(m, word) for m in manifests for word in paths_in_comments(m)}
    assert {word for _, word in named} >= {"components/servicemonitor", "tests/test_rbac.py"}
    # Relative to the file's folder or one around it (the chart's root, deploy/, the repository's).
    missing = [
        f"{manifest.relative_to(ROOT)}: {word}"
        for manifest, word in sorted(named)
        if not any((base / word).exists() for base in manifest.parents if base.is_relative_to(ROOT))
    ]
    assert missing == []
