"""What `predictive-autoscaler status` and the kubectl plugin `kubectl predictive` share: the flags,
reading the cluster (workloads, HPAs, and the controller's status annotation and Events; the rows
themselves are built by `autoscaler.overview`), printing, and `--watch`.

It lives outside `autoscaler.cli` so that the plugin starts without loading the simulator and the
forecasting models, which every other subcommand needs and this one does not (seconds at each
`kubectl predictive`).

All namespaces by default: the question is cluster-wide ("what does the autoscaler do?"), as the
controller itself watches every namespace unless told otherwise; `-n` narrows it. kubectl hands a
plugin none of its own flags, so the plugin takes `--kubeconfig`, `--context` and `-n` itself, and
reads `$KUBECONFIG` as kubectl does.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from autoscaler.kube import Kind, Kube, KubeError, Unavailable, connect
from autoscaler.model import TargetRef, WorkloadKind
from autoscaler.overview import Row, details, document, survey, table
from autoscaler.timefmt import parse_duration

__all__ = ["CommandError", "add_flags", "plugin_main", "run"]

PLUGIN = "kubectl predictive"
EXIT_USAGE = 2


class CommandError(Exception):
    """Bad input, or a cluster that cannot be read: one line, exit status 2 (as every subcommand)."""


class _Parser(argparse.ArgumentParser):
    """One line on bad flags, no usage dump, as `predictive-autoscaler` does."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


_KIND_NAMES = {
    "deployment": WorkloadKind.DEPLOYMENT,
    "deployments": WorkloadKind.DEPLOYMENT,
    "deploy": WorkloadKind.DEPLOYMENT,
    "statefulset": WorkloadKind.STATEFULSET,
    "statefulsets": WorkloadKind.STATEFULSET,
    "sts": WorkloadKind.STATEFULSET,
}
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_ERRNO = re.compile(r"\[Errno -?\d+\] [^'\")]+")


def _interval(text: str) -> float:
    try:
        seconds = parse_duration(text).total_seconds()
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if not 1 <= seconds <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r} is not between 1s and 1h")
    return seconds


def add_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "workload",
        nargs="?",
        metavar="WORKLOAD",
        help="one workload, with its Events: NAMESPACE/NAME (a Deployment), NAMESPACE/KIND/NAME "
        "(KIND: deployment or statefulset, also deploy, sts), or NAME / KIND/NAME with -n",
    )
    parser.add_argument("-n", "--namespace", help="only this namespace (default: all namespaces)")
    parser.add_argument(
        "-A", "--all-namespaces", action="store_true", help="every namespace (the default)"
    )
    parser.add_argument(
        "--kubeconfig", type=Path, help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)"
    )
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")
    parser.add_argument(
        "-o", "--output", choices=["wide", "json", "yaml"], help="wide: more columns; json, yaml"
    )
    parser.add_argument(
        "-w", "--watch", action="store_true", help="print again whenever something changes"
    )
    parser.add_argument(
        "--interval",
        type=_interval,
        default=5.0,
        help="how often --watch reads the cluster, e.g. 5s, 1m (default 5s)",
    )


@dataclass(frozen=True, slots=True)
class Scope:
    """What to read: a namespace (None: all), and one workload or every opted-in one."""

    namespace: str | None
    one: TargetRef | None


def _name(text: str, what: str, whole: str) -> str:
    if not _NAME.fullmatch(text):
        raise CommandError(f"{whole!r}: {text!r} is not a {what} name")
    return text


def scope_of(args: argparse.Namespace) -> Scope:
    if args.namespace is not None and args.all_namespaces:
        raise CommandError("-n/--namespace and -A/--all-namespaces exclude each other")
    namespace = None if args.namespace is None else _name(args.namespace, "namespace", args.namespace)
    if args.workload is None:
        return Scope(namespace, None)
    text = args.workload
    parts = text.split("/")
    kind = WorkloadKind.DEPLOYMENT
    if len(parts) == 3 or (len(parts) == 2 and parts[0].lower() in _KIND_NAMES and namespace):
        # NAMESPACE/KIND/NAME, or KIND/NAME with -n (a namespace named like a kind takes -n too).
        if len(parts) == 3:
            namespace_part = parts[0]
            kind_part, name_part = parts[1], parts[2]
        else:
            namespace_part, kind_part, name_part = namespace or "", parts[0], parts[1]
        chosen = _KIND_NAMES.get(kind_part.lower())
        if chosen is None:
            raise CommandError(f"{text!r}: kind {kind_part!r} is not deployment or statefulset")
        kind, parts = chosen, [namespace_part, name_part]
    if len(parts) == 1:
        if namespace is None:
            raise CommandError(f"{text!r}: give NAMESPACE/NAME, or the namespace with -n")
        parts = [namespace, parts[0]]
    if len(parts) != 2:
        raise CommandError(f"{text!r} is not NAMESPACE/NAME or NAMESPACE/KIND/NAME")
    ns = _name(parts[0], "namespace", text)
    if namespace is not None and ns != namespace:
        raise CommandError(f"{text!r} is not in namespace {namespace!r} given with -n")
    if args.all_namespaces:
        raise CommandError("a single WORKLOAD names its namespace: drop -A/--all-namespaces")
    return Scope(ns, TargetRef(ns, _name(parts[1], "workload", text), kind))


def _connect(args: argparse.Namespace) -> Kube:
    if args.kubeconfig is not None and not args.kubeconfig.is_file():
        raise CommandError(f"--kubeconfig {args.kubeconfig}: no such file")
    try:
        return connect(args.kubeconfig, user_agent="predictive-autoscaler-status", context=args.context)
    except ValueError as error:
        raise CommandError(str(error)) from None


def _problem(kube: Kube, error: KubeError) -> str:
    text = str(error)
    if isinstance(error, Unavailable) and error.code == 0:
        found = _ERRNO.search(text)
        return f"cannot reach the API server at {kube.server}: {found.group(0) if found else text}"
    return f"the API server at {kube.server} refused: {text}"


def read_rows(kube: Kube, scope: Scope, now: float) -> tuple[Row, ...]:
    """The rows in `scope`, as the cluster has them now. Raises `KubeError`."""
    namespace = scope.namespace
    deployments, _ = kube.list(Kind.DEPLOYMENT, namespace)
    statefulsets, _ = kube.list(Kind.STATEFULSET, namespace)
    hpas, _ = kube.list(Kind.HPA, namespace)
    one = scope.one
    if one is not None:
        # Only this workload's Events: the name is a field every API server selects on.
        events = kube.list_events(namespace, f"involvedObject.name={one.name}")
        kind = Kind.DEPLOYMENT if one.kind is WorkloadKind.DEPLOYMENT else Kind.STATEFULSET
        deployments = [d for d in deployments if _named(d, one.name)] if kind is Kind.DEPLOYMENT else []
        statefulsets = (
            [s for s in statefulsets if _named(s, one.name)] if kind is Kind.STATEFULSET else []
        )
    else:
        events = kube.list_events(namespace)
    rows = survey(deployments, statefulsets, hpas, events, now)
    if one is None:
        return rows
    found = [row for row in rows if row.ref == one]
    if found:
        return tuple(found)
    exists = bool(deployments if one.kind is WorkloadKind.DEPLOYMENT else statefulsets)
    shown = f"{one.namespace}/{one.kind.value.lower()}/{one.name}"
    if exists:
        raise CommandError(f'{shown} is not opted in (predictive-autoscaler.io/enabled is not "true")')
    raise CommandError(
        f"{shown}: no such {one.kind.value} (a StatefulSet is NAMESPACE/statefulset/NAME)"
    )


def _named(obj: dict[str, Any], name: str) -> bool:
    return bool((obj.get("metadata") or {}).get("name") == name)


def render(rows: Sequence[Row], scope: Scope, output: str | None, now: float) -> str:
    if output in ("json", "yaml"):
        doc: dict[str, object]
        if scope.one is not None:
            doc = document(rows[0], with_events=True)
        else:
            items: list[object] = [document(row, with_events=False) for row in rows]
            doc = {"apiVersion": "v1", "kind": "List", "items": items}
        if output == "json":
            return json.dumps(doc, indent=2)
        import yaml

        return str(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)).rstrip("\n")
    if scope.one is not None:
        return details(rows[0], now)
    return table(rows, now, wide=output == "wide")


def _print(text: str) -> None:
    sys.stdout.write(text + "\n")
    # Whoever reads a --watch through a pipe sees each change when it happens.
    sys.stdout.flush()


def run(args: argparse.Namespace, clock: Callable[[], float] = time.time) -> int:
    """Print what was asked; `CommandError` for bad input or an unreadable cluster. `clock` gives
    the time ages are told against."""
    scope = scope_of(args)
    kube = _connect(args)
    try:
        rows = read_rows(kube, scope, clock())
    except KubeError as error:
        raise CommandError(_problem(kube, error)) from None
    _print(render(rows, scope, args.output, clock()))
    if args.watch:
        _watch(kube, scope, args, rows, clock)
    return 0


def _watch(
    kube: Kube,
    scope: Scope,
    args: argparse.Namespace,
    shown: tuple[Row, ...],
    clock: Callable[[], float],
) -> None:
    """Poll every `--interval`; print again when a row changes (ages alone change nothing). A
    failed read is told once and retried: the API server may come back."""
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    told = ""
    separator = "---" if args.output == "yaml" else ""
    while not stop.wait(args.interval):
        try:
            rows = read_rows(kube, scope, clock())
        except (KubeError, CommandError) as error:
            problem = _problem(kube, error) if isinstance(error, KubeError) else str(error)
            if problem != told:
                print(f"warning: {problem}", file=sys.stderr, flush=True)
                told = problem
            continue
        told = ""
        if rows != shown:
            shown = rows
            _print(f"{separator}\n{render(rows, scope, args.output, clock())}")


def plugin_main(argv: Sequence[str] | None = None) -> int:
    """`kubectl predictive [flags]`: kubectl finds `kubectl-predictive` on PATH and runs it with the
    words after `predictive`."""
    parser = _Parser(
        prog=PLUGIN, description="Which workloads the predictive autoscaler scales, how, and why."
    )
    add_flags(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except CommandError as error:
        print(f"{PLUGIN}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 0
