"""What the subcommands share: argparse types that reject bad input with one line, switches, the
scenario and Prometheus flags, the version, and progress (bars on a terminal, lines elsewhere)."""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable, Iterator, Sequence
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
    "EXIT_FAILURE",
    "EXIT_USAGE",
    "LOG_LEVELS",
    "PROG",
    "Parser",
    "Progress",
    "ProgressBars",
    "ProgressLines",
    "Switch",
    "UsageError",
    "add_prometheus_flags",
    "add_scenario_flags",
    "add_version_flag",
    "boolean",
    "command_logging",
    "drawable",
    "duration",
    "number",
    "progress_bar",
    "prometheus_settings",
    "scenario_of",
    "version",
    "whole",
    "writable",
]

T = TypeVar("T")
PROG = "predictive-autoscaler"
EXIT_USAGE = 2
# Not the input's fault (Prometheus down, slow or failing): the same command may work later.
EXIT_FAILURE = 1


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


class Switch(argparse.Action):
    """A flag that takes no value: given, it is true. Its default may be text (`run` takes defaults
    from the environment, `PREDICTIVE_AUTOSCALER_DRY_RUN=true`), which argparse reads with `boolean`
    only when the flag is absent, so a bad value is reported as any bad flag is."""

    def __init__(
        self,
        option_strings: Sequence[str],
        dest: str,
        default: bool | str = False,
        required: bool = False,
        help: str | None = None,
    ) -> None:
        super().__init__(
            option_strings, dest, nargs=0, default=default, type=boolean, required=required, help=help
        )

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, True)


def version() -> str:
    """`predictive-autoscaler 0.1.0`: the version of the installed package."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return f"{PROG} {installed(PROG)}"
    except PackageNotFoundError:
        # Run from a source tree that was never installed: there is no version to read.
        return f"{PROG} (not installed: no version)"


def add_version_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action="version", version=version(), help="print the version")


LOG_LEVELS = ("debug", "info", "warning", "error")


@contextmanager
def command_logging(level: str) -> Iterator[None]:
    """Readable log lines on stderr at `level` while a one-shot command runs; the logging set up
    before (a caller's, a test runner's) is back afterwards."""
    import logging

    from autoscaler.observability.logs import LogFormat, configure_logging

    root = logging.getLogger()
    handlers, level_before = root.handlers[:], root.level
    configure_logging(level, LogFormat.TEXT)
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level_before)


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
        action=Switch,
        help="do not verify Prometheus' certificate",
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


Progress = Callable[[str, float], None]
"""Told (what is running, the fraction of it done): the callback the library layers report to."""

# Off a terminal, a stage gets a line each time it passes another PLAIN_STEP_PERCENT of its work.
PLAIN_STEP_PERCENT = 10


class ProgressLines:
    """Progress as plain lines, for a stream that is not a terminal (a CI log, a file): one line
    `<label>: <n>%` each time a stage reaches another multiple of 10 % (up to its final `100%`),
    nothing at 0 %. What is written depends only on the fractions reported, never on the clock, and
    nothing is written before a stage has done some work, so a command that fails on its input still
    prints one line."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._label: str | None = None
        self._shown = 0

    def __call__(self, label: str, fraction: float) -> None:
        if label != self._label:
            self._label, self._shown = label, 0
        # Rounded first: 0.3 * 100 is 29.999…, which would hold the 30 % line back.
        percent = math.floor(round(min(max(fraction, 0.0), 1.0) * 100, 6))
        reached = percent - percent % PLAIN_STEP_PERCENT
        if reached > self._shown:
            self._shown = reached
            self._stream.write(f"{label}: {reached}%\n")
            self._stream.flush()

    def close(self) -> None:
        """Nothing to clear: every line is complete when written."""


class ProgressBars:
    """A live bar on a terminal (rich): the running stage, with the time it has taken. A stage that
    another follows is hidden (a sweep runs dozens, more rows than a terminal has); all is cleared
    when closed, so that what the command prints next starts on a clean screen."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, TaskID, TaskProgressColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Live

        self._live = Live(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            console=Console(file=stream),
            transient=True,
        )
        self._tasks: dict[str, TaskID] = {}
        self._live.start()

    def __call__(self, label: str, fraction: float) -> None:
        task = self._tasks.get(label)
        if task is None:
            for done in self._tasks.values():
                self._live.update(done, visible=False)
            task = self._tasks[label] = self._live.add_task(label, total=1.0)
        self._live.update(task, completed=min(max(fraction, 0.0), 1.0))

    def close(self) -> None:
        self._live.stop()


@contextmanager
def progress_bar() -> Iterator[ProgressLines | ProgressBars]:
    """Progress on stderr while the block runs: live bars on a terminal, plain lines elsewhere."""
    stream = sys.stderr
    bar = ProgressBars(stream) if stream.isatty() else ProgressLines(stream)
    try:
        yield bar
    finally:
        bar.close()


def drawable(path: Path) -> Path:
    """`--plot PATH`, checked before minutes of work: a writable place, and matplotlib (the `plot`
    extra, which the controller's image leaves out) installed."""
    from autoscaler.simulate.plot import PlottingUnavailable, require_plotting

    writable(path, "--plot")
    try:
        require_plotting()
    except PlottingUnavailable as exc:
        raise UsageError(f"--plot: {exc}") from None
    return path


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
