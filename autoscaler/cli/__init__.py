"""`predictive-autoscaler` command line: one module per subcommand. Bad input exits with status 2 and
one line naming the flag, file or line at fault; no traceback."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from autoscaler.cli.backtest import add_backtest, run_backtest
from autoscaler.cli.common import EXIT_USAGE, PROG, Parser, UsageError, add_version_flag
from autoscaler.cli.run import add_run, run_controller_command
from autoscaler.cli.simulate import add_simulate, run_simulate
from autoscaler.cli.status import add_status, run_status
from autoscaler.simulate.scenario import ScenarioError
from autoscaler.simulate.trace import TraceError

__all__ = ["build_parser", "main"]


def _build_parser() -> Parser:
    parser = Parser(
        prog=PROG, description="Predictive autoscaler for Kubernetes Deployments and StatefulSets."
    )
    add_version_flag(parser)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    add_simulate(commands)
    add_backtest(commands)
    add_run(commands)
    add_status(commands)
    return parser


def build_parser() -> Parser:
    """The whole command line, for checking commands (tests/test_docs.py) without running them."""
    return _build_parser()


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "simulate":
            return run_simulate(args)
        if args.command == "backtest":
            return run_backtest(args)
        if args.command == "run":
            return run_controller_command(args)
        if args.command == "status":
            return run_status(args)
    except (TraceError, ScenarioError, UsageError) as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    parser.error(f"unknown command {args.command!r}")
