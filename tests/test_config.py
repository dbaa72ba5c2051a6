"""Annotation parsing (`autoscaler.config.parse_annotations`).

Covers: opting in and out; every key's default; valid values of every key; and named bad-annotation
cases (non-numeric, negative, min > max, unknown mode or metric, absurd values, empty strings, wrong
case, unknown keys, injection through the request selector), each reported with the key and the
value it names.
"""

from __future__ import annotations

import pytest

from autoscaler.config import PREFIX, AnnotationError, parse_annotations
from autoscaler.metrics import MetricKind, Scope, Signal
from autoscaler.model import Bounds, ScaleMode, SelectPolicy
from autoscaler.selectors import LabelMatcher, MatchOp, SeriesSelector

ON = {PREFIX + "enabled": "true"}


def annotated(**values: str) -> dict[str, str]:
    out = dict(ON)
    for key, value in values.items():
        out[PREFIX + key.replace("_", "-")] = value
    return out


@pytest.mark.parametrize(
    "given",
    [
        pytest.param({}, id="no-annotations"),
        pytest.param({PREFIX + "enabled": "false"}, id="enabled-false"),
        pytest.param({"other.io/enabled": "true"}, id="other-prefix"),
        pytest.param({PREFIX + "enabled": "false", PREFIX + "mode": "bogus"}, id="off-ignores-rest"),
    ],
)
def test_not_opted_in(given: dict[str, str]) -> None:
    assert parse_annotations(given) is None


def test_defaults() -> None:
    settings = parse_annotations(ON)
    assert settings is not None
    assert settings.mode is ScaleMode.REPLICAS
    assert settings.dry_run is False
    config = settings.config
    assert config.metrics == (MetricKind.CPU,)
    assert config.bounds == Bounds(1, 100)
    assert config.target_utilization == pytest.approx(0.7)
    assert config.startup_s is None
    assert config.confidence == pytest.approx(0.5)
    assert config.scale_down_stabilization_s == 300.0
    assert (config.scale_up_tolerance, config.scale_down_tolerance) == (0.1, 0.1)
    assert (config.scale_up_select, config.scale_down_select) == (SelectPolicy.MAX, SelectPolicy.MAX)
    assert config.selectors == {}


def test_every_key_read() -> None:
    settings = parse_annotations(
        annotated(
            mode="hpa",
            dry_run="true",
            metrics="cpu,requests,memory",
            target_utilization="65.5",
            target_requests_per_pod="40",
            min_replicas="2",
            max_replicas="30",
            startup_seconds="90",
            confidence="95",
            scale_down_stabilization_seconds="120",
            scale_up_tolerance="5",
            scale_down_tolerance="20.5",
            scale_up_select_policy="Min",
            scale_down_select_policy="Disabled",
            requests_metric='http_requests_total{code!~"5.."}',
        )
    )
    assert settings is not None
    assert settings.mode is ScaleMode.HPA
    assert settings.dry_run is True
    config = settings.config
    assert config.metrics == (MetricKind.CPU, MetricKind.REQUESTS, MetricKind.MEMORY)
    assert config.target_utilization == pytest.approx(0.655)
    assert config.per_pod == {MetricKind.REQUESTS: 40.0}
    assert config.bounds == Bounds(2, 30)
    assert config.startup_s == 90.0
    assert config.confidence == pytest.approx(0.95)
    assert config.scale_down_stabilization_s == 120.0
    assert config.scale_up_tolerance == pytest.approx(0.05)
    assert config.scale_down_tolerance == pytest.approx(0.205)
    assert (config.scale_up_select, config.scale_down_select) == (
        SelectPolicy.MIN,
        SelectPolicy.DISABLED,
    )
    assert config.selectors == {
        MetricKind.REQUESTS: SeriesSelector(
            "http_requests_total", (LabelMatcher("code", MatchOp.NOT_REGEX, "5.."),)
        )
    }


def test_status_annotation_is_not_configuration() -> None:
    assert parse_annotations({**ON, PREFIX + "status": '{"target": 3}'}) is not None


BAD = [
    pytest.param({PREFIX + "enabled": "True"}, "enabled", "True", id="enabled-wrong-case"),
    pytest.param({PREFIX + "enabled": "yes"}, "enabled", "yes", id="enabled-not-boolean"),
    pytest.param({PREFIX + "enabled": ""}, "enabled", "", id="enabled-empty"),
    pytest.param(annotated(mode="Replicas"), "mode", "Replicas", id="mode-wrong-case"),
    pytest.param(annotated(mode="vertical"), "mode", "vertical", id="mode-unknown"),
    pytest.param(annotated(dry_run="TRUE"), "dry-run", "TRUE", id="dry-run-wrong-case"),
    pytest.param(annotated(metrics="cpu,gpu"), "metrics", "cpu,gpu", id="metric-unknown"),
    pytest.param(annotated(metrics=""), "metrics", "", id="metrics-empty"),
    pytest.param(annotated(metrics="CPU"), "metrics", "CPU", id="metric-wrong-case"),
    pytest.param(annotated(metrics="cpu,,memory"), "metrics", "cpu,,memory", id="metrics-hole"),
    pytest.param(annotated(metrics="cpu,cpu"), "metrics", "cpu,cpu", id="metric-twice"),
    pytest.param(
        annotated(metrics="requests"), "metrics", "requests", id="requests-without-per-pod-target"
    ),
    pytest.param(
        annotated(target_utilization="seventy"),
        "target-utilization",
        "seventy",
        id="utilization-non-numeric",
    ),
    pytest.param(
        annotated(target_utilization="0.7"),
        "target-utilization",
        "0.7",
        id="utilization-as-fraction",
    ),
    pytest.param(
        annotated(target_utilization="150"), "target-utilization", "150", id="utilization-over-100"
    ),
    pytest.param(
        annotated(target_utilization="-5"), "target-utilization", "-5", id="utilization-negative"
    ),
    pytest.param(annotated(target_utilization="nan"), "target-utilization", "nan", id="utilization-nan"),
    pytest.param(annotated(min_replicas="-1"), "min-replicas", "-1", id="min-negative"),
    pytest.param(annotated(min_replicas="2.5"), "min-replicas", "2.5", id="min-fractional"),
    pytest.param(annotated(min_replicas=""), "min-replicas", "", id="min-empty"),
    pytest.param(
        annotated(min_replicas="10", max_replicas="3"), "min-replicas", "10", id="min-above-max"
    ),
    pytest.param(annotated(max_replicas="0"), "max-replicas", "0", id="max-zero"),
    pytest.param(annotated(max_replicas="1000000"), "max-replicas", "1000000", id="max-absurd"),
    pytest.param(annotated(startup_seconds="86400"), "startup-seconds", "86400", id="startup-absurd"),
    pytest.param(annotated(startup_seconds="2m"), "startup-seconds", "2m", id="startup-with-unit"),
    pytest.param(annotated(confidence="0.8"), "confidence", "0.8", id="confidence-as-fraction"),
    pytest.param(annotated(confidence="100"), "confidence", "100", id="confidence-100"),
    pytest.param(
        annotated(scale_down_stabilization_seconds="-30"),
        "scale-down-stabilization-seconds",
        "-30",
        id="stabilization-negative",
    ),
    pytest.param(
        annotated(metrics="requests", target_requests_per_pod="0"),
        "target-requests-per-pod",
        "0",
        id="per-pod-zero",
    ),
    pytest.param(
        annotated(requests_metric="http_requests_total or vector(1)"),
        "requests-metric",
        "http_requests_total or vector(1)",
        id="selector-injection",
    ),
    pytest.param(
        annotated(requests_metric='http_requests_total{namespace="other"}'),
        "requests-metric",
        'http_requests_total{namespace="other"}',
        id="selector-foreign-namespace",
    ),
    pytest.param(annotated(min_replica="2"), "min-replica", "2", id="unknown-key-typo"),
    pytest.param(annotated(metrics=" cpu , memory "), "metrics", " cpu , memory ", id="metrics-spaced"),
    pytest.param(annotated(metrics="cpu,"), "metrics", "cpu,", id="metrics-trailing-comma"),
    pytest.param(annotated(min_replicas="0"), "min-replicas", "0", id="min-zero-scale-to-zero"),
    pytest.param(annotated(max_replicas=" 5"), "max-replicas", " 5", id="max-leading-space"),
    pytest.param(
        annotated(metrics="requests", target_requests_per_pod="0." + "0" * 300 + "1"),
        "target-requests-per-pod",
        "0." + "0" * 300 + "1",
        id="per-pod-vanishing",
    ),
    pytest.param(
        annotated(metrics="requests", target_requests_per_pod="0.0001"),
        "target-requests-per-pod",
        "0.0001",
        id="per-pod-below-range",
    ),
    pytest.param(
        annotated(metrics="requests", target_requests_per_pod="2000000"),
        "target-requests-per-pod",
        "2000000",
        id="per-pod-above-range",
    ),
    pytest.param(annotated(max_replicas="9" * 5000), "max-replicas", "9" * 5000, id="max-5000-digits"),
    pytest.param(
        annotated(scale_down_stabilization_seconds="3601"),
        "scale-down-stabilization-seconds",
        "3601",
        id="stabilization-over-an-hour",
    ),
    pytest.param(
        annotated(scale_down_tolerance="100"),
        "scale-down-tolerance",
        "100",
        id="down-tolerance-that-never-scales-down",
    ),
    pytest.param(
        annotated(scale_up_tolerance="-1"), "scale-up-tolerance", "-1", id="up-tolerance-negative"
    ),
    pytest.param(
        annotated(scale_up_select_policy="max"),
        "scale-up-select-policy",
        "max",
        id="select-policy-wrong-case",
    ),
    pytest.param(
        annotated(scale_down_select_policy="Never"),
        "scale-down-select-policy",
        "Never",
        id="select-policy-unknown",
    ),
]


@pytest.mark.parametrize(("given", "key", "value"), BAD)
def test_bad_annotation_names_key_and_value(given: dict[str, str], key: str, value: str) -> None:
    with pytest.raises(AnnotationError) as caught:
        parse_annotations(given)
    assert caught.value.key == PREFIX + key
    assert caught.value.value == value
    assert PREFIX + key in str(caught.value)
    assert repr(value) in str(caught.value)


def declare(metrics: str, **declarations: str) -> dict[str, str]:
    out = {**ON, PREFIX + "metrics": metrics}
    for name, value in declarations.items():
        out[PREFIX + "metric." + name.replace("_", "-")] = value
    return out


@pytest.mark.parametrize(
    ("declaration", "signal", "scope", "target"),
    [
        pytest.param("gauge per-pod 3 agent_inflight_requests", Signal.GAUGE, Scope.PODS, 3.0,
                     id="gauge-per-pod"),
        pytest.param("counter per-pod 400.5 agent_tokens_generated_total", Signal.COUNTER, Scope.PODS,
                     400.5, id="counter-per-pod"),
        pytest.param('gauge   total  20  queue_depth{queue="tasks"}', Signal.GAUGE, Scope.NAMESPACE,
                     20.0, id="total-with-blanks"),
    ],
)  # fmt: skip
def test_a_declared_metric_is_read_like_a_built_in_one(
    declaration: str, signal: Signal, scope: Scope, target: float
) -> None:
    settings = parse_annotations(declare("cpu,agent", agent=declaration))
    assert settings is not None
    kind = MetricKind("agent")
    assert settings.config.metrics == (MetricKind.CPU, kind)
    spec = settings.config.spec(kind)
    assert (spec.signal, spec.scope, spec.request_resource) == (signal, scope, None)
    assert spec.series is not None
    assert str(spec.series) == declaration.split(maxsplit=3)[3]
    assert settings.config.per_pod[kind] == target
    assert spec.selector_annotation == PREFIX + "metric.agent"


def test_declared_kinds_are_one_whoever_makes_them() -> None:
    assert MetricKind("inflight") is MetricKind("inflight")
    assert MetricKind("cpu") is MetricKind.CPU
    assert MetricKind("inflight") != MetricKind("queue")


@pytest.mark.parametrize(
    ("given", "key", "value"),
    [
        pytest.param(declare("cpu,queue"), "metrics", "cpu,queue", id="listed-not-declared"),
        pytest.param(declare("cpu", queue="gauge total 5 q"), "metric.queue", "gauge total 5 q",
                     id="declared-not-listed"),
        pytest.param(declare("cpu", Queue="gauge total 5 q"), "metric.Queue", "gauge total 5 q",
                     id="upper-case-name"),
        pytest.param(declare("memory", memory="gauge per-pod 5 q"), "metric.memory",
                     "gauge per-pod 5 q", id="built-in-name"),
        pytest.param(declare("q", q="gauge per-pod q"), "metric.q", "gauge per-pod q",
                     id="missing-target"),
        pytest.param(declare("q", q="gauge per-pod 5e3 q"), "metric.q", "gauge per-pod 5e3 q",
                     id="exponent-target"),
        pytest.param(declare("q", q=""), "metric.q", "", id="empty"),
        pytest.param({**declare("a,b,c,d,e,f,g,h,i"), **{PREFIX + f"metric.{n}": "gauge per-pod 1 x"
                      for n in "abcdefghi"}}, "metric.i", "gauge per-pod 1 x", id="more-than-eight"),
    ],
)  # fmt: skip
def test_a_bad_declaration_names_key_and_value(given: dict[str, str], key: str, value: str) -> None:
    with pytest.raises(AnnotationError) as refused:
        parse_annotations(given)
    assert refused.value.key == PREFIX + key
    assert refused.value.value == value
