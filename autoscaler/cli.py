"""`predictive-autoscaler` command line. Bad input exits with status 2 and one line naming the flag,
file or line at fault; no traceback."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import NoReturn, TextIO, TypeVar

from autoscaler.backtest import parse_duration
from autoscaler.model import MetricKind
from autoscaler.simulate.engine import POLICIES
from autoscaler.simulate.scenario import ScenarioError, default_scenario
from autoscaler.simulate.trace import Trace, TraceError, load_bundled_trace, load_trace
from forecasting import ForecastError, ModelName, parse_model_names

__all__ = ["main"]

T = TypeVar("T")
PROG = "predictive-autoscaler"
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input from the user: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _checked(
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


def _number(kind: str, test: Callable[[float], bool]) -> Callable[[str], float]:
    return _checked(float, "a number", kind, lambda v: math.isfinite(v) and test(v))


def _whole(kind: str, test: Callable[[int], bool]) -> Callable[[str], int]:
    return _checked(int, "a whole number", kind, test)


_fraction = _number("in (0, 1]", lambda v: 0 < v <= 1)
_positive = _number("a positive number", lambda v: v > 0)
_non_negative_days = _number("a non-negative number of days", lambda v: v >= 0)
_seconds = _whole("a non-negative multiple of 15 seconds", lambda v: v >= 0 and v % 15 == 0)
_replicas = _whole("a replica count >= 1", lambda v: v >= 1)


_level = _number("in (0, 1)", lambda v: 0 < v < 1)


def _models(text: str) -> tuple[ModelName, ...]:
    try:
        return parse_model_names(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _duration(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _policies(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("no policy named")
    for name in names:
        if name not in POLICIES:
            raise argparse.ArgumentTypeError(f"unknown policy {name!r} (known: {', '.join(POLICIES)})")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"policy named twice in {text!r}")
    return names


def _sweep(text: str) -> list[float]:
    values = [_fraction(part.strip()) for part in text.split(",") if part.strip()]
    if not values:
        raise argparse.ArgumentTypeError("no target utilization given")
    return sorted(set(values))


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Predictive autoscaler for Kubernetes Deployments.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sim = commands.add_parser(
        "simulate",
        help="replay a traffic trace through the autoscaling policies and score them",
        description=(
            "Replay a trace (CSV timestamp,value; value = load units per step) on a simulated "
            "cluster and score each policy against a perfect-foresight oracle "
            "(definitions: README, 'Scores'). Without --trace, the bundled NASA July 1995 trace."
        ),
    )
    sim.add_argument("--trace", type=Path, help="trace CSV (default: the bundled NASA trace)")
    sim.add_argument(
        "--kind",
        choices=[k.value for k in (MetricKind.CPU, MetricKind.REQUESTS)],
        default=MetricKind.REQUESTS.value,
        help="cpu: observed load is capped at ready capacity; requests: it is not (default: requests)",
    )
    sim.add_argument(
        "--policy",
        type=_policies,
        default=list(POLICIES),
        help=f"comma-separated policies (default: {','.join(POLICIES)})",
    )
    sim.add_argument(
        "--startup-delay",
        type=_seconds,
        metavar="S",
        help="seconds from pod creation to ready (default 120)",
    )
    sim.add_argument(
        "--target-utilization",
        type=_fraction,
        metavar="U",
        help="target utilization of a pod's capacity (default 0.7)",
    )
    sim.add_argument(
        "--capacity",
        type=_positive,
        metavar="C",
        help="load units/s one pod serves at 100 %% (default: p99 demand / 20)",
    )
    sim.add_argument("--min-replicas", type=_replicas, metavar="N", help="default 1")
    sim.add_argument("--max-replicas", type=_replicas, metavar="N", help="default 200")
    sim.add_argument(
        "--warmup-days",
        type=_non_negative_days,
        metavar="D",
        help="unscored history at the start (default 2)",
    )
    sim.add_argument(
        "--sweep",
        type=_sweep,
        metavar="U,U,...",
        help="also run every policy at these target utilizations and report the "
        "cost at equal service level, e.g. 0.5,0.6,0.7,0.8,0.9",
    )
    sim.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    sim.add_argument(
        "--timeline", type=Path, metavar="OUT.csv", help="write one CSV row per simulated step"
    )
    sim.add_argument("--plot", type=Path, metavar="OUT.png", help="write a PNG of the run")

    bt = commands.add_parser(
        "backtest",
        help="score forecast models on a trace with rolling-origin backtests",
        description=(
            "Rolling-origin backtest of forecast models on a trace: MASE against 'same time "
            "yesterday', sMAPE and interval coverage. Without --trace, the bundled NASA trace."
        ),
    )
    bt.add_argument("--trace", type=Path, help="trace CSV (default: the bundled NASA trace)")
    bt.add_argument(
        "--model",
        type=_models,
        default=_models("arima,holt-winters,seasonal-naive,naive"),
        help="comma-separated models (default: arima,holt-winters,seasonal-naive,naive)",
    )
    bt.add_argument(
        "--horizon",
        type=_duration,
        default=_duration("15m"),
        help="how far ahead to score, e.g. 15m, 900s, 1h (default 15m)",
    )
    bt.add_argument(
        "--level", type=_level, default=0.8, help="prediction interval level in (0, 1) (default 0.8)"
    )
    bt.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    bt.add_argument(
        "--plot",
        type=Path,
        metavar="OUT.png",
        help="write actuals against each model's forecasts with the interval band",
    )
    return parser


class _ProgressBar:
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


def _writable(path: Path, flag: str) -> Path:
    if path.exists() and path.is_dir():
        raise UsageError(f"{flag} {path}: is a directory")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{flag} {path}: directory {parent} does not exist")
    return path


def _simulate(args: argparse.Namespace) -> int:
    from autoscaler.simulate.report import to_json, to_text
    from autoscaler.simulate.study import run_study

    for flag, path in (("--timeline", args.timeline), ("--plot", args.plot)):
        if path is not None:
            _writable(path, flag)
    trace: Trace = load_bundled_trace() if args.trace is None else load_trace(args.trace)
    scenario = default_scenario(
        trace,
        MetricKind(args.kind),
        capacity=args.capacity,
        target_utilization=args.target_utilization,
        startup_delay_s=args.startup_delay,
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
        warmup_s=None if args.warmup_days is None else round(args.warmup_days * 86_400),
    )
    bar = _ProgressBar(sys.stderr) if sys.stderr.isatty() else None
    try:
        study = run_study(trace, scenario, args.policy, args.sweep or (), progress=bar)
    finally:
        if bar is not None:
            bar.close()
    if args.json:
        print(json.dumps(to_json(study), indent=2))
    else:
        print(to_text(study), end="")
    if args.timeline is not None:
        from autoscaler.simulate.timeline import write_timeline

        write_timeline(study, args.timeline)
    if args.plot is not None:
        from autoscaler.simulate.plot import write_plot

        write_plot(study, args.plot)
    for flag, path in (("timeline", args.timeline), ("plot", args.plot)):
        if path is not None and not args.json:
            print(f"{flag} written to {path}")
    return 0


def _backtest(args: argparse.Namespace) -> int:
    from autoscaler.backtest import backtest_trace, to_json, to_text, write_plot

    if args.plot is not None:
        _writable(args.plot, "--plot")
    trace = load_bundled_trace() if args.trace is None else load_trace(args.trace)
    try:
        report = backtest_trace(trace, args.model, args.horizon, args.level)
    except ForecastError as exc:
        raise UsageError(f"trace {trace.name}: {exc}") from None
    if args.json:
        print(json.dumps(to_json(trace, report), indent=2))
    else:
        print(to_text(trace, report), end="")
    if args.plot is not None:
        write_plot(trace, report, args.plot)
        if not args.json:
            print(f"plot written to {args.plot}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "simulate":
            return _simulate(args)
        if args.command == "backtest":
            return _backtest(args)
    except (TraceError, ScenarioError, UsageError) as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    parser.error(f"unknown command {args.command!r}")
