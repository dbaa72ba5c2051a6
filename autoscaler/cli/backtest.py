"""`predictive-autoscaler backtest`: forecast accuracy on a trace, or on a Deployment's own history
in Prometheus with what each policy would have done with it."""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from autoscaler.cli.common import (
    DNS_LABEL,
    EXIT_FAILURE,
    LOG_LEVELS,
    PROG,
    Parser,
    UsageError,
    add_prometheus_flags,
    add_scenario_flags,
    command_logging,
    drawable,
    duration,
    number,
    progress_bar,
    prometheus_settings,
    scenario_of,
)
from autoscaler.metrics import MetricKind
from autoscaler.simulate.trace import load_bundled_trace, load_trace
from forecasting import ForecastError, ModelName, parse_model_names

if TYPE_CHECKING:
    from autoscaler.sources.prometheus import PrometheusError

__all__ = ["add_backtest", "run_backtest"]

log = logging.getLogger(__name__)

_level = number("in (0, 1)", lambda v: 0 < v < 1)


def _models(text: str) -> tuple[ModelName, ...]:
    try:
        return parse_model_names(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


def _target(text: str) -> tuple[str, str]:
    namespace, slash, name = text.partition("/")
    if not slash or not DNS_LABEL.fullmatch(namespace) or not _DNS_SUBDOMAIN.fullmatch(name):
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


def add_backtest(commands: argparse._SubParsersAction[Parser]) -> None:
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
        type=duration,
        default=duration("15m"),
        help="how far ahead to score, e.g. 15m, 900s, 1h (default 15m)",
    )
    bt.add_argument(
        "--level", type=_level, default=0.8, help="prediction interval level in (0, 1) (default 0.8)"
    )
    bt.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    bt.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default="warning",
        help="debug also logs the query behind a Prometheus error and its whole answer "
        "(default warning)",
    )
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
    add_prometheus_flags(history.add_argument, required=False)
    history.add_argument(
        "--target", type=_target, metavar="NAMESPACE/DEPLOYMENT", help="the Deployment to replay"
    )
    history.add_argument(
        "--days",
        type=number("a positive number of days", lambda v: v > 0),
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
    add_scenario_flags(history)


_HISTORY_ONLY = (
    "target", "end", "metric", "prometheus_token_file", "prometheus_ca_file", "startup_delay",
    "target_utilization", "capacity", "min_replicas", "max_replicas", "warmup_days",
)  # fmt: skip


def run_backtest(args: argparse.Namespace) -> int:
    with command_logging(args.log_level):
        return _backtest(args)


def _backtest(args: argparse.Namespace) -> int:
    from autoscaler.backtest import backtest_trace, to_json, to_text, write_plot

    if args.plot is not None:
        drawable(args.plot)
    if args.prometheus_url is not None:
        return _backtest_history(args)
    for name in _HISTORY_ONLY:
        if getattr(args, name) is not None:
            raise UsageError(f"--{name.replace('_', '-')} needs --prometheus-url")
    trace = load_bundled_trace() if args.trace is None else load_trace(args.trace)
    try:
        with progress_bar() as bar:
            report = backtest_trace(trace, args.model, args.horizon, args.level, bar)
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
    from autoscaler.selectors import SelectorError, parse_selector
    from autoscaler.sources.prometheus import PrometheusError, PrometheusSource

    if args.trace is not None:
        raise UsageError("--trace and --prometheus-url exclude each other")
    if args.target is None:
        raise UsageError("--prometheus-url needs --target NAMESPACE/DEPLOYMENT")
    settings = prometheus_settings(args)
    try:
        selector = parse_selector(args.requests_metric)
    except SelectorError as exc:
        raise UsageError(f"--requests-metric: {exc}") from None
    end = time.time() if args.end is None else args.end
    ref = TargetRef(*args.target)
    source = PrometheusSource(settings)
    reading = f"read {ref} from Prometheus"
    try:
        with progress_bar() as bar:
            # On a terminal the read shows as a bar of its own; off one its line comes only once
            # the window is known to be usable, so that a refused one is still reported in one line.
            bar(reading, 0.0)
            try:
                load = load_history(
                    source,
                    ref,
                    end - args.days * 86_400,
                    end,
                    kind=None if args.metric is None else MetricKind(args.metric),
                    selector=selector,
                )
            finally:
                source.close()
            scenario = scenario_of(args, load.trace, load.kind)
            bar(reading, 1.0)
            report = run_report(load, args.model, args.horizon, args.level, scenario, bar)
    except PrometheusError as exc:
        return _prometheus_failed(exc)
    except HistoryError as exc:
        raise UsageError(str(exc)) from None
    except ForecastError as exc:
        raise UsageError(f"{load.trace.name}: {exc}") from None
    if args.json:
        print(json.dumps(to_json(report), indent=2))
    else:
        print(to_text(report), end="")
    if args.plot is not None:
        write_plots(report, args.plot)
        if not args.json:
            print(f"plots written to {args.plot} and {forecast_plot_path(args.plot)}")
    return 0


def _prometheus_failed(exc: PrometheusError) -> int:
    """One line on stderr: what went wrong and what to check. The query and Prometheus' whole answer
    go to the debug log (`--log-level debug`). A query or credentials Prometheus refuses are the
    command's to fix (exit 2); Prometheus down, slow or failing may pass (exit 1)."""
    from autoscaler.sources.prometheus import (
        PrometheusRejected,
        PrometheusServerError,
        PrometheusTimeout,
        PrometheusUnreachable,
    )

    log.debug(
        "Prometheus query failed: %s",
        exc,
        extra={"error": type(exc).__name__, "query": exc.query, "answer": exc.answer},
    )
    hint = "--log-level debug shows the query and the whole answer"
    if isinstance(exc, PrometheusUnreachable):
        words = str(exc).lower()
        if "ssl" in words or "certificate" in words:
            hint = "check --prometheus-ca-file, or https/http in --prometheus-url"
        else:
            hint = "check --prometheus-url and that Prometheus is running"
    elif isinstance(exc, PrometheusTimeout):
        hint = "Prometheus is busy or the window is long: try fewer --days, or again later"
    elif isinstance(exc, PrometheusRejected):
        if exc.status in (401, 403):
            hint = "check --prometheus-token-file"
        elif exc.status == 404:
            hint = "check that --prometheus-url is Prometheus' own address, without a path"
        else:
            hint = f"check --requests-metric; {hint}"
    elif isinstance(exc, PrometheusServerError):
        hint = f"try again later; {hint}"
    line = f"{exc}; {hint}"
    if not exc.temporary:
        raise UsageError(line)
    print(f"{PROG} backtest: error: {line}", file=sys.stderr)
    return EXIT_FAILURE
