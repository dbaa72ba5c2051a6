"""`backtest --prometheus-url … --target NS/DEPLOY`: the report on a Deployment's own history, read
from a real Prometheus backfilled with days of cAdvisor, kube-state-metrics and request-counter
series (`tests.promserver.history_dataset`)."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from autoscaler.cli import main
from autoscaler.history_backtest import load_history
from autoscaler.metrics import MetricKind
from autoscaler.model import TargetRef
from autoscaler.selectors import parse_selector
from autoscaler.simulate import POLICIES
from autoscaler.sources.prometheus import PrometheusSettings, PrometheusSource
from tests.promserver import PromEnv

SHOP = TargetRef("shop", "checkout")
BLOG = TargetRef("blog", "checkout")
DAY_S = 86_400
# Two models keep the report quick; the CLI's default runs all four.
MODELS = "arima,naive"


def run_cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def history_args(env: PromEnv, *extra: str) -> list[str]:
    return [
        "backtest",
        "--prometheus-url",
        env.url,
        "--target",
        str(SHOP),
        "--days",
        "3",
        "--end",
        str(env.anchor),
        "--model",
        MODELS,
        *extra,
    ]


@pytest.fixture(scope="module")
def json_run(prometheus_history: PromEnv) -> tuple[dict[str, Any], str]:
    """The JSON report and what was written on stderr beside it."""
    code, out, err = run_cli(*history_args(prometheus_history, "--json"))
    assert code == 0, err
    report: dict[str, Any] = json.loads(out)
    return report, err


@pytest.fixture(scope="module")
def json_report(json_run: tuple[dict[str, Any], str]) -> dict[str, Any]:
    return json_run[0]


def test_progress_lines_tell_the_read_the_forecasts_and_each_policy(
    json_run: tuple[dict[str, Any], str],
) -> None:
    """stderr is not a terminal here: a line per stage and tenth of it, as in a CI log."""
    tenths = [f"{p}%" for p in range(10, 101, 10)]
    stages: dict[str, list[str]] = {}
    for line in json_run[1].splitlines():
        label, _, percent = line.rpartition(": ")
        stages.setdefault(label, []).append(percent)
    assert list(stages.items()) == [
        ("read shop/checkout from Prometheus", ["100%"]),
        ("forecast arima", tenths),
        ("forecast naive", tenths),
        *((f"simulate {p} u*=0.7", tenths) for p in POLICIES if p != "oracle"),
    ]


def source(env: PromEnv, **settings: Any) -> PrometheusSource:
    return PrometheusSource(PrometheusSettings(env.url, **settings))


def test_json_report_covers_the_window_asked_for(
    json_report: dict[str, Any], prometheus_history: PromEnv
) -> None:
    assert json_report["target"] == "shop/checkout"
    assert json_report["kind"] == "requests", "request rate is preferred when Prometheus has it"
    window = json_report["window"]
    assert window["step_s"] == 60
    assert window["interpolated_share"] == 0.0
    simulated = json_report["simulation"]["trace"]
    assert simulated["days"] == pytest.approx(3.0, abs=2 / 1440)
    assert window["end"] == simulated["end"]


def test_json_report_scores_forecasts_at_the_controllers_bucket(json_report: dict[str, Any]) -> None:
    forecast = json_report["forecast"]
    assert forecast["step_s"] == 300
    assert set(forecast["models"]) == {"arima", "naive"}
    for model, scores in forecast["models"].items():
        assert scores["origins"] > 0, model
        assert scores["failed_origins"] == 0, model
        assert math.isfinite(scores["mase"]), model
    # The load follows a smooth daily wave: ARIMA must beat "same time yesterday" on it.
    assert forecast["models"]["arima"]["mase"] < 1.0


def test_json_report_simulates_every_policy(json_report: dict[str, Any]) -> None:
    simulation = json_report["simulation"]
    assert simulation["scenario"]["kind"] == "requests"
    policies = simulation["policies"]
    assert set(policies) == set(POLICIES)
    assert policies["oracle"]["cost_vs_oracle"] == pytest.approx(1.0)
    for name in ("hpa", "predictive"):
        assert policies[name]["pod_hours"] >= policies["oracle"]["pod_hours"], name
    assert "ratios_vs_hpa" in simulation


def test_text_report_and_both_plots(prometheus_history: PromEnv, tmp_path: Path) -> None:
    plot = tmp_path / "history.png"
    code, out, err = run_cli(*history_args(prometheus_history, "--plot", str(plot)))
    assert code == 0, err
    assert out.startswith("target    shop/checkout from http://127.0.0.1:")
    assert "Forecast accuracy (5-minute buckets" in out
    assert "What each policy would have done" in out
    table = [line.split()[0] for line in out.splitlines() if line.split()]
    for row in ("arima", "naive", "hpa", "predictive", "oracle"):
        assert row in table, row
    beside = tmp_path / "history-forecast.png"
    for path in (plot, beside):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    assert f"plots written to {plot} and {beside}" in out


def expected_rates(env: PromEnv, ref: TargetRef, kind: MetricKind, times: np.ndarray) -> np.ndarray:
    window_s = 120.0  # the source's default rate window, 2m
    return np.array([env.dataset.expected(ref, kind, float(t), window_s) or np.nan for t in times])


@pytest.mark.parametrize("kind", [MetricKind.REQUESTS, MetricKind.CPU], ids=lambda k: k.value)
def test_history_is_the_targets_own_load(prometheus_history: PromEnv, kind: MetricKind) -> None:
    """blog/checkout has the same name and three times the load: none of it may leak in."""
    env = prometheus_history
    load = load_history(source(env), SHOP, env.anchor - 3 * DAY_S, env.anchor, kind=kind)
    assert load.kind is kind
    rates = load.trace.values / load.trace.step_s
    sample = slice(None, None, 97)
    own = expected_rates(env, SHOP, kind, load.trace.times[sample])
    other = expected_rates(env, BLOG, kind, load.trace.times[sample])
    pinned = ~np.isnan(own)
    assert pinned.sum() > 20
    np.testing.assert_allclose(rates[sample][pinned], own[pinned], rtol=0.02)
    assert np.all(np.abs(rates[sample][pinned] - other[pinned]) > 0.3 * other[pinned])


def test_cpu_is_replayed_where_no_request_counter_exists(prometheus_history: PromEnv) -> None:
    env = prometheus_history
    load = load_history(
        source(env),
        SHOP,
        env.anchor - DAY_S,
        env.anchor,
        selector=parse_selector("grpc_server_handled_total"),
    )
    assert load.kind is MetricKind.CPU


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(
            {"--target": "shop/nothing"},
            "Prometheus has no requests or cpu load for shop/nothing",
            id="unknown-deployment",
        ),
        pytest.param(
            {"--days": "1.5"}, "not more than the 2-day warm-up", id="window-shorter-than-warm-up"
        ),
        pytest.param(
            {"--metric": "cpu", "--target": "blog/gone"},
            "Prometheus has no cpu load for blog/gone",
            id="no-cpu-series",
        ),
        pytest.param(
            {"--requests-metric": 'http_requests_total{code="200"} or vector(1)'},
            "--requests-metric",
            id="requests-metric-injection",
        ),
        pytest.param({"--trace": "x.csv"}, "exclude each other", id="trace-and-prometheus"),
        pytest.param({"--target": None}, "needs --target", id="target-missing"),
        pytest.param({"--prometheus-url": None}, "--target needs --prometheus-url", id="url-missing"),
    ],
)
def test_bad_history_input_exits_2_with_one_line(
    prometheus_history: PromEnv, change: dict[str, str | None], message: str
) -> None:
    args = history_args(prometheus_history)
    for flag, value in change.items():
        if flag in args:
            at = args.index(flag)
            del args[at : at + 2]
        if value is not None:
            args += [flag, value]
    code, out, err = run_cli(*args)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert message in lines[0]


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        pytest.param("--target", "checkout", id="target-without-namespace"),
        pytest.param("--target", "Shop/checkout", id="target-namespace-uppercase"),
        pytest.param("--days", "0", id="days-zero"),
        pytest.param("--end", "yesterday", id="end-not-a-time"),
        pytest.param("--metric", "memory", id="metric-not-replayable"),
    ],
)
def test_bad_history_flag_is_a_usage_error(flag: str, value: str) -> None:
    args = ["backtest", "--prometheus-url", "http://127.0.0.1:1", "--target", "a/b", flag, value]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1
    assert flag in lines[0]
