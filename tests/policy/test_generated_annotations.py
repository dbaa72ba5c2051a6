"""Ten thousand generated annotation sets, through the parser and then through both policies and the
scale mode with a load: the parser's typed `AnnotationError` is the only exception anything may
raise, and whatever the parser accepts gives a decision within the bounds it set.

The sets are drawn from a seeded generator (the same ones every run): for each key a mix of valid
values, edge values, values just outside each range the parser enforces, and junk (spaces, case,
units, signs, exponents, very long digit strings). Loads, pod requests, replica counts and forecasts
range from nothing to far beyond any real cluster, so an arithmetic overflow anywhere shows here."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator

import pytest

from autoscaler.config import PREFIX, AnnotationError, Settings, parse_annotations
from autoscaler.metrics import MetricKind
from autoscaler.model import (
    ForecastQuality,
    Forecasts,
    HpaInfo,
    LoadForecast,
    LoadSnapshot,
    Sample,
    ScaleMode,
    Scaling,
    Target,
    TargetRef,
    WorkloadState,
)
from autoscaler.modes import MODES
from autoscaler.policy import DecisionHistory, HpaPolicy, Mode, PolicyInputs, PredictivePolicy
from autoscaler.policy.decision import Recommendation, ScaleEvent

SETS = 10_000
NOW = 5_000_000.0
REF = TargetRef("shop", "web")

JUNK = ["", " ", "abc", "-1", "+1", "1e3", "1E-3", "nan", "inf", "-inf", "0x10", "1_000", "１", "1 ",
        " 1", "1.", ".5", "1..2", "1,5", "true", "TRUE", "null", "9" * 40, "0." + "0" * 40 + "1",
        "9" * 5000, "1" * 13, "1.1234567", "0." + "0" * 320 + "1", "0." + "0" * 300 + "1"]  # fmt: skip
NUMBERS = ["0", "0.001", "0.0009", "0.5", "1", "2", "49.99", "50", "70", "99", "99.5", "100",
           "100.000001", "3599.999999", "3600", "3600.000001", "9999", "10000", "10001", "1000000",
           "1000000.000001", "999999999999", "999999999999.999999", "000001", "1.000000"]  # fmt: skip
# Per key: values inside what the parser accepts (edges included), then everything else is drawn
# from `NUMBERS` and `JUNK`, which hold values just outside each range.
VALID: dict[str, list[str]] = {
    "enabled": ["true"],
    "mode": ["replicas", "hpa"],
    "dry-run": ["true", "false"],
    "metrics": [
        "cpu",
        "memory",
        "requests",
        "cpu,memory",
        "cpu,requests",
        "cpu,memory,requests",
        "requests,cpu",
    ],
    "target-utilization": ["1", "49.99", "70", "99.5", "100", "000001", "1.000000"],
    "target-requests-per-pod": ["0.001", "0.5", "1", "2", "99.5", "1000000", "1000000.000000"],
    "min-replicas": ["1", "2", "50", "9999", "10000"],
    "max-replicas": ["1", "2", "100", "9999", "10000"],
    "startup-seconds": ["0", "0.001", "45", "3599.999999", "3600"],
    "confidence": ["50", "70", "99"],
    "scale-down-stabilization-seconds": ["0", "1", "300", "3600"],
    "scale-up-tolerance": ["0", "5", "10", "1000"],
    "scale-down-tolerance": ["0", "10", "99"],
    "scale-up-select-policy": ["Max", "Min", "Disabled"],
    "scale-down-select-policy": ["Max", "Min", "Disabled"],
    "requests-metric": [
        "http_requests_total",
        'http_requests_total{code!~"5.."}',
        "a:b_total",
        'x{job=~".*"}',
    ],
}
INVALID: dict[str, list[str]] = {
    "enabled": ["True", "yes", "1", ""],
    "mode": ["HPA", "replica", "", "both"],
    "scale-up-select-policy": ["max", "", "Maximum"],
    "scale-down-select-policy": ["min", "disabled", " Max"],
    "dry-run": ["False", "no"],
    "metrics": [" cpu , memory ", "cpu,", ",cpu", "cpu,cpu", "gpu", "CPU", "", "cpu;memory"],
    "requests-metric": ['x{namespace="other"}', "rate(x[5m])", "x or vector(1)", "x{", ""],
}
# Quantities a cluster may report, from a tiny request to far more than any node has.
AMOUNTS = [0.0, 1e-9, 1e-3, 0.5, 1.0, 3.0, 1e3, 1e9, 1e12, 1e15]


def annotation_sets(seed: int) -> Iterator[dict[str, str]]:
    draw = random.Random(seed)
    for _ in range(SETS):
        chosen: dict[str, str] = {}
        for key, valid in VALID.items():
            if key != "enabled" and draw.random() < 0.5:
                continue
            if draw.random() < 0.1:
                chosen[PREFIX + key] = draw.choice(INVALID.get(key, NUMBERS) + JUNK)
            else:
                chosen[PREFIX + key] = draw.choice(valid)
        if draw.random() < 0.01:
            chosen[PREFIX + "min-replica"] = "2"  # a typo of a known key
        yield chosen


def target_for(settings: Settings, draw: random.Random) -> Target:
    spec = draw.choice([0, 1, 2, 7, 100, 9_999, 10_000])
    ready = min(spec, draw.choice([0, 1, spec, spec // 2]))
    requests = {kind: draw.choice(AMOUNTS) for kind in (MetricKind.CPU, MetricKind.MEMORY)}
    state = WorkloadState(
        REF,
        spec,
        ready,
        pod_requests={kind: amount for kind, amount in requests.items() if amount > 0},
        rollout_in_progress=draw.random() < 0.1,
        measured_startup_s=draw.choice([None, 0.0, 45.0, 3600.0]),
    )
    hpa = None
    if settings.mode is ScaleMode.HPA:
        floor = min(settings.config.bounds.maximum, draw.choice([1, 2, 50]))
        hpa = HpaInfo("shop", "web", "7", floor, max(floor, draw.choice([1, 10, 10_000])), floor, False)
    config = MODES[settings.mode].configure(settings.config, hpa)
    return Target(state, config, Scaling(settings.mode, settings.dry_run, hpa, "42"))


def load_for(draw: random.Random) -> LoadSnapshot:
    def sample() -> Sample | None:
        if draw.random() < 0.2:
            return None
        return Sample(draw.choice(AMOUNTS), NOW - draw.choice([0.0, 30.0, 600.0]), 120.0)

    return LoadSnapshot.of(cpu=sample(), memory=sample(), requests=sample())


def forecasts_for(draw: random.Random) -> Forecasts:
    def one(kind: MetricKind) -> LoadForecast | None:
        if draw.random() < 0.3:
            return None
        uppers = tuple(draw.choice(AMOUNTS) for _ in range(4))
        quality = ForecastQuality(draw.choice([0, 48]), draw.choice([None, 0.5, 3.0]), 0.9)
        times = tuple(NOW - 200 + 300 * i for i in range(4))
        return LoadForecast(kind, NOW - 200, 300.0, times, uppers, uppers, 0.8, quality)

    return Forecasts.of(cpu=one(MetricKind.CPU), memory=one(MetricKind.MEMORY),
                        requests=one(MetricKind.REQUESTS))  # fmt: skip


def history_for(target: Target, draw: random.Random) -> DecisionHistory:
    spec = target.state.spec_replicas
    recs = tuple(Recommendation(NOW - 30 * i, draw.choice([1, spec, 10_000])) for i in (3, 2, 1))
    events = (ScaleEvent(NOW - 45, draw.choice([-5, 3, 10_000])),)
    return DecisionHistory(recs, events)


@pytest.mark.parametrize("seed", [19, 2026])
def test_generated_annotation_sets_raise_only_the_typed_error(seed: int) -> None:
    draw = random.Random(seed * 7919)
    refused = decided = 0
    policies = (HpaPolicy(), PredictivePolicy())
    for given in annotation_sets(seed):
        try:
            settings = parse_annotations(given)
        except AnnotationError as error:
            named = (error.key, error.value)
            refused += 1
            assert named in {(key, value) for key, value in given.items()}
            continue
        if settings is None:
            continue
        target = target_for(settings, draw)
        inputs = PolicyInputs(target, load_for(draw), history_for(target, draw), NOW,
                              forecasts_for(draw))  # fmt: skip
        for policy in policies:
            decision = policy.decide(inputs)
            bounds = target.config.bounds
            current = target.state.spec_replicas
            assert decision.replicas == current or bounds.minimum <= decision.replicas <= bounds.maximum
            if decision.mode is Mode.HOLD:
                assert decision.replicas >= current or current > bounds.maximum
            assert decision.load is None or math.isfinite(decision.load)
            decision.explain()
            setpoint = MODES[settings.mode].setpoint(decision, target)
            MODES[settings.mode].patch(setpoint, target)
            decided += 1
    # Both outcomes are exercised in earnest, not one by accident.
    assert refused > 2_000
    assert decided > 4_000
