"""`predictive-autoscaler status` and the kubectl plugin `kubectl predictive`, against the fake API
server (`tests.fakekube`) through the official client, never patched.

The workloads' status annotations and Events are written by the controller's own recorder
(`ClusterRecorder`, fed decisions and actuation results as a tick would), so a change in what the
controller writes breaks these tests rather than leaving the command reading a format nobody writes.

Covers: every opted-in workload shows, in mixed states (predictive with a change applied, reactive
fallback on untrusted forecasts, hold with metrics missing, dry-run proposal, invalid annotations,
never decided, a StatefulSet beside the Deployment of its name, mode hpa with a raised floor, a mode
refused because of an HPA, an unreadable status, a failed tick), with the right columns; workloads
not opted in do not; `-n` narrows; `-o wide/json/yaml` carry the fields; `status NS/NAME` and
`NS/statefulset/NAME` show the details and the Event history; bad input (unknown workload, one not
opted in, bad `-o`, bad `--interval`, unknown context, missing kubeconfig, unreachable API server)
gives one line and exit status 2; `--watch` prints again when a workload changes; and `kubectl
predictive` through the real kubectl binary, with `$KUBECONFIG` and `--context`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from autoscaler import status_command
from autoscaler.cli import build_parser, main
from autoscaler.config import PREFIX, STATUS_KEY
from autoscaler.kube import Kube, connect
from autoscaler.metrics import MetricKind
from autoscaler.model import (
    Bounds,
    HpaInfo,
    Knob,
    ScaleMode,
    Scaling,
    Setpoint,
    Target,
    TargetConfig,
    TargetRef,
    WorkloadKind,
    WorkloadState,
)
from autoscaler.observability.recorder import ClusterRecorder
from autoscaler.patches import hpa_floor_patch, scale_patch
from autoscaler.policy import Decision, Mode, Reason
from autoscaler.stages import ActOutcome, ActuationResult, Stage
from tests.fakekube import FakeKube
from tests.polling import wait_for

BIN = Path(sys.executable).parent
CPU, REQUESTS = MetricKind.CPU, MetricKind.REQUESTS
ON = {PREFIX + "enabled": "true"}
REQ = {**ON, PREFIX + "metrics": "requests", PREFIX + "target-requests-per-pod": "65"}
CONFIG = TargetConfig(metrics=(CPU,), bounds=Bounds(1, 100))
NOW = time.time()
MINUTE = 60.0


def ref(namespace: str, name: str, kind: WorkloadKind = WorkloadKind.DEPLOYMENT) -> TargetRef:
    return TargetRef(namespace, name, kind)


WEB = ref("shop", "web")
WEB_STS = ref("shop", "web", WorkloadKind.STATEFULSET)
CART = ref("shop", "cart")
SEARCH = ref("shop", "search")
BATCH = ref("shop", "batch")
AGENT = ref("lab", "agent")
TYPO = ref("lab", "typo")
FRESH = ref("lab", "fresh")
API = ref("ops", "api")
LEGACY = ref("ops", "legacy")
BROKEN = ref("ops", "broken")
FAILING = ref("ops", "failing")


@dataclass
class World:
    fake: FakeKube
    kubeconfig: Path
    kube: Kube
    recorder: ClusterRecorder

    def workload(self, target: TargetRef) -> dict[str, object]:
        obj = self.fake.get_object(target.kind.value, target.namespace, target.name)
        assert obj is not None
        return obj

    def tick(
        self,
        decision: Decision,
        result: ActuationResult,
        *,
        mode: ScaleMode = ScaleMode.REPLICAS,
        dry_run: bool = False,
        hpa: HpaInfo | None = None,
    ) -> None:
        """What a tick does after acting: the recorder writes Events and the status annotation, from
        the workload as the server has it (so the status carries over as in a cluster)."""
        target = decision.ref
        meta = self.workload(target)["metadata"]
        assert isinstance(meta, dict)
        status = (meta.get("annotations") or {}).get(STATUS_KEY)
        state = WorkloadState(target, decision.current, decision.current)
        scaling = Scaling(mode, dry_run, hpa, "", status)
        self.recorder.record(Target(state, CONFIG, scaling), decision, result)


def decision(
    target: TargetRef, current: int, replicas: int, *reasons: Reason, **fields: object
) -> Decision:
    at = float(fields.pop("at", NOW))  # type: ignore[arg-type]
    return Decision(
        ref=target,
        at=at,
        current=current,
        replicas=replicas,
        recommendation=replicas,
        reasons=reasons,
        **fields,  # type: ignore[arg-type]
    )


def scaled(world: World, d: Decision) -> ActuationResult:
    """The actuator's write of a replica change (the scale subresource), and its result."""
    world.kube.patch(scale_patch(d.ref, d.replicas))
    return ActuationResult(ActOutcome.APPLIED, Setpoint(Knob.REPLICAS, d.current, d.replicas, True))


def unchanged(d: Decision) -> ActuationResult:
    return ActuationResult(ActOutcome.UNCHANGED, Setpoint(Knob.REPLICAS, d.current, d.replicas, False))


def seed(world: World) -> None:
    fake = world.fake
    for namespace in ("shop", "lab", "ops"):
        fake.add_namespace(namespace)
    # Predictive: scaled 4→7 ahead of the forecast twenty minutes ago, and holding at 7 since.
    fake.add_deployment("shop", "web", replicas=4, annotations=REQ)
    forecast = {
        "mode": Mode.PREDICTIVE,
        "metric": REQUESTS,
        "load": 300.0,
        "per_pod_target": 65.0,
        "reactive_replicas": 5,
        "predictive_replicas": 7,
        "forecast_metric": REQUESTS,
        "forecast_peak": 455.0,
        "forecast_level": 0.8,
        "lead_s": 150.0,
        "forecast_errors": ((REQUESTS, 0.82),),
    }
    up = decision(WEB, 4, 7, Reason.PREDICTIVE_SCALE_UP, at=NOW - 20 * MINUTE, **forecast)
    world.tick(up, scaled(world, up))
    held = decision(WEB, 7, 7, Reason.FORECAST_HOLDS, at=NOW - 10 * MINUTE, **forecast)
    world.tick(held, unchanged(held))
    # A StatefulSet of the same name, scaled down reactively: its forecasts are too few to judge.
    fake.add_statefulset("shop", "web", replicas=3, annotations=ON)
    down = decision(
        WEB_STS, 3, 2, Reason.SCALE_DOWN, Reason.FALLBACK_SHORT_HISTORY,
        at=NOW - 5 * MINUTE, metric=CPU, load=0.5, per_pod_target=0.35, reactive_replicas=2,
    )  # fmt: skip
    world.tick(down, scaled(world, down))
    # Reactive fallback: the request forecasts were poor, so the HPA formula decided.
    fake.add_deployment("shop", "cart", replicas=2, annotations=REQ)
    cart = decision(
        CART, 2, 3, Reason.SCALE_UP, Reason.FALLBACK_POOR_ACCURACY,
        at=NOW - 3 * MINUTE, metric=REQUESTS, load=180.0, per_pod_target=65.0, reactive_replicas=3,
        untrusted=frozenset({REQUESTS}), forecast_errors=((REQUESTS, 1.62),),
    )  # fmt: skip
    world.tick(cart, scaled(world, cart))
    # Hold: no CPU sample, so nothing is scaled down.
    fake.add_deployment("shop", "search", replicas=3, annotations=ON)
    hold = decision(
        SEARCH, 3, 3, Reason.METRICS_MISSING, at=NOW - 2 * MINUTE, mode=Mode.HOLD, missing=(CPU,),
        records=False,
    )  # fmt: skip
    world.tick(hold, unchanged(hold))
    # Dry run: a proposal in an Event, nothing written on the workload.
    fake.add_deployment("lab", "agent", replicas=2, annotations={**ON, PREFIX + "dry-run": "true"})
    dry = decision(
        AGENT, 2, 5, Reason.PREDICTIVE_SCALE_UP, at=NOW - MINUTE, mode=Mode.PREDICTIVE, metric=CPU,
        load=0.6, per_pod_target=0.35, reactive_replicas=2, predictive_replicas=5,
        forecast_metric=CPU, forecast_peak=1.7, forecast_level=0.5, lead_s=150.0,
    )  # fmt: skip
    world.tick(
        dry,
        ActuationResult(ActOutcome.DRY_RUN, Setpoint(Knob.REPLICAS, 2, 5, True)),
        dry_run=True,
    )
    # A controller run with --dry-run: a status from before, then only proposals in Events.
    fake.add_deployment("shop", "batch", replicas=2, annotations=ON)
    before = decision(BATCH, 2, 3, Reason.SCALE_UP, at=NOW - 15 * MINUTE, metric=CPU, load=0.9)
    world.tick(before, scaled(world, before))
    proposed = decision(BATCH, 3, 4, Reason.SCALE_UP, at=NOW - MINUTE, metric=CPU, load=1.2)
    dry_controller = ClusterRecorder(world.kube, may_act=lambda: True, dry_run=True)
    state = WorkloadState(BATCH, 3, 3)
    dry_controller.record(
        Target(state, CONFIG, Scaling(ScaleMode.REPLICAS)),
        proposed,
        ActuationResult(ActOutcome.DRY_RUN, Setpoint(Knob.REPLICAS, 3, 4, True)),
    )
    # Annotations the controller cannot use, and a workload opted in but not decided yet.
    fake.add_deployment("lab", "typo", replicas=2, annotations={**ON, PREFIX + "min-replicas": "0"})
    fake.add_deployment("lab", "fresh", replicas=1, annotations=ON)
    # Mode hpa: the HPA's floor raised from its owner's 2 to 6 ahead of the forecast.
    fake.add_deployment("ops", "api", replicas=2, annotations={**ON, PREFIX + "mode": "hpa"})
    fake.add_hpa("ops", "api", "api", min_replicas=2, max_replicas=10)
    hpa = fake.get_object("HorizontalPodAutoscaler", "ops", "api")
    assert hpa is not None
    world.kube.patch(hpa_floor_patch("ops", "api", hpa["metadata"]["resourceVersion"], 6, 2))
    info = HpaInfo("ops", "api", "", 2, 10, 2, False)
    raise_floor = decision(
        API, 2, 6, Reason.PREDICTIVE_SCALE_UP, at=NOW - 4 * MINUTE, mode=Mode.PREDICTIVE, metric=CPU,
        load=0.7, per_pod_target=0.35, reactive_replicas=2, predictive_replicas=6,
        forecast_metric=CPU, forecast_peak=2.0, forecast_level=0.9, lead_s=180.0,
        forecast_errors=((CPU, 0.64),),
    )  # fmt: skip
    floor = Setpoint(Knob.HPA_FLOOR, 2, 6, True, hpa="api")
    world.tick(raise_floor, ActuationResult(ActOutcome.APPLIED, floor), mode=ScaleMode.HPA, hpa=info)
    # Mode replicas on a Deployment an HPA scales: refused.
    fake.add_deployment("ops", "legacy", replicas=3, annotations=ON)
    fake.add_hpa("ops", "legacy", "legacy", min_replicas=2, max_replicas=6)
    # A status annotation nobody can read, and a workload whose latest tick broke.
    fake.add_deployment("ops", "broken", replicas=2, annotations={**ON, STATUS_KEY: "{not json"})
    fake.add_deployment("ops", "failing", replicas=2, annotations=ON)
    ok = decision(FAILING, 2, 2, Reason.WITHIN_TOLERANCE, at=NOW - 30 * MINUTE, metric=CPU, load=0.7)
    world.tick(ok, unchanged(ok))
    target = Target(WorkloadState(FAILING, 2, 2), CONFIG, Scaling(ScaleMode.REPLICAS))
    world.recorder.failed(target, Stage.DECIDE, ZeroDivisionError("division by zero"), NOW - MINUTE)
    # Not opted in: never shown.
    fake.add_deployment("shop", "plain", replicas=1)
    fake.add_deployment("shop", "off", replicas=1, annotations={PREFIX + "enabled": "false"})


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with FakeKube() as fake:
        kubeconfig = fake.write_kubeconfig(tmp_path_factory.mktemp("status") / "kubeconfig")
        kube = connect(kubeconfig, "test-status")
        built = World(fake, kubeconfig, kube, ClusterRecorder(kube, may_act=lambda: True))
        seed(built)
        yield built


def run(world: World, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`predictive-autoscaler status ARGS` as the command line parses it, with ages told against
    the seeding's NOW however long the suite took to get here."""
    parsed = build_parser().parse_args(["status", "--kubeconfig", str(world.kubeconfig), *args])
    code = status_command.run(parsed, clock=lambda: NOW)
    out, err = capsys.readouterr()
    return code, out, err


def lines_by_workload(out: str) -> dict[tuple[str, str], list[str]]:
    """Table lines split into cells (three spaces or more between columns), by (namespace, workload)."""
    rows: dict[tuple[str, str], list[str]] = {}
    for line in out.splitlines()[1:]:
        cells = [c.strip() for c in line.split("   ") if c.strip()]
        rows[(cells[0], cells[1])] = cells
    return rows


HEADER = ["NAMESPACE", "WORKLOAD", "MODE", "STATE", "REPLICAS", "BY", "FORECAST", "ERROR", "TRUST",
          "LAST CHANGE"]  # fmt: skip


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        pytest.param(
            ("shop", "deployment/web"),
            ["replicas", "active", "7", "predictive", "requests 455 @80% in 150s", "0.82", "trusted",
             "4→7 predictive-scale-up (20m)"],
            id="predictive-after-a-change",
        ),
        pytest.param(
            ("shop", "statefulset/web"),
            ["replicas", "active", "2", "reactive", "-", "-", "warming-up", "3→2 scale-down (5m)"],
            id="statefulset-beside-deployment-of-its-name",
        ),
        pytest.param(
            ("shop", "deployment/cart"),
            ["replicas", "active", "3", "reactive", "-", "1.62", "untrusted", "2→3 scale-up (3m)"],
            id="reactive-fallback-untrusted",
        ),
        pytest.param(
            ("shop", "deployment/search"),
            ["replicas", "active", "3", "hold (cpu missing)", "-", "-", "-", "-"],
            id="hold-metrics-missing",
        ),
        pytest.param(
            ("lab", "deployment/agent"),
            ["replicas", "dry-run", "2→5", "predictive", "-", "-", "-", "-"],
            id="dry-run-proposal",
        ),
        pytest.param(
            ("shop", "deployment/batch"),
            ["replicas", "dry-run", "3→4", "reactive", "-", "-", "-", "2→3 scale-up (15m)"],
            id="controller-in-dry-run",
        ),
        pytest.param(
            ("lab", "deployment/typo"), ["-", "invalid", "2", "-", "-", "-", "-", "-"], id="invalid"
        ),
        pytest.param(
            ("lab", "deployment/fresh"),
            ["replicas", "pending", "1→?", "-", "-", "-", "-", "-"],
            id="never-decided",
        ),
        pytest.param(
            ("ops", "deployment/api"),
            ["hpa", "active", "2→6", "predictive", "cpu 2 @90% in 180s", "0.64", "trusted",
             "floor 2→6 predictive-scale-up (4m)"],
            id="hpa-floor-raised",
        ),
        pytest.param(
            ("ops", "deployment/legacy"),
            ["replicas", "refused", "3", "-", "-", "-", "-", "-"],
            id="refused-hpa-conflict",
        ),
        pytest.param(
            ("ops", "deployment/broken"),
            ["replicas", "unreadable", "2", "-", "-", "-", "-", "-"],
            id="unreadable-status",
        ),
        pytest.param(
            ("ops", "deployment/failing"),
            ["replicas", "warning", "2", "reactive", "-", "-", "-", "-"],
            id="tick-failed",
        ),
    ],
)  # fmt: skip
def test_table_shows_each_workload(
    world: World, capsys: pytest.CaptureFixture[str], key: tuple[str, str], expected: list[str]
) -> None:
    code, out, err = run(world, capsys)
    assert (code, err) == (0, "")
    assert out.splitlines()[0].split() == " ".join(HEADER).split()
    assert lines_by_workload(out)[key][2:] == expected


def test_only_opted_in_workloads_show(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(world, capsys)
    shown = set(lines_by_workload(out))
    assert len(shown) == 12
    assert ("shop", "deployment/plain") not in shown
    assert ("shop", "deployment/off") not in shown
    # Sorted by namespace, then name, the Deployment before the StatefulSet of its name.
    assert list(lines_by_workload(out)) == sorted(
        shown, key=lambda k: (k[0], k[1].split("/")[1], k[1].split("/")[0])
    )


def test_namespace_narrows(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(world, capsys, "-n", "lab")
    assert code == 0
    assert set(lines_by_workload(out)) == {
        ("lab", "deployment/agent"),
        ("lab", "deployment/typo"),
        ("lab", "deployment/fresh"),
    }


def test_empty_namespace_says_so(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(world, capsys, "-n", "kube-system")
    assert (code, out.strip()) == (0, "No opted-in workloads found.")


def test_wide_adds_columns(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(world, capsys, "-o", "wide")
    assert code == 0
    assert out.splitlines()[0].split()[-9:] == [
        "READY", "REACTIVE", "PREDICTIVE", "HPA", "FLOOR", "ERRORS", "DECIDED", "REASONS", "NOTE",
    ]  # fmt: skip
    rows = lines_by_workload(out)
    api = rows[("ops", "deployment/api")]
    assert api[10:15] == ["2", "2", "6", "api 6 (owner 2)", "cpu=0.64"]
    assert "min-replicas" in rows[("lab", "deployment/typo")][-1]
    assert rows[("shop", "deployment/search")][-1] == "metrics missing: cpu"
    assert rows[("ops", "deployment/failing")][-1].startswith("TargetFailed: decide failed")
    assert rows[("ops", "deployment/legacy")][-1].startswith("HPA legacy already scales this Deployment")


def test_json_carries_the_fields(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(world, capsys, "-o", "json")
    assert code == 0
    doc = json.loads(out)
    items = {(i["namespace"], i["kind"], i["name"]): i for i in doc["items"]}
    assert len(items) == 12
    web = items[("shop", "Deployment", "web")]
    assert web["replicas"] == {"current": 7, "ready": 7, "desired": 7}
    assert (web["decidedBy"], web["trust"], web["forecastError"]) == (
        "predictive",
        "trusted",
        {"requests": 0.82},
    )
    assert web["forecast"] == {
        "metric": "requests", "peak": 455.0, "level": 0.8, "risingTo": None, "leadSeconds": 150.0,
    }  # fmt: skip
    assert web["lastChange"]["event"] == "ScaledUp"
    assert (web["lastChange"]["from"], web["lastChange"]["to"]) == (4, 7)
    assert items[("shop", "Deployment", "cart")]["untrusted"] == ["requests"]
    assert items[("shop", "Deployment", "search")]["missing"] == ["cpu"]
    agent = items[("lab", "Deployment", "agent")]
    assert (agent["state"], agent["dryRun"], agent["proposal"]["to"]) == ("dry-run", True, 5)
    assert items[("lab", "Deployment", "typo")]["state"] == "invalid"
    assert items[("ops", "Deployment", "api")]["hpa"]["minReplicas"] == 6
    assert items[("shop", "StatefulSet", "web")]["replicas"]["desired"] == 2


def test_yaml_parses_as_the_json(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    _, as_json, _ = run(world, capsys, "-o", "json")
    code, as_yaml, _ = run(world, capsys, "-o", "yaml")
    assert code == 0
    assert yaml.safe_load(as_yaml) == json.loads(as_json)


def test_one_workload_shows_details_and_history(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(world, capsys, "shop/web")
    assert code == 0
    assert "Workload:" in out
    assert "shop/deployment/web" in out
    assert "Last change:" in out
    assert "ScaledUp 4→7" in out
    history = out.split("Events (newest first):")[1]
    assert "ScaledUp" in history
    assert "scaled 4→7" in history
    assert "Predictive" in history
    # Only this Deployment's Events, not the StatefulSet's of the same name.
    assert "ScaledDown" not in history


def test_statefulset_by_kind(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(world, capsys, "shop/statefulset/web")
    assert code == 0
    assert "shop/statefulset/web" in out
    assert "ScaledDown" in out.split("Events (newest first):")[1]
    code, same, _ = run(world, capsys, "-n", "shop", "sts/web")
    assert code == 0
    assert "shop/statefulset/web" in same


def test_one_workload_as_json_has_events(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(world, capsys, "lab/agent", "-o", "json")
    assert code == 0
    doc = json.loads(out)
    assert doc["state"] == "dry-run"
    assert {e["reason"] for e in doc["events"]} == {"DryRun", "Predictive"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["shop/nothing"], "shop/deployment/nothing: no such Deployment", id="unknown"),
        pytest.param(["shop/plain"], "shop/deployment/plain is not opted in", id="not-opted-in"),
        pytest.param(["shop/pod/web"], "kind 'pod' is not deployment or statefulset", id="bad-kind"),
        pytest.param(["web"], "give NAMESPACE/NAME, or the namespace with -n", id="no-namespace"),
        pytest.param(["-o", "xml"], "argument -o/--output: invalid choice: 'xml'", id="bad-output"),
        pytest.param(["--interval", "5 parsecs"], "argument --interval", id="bad-interval"),
        pytest.param(["-n", "shop", "-A"], "exclude each other", id="namespace-and-all"),
        pytest.param(["--context", "nope"], "cannot load Kubernetes credentials", id="unknown-context"),
    ],
)
def test_bad_input_is_one_line(
    world: World, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    try:
        code = main(["status", "--kubeconfig", str(world.kubeconfig), *args])
    except SystemExit as exited:  # argparse's own errors
        code = int(exited.code or 0)
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert message in err


def test_missing_kubeconfig(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["status", "--kubeconfig", str(tmp_path / "none")])
    _, err = capsys.readouterr()
    assert code == 2
    assert (
        err.strip()
        == f"predictive-autoscaler status: error: --kubeconfig {tmp_path / 'none'}: no such file"
    )


def test_unreachable_api_server(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port once the probe is closed: connections are refused at once.
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    code = main(["status", "--kubeconfig", str(kubeconfig)])
    _, err = capsys.readouterr()
    assert code == 2
    assert err.strip().splitlines() == [
        f"predictive-autoscaler status: error: cannot reach the API server at "
        f"http://127.0.0.1:{port}: [Errno 111] Connection refused"
    ]


class Output:
    """A subprocess' stdout, read as it comes."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.text = ""
        self._lock = threading.Lock()
        assert process.stdout is not None
        stream = process.stdout
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            with self._lock:
                self.text += line

    def has(self, fragment: str) -> bool:
        with self._lock:
            return fragment in self.text


def test_watch_prints_again_on_change(world: World) -> None:
    env = {**os.environ, "KUBECONFIG": str(world.kubeconfig)}
    process = subprocess.Popen(
        [str(BIN / "kubectl-predictive"), "-n", "lab", "--watch", "--interval", "1s"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        output = Output(process)
        assert wait_for(lambda: output.has("pending"), 30), output.text
        assert output.text.count("NAMESPACE") == 1
        # The controller decides for lab/fresh: scaled 1→2 by the HPA formula.
        d = decision(FRESH, 1, 2, Reason.SCALE_UP, metric=CPU, load=0.6, per_pod_target=0.35)
        world.tick(d, scaled(world, d))
        assert wait_for(lambda: output.has("1→2 scale-up"), 30), output.text
        assert output.text.count("NAMESPACE") == 2
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert process.returncode in (0, -15)


kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")


@kubectl
def test_kubectl_plugin(world: World) -> None:
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "KUBECONFIG": str(world.kubeconfig),
    }
    listed = subprocess.run(
        ["kubectl", "plugin", "list"], check=False, env=env, capture_output=True, text=True, timeout=60
    )
    assert str(BIN / "kubectl-predictive") in listed.stdout
    shown = subprocess.run(
        ["kubectl", "predictive", "-n", "shop", "--context", "fakekube"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    rows = lines_by_workload(shown.stdout)
    assert set(rows) == {
        ("shop", "deployment/batch"),
        ("shop", "deployment/web"),
        ("shop", "statefulset/web"),
        ("shop", "deployment/cart"),
        ("shop", "deployment/search"),
    }
    assert rows[("shop", "deployment/web")][4] == "7"
    bad = subprocess.run(
        ["kubectl", "predictive", "shop/nothing"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "kubectl predictive: error: shop/deployment/nothing: no such Deployment"
        " (a StatefulSet is NAMESPACE/statefulset/NAME)"
    ]
