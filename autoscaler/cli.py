"""`predictive-autoscaler` command line. Bad input exits with status 2 and one line naming the flag,
file or line at fault; no traceback."""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO, TypeVar

from autoscaler.backtest import parse_duration
from autoscaler.model import MetricKind
from autoscaler.simulate.engine import POLICIES
from autoscaler.simulate.scenario import Scenario, ScenarioError, default_scenario
from autoscaler.simulate.trace import Trace, TraceError, load_bundled_trace, load_trace
from forecasting import ForecastError, ModelName, parse_model_names

if TYPE_CHECKING:
    from autoscaler.prometheus import PrometheusSettings

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


_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


def _target(text: str) -> tuple[str, str]:
    namespace, slash, name = text.partition("/")
    if not slash or not _DNS_LABEL.fullmatch(namespace) or not _DNS_SUBDOMAIN.fullmatch(name):
        raise argparse.ArgumentTypeError(f"{text!r} is not NAMESPACE/DEPLOYMENT")
    return namespace, name


def _instant(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time or seconds since the epoch"
        ) from None
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()


def _add_scenario_flags(parser: argparse._ActionsContainer) -> None:
    """The simulated world's knobs, each defaulting to BENCHMARK.md's value."""
    parser.add_argument(
        "--startup-delay",
        type=_seconds,
        metavar="S",
        help="seconds from pod creation to ready (default 120)",
    )
    parser.add_argument(
        "--target-utilization",
        type=_fraction,
        metavar="U",
        help="target utilization of a pod's capacity (default 0.7)",
    )
    parser.add_argument(
        "--capacity",
        type=_positive,
        metavar="C",
        help="load units/s one pod serves at 100 %% (default: p99 demand / 20)",
    )
    parser.add_argument("--min-replicas", type=_replicas, metavar="N", help="default 1")
    parser.add_argument("--max-replicas", type=_replicas, metavar="N", help="default 200")
    parser.add_argument(
        "--warmup-days",
        type=_non_negative_days,
        metavar="D",
        help="unscored history at the start (default 2)",
    )


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
    _add_scenario_flags(sim)
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
        help="write actuals against each model's forecasts with the interval band (with "
        "--prometheus-url: the simulation there and the forecasts in OUT-forecast.png)",
    )
    history = bt.add_argument_group(
        "on the cluster's own history",
        "With --prometheus-url and --target, the load Prometheus holds for one Deployment is "
        "the trace: forecast accuracy, then what hpa, predictive and oracle would have done with "
        "that load in the simulator.",
    )
    _add_prometheus_flags(history.add_argument, required=False)
    history.add_argument(
        "--target", type=_target, metavar="NAMESPACE/DEPLOYMENT", help="the Deployment to replay"
    )
    history.add_argument(
        "--days",
        type=_number("a positive number of days", lambda v: v > 0),
        default=7.0,
        help="how much history to read (default 7)",
    )
    history.add_argument(
        "--end",
        type=_instant,
        metavar="TIME",
        help="end of the window, ISO 8601 or seconds since the epoch (default: now)",
    )
    history.add_argument(
        "--metric",
        choices=[k.value for k in (MetricKind.REQUESTS, MetricKind.CPU)],
        help="which load to replay (default: requests when Prometheus has them, else cpu)",
    )
    _add_scenario_flags(history)
    _add_run(commands)
    return parser


ENV_PREFIX = "PREDICTIVE_AUTOSCALER_"


def _env(flag: str) -> str:
    return ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()


def _interval(text: str) -> float:
    seconds = _duration(text).total_seconds()
    if not 1 <= seconds <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r} is not between 1s and 1h")
    return seconds


def _boolean(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no", ""):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not true or false")


def _namespaces(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    for name in names:
        if not _DNS_LABEL.fullmatch(name):
            raise argparse.ArgumentTypeError(f"{name!r} is not a namespace name")
    return names


_port = _whole("a port number (0 turns the endpoint off)", lambda v: 0 <= v <= 65535)
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def _step(text: str) -> int:
    seconds = _duration(text).total_seconds()
    if seconds != int(seconds) or not 1 <= seconds <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds in 1s..1h")
    return int(seconds)


def _rate_window(text: str) -> str:
    seconds = _duration(text).total_seconds()
    if seconds != int(seconds) or seconds < 2:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds, 2s or more")
    return f"{int(seconds)}s"


def _add_prometheus_flags(add: Callable[..., Any], *, required: bool) -> None:
    """Where Prometheus is and how to reach it: the same flags for `run` and `backtest`."""
    add("--prometheus-url", required=required, help="e.g. http://prometheus.monitoring:9090")
    add("--prometheus-token-file", type=Path, help="bearer token file, re-read when it changes")
    add("--prometheus-ca-file", type=Path, help="CA bundle for an https Prometheus")
    add(
        "--prometheus-insecure-skip-verify",
        type=_boolean,
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
        type=_step,
        default=60,
        help="resolution of the load read from Prometheus, at least the scrape interval (default 60s)",
    )
    add(
        "--prometheus-rate-window",
        type=_rate_window,
        default="2m",
        help="window of rate() over counters, at least two scrape intervals (default 2m)",
    )


def _add_run(commands: argparse._SubParsersAction[_Parser]) -> None:
    run = commands.add_parser(
        "run",
        help="run the controller against a cluster",
        description=(
            "Scale opted-in Deployments ahead of their forecast load. Every flag can also be set "
            f"in the environment as {ENV_PREFIX}<FLAG> (e.g. {ENV_PREFIX}PROMETHEUS_URL); a flag "
            "on the command line wins."
        ),
    )

    def add(flag: str, **kwargs: Any) -> None:
        env = os.environ.get(_env(flag))
        if env is not None:
            kwargs["default"] = env
            kwargs.pop("required", None)
        kwargs["help"] = f"{kwargs.get('help', '')} [env {_env(flag)}]"
        run.add_argument(flag, **kwargs)

    add("--kubeconfig", type=Path, help="kubeconfig file (default: in-cluster, else ~/.kube/config)")
    add("--namespaces", type=_namespaces, default=(), help="comma-separated namespaces (default: all)")
    add("--interval", type=_interval, default=30.0, help="time between ticks, e.g. 30s (default 30s)")
    _add_prometheus_flags(add, required=True)
    add("--dry-run", type=_boolean, nargs="?", const=True, default=False, help="patch nothing")
    add(
        "--metrics-port",
        type=_port,
        default=8080,
        help="port of /metrics, /healthz and /readyz (default 8080; 0 turns them off)",
    )
    add(
        "--leader-elect",
        type=_boolean,
        nargs="?",
        const=True,
        default=False,
        help="act only while holding the Lease (run two or more replicas)",
    )
    add(
        "--lease-namespace",
        default=os.environ.get("POD_NAMESPACE", "default"),
        help="namespace of the Lease (default: $POD_NAMESPACE, else default)",
    )
    add("--lease-name", default="predictive-autoscaler", help="default predictive-autoscaler")
    add("--lease-duration", type=_interval, default=15.0, help="default 15s")
    add("--renew-deadline", type=_interval, default=10.0, help="default 10s")
    add("--retry-period", type=_interval, default=2.0, help="default 2s")
    add("--identity", help="this replica's name in the Lease (default: host name and pid)")
    add(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default="info",
        help="default info",
    )
    add(
        "--log-format",
        choices=["json", "text"],
        default="json",
        help="json: one JSON object a line (default); text: readable lines for a terminal",
    )


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


def _scenario(args: argparse.Namespace, trace: Trace, kind: MetricKind) -> Scenario:
    """The scenario the `_add_scenario_flags` flags describe, BENCHMARK.md's defaults elsewhere."""
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


def _simulate(args: argparse.Namespace) -> int:
    from autoscaler.simulate.report import to_json, to_text
    from autoscaler.simulate.study import run_study

    for flag, path in (("--timeline", args.timeline), ("--plot", args.plot)):
        if path is not None:
            _writable(path, flag)
    trace: Trace = load_bundled_trace() if args.trace is None else load_trace(args.trace)
    scenario = _scenario(args, trace, MetricKind(args.kind))
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


_HISTORY_ONLY = (
    "target", "end", "metric", "prometheus_token_file", "prometheus_ca_file", "startup_delay",
    "target_utilization", "capacity", "min_replicas", "max_replicas", "warmup_days",
)  # fmt: skip


def _backtest(args: argparse.Namespace) -> int:
    from autoscaler.backtest import backtest_trace, to_json, to_text, write_plot

    if args.plot is not None:
        _writable(args.plot, "--plot")
    if args.prometheus_url is not None:
        return _backtest_history(args)
    for name in _HISTORY_ONLY:
        if getattr(args, name) is not None:
            raise UsageError(f"--{name.replace('_', '-')} needs --prometheus-url")
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


def _backtest_history(args: argparse.Namespace) -> int:
    import time

    from autoscaler.history_backtest import (
        HistoryError,
        forecast_plot_path,
        load_history,
        run_report,
        to_json,
        to_text,
        write_plots,
    )
    from autoscaler.model import TargetRef
    from autoscaler.prometheus import PrometheusError, PrometheusSource
    from autoscaler.promql import SelectorError, parse_request_selector

    if args.trace is not None:
        raise UsageError("--trace and --prometheus-url exclude each other")
    if args.target is None:
        raise UsageError("--prometheus-url needs --target NAMESPACE/DEPLOYMENT")
    settings = _prometheus_settings(args)
    try:
        selector = parse_request_selector(args.requests_metric)
    except SelectorError as exc:
        raise UsageError(f"--requests-metric: {exc}") from None
    end = time.time() if args.end is None else args.end
    ref = TargetRef(*args.target)
    source = PrometheusSource(settings)
    try:
        load = load_history(
            source,
            ref,
            end - args.days * 86_400,
            end,
            kind=None if args.metric is None else MetricKind(args.metric),
            selector=selector,
        )
    except PrometheusError as exc:
        raise UsageError(f"Prometheus at {settings.url}: {exc}") from None
    except HistoryError as exc:
        raise UsageError(str(exc)) from None
    finally:
        source.close()
    scenario = _scenario(args, load.trace, load.kind)
    bar = _ProgressBar(sys.stderr) if sys.stderr.isatty() else None
    try:
        report = run_report(load, args.model, args.horizon, args.level, scenario, bar)
    except ForecastError as exc:
        raise UsageError(f"{load.trace.name}: {exc}") from None
    finally:
        if bar is not None:
            bar.close()
    if args.json:
        print(json.dumps(to_json(report), indent=2))
    else:
        print(to_text(report), end="")
    if args.plot is not None:
        write_plots(report, args.plot)
        if not args.json:
            print(f"plots written to {args.plot} and {forecast_plot_path(args.plot)}")
    return 0


def _prometheus_settings(args: argparse.Namespace) -> PrometheusSettings:
    from autoscaler.prometheus import PrometheusSettings

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


def _run(args: argparse.Namespace) -> int:
    import signal
    import threading

    from autoscaler.leader import LeaseSettings
    from autoscaler.logs import LogFormat, configure_logging
    from autoscaler.runner import RunSettings, default_identity, run_controller

    if args.kubeconfig is not None and not args.kubeconfig.is_file():
        raise UsageError(f"--kubeconfig {args.kubeconfig}: no such file")
    prometheus = _prometheus_settings(args)
    try:
        lease = LeaseSettings(
            namespace=args.lease_namespace,
            name=args.lease_name,
            lease_duration_s=args.lease_duration,
            renew_deadline_s=args.renew_deadline,
            retry_period_s=args.retry_period,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    settings = RunSettings(
        kubeconfig=args.kubeconfig,
        namespaces=tuple(args.namespaces),
        interval_s=args.interval,
        prometheus=prometheus,
        dry_run=args.dry_run,
        metrics_port=args.metrics_port or None,
        leader_elect=args.leader_elect,
        lease=lease,
        identity=args.identity or default_identity(),
    )
    configure_logging(args.log_level, LogFormat(args.log_format))
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        return run_controller(settings, stop)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "simulate":
            return _simulate(args)
        if args.command == "backtest":
            return _backtest(args)
        if args.command == "run":
            return _run(args)
    except (TraceError, ScenarioError, UsageError) as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    parser.error(f"unknown command {args.command!r}")
