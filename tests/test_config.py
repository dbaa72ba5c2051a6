"""Annotation parsing (`autoscaler.config.parse_annotations`).

Covers: opting in and out; every key's default; valid values of every key; and named bad-annotation
cases (non-numeric, negative, min > max, unknown mode or metric, absurd values, empty strings, wrong
case, unknown keys, injection through the request selector), each reported with the key and the
value it names.
"""

from __future__ import annotations

import pytest

from autoscaler.config import PREFIX, AnnotationError, parse_annotations
from autoscaler.metrics import MetricKind
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
