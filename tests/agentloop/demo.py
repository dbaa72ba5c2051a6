"""`make agent-demo`: the closed loop with real agent pods, predictive against reactive.

    python -m tests.agentloop.demo --out out/agent-demo.png [--hold-seconds 75]
        [--runs predictive,reactive] [--metric inflight|requests] [--seed N] [--workdir DIR]

Each run replays the same minutes of a chat day around its morning ramp, in real time, on a fresh
fake API server, Prometheus and agent pods, with `predictive-autoscaler run` as a subprocess (see
`loop.py`). The comparison table goes to stdout, the picture to `--out`, progress lines to stderr.
A bad flag prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import NoReturn

from autoscaler.config import AnnotationError, parse_annotations
from tests.agentloop.loop import ANNOTATIONS, REQUESTS_ANNOTATIONS, Scenario, run_loop
from tests.agentloop.pods import AGENT_SCRIPT, AgentSpec
from tests.agentloop.report import format_table, plot_runs, summarize

__all__ = ["DEMO", "main"]

# Sized for a 2-core machine and under 10 minutes for both runs. A reply is 60 tokens at 30
# tokens/s (2 s); five replies at once make a pod's ceiling 2.5 requests/s, and two more may wait.
# The quiet base (2 requests/s, 4 in flight) is two thirds of what the two base pods are meant to
# carry (3 in flight each); the morning ramp climbs within half a minute to 10 requests/s, which
# needs four pods at their ceiling and seven at the target, and a pod takes 30 s to warm up:
# reacting once the ramp is there is late.
DEMO = Scenario(
    agent=AgentSpec(
        tokens_per_second=30.0, reply_tokens=60, concurrency=5, queue_limit=2, warmup_s=30.0
    ),
    base_rps=2.0,
    peak_rps=10.0,
    setup_s=35.0,
    base_s=75.0,
    ramp_s=30.0,
    hold_s=75.0,
)
RUNS = ("predictive", "reactive")
METRICS = {"inflight": ANNOTATIONS, "requests": REQUESTS_ANNOTATIONS}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _seconds(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}, got {text}")
        return value

    return parse


def _runs(text: str) -> tuple[str, ...]:
    names = tuple(n for n in text.split(",") if n)
    if not names or any(n not in RUNS for n in names) or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"a comma-separated subset of {','.join(RUNS)}, got {text!r}")
    return names


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = _Parser(prog="agent-demo", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("out/agent-demo.png"), help="the picture")
    parser.add_argument(
        "--hold-seconds",
        type=_seconds(30, 600),
        default=DEMO.hold_s,
        help=f"time at the peak after the ramp, per run (default {DEMO.hold_s:g})",
    )
    parser.add_argument(
        "--runs", type=_runs, default=RUNS, help="which runs, in order (default predictive,reactive)"
    )
    parser.add_argument(
        "--metric",
        choices=tuple(METRICS),
        default="inflight",
        help="what the Deployment scales on: the agents' in-flight gauge (a custom metric, the "
        "default) or their request rate (the built-in requests metric)",
    )
    parser.add_argument("--seed", type=int, default=DEMO.seed, help="seed of the arrivals")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="keep each run's logs and data here (default: a "
        "temporary folder, removed afterwards)"
    )  # fmt: skip
    return parser.parse_args(argv)


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("prometheus") is None or shutil.which("promtool") is None:
        say("agent-demo: error: prometheus and promtool are needed (bash scripts/ensure-prometheus)")
        return 1
    if not AGENT_SCRIPT.is_file():
        say(f"agent-demo: error: the agent service is missing: {AGENT_SCRIPT}")
        return 1
    annotations = METRICS[args.metric]
    try:
        parse_annotations(dict(annotations))
    except AnnotationError as error:  # a controller without custom metrics, say
        say(f"agent-demo: error: the controller refuses the annotations: {error}")
        return 1
    scenario = replace(DEMO, hold_s=args.hold_seconds, seed=args.seed, annotations=annotations)
    # A SIGTERM (a timeout, a CI runner giving up) unwinds like Ctrl-C, so every process the runs
    # started is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    began = time.monotonic()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="agent-demo-"))
    try:
        results = []
        for name in args.runs:
            say(f"agent-demo: {name} run ({scenario.length_s:.0f} s)")
            results.append(
                run_loop(scenario, predictive=name == "predictive", workdir=workdir / name, say=say)
            )
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(format_table([summarize(r) for r in results]))
    plot_runs(results, args.out)
    say(f"agent-demo: picture in {args.out}; {time.monotonic() - began:.0f} s in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
