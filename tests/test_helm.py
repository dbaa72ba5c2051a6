"""The Helm chart (deploy/chart), checked by Helm's own Go library (the helm-sdkpy wheel, Helm v4).

Helm lints the chart (the one message left is the INFO that a chart icon is recommended, shown to be
exactly that by linting a copy with an icon) and installs it into the fake API server (tests/fakekube)
as `helm install` would: discovery, the release record in a Secret, every object created. What it
installs equals what `kubectl apply -k` installs from the kustomize base, each object read back from
its own fake server, for the base, the base with every optional component, and the namespaced RBAC
component. The differences are the ones listed in `comparable` and asserted there: Helm's labels and
annotations, the release instance in the selectors, the settings ConfigMap's fixed name with a
checksum on the pod template (the base's name carries a content hash), the ServiceMonitor's job
label, and no Namespace (the chart installs into an existing one). Also: the optional objects appear
only when enabled; a release of another name keeps the scrape job the alert rules expect and the Lease
its Role names; the NetworkPolicy opens the port of the Prometheus URL; the settings the chart writes
are accepted by `run`; an upgrade with new settings rolls the pods; uninstall removes every object;
values.schema.json refuses bad values with a message naming the value. `wait` stays off, as in the
helm CLI's default: Helm's readiness watcher reads a Deployment's ReplicaSets, which the fake does
not simulate.
"""

from __future__ import annotations

import asyncio
import copy
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_sdkpy as typed_helm  # type: ignore[import-untyped]
import pytest
import yaml

from autoscaler.actuation.shards import lease_names
from tests.fakekube import FakeKube
from tests.test_deploy import (
    CONTROLLER_NS,
    DASHBOARDS,
    DEPLOY,
    ENV_PREFIX,
    Obj,
    find,
    render_overlay,
)

helm: Any = typed_helm

CHART = DEPLOY / "chart"
RELEASE = "predictive-autoscaler"
INSTANCE = "app.kubernetes.io/instance"
# Labels Helm's charts carry and the kustomize base does not.
HELM_LABELS = {INSTANCE, "app.kubernetes.io/version", "app.kubernetes.io/managed-by", "helm.sh/chart"}
# The base's common labels (deploy/kustomization.yaml), which the chart also puts on the objects the
# base's components add without them.
BASE_LABELS = {"app.kubernetes.io/name", "app.kubernetes.io/part-of"}
SERVER_METADATA = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields")
APPLY_ANNOTATIONS = {
    "kubectl.kubernetes.io/last-applied-configuration",
    "meta.helm.sh/release-name",
    "meta.helm.sh/release-namespace",
}
SETTINGS = "predictive-autoscaler-settings"
# Helm's lint severities (pkg/chart/v2/lint/support).
INFO, WARNING, ERROR = 1, 2, 3
SCHEMA_FAILURE = "values don't meet the specifications of the schema"
KUBECTL = shutil.which("kubectl")


@pytest.fixture(scope="module", autouse=True)
def helm_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Helm's cache, config and data directories in a temporary folder, and release records in
    Secrets (Helm's default driver). Go reads the environment once, when the library loads."""
    home = tmp_path_factory.mktemp("helm-home")
    with pytest.MonkeyPatch.context() as patch:
        for name in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
            patch.setenv(name, str(home / name.lower()))
        patch.setenv("HELM_DRIVER", "secret")
        yield


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def configuration(fake: FakeKube, where: Path, namespace: str = CONTROLLER_NS) -> Any:
    kubeconfig = fake.write_kubeconfig(where / f"kubeconfig-{fake.port}")
    return helm.Configuration(namespace=namespace, kubeconfig=str(kubeconfig))


def install(
    fake: FakeKube, where: Path, values: Obj | None = None, release: str = RELEASE
) -> dict[str, Any]:
    """`helm install RELEASE deploy/chart -n predictive-autoscaler [--set ...]`."""
    config = configuration(fake, where)
    result: dict[str, Any] = run(
        helm.Install(config).run(release, str(CHART), values=values, wait=False, timeout=60)
    )
    return result


def installed(fake: FakeKube) -> list[Obj]:
    """Every object of the kinds the chart and the base install, but Namespaces (the chart installs
    into an existing one) and Helm's release records (Secrets)."""
    kinds = (
        "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ConfigMap",
        "Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy", "ServiceMonitor",
        "PrometheusRule",
    )  # fmt: skip
    return [obj | {"kind": kind} for kind in kinds for obj in fake.list_objects(kind)]


def kubectl_apply(fake: FakeKube, directory: Path, where: Path) -> None:
    """`kubectl apply -k DIRECTORY`, with the real kubectl."""
    if KUBECTL is None:
        pytest.fail("kubectl is not installed")
    kubeconfig = fake.write_kubeconfig(where / f"kubeconfig-{fake.port}")
    done = subprocess.run(
        [KUBECTL, "--kubeconfig", str(kubeconfig), "--cache-dir", str(where / "kube-cache"),
         "apply", "--validate=false", "-k", str(directory)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


# --- what Helm installs against what kubectl apply -k installs --------------------------------


def key(obj: Obj) -> tuple[str, str, str]:
    meta = obj["metadata"]
    name = SETTINGS if meta["name"].startswith(SETTINGS) and obj["kind"] == "ConfigMap" else meta["name"]
    return obj["kind"], meta.get("namespace", ""), name


def without_instance(selector: Obj, release: str = RELEASE) -> Obj:
    """The chart's selectors add the release instance, so that two releases in one namespace do not
    select each other's pods."""
    assert selector.get(INSTANCE) == release, selector
    return {k: v for k, v in selector.items() if k != INSTANCE}


def comparable(obj: Obj, *, from_helm: bool) -> Obj:
    """The object as both installers must agree on it: server-written metadata and the installers'
    own annotations out, labels out (compared by `labels_agree`), and on the chart's side the
    differences it is meant to have, each asserted as it is taken out."""
    obj = copy.deepcopy(obj)
    obj.pop("status", None)
    meta = obj["metadata"]
    for name in SERVER_METADATA:
        meta.pop(name, None)
    meta.pop("labels", None)
    annotations = dict(meta.pop("annotations", None) or {})
    for name in APPLY_ANNOTATIONS:
        annotations.pop(name, None)
    if annotations:
        meta["annotations"] = annotations
    meta["name"] = key(obj)[2]
    spec = obj.get("spec") or {}
    kind = obj["kind"]
    if kind == "Deployment":
        pod = spec["template"]
        for container in pod["spec"]["containers"]:
            for source in container.get("envFrom", []):
                ref = source.get("configMapRef") or {}
                if ref.get("name", "").startswith(SETTINGS):
                    ref["name"] = SETTINGS
        if from_helm:
            # The settings ConfigMap keeps its name; its checksum rolls the pods instead of a hash
            # in the name.
            pod_annotations = pod["metadata"].pop("annotations")
            assert re.fullmatch(r"[0-9a-f]{64}", pod_annotations.pop("checksum/settings"))
            assert pod_annotations == {}
            pod["metadata"]["labels"] = without_instance(pod["metadata"]["labels"])
            spec["selector"]["matchLabels"] = without_instance(spec["selector"]["matchLabels"])
            for constraint in pod["spec"]["topologySpreadConstraints"]:
                selector = constraint["labelSelector"]
                selector["matchLabels"] = without_instance(selector["matchLabels"])
    if from_helm and kind == "Service":
        spec["selector"] = without_instance(spec["selector"])
    if from_helm and kind in ("PodDisruptionBudget", "ServiceMonitor"):
        spec["selector"]["matchLabels"] = without_instance(spec["selector"]["matchLabels"])
    if from_helm and kind == "NetworkPolicy":
        spec["podSelector"]["matchLabels"] = without_instance(spec["podSelector"]["matchLabels"])
    if from_helm and kind == "ServiceMonitor":
        # The scrape job is named after the Service's app.kubernetes.io/name label, not after the
        # Service, so the alert rules' job="predictive-autoscaler" holds whatever the release's name.
        assert spec.pop("jobLabel") == "app.kubernetes.io/name"
    return obj


def labels_agree(ours: Obj, theirs: Obj) -> None:
    """The chart keeps every label of the base's object and adds only Helm's and the base's own."""
    helm_labels = ours["metadata"].get("labels") or {}
    base_labels = theirs["metadata"].get("labels") or {}
    where = "/".join(key(ours))
    assert {k: helm_labels.get(k) for k in base_labels} == base_labels, where
    assert set(helm_labels) - set(base_labels) <= HELM_LABELS | BASE_LABELS, where
    assert set(helm_labels) >= HELM_LABELS, where
    assert helm_labels[INSTANCE] == RELEASE


@dataclass(frozen=True)
class Case:
    id: str
    values: Obj = field(default_factory=dict)
    components: tuple[str, ...] = ()


CASES = [
    Case("defaults"),
    Case(
        "every-optional-part",
        {
            "serviceMonitor": {"enabled": True},
            "prometheusRule": {"enabled": True},
            "dashboards": {"enabled": True},
        },
        ("servicemonitor", "alerts", "dashboards"),
    ),
    Case("namespaced", {"watchNamespaces": ["agents"]}, ("namespaced",)),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_helm_installs_what_kubectl_apply_k_installs(case: Case, tmp_path: Path) -> None:
    with FakeKube() as by_kubectl, FakeKube() as by_helm:
        by_kubectl.add_namespace("agents")
        directory = DEPLOY
        if case.components:
            directory = tmp_path / "overlay"
            render_overlay(directory, case.components)
        kubectl_apply(by_kubectl, directory, tmp_path)

        # The chart installs into an existing namespace, labelled as the base's Namespace is.
        namespace = by_kubectl.get_object("Namespace", None, CONTROLLER_NS)
        assert namespace is not None
        by_helm.put_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": CONTROLLER_NS, "labels": namespace["metadata"]["labels"]}})  # fmt: skip
        by_helm.add_namespace("agents")
        release = install(by_helm, tmp_path, case.values)
        assert release["info"]["status"] == "deployed"

        theirs = {key(o): o for o in installed(by_kubectl)}
        ours = {key(o): o for o in installed(by_helm)}
    assert sorted(ours) == sorted(theirs)
    for name, obj in ours.items():
        labels_agree(obj, theirs[name])
        assert comparable(obj, from_helm=True) == comparable(theirs[name], from_helm=False), name


def test_lease_name_and_scrape_job_follow_a_renamed_release(tmp_path: Path) -> None:
    with FakeKube() as fake:
        fake.add_namespace(CONTROLLER_NS)
        install(fake, tmp_path, {"serviceMonitor": {"enabled": True}}, release="canary")
        objects = installed(fake)
    full = "canary-predictive-autoscaler"
    assert {o["metadata"]["name"] for o in objects if o["kind"] != "ConfigMap"} == {
        full,
        f"{full}-leader-election",
    }
    settings = find(objects, "ConfigMap", f"{full}-settings")["data"]
    role = find(objects, "Role", f"{full}-leader-election")
    shards = int(settings[ENV_PREFIX + "SHARDS"])
    assert [r["resourceNames"] for r in role["rules"] if "resourceNames" in r] == [
        list(lease_names(settings[ENV_PREFIX + "LEASE_NAME"], shards))
    ]
    monitor = find(objects, "ServiceMonitor", full)
    service = find(objects, "Service", full)
    # The alert rules select up{job="predictive-autoscaler"}; the job comes from this label.
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "predictive-autoscaler"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert service["spec"]["selector"][INSTANCE] == "canary"


OPTIONAL_PARTS = [
    pytest.param("serviceMonitor", {"ServiceMonitor"}, id="servicemonitor"),
    pytest.param("prometheusRule", {"PrometheusRule"}, id="prometheusrule"),
    pytest.param("dashboards", {"ConfigMap"}, id="dashboards"),
]


@pytest.mark.parametrize(("value", "kinds"), OPTIONAL_PARTS)
def test_an_optional_part_appears_only_when_enabled(value: str, kinds: set[str], tmp_path: Path) -> None:
    with FakeKube() as without, FakeKube() as with_it:
        for fake in (without, with_it):
            fake.add_namespace(CONTROLLER_NS)
        install(without, tmp_path)
        install(with_it, tmp_path, {value: {"enabled": True}})
        before = {key(o) for o in installed(without)}
        after = {key(o) for o in installed(with_it)}
    assert before < after
    assert {kind for kind, _, _ in after - before} == kinds
    assert not {kind for kind, _, _ in before} & (kinds - {"ConfigMap"})


def test_dashboards_and_alert_rules_are_the_files_in_dashboards(tmp_path: Path) -> None:
    with FakeKube() as fake:
        fake.add_namespace(CONTROLLER_NS)
        install(fake, tmp_path, {"prometheusRule": {"enabled": True}, "dashboards": {"enabled": True}})
        objects = installed(fake)
    dashboards = {
        name: text
        for o in objects
        if o["kind"] == "ConfigMap" and "grafana_dashboard" in o["metadata"]["labels"]
        for name, text in o["data"].items()
    }
    assert dashboards == {p.name: p.read_text() for p in DASHBOARDS.glob("*.json")}
    source = yaml.safe_load((DASHBOARDS / "alerts" / "prometheusrule.yaml").read_text())
    assert find(objects, "PrometheusRule")["spec"] == source["spec"]


def test_network_policy_can_be_left_out(tmp_path: Path) -> None:
    with FakeKube() as fake:
        fake.add_namespace(CONTROLLER_NS)
        install(fake, tmp_path, {"networkPolicy": {"enabled": False}})
        kinds = {o["kind"] for o in installed(fake)}
    assert "NetworkPolicy" not in kinds
    assert "Deployment" in kinds


@pytest.mark.parametrize(
    ("url", "port"),
    [
        pytest.param("http://prometheus-operated.monitoring.svc:9090", 9090, id="explicit-port"),
        pytest.param("https://prometheus.example.com", 443, id="https-default"),
        pytest.param("http://prometheus.monitoring/prometheus", 80, id="http-default-with-path"),
        pytest.param("https://prometheus.example.com:8443/", 8443, id="https-explicit-port"),
    ],
)
def test_network_policy_opens_the_port_of_the_prometheus_url(
    url: str, port: int, tmp_path: Path
) -> None:
    with FakeKube() as fake:
        fake.add_namespace(CONTROLLER_NS)
        install(fake, tmp_path, {"prometheus": {"url": url}})
        policy = find(installed(fake), "NetworkPolicy")
    ports = [p["port"] for rule in policy["spec"]["egress"] if "to" not in rule for p in rule["ports"]]
    assert sorted(ports) == sorted({443, 6443, port})


def test_settings_the_chart_writes_are_accepted_by_run(tmp_path: Path) -> None:
    values = {
        "prometheus": {"url": "https://prometheus.example.com", "insecureSkipVerify": True},
        "interval": "1m30s",
        "dryRun": True,
        "watchNamespaces": ["agents", "payments"],
        "logLevel": "debug",
        "leaderElection": {"leaseDuration": "30s", "renewDeadline": "20s", "retryPeriod": "5s"},
    }
    with FakeKube() as fake:
        for namespace in (CONTROLLER_NS, "agents", "payments"):
            fake.add_namespace(namespace)
        install(fake, tmp_path, values)
        objects = installed(fake)
    settings = find(objects, "ConfigMap", f"{RELEASE}-settings")["data"]
    assert settings[ENV_PREFIX + "PROMETHEUS_INSECURE_SKIP_VERIFY"] == "true"
    assert settings[ENV_PREFIX + "NAMESPACES"] == "agents,payments"
    # One Role per watched namespace and no cluster-wide access.
    assert not [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    roles = {o["metadata"]["namespace"] for o in objects if o["kind"] == "Role"}
    assert roles == {"agents", "payments", CONTROLLER_NS}
    # With every setting in the environment, the only complaint left is the missing kubeconfig.
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)} | settings
    done = subprocess.run(
        [sys.executable, "-m", "autoscaler", "run", "--kubeconfig", str(tmp_path / "none")],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "--kubeconfig" in lines[0]


def test_upgrade_with_new_settings_rolls_the_pods(tmp_path: Path) -> None:
    with FakeKube() as fake:
        fake.add_namespace(CONTROLLER_NS)
        install(fake, tmp_path)
        before = fake.get_object("Deployment", CONTROLLER_NS, RELEASE)
        config = configuration(fake, tmp_path)
        result = run(
            helm.Upgrade(config).run(RELEASE, str(CHART), values={"interval": "1m"}, wait=False)
        )
        after = fake.get_object("Deployment", CONTROLLER_NS, RELEASE)
        settings = fake.get_object("ConfigMap", CONTROLLER_NS, f"{RELEASE}-settings")
    assert result["version"] == 2
    assert before is not None
    assert after is not None
    assert settings is not None
    assert settings["data"][ENV_PREFIX + "INTERVAL"] == "1m"
    checksum = "checksum/settings"
    old = before["spec"]["template"]["metadata"]["annotations"][checksum]
    assert after["spec"]["template"]["metadata"]["annotations"][checksum] != old
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1


def test_uninstall_removes_every_object_and_the_release(tmp_path: Path) -> None:
    with FakeKube() as fake:
        fake.add_namespace(CONTROLLER_NS)
        values = {"serviceMonitor": {"enabled": True}, "dashboards": {"enabled": True}}
        install(fake, tmp_path, values)
        assert installed(fake)
        # The release record, written by Helm's typed client in protobuf and read back by its labels.
        [record] = fake.list_objects("Secret", CONTROLLER_NS)
        assert record["type"] == "helm.sh/release.v1"
        labels = record["metadata"]["labels"]
        assert (labels["owner"], labels["name"], labels["status"]) == ("helm", RELEASE, "deployed")
        run(helm.Uninstall(configuration(fake, tmp_path)).run(RELEASE, wait=False))
        assert installed(fake) == []
        assert fake.list_objects("Secret", CONTROLLER_NS) == []


# --- values validation ---------------------------------------------------------------------------

BAD_VALUES = [
    pytest.param({"replicas": 0}, "/replicas", id="no-replicas"),
    pytest.param({"replicas": "two"}, "/replicas", id="replicas-not-a-number"),
    pytest.param({"prometheus": {"url": "prometheus:9090"}}, "/prometheus/url", id="url-no-scheme"),
    pytest.param({"interval": "30 seconds"}, "/interval", id="interval-not-a-duration"),
    pytest.param({"metricsPort": 0}, "/metricsPort", id="metrics-port-off"),
    pytest.param({"watchNamespaces": ["Agents_1"]}, "/watchNamespaces/0", id="bad-namespace"),
    pytest.param({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy", id="pull-policy"),
    pytest.param({"logLevel": "verbose"}, "/logLevel", id="log-level"),
    pytest.param({"shards": 0}, "/shards", id="no-shards"),
    pytest.param({"shards": 65}, "/shards", id="more-shards-than-run-takes"),
    pytest.param({"sharding": {"shards": 2}}, "sharding", id="unknown-value"),
]


@pytest.mark.parametrize(("values", "where"), BAD_VALUES)
def test_schema_refuses_a_bad_value_and_installs_nothing(
    values: Obj, where: str, tmp_path: Path
) -> None:
    with FakeKube() as fake:
        fake.add_namespace(CONTROLLER_NS)
        with pytest.raises(helm.InstallError) as refused:
            install(fake, tmp_path, values)
        assert installed(fake) == []
        assert fake.list_objects("Secret", CONTROLLER_NS) == []
    message = str(refused.value)
    assert SCHEMA_FAILURE in message
    assert where in message


# --- lint ----------------------------------------------------------------------------------------


def lint(chart: Path, where: Path) -> tuple[list[tuple[int, str]], int]:
    """Helm's lint of the chart: (severity, path) of each message, and the number of errors. The
    library hands back no message texts (Go errors serialise as {}), so the tests tell them apart by
    severity and file."""
    with FakeKube() as fake:
        config = configuration(fake, where)
        result = run(helm.Lint(config).run(str(chart)))
    assert result["TotalChartsLinted"] == 1
    messages = [(m["Severity"], m["Path"]) for m in result["Messages"] or []]
    return messages, len(result["Errors"] or [])


def copy_of_chart(where: Path) -> Path:
    target = where / "predictive-autoscaler"
    shutil.copytree(CHART, target)  # the dashboards link is copied as the files it points to
    return target


def test_lint_leaves_only_the_icon_recommendation(tmp_path: Path) -> None:
    messages, errors = lint(CHART, tmp_path)
    assert errors == 0
    assert messages == [(INFO, "Chart.yaml")]
    # The same chart with an icon lints clean: that INFO is Helm's "icon is recommended". The project
    # has no icon to publish, so the chart names none.
    with_icon = copy_of_chart(tmp_path)
    chart_yaml = with_icon / "Chart.yaml"
    chart_yaml.write_text(chart_yaml.read_text() + "icon: https://example.invalid/icon.png\n")
    assert lint(with_icon, tmp_path) == ([], 0)


def test_lint_catches_a_broken_template(tmp_path: Path) -> None:
    broken = copy_of_chart(tmp_path)
    (broken / "templates" / "broken.yaml").write_text("{{ .Values.missing.deeper }}\n")
    messages, errors = lint(broken, tmp_path)
    assert errors == 1
    assert (ERROR, "templates/") in messages


def test_chart_reads_dashboards_through_a_link_to_dashboards() -> None:
    link = CHART / "files" / "dashboards"
    assert link.is_symlink()
    assert link.resolve() == DASHBOARDS.resolve()
    lines = (CHART / ".helmignore").read_text().splitlines()
    ignored = [line for line in lines if line and not line.startswith("#")]
    assert ignored
    for name in ignored:
        assert (CHART / name).exists(), f".helmignore names {name}, which does not exist"
