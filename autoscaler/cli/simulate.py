"""`predictive-autoscaler simulate`: replay a trace through the policies and score them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from autoscaler.cli.common import (
    Parser,
    add_scenario_flags,
    drawable,
    fraction,
    progress_bar,
    scenario_of,
    writable,
)
from autoscaler.metrics import MetricKind
from autoscaler.simulate.engine import POLICIES
from autoscaler.simulate.trace import Trace, load_bundled_trace, load_trace

__all__ = ["add_simulate", "run_simulate"]


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
    values = [fraction(part.strip()) for part in text.split(",") if part.strip()]
    if not values:
        raise argparse.ArgumentTypeError("no target utilization given")
    return sorted(set(values))


def add_simulate(commands: argparse._SubParsersAction[Parser]) -> None:
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
    add_scenario_flags(sim)
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
    sim.add_argument(
        "--plot",
        type=Path,
        metavar="OUT.png",
        help="write a PNG of the run: headline figures, cost/service frontier, the steepest ramp, "
        "the whole trace (without --sweep, hpa, predictive and oracle are swept for the frontier; "
        "needs predictive-autoscaler[plot])",
    )


def run_simulate(args: argparse.Namespace) -> int:
    from autoscaler.simulate.report import HEADLINE_POLICIES, to_json, to_text
    from autoscaler.simulate.study import BENCHMARK_SWEEP, run_study

    if args.timeline is not None:
        writable(args.timeline, "--timeline")
    if args.plot is not None:
        drawable(args.plot)
    trace: Trace = load_bundled_trace() if args.trace is None else load_trace(args.trace)
    scenario = scenario_of(args, trace, MetricKind(args.kind))
    sweep: tuple[float, ...] = tuple(args.sweep or ())
    swept: tuple[str, ...] | None = None
    if args.plot is not None and args.sweep is None:
        # The picture's frontier needs a sweep. Only the headline policies run it: each peer's
        # sweep would rerun that peer in full at every other point, while on a request-rate trace
        # the predictive one replays the forecasts its default run recorded (tape.py) and the
        # oracle's is free.
        sweep, swept = BENCHMARK_SWEEP, HEADLINE_POLICIES
    with progress_bar() as bar:
        study = run_study(trace, scenario, args.policy, sweep, progress=bar, sweep_policies=swept)
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
