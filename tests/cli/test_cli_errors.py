"""What the command line says when something is wrong, and its small promises:

* a Prometheus failure in `backtest --prometheus-url` is one line on stderr, a short cause and what
  to check, with no PromQL and no URL-encoded query; the query and Prometheus' whole answer are in
  `--log-level debug`. A query Prometheus rejects exits 2 (the command's to fix, as every usage
  error); Prometheus unreachable exits 1 (it may pass). Both against real servers: a Prometheus
  given a selector it refuses, and a port nothing listens on;
* every duration flag of every subcommand refuses a bare number with one line naming the flag and
  saying a unit is needed, from the command line and, for `run`, from the environment;
* `--version` prints the installed package's version;
* switches take no value, on every subcommand; `run` reads them from the environment as true/false.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import socket
import subprocess
import sys

import pytest

from autoscaler.cli import main
from autoscaler.cli.backtest import add_backtest
from autoscaler.cli.common import PROG, Parser
from autoscaler.cli.run import add_run, env_name
from tests.promserver import PromEnv

# RE2 refuses a repeat count above 1000; the selector grammar leaves that to Prometheus.
REFUSED_SELECTOR = 'http_requests_total{code=~"5{1001}"}'


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def history(url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    args = ["backtest", "--prometheus-url", url, "--target", "shop/checkout", "--days", "3", *extra]
    return subprocess.run(
        [sys.executable, "-m", "autoscaler", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_one_clean_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    line = lines[0]
    assert line.startswith(f"{PROG} backtest: error: "), line
    for promql in ("%2", "sum by", "rate(", "query_range", "kube_pod_owner"):
        assert promql not in line, line
    assert len(line) < 300, line
    return line


def test_a_rejected_selector_is_one_line_and_exit_2(prometheus_history: PromEnv) -> None:
    env = prometheus_history
    done = history(env.url, "--end", str(env.anchor), "--requests-metric", REFUSED_SELECTOR)
    assert done.returncode == 2
    assert done.stdout == ""
    line = assert_one_clean_line(done.stderr)
    assert "Prometheus rejected the query (HTTP 400: parse error" in line
    assert "invalid repeat count" in line
    assert "check --requests-metric" in line
    assert "--log-level debug" in line


def test_an_unreachable_prometheus_is_one_line_and_exit_1() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    done = history(url)
    assert done.returncode == 1
    assert done.stdout == ""
    line = assert_one_clean_line(done.stderr)
    assert f"cannot reach Prometheus at {url}: Connection refused" in line
    assert "check --prometheus-url" in line


def test_debug_logs_the_query_and_the_whole_answer(
    prometheus_history: PromEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    env = prometheus_history
    code = main(
        ["backtest", "--prometheus-url", env.url, "--target", "shop/checkout", "--days", "3",
         "--end", str(env.anchor), "--requests-metric", REFUSED_SELECTOR, "--log-level", "debug"]
    )  # fmt: skip
    assert code == 2
    *debug, last = capsys.readouterr().err.strip().splitlines()
    assert last.startswith(f"{PROG} backtest: error: Prometheus rejected the query"), last
    logged = "\n".join(debug)
    assert "DEBUG" in logged
    assert "Prometheus query failed" in logged
    assert "query=" in logged
    assert "http_requests_total" in logged, "the PromQL that failed"
    assert "errorType" in logged, "Prometheus' whole answer"


# --- durations ---------------------------------------------------------------------------------------

RUN = ["run", "--prometheus-url", "http://127.0.0.1:1"]
BACKTEST = ["backtest"]
STATUS = ["status"]


@pytest.mark.parametrize(
    ("command", "flag"),
    [
        pytest.param(BACKTEST, "--horizon", id="backtest-horizon"),
        pytest.param(BACKTEST, "--prometheus-step", id="backtest-prometheus-step"),
        pytest.param(BACKTEST, "--prometheus-rate-window", id="backtest-rate-window"),
        pytest.param(RUN, "--interval", id="run-interval"),
        pytest.param(RUN, "--prometheus-step", id="run-prometheus-step"),
        pytest.param(RUN, "--prometheus-rate-window", id="run-rate-window"),
        pytest.param(RUN, "--lease-duration", id="run-lease-duration"),
        pytest.param(RUN, "--renew-deadline", id="run-renew-deadline"),
        pytest.param(RUN, "--retry-period", id="run-retry-period"),
        pytest.param(STATUS, "--interval", id="status-interval"),
    ],
)
def test_a_bare_number_is_not_a_duration(
    capsys: pytest.CaptureFixture[str], command: list[str], flag: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*command, flag, "15"])
    assert exited.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    needs_a_unit = "'15' needs a unit (s, m, h or d), e.g. 15s or 15m"
    assert lines == [f"{PROG} {command[0]}: error: argument {flag}: {needs_a_unit}"]


def test_a_bare_number_in_the_environment_names_the_flag(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(env_name("--interval"), "30")
    with pytest.raises(SystemExit) as exited:
        main(RUN)
    assert exited.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    needs_a_unit = "'30' needs a unit (s, m, h or d), e.g. 30s or 30m"
    assert line == f"{PROG} run: error: argument --interval: {needs_a_unit}"


# --- --version ---------------------------------------------------------------------------------------


def test_version_is_the_installed_packages(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out == f"predictive-autoscaler {importlib.metadata.version(PROG)}\n"
    assert out == "predictive-autoscaler 0.1.0\n"


# --- switches ----------------------------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    """The command line as `run` and `backtest` read it, without running either."""
    parser = Parser(prog=PROG)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    add_run(commands)
    add_backtest(commands)
    return parser.parse_args(list(argv))


SWITCHES = [
    pytest.param(RUN, "--prometheus-insecure-skip-verify", id="run-insecure-skip-verify"),
    pytest.param(RUN, "--dry-run", id="run-dry-run"),
    pytest.param(RUN, "--leader-elect", id="run-leader-elect"),
    pytest.param(BACKTEST, "--prometheus-insecure-skip-verify", id="backtest-insecure-skip-verify"),
    pytest.param(BACKTEST, "--json", id="backtest-json"),
]


def dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


@pytest.mark.parametrize(("command", "flag"), SWITCHES)
def test_a_switch_is_true_when_given_and_false_when_not(command: list[str], flag: str) -> None:
    assert getattr(parse(*command, flag), dest(flag)) is True
    assert getattr(parse(*command), dest(flag)) is False


@pytest.mark.parametrize(("command", "flag"), SWITCHES)
def test_a_switch_takes_no_value(
    capsys: pytest.CaptureFixture[str], command: list[str], flag: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(*command, flag, "true")
    assert exited.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line == f"{PROG}: error: unrecognized arguments: true"


@pytest.mark.parametrize("flag", ["--prometheus-insecure-skip-verify", "--dry-run", "--leader-elect"])
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("true", True, id="true"),
        pytest.param("false", False, id="false"),
        pytest.param("", False, id="empty"),
    ],
)
def test_run_reads_a_switch_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, flag: str, value: str, expected: bool
) -> None:
    monkeypatch.setenv(env_name(flag), value)
    assert getattr(parse(*RUN), dest(flag)) is expected
    assert getattr(parse(*RUN, flag), dest(flag)) is True, "the command line wins"


def test_a_bad_switch_in_the_environment_names_the_flag(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(env_name("--dry-run"), "maybe")
    with pytest.raises(SystemExit) as exited:
        parse(*RUN)
    assert exited.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line == f"{PROG} run: error: argument --dry-run: 'maybe' is not true or false"
