"""Annotations on a Deployment → a validated, typed configuration, in one pure function.

A Deployment opts in with `predictive-autoscaler.io/enabled: "true"`; every other key under the prefix
tunes it (the README's table lists them with their defaults). Values are parsed strictly: booleans are
`true`/`false` in lower case, numbers are plain decimals in a sane range, lists are comma-separated
names. The first invalid key stops parsing with an `AnnotationError` naming the key and the value, and
the caller leaves the Deployment exactly as it is: a typo must never be read as "use the default",
which could scale a service the user meant to protect. Unknown keys under the prefix are errors for
the same reason (`min-replica` is not `min-replicas`).

A workload declares a metric of its own with `metric.<name>`, whose value is
`<gauge|counter> <per-pod|total> <target per pod> <series selector>`, and lists `<name>` in `metrics`
like a built-in kind: `gauge per-pod 3 agent_inflight_requests` scales on in-flight requests, three
per pod; `gauge total 20 queue_depth{queue="tasks"}` on a queue's depth, twenty tasks per pod.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from autoscaler.metrics import METRICS, MetricKind, MetricSpec, Scope, Signal, custom_metric
from autoscaler.model import Bounds, ScaleMode, SelectPolicy, TargetConfig
from autoscaler.patches import STATUS_KEY
from autoscaler.selectors import SelectorError, SeriesSelector, parse_selector

__all__ = [
    "ANNOTATION_DEFAULTS",
    "PREFIX",
    "STATUS_KEY",
    "AnnotationError",
    "Settings",
    "parse_annotations",
]

PREFIX = "predictive-autoscaler.io/"

T = TypeVar("T")


class AnnotationError(ValueError):
    """An annotation whose value cannot be used; the message names the key and the value."""

    def __init__(self, key: str, value: str, problem: str) -> None:
        super().__init__(f"annotation {key}={value!r}: {problem}")
        self.key = key
        self.value = value
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the annotations of one opted-in Deployment say."""

    mode: ScaleMode
    dry_run: bool
    config: TargetConfig


# Key (without prefix) → default, as documented in the README.
ANNOTATION_DEFAULTS: dict[str, str] = {
    "enabled": "false",
    "mode": "replicas",
    "dry-run": "false",
    "metrics": "cpu",
    "target-utilization": "70",
    **{
        spec.per_pod_annotation: f"(required with the {kind.value} metric)"
        for kind, spec in METRICS.items()
        if spec.per_pod_annotation is not None
    },
    "min-replicas": "1",
    "max-replicas": "100",
    "startup-seconds": "(measured from pod readiness)",
    "confidence": "50",
    "scale-down-stabilization-seconds": "300",
    "scale-up-tolerance": "10",
    "scale-down-tolerance": "10",
    "scale-up-select-policy": "Max",
    "scale-down-select-policy": "Max",
    **{
        spec.selector_annotation: f"(the controller's --{spec.selector_annotation})"
        for spec in METRICS.values()
        if spec.selector_annotation is not None
    },
}

# At most 12 digits before and 6 after the point: enough for any intent, and never a value whose
# conversion or arithmetic overflows.
_DECIMAL = re.compile(r"[0-9]{1,12}(\.[0-9]{1,6})?")
_WHOLE = re.compile(r"[0-9]{1,12}")
# A declared metric's name: short, lower case, and so also a valid annotation key and label value.
_CUSTOM_NAME = re.compile(r"[a-z][a-z0-9_-]{0,30}")
CUSTOM_PREFIX = "metric."
# More than this many declarations on one workload is not a configuration anybody means.
MAX_CUSTOM_METRICS = 8
# Beyond these a value is a typo, not an intent (a Deployment of a million pods, a day-long start-up).
MAX_REPLICAS_LIMIT = 10_000
MAX_SECONDS = 3_600.0
# A per-pod target outside this range is a unit mistake (requests per hour, per millisecond), and
# load ÷ target must stay a count of pods that a float and a Deployment can hold.
MIN_PER_POD = 0.001
MAX_PER_POD = 1_000_000.0


class _Reader:
    def __init__(self, annotations: Mapping[str, str]) -> None:
        self._values = {k[len(PREFIX) :]: v for k, v in annotations.items() if k.startswith(PREFIX)}

    def raw(self, name: str) -> str | None:
        return self._values.get(name)

    def unknown(self) -> list[str]:
        known = set(ANNOTATION_DEFAULTS) | {STATUS_KEY[len(PREFIX) :]}
        return sorted(k for k in self._values if k not in known and not k.startswith(CUSTOM_PREFIX))

    def declared(self) -> list[str]:
        """The keys declaring metrics of the workload's own, in a fixed order."""
        return sorted(k for k in self._values if k.startswith(CUSTOM_PREFIX))

    def get(self, name: str, parse: Callable[[str], T], default: T) -> T:
        text = self._values.get(name)
        if text is None:
            return default
        try:
            return parse(text)
        except ValueError as error:
            raise AnnotationError(PREFIX + name, text, str(error)) from None


def _boolean(text: str) -> bool:
    if text == "true":
        return True
    if text == "false":
        return False
    raise ValueError('must be "true" or "false"')


E = TypeVar("E", bound=Enum)


def _one_of(choices: type[E], what: str) -> Callable[[str], E]:
    def parse(text: str) -> E:
        for member in choices:
            if member.value == text:
                return member
        raise ValueError(f"unknown {what}; one of: {', '.join(m.value for m in choices)}")

    return parse


def _decimal(low: float, high: float, unit: str = "") -> Callable[[str], float]:
    def parse(text: str) -> float:
        if not _DECIMAL.fullmatch(text):
            raise ValueError("must be a plain decimal number (digits, at most 6 after the point)")
        value = float(text)
        if not (math.isfinite(value) and low <= value <= high):
            raise ValueError(f"must be between {low:g} and {high:g}{unit}")
        return value

    return parse


def _whole(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not _WHOLE.fullmatch(text):
            raise ValueError("must be a whole number (digits only)")
        value = int(text)
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return parse


_KIND_NAMES = ", ".join(kind.value for kind in METRICS)


def _metrics(declared: Mapping[MetricKind, MetricSpec]) -> Callable[[str], tuple[MetricKind, ...]]:
    def parse(text: str) -> tuple[MetricKind, ...]:
        names = text.split(",")
        if any(not name for name in names):
            raise ValueError(f"must be a comma-separated list of {_KIND_NAMES} or declared metrics")
        kinds: list[MetricKind] = []
        for name in names:
            kind = next((k for k in (*METRICS, *declared) if k.value == name), None)
            if kind is None:
                raise ValueError(
                    f"unknown metric {name!r}; one of: {_KIND_NAMES}, or one declared with"
                    f" {PREFIX}{CUSTOM_PREFIX}{name}"
                )
            if kind in kinds:
                raise ValueError(f"metric {name!r} is listed twice")
            kinds.append(kind)
        return tuple(kinds)

    return parse


def _declaration(key: str) -> Callable[[str], tuple[MetricSpec, float]]:
    """`<gauge|counter> <per-pod|total> <target per pod> <selector>` → the spec and the target."""
    name = key[len(CUSTOM_PREFIX) :]

    def parse(text: str) -> tuple[MetricSpec, float]:
        if not _CUSTOM_NAME.fullmatch(name):
            raise ValueError(
                "the metric's name (after metric.) must be 1-31 lower-case letters, digits, - or _,"
                " starting with a letter"
            )
        if MetricKind(name) in METRICS:
            raise ValueError(f"{name!r} is a built-in metric and cannot be declared")
        parts = text.split(maxsplit=3)
        if len(parts) != 4:
            raise ValueError(
                "must be '<gauge|counter> <per-pod|total> <target per pod> <series selector>',"
                " e.g. 'gauge per-pod 3 agent_inflight_requests'"
            )
        signal = _one_of(Signal, "signal")(parts[0])
        scope = _one_of(Scope, "scope")(parts[1])
        target = _decimal(MIN_PER_POD, MAX_PER_POD)(parts[2])
        series = _selector(parts[3])
        return custom_metric(name, signal, scope, series, PREFIX + key), target

    return parse


def _selector(text: str) -> SeriesSelector:
    try:
        return parse_selector(text)
    except SelectorError as error:
        raise ValueError(str(error)) from None


def parse_annotations(annotations: Mapping[str, str]) -> Settings | None:
    """The settings of a Deployment, None when it has not opted in.

    Raises `AnnotationError` for the first key whose value is unusable (checked in a fixed order, so
    the same annotations always report the same key)."""
    read = _Reader(annotations)
    if read.raw("enabled") is None or not read.get("enabled", _boolean, False):
        return None
    unknown = read.unknown()
    if unknown:
        key = unknown[0]
        raise AnnotationError(PREFIX + key, read.raw(key) or "", "unknown annotation")
    mode = read.get("mode", _one_of(ScaleMode, "mode"), ScaleMode(ANNOTATION_DEFAULTS["mode"]))
    dry_run = read.get("dry-run", _boolean, False)
    declared = read.declared()
    if len(declared) > MAX_CUSTOM_METRICS:
        key = declared[MAX_CUSTOM_METRICS]
        raise AnnotationError(
            PREFIX + key, read.raw(key) or "", f"at most {MAX_CUSTOM_METRICS} metrics may be declared"
        )
    custom: dict[MetricKind, MetricSpec] = {}
    custom_targets: dict[MetricKind, float] = {}
    for key in declared:
        parsed = read.get(key, _declaration(key), None)
        if parsed is not None:
            spec, amount = parsed
            custom[spec.kind] = spec
            custom_targets[spec.kind] = amount
    listed = _metrics(custom)
    metrics = read.get("metrics", listed, listed(ANNOTATION_DEFAULTS["metrics"]))
    for kind in custom:
        if kind not in metrics:
            key = CUSTOM_PREFIX + kind.value
            raise AnnotationError(
                PREFIX + key, read.raw(key) or "", f"is declared but not listed in {PREFIX}metrics"
            )
    utilization = read.get("target-utilization", _decimal(1, 100, " %"), 70.0)
    per_pod = {
        kind: read.get(spec.per_pod_annotation, _decimal(MIN_PER_POD, MAX_PER_POD), None)
        for kind, spec in METRICS.items()
        if spec.per_pod_annotation is not None
    }
    # Scale to zero is not offered: with no pod running there is no per-pod load to wake on, and the
    # controller never scales up on a missing metric.
    minimum = read.get("min-replicas", _whole(1, MAX_REPLICAS_LIMIT), 1)
    maximum = read.get("max-replicas", _whole(1, MAX_REPLICAS_LIMIT), 100)
    startup = read.get("startup-seconds", _decimal(0, MAX_SECONDS, " s"), None)
    confidence = read.get("confidence", _decimal(50, 99, " %"), 50.0)
    stabilization = read.get("scale-down-stabilization-seconds", _decimal(0, MAX_SECONDS, " s"), 300.0)
    up_tolerance = read.get("scale-up-tolerance", _decimal(0, 1000, " %"), 10.0)
    down_tolerance = read.get("scale-down-tolerance", _decimal(0, 99, " %"), 10.0)
    select = _one_of(SelectPolicy, "select policy")
    up_select = read.get("scale-up-select-policy", select, SelectPolicy.MAX)
    down_select = read.get("scale-down-select-policy", select, SelectPolicy.MAX)
    selectors = {
        kind: read.get(spec.selector_annotation, _selector, None)
        for kind, spec in METRICS.items()
        if spec.selector_annotation is not None
    }

    if minimum > maximum:
        raise AnnotationError(
            PREFIX + "min-replicas",
            read.raw("min-replicas") or str(minimum),
            f"is above max-replicas {maximum}",
        )
    for kind in metrics:
        needed = METRICS[kind].per_pod_annotation if kind in METRICS else None
        if needed is not None and per_pod.get(kind) is None:
            raise AnnotationError(
                PREFIX + "metrics",
                read.raw("metrics") or "",
                f"the {kind.value} metric needs {PREFIX}{needed}",
            )
    config = TargetConfig(
        metrics=metrics,
        bounds=Bounds(minimum, maximum),
        target_utilization=utilization / 100.0,
        per_pod={
            **{kind: amount for kind, amount in per_pod.items() if amount is not None},
            **custom_targets,
        },
        scale_down_stabilization_s=stabilization,
        scale_up_tolerance=up_tolerance / 100.0,
        scale_down_tolerance=down_tolerance / 100.0,
        scale_up_select=up_select,
        scale_down_select=down_select,
        startup_s=startup,
        confidence=confidence / 100.0,
        selectors={kind: chosen for kind, chosen in selectors.items() if chosen is not None},
        custom=custom,
    )
    return Settings(mode=mode, dry_run=dry_run, config=config)
