"""`predictive-autoscaler status`: the opted-in workloads, how they are scaled and why. The command's
body is `autoscaler.status_command`, shared with the kubectl plugin `kubectl predictive`."""

from __future__ import annotations

import argparse

from autoscaler.cli.common import Parser, UsageError
from autoscaler.status_command import CommandError, add_flags, run

__all__ = ["add_status", "run_status"]


def add_status(commands: argparse._SubParsersAction[Parser]) -> None:
    status = commands.add_parser(
        "status",
        help="show the opted-in workloads: how they are scaled and why",
        description="Every opted-in Deployment and StatefulSet: mode, replicas now and decided, the "
        "part of the policy that decided, the forecast and how far it is trusted, the last change. "
        "With a WORKLOAD, its details and the controller's Events on it. Also installed as the "
        "kubectl plugin `kubectl predictive`.",
    )
    add_flags(status)


def run_status(args: argparse.Namespace) -> int:
    try:
        return run(args)
    except CommandError as error:
        raise UsageError(str(error)) from None
