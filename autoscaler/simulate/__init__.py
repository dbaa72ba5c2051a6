"""The trace simulator: replays real traffic through the controller's own reconcile path on a
simulated cluster and scores policies as BENCHMARK.md defines."""

from autoscaler.simulate.engine import POLICIES, Grid, RunResult, run
from autoscaler.simulate.scenario import Scenario, ScenarioError, default_scenario
from autoscaler.simulate.scoring import Scores, score
from autoscaler.simulate.study import Study, run_study
from autoscaler.simulate.trace import Trace, TraceError, load_bundled_trace, load_trace

__all__ = [
    "POLICIES",
    "Grid",
    "RunResult",
    "Scenario",
    "ScenarioError",
    "Scores",
    "Study",
    "Trace",
    "TraceError",
    "default_scenario",
    "load_bundled_trace",
    "load_trace",
    "run",
    "run_study",
    "score",
]
