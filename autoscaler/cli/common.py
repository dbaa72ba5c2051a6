"""What the subcommands share: argparse types that reject bad input with one line, the scenario and
Prometheus flags, and the progress bar."""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO, TypeVar

from autoscaler.metrics import MetricKind
from autoscaler.simulate.scenario import Scenario, default_scenario
from autoscaler.simulate.trace import Trace
from autoscaler.timefmt import parse_duration

if TYPE_CHECKING:
    from autoscaler.sources.prometheus import PrometheusSettings

__all__ = [
    "EXIT_USAGE",
    "PROG",
    "Parser",
    "UsageError",
    "add_prometheus_flags",
    "add_scenario_flags",
    "boolean",
    "duration",
    "number",
    "progress_bar",
    "prometheus_settings",
    "scenario_of",
    "whole",
    "writable",
]

T = TypeVar("T")
PROG = "predictive-autoscaler"
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input from the user: reported as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def checked(
    convert: Callable[[str], T], noun: str, kind: str, test: Callable[[T], bool]
) -> Callable[[str], T]:
    """An argparse type: `convert`, then `test`; argparse prefixes the flag to our message."""

    def parse(text: str) -> T:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if not test(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind}")
        return value

    return parse


def number(kind: str, test: Callable[[float], bool]) -> Callable[[str], float]:
    return checked(float, "a number", kind, lambda v: math.isfinite(v) and test(v))


def whole(kind: str, test: Callable[[int], bool]) -> Callable[[str], int]:
    return checked(int, "a whole number", kind, test)


fraction = number("in (0, 1]", lambda v: 0 < v <= 1)
positive = number("a positive number", lambda v: v > 0)
non_negative_days = number("a non-negative number of days", lambda v: v >= 0)
seconds = whole("a non-negative multiple of 15 seconds", lambda v: v >= 0 and v % 15 == 0)
replicas = whole("a replica count >= 1", lambda v: v >= 1)


def duration(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def boolean(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no", ""):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not true or false")


DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def step(text: str) -> int:
    seconds = duration(text).total_seconds()
    if seconds != int(seconds) or not 1 <= seconds <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds in 1s..1h")
    return int(seconds)


def rate_window(text: str) -> str:
    seconds = duration(text).total_seconds()
    if seconds != int(seconds) or seconds < 2:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds, 2s or more")
    return f"{int(seconds)}s"


def add_scenario_flags(parser: argparse._ActionsContainer) -> None:
    """The simulated world's knobs, each defaulting to BENCHMARK.md's value."""
    parser.add_argument(
        "--startup-delay",
        type=seconds,
        metavar="S",
        help="seconds from pod creation to ready (default 120)",
    )
    parser.add_argument(
        "--target-utilization",
        type=fraction,
        metavar="U",
        help="target utilization of a pod's capacity (default 0.7)",
    )
    parser.add_argument(
        "--capacity",
        type=positive,
        metavar="C",
        help="load units/s one pod serves at 100 %% (default: p99 demand / 20)",
    )
    parser.add_argument("--min-replicas", type=replicas, metavar="N", help="default 1")
    parser.add_argument("--max-replicas", type=replicas, metavar="N", help="default 200")
    parser.add_argument(
        "--warmup-days",
        type=non_negative_days,
        metavar="D",
        help="unscored history at the start (default 2)",
    )


def add_prometheus_flags(add: Callable[..., Any], *, required: bool) -> None:
    """Where Prometheus is and how to reach it: the same flags for `run` and `backtest`."""
    add("--prometheus-url", required=required, help="e.g. http://prometheus.monitoring:9090")
    add("--prometheus-token-file", type=Path, help="bearer token file, re-read when it changes")
    add("--prometheus-ca-file", type=Path, help="CA bundle for an https Prometheus")
    add(
        "--prometheus-insecure-skip-verify",
        type=boolean,
        default=False,
        help="do not verify Prometheus' certificate (true/false)",
    )
    add(
        "--requests-metric",
        default="http_requests_total",
        help="request counter for targets that name none (default http_requests_total)",
    )
    add(
        "--prometheus-step",
        type=step,
        default=60,
        help="resolution of the load read from Prometheus, at least the scrape interval (default 60s)",
    )
    add(
        "--prometheus-rate-window",
        type=rate_window,
        default="2m",
        help="window of rate() over counters, at least two scrape intervals (default 2m)",
    )


def prometheus_settings(args: argparse.Namespace) -> PrometheusSettings:
    from autoscaler.sources.prometheus import PrometheusSettings

    for flag, path in (
        ("--prometheus-token-file", args.prometheus_token_file),
        ("--prometheus-ca-file", args.prometheus_ca_file),
    ):
        if path is not None and not path.is_file():
            raise UsageError(f"{flag} {path}: no such file")
    try:
        return PrometheusSettings(
            url=args.prometheus_url,
            bearer_token_file=args.prometheus_token_file,
            ca_file=args.prometheus_ca_file,
            insecure_skip_verify=args.prometheus_insecure_skip_verify,
            default_requests_metric=args.requests_metric,
            step_s=args.prometheus_step,
            rate_window=args.prometheus_rate_window,
        )
    except ValueError as exc:
        raise UsageError(f"--prometheus-url/--requests-metric: {exc}") from None


class ProgressBar:
    """A one-line bar on a terminal; silent when stderr is a file or a pipe."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._last = ""

    def __call__(self, label: str, fraction: float) -> None:
        filled = int(fraction * 30)
        line = f"\r{label:<22} [{'#' * filled}{'.' * (30 - filled)}] {fraction:4.0%}"
        if line != self._last:
            self._stream.write(line)
            self._stream.flush()
            self._last = line

    def close(self) -> None:
        if self._last:
            self._stream.write("\r" + " " * len(self._last) + "\r")
            self._stream.flush()


@contextmanager
def progress_bar() -> Iterator[ProgressBar | None]:
    """A bar on stderr while the block runs, if stderr is a terminal."""
    bar = ProgressBar(sys.stderr) if sys.stderr.isatty() else None
    try:
        yield bar
    finally:
        if bar is not None:
            bar.close()


def writable(path: Path, flag: str) -> Path:
    if path.exists() and path.is_dir():
        raise UsageError(f"{flag} {path}: is a directory")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{flag} {path}: directory {parent} does not exist")
    return path


def scenario_of(args: argparse.Namespace, trace: Trace, kind: MetricKind) -> Scenario:
    """The scenario the `add_scenario_flags` flags describe, BENCHMARK.md's defaults elsewhere."""
    return default_scenario(
        trace,
        kind,
        capacity=args.capacity,
        target_utilization=args.target_utilization,
        startup_delay_s=args.startup_delay,
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
        warmup_s=None if args.warmup_days is None else round(args.warmup_days * 86_400),
    )
