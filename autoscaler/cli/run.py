"""`predictive-autoscaler run`: the controller, configured by flags or their environment variables."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from autoscaler.cli.common import (
    DNS_LABEL,
    LOG_LEVELS,
    Parser,
    Switch,
    UsageError,
    add_prometheus_flags,
    duration,
    prometheus_settings,
    whole,
)

__all__ = ["add_run", "run_controller_command"]

ENV_PREFIX = "PREDICTIVE_AUTOSCALER_"


def env_name(flag: str) -> str:
    return ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()


def _interval(text: str) -> float:
    seconds = duration(text).total_seconds()
    if not 1 <= seconds <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r} is not between 1s and 1h")
    return seconds


def _namespaces(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    for name in names:
        if not DNS_LABEL.fullmatch(name):
            raise argparse.ArgumentTypeError(f"{name!r} is not a namespace name")
    return names


_port = whole("a port number (0 turns the endpoint off)", lambda v: 0 <= v <= 65535)
# Every replica reads every shard's Lease each retry period, so the count stays modest.
MAX_SHARDS = 64
_shards = whole(f"a number of shards from 1 to {MAX_SHARDS}", lambda v: 1 <= v <= MAX_SHARDS)


def add_run(commands: argparse._SubParsersAction[Parser]) -> None:
    run = commands.add_parser(
        "run",
        help="run the controller against a cluster",
        description=(
            "Scale opted-in Deployments and StatefulSets ahead of their forecast load. Every flag "
            "can also be set "
            f"in the environment as {ENV_PREFIX}<FLAG> (e.g. {ENV_PREFIX}PROMETHEUS_URL, "
            f"{ENV_PREFIX}DRY_RUN=true for a switch); a flag on the command line wins."
        ),
    )

    def add(flag: str, **kwargs: Any) -> None:
        env = os.environ.get(env_name(flag))
        if env is not None:
            kwargs["default"] = env
            kwargs.pop("required", None)
        kwargs["help"] = f"{kwargs.get('help', '')} [env {env_name(flag)}]"
        run.add_argument(flag, **kwargs)

    add("--kubeconfig", type=Path, help="kubeconfig file (default: in-cluster, else ~/.kube/config)")
    add("--namespaces", type=_namespaces, default=(), help="comma-separated namespaces (default: all)")
    add("--interval", type=_interval, default=30.0, help="time between ticks, e.g. 30s (default 30s)")
    add_prometheus_flags(add, required=True)
    add("--dry-run", action=Switch, help="patch nothing")
    add(
        "--metrics-port",
        type=_port,
        default=8080,
        help="port of /metrics, /healthz and /readyz (default 8080; 0 turns them off)",
    )
    add(
        "--leader-elect",
        action=Switch,
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
        "--shards",
        type=_shards,
        default=1,
        help=(
            "split the workloads into this many shards, one Lease each (<lease-name>-<i>), shared "
            "among the replicas; more than 1 turns on --leader-elect (default 1: one leader on "
            "<lease-name>)"
        ),
    )
    add(
        "--log-level",
        choices=LOG_LEVELS,
        default="info",
        help="default info",
    )
    add(
        "--log-format",
        choices=["json", "text"],
        default="json",
        help="json: one JSON object a line (default); text: readable lines for a terminal",
    )


def run_controller_command(args: argparse.Namespace) -> int:
    import signal
    import threading

    from autoscaler.actuation.leader import LeaseSettings
    from autoscaler.observability.logs import LogFormat, configure_logging
    from autoscaler.runner import RunSettings, default_identity, run_controller

    if args.kubeconfig is not None and not args.kubeconfig.is_file():
        raise UsageError(f"--kubeconfig {args.kubeconfig}: no such file")
    prometheus = prometheus_settings(args)
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
        leader_elect=args.leader_elect or args.shards > 1,
        lease=lease,
        identity=args.identity or default_identity(),
        shards=args.shards,
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
