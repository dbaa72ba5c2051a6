"""One tick of the controller, the same in a cluster and in the simulator, and the only place that
strings the stages (`autoscaler.stages`) together.

For every opted-in workload: read its state and config, fetch its load, forecast, decide, act
(through the workload's scale mode), record. Workloads the reader sets aside (refused,
invalid, cooling down) are only reported; floors left on HPAs of workloads that are no longer ours
are given back first.

One workload's failure is its own: an exception while forecasting, deciding, acting or
recording for it is handed to the recorder, that workload is held as it is (its history records
nothing for the tick, as the HPA records no recommendation it could not compute), and the others
are decided as usual.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from autoscaler.model import Forecasts, LoadSnapshot, TargetRef
from autoscaler.policy import Decision, DecisionHistory, Policy, PolicyInputs
from autoscaler.policy.decision import Recommendation
from autoscaler.stages import (
    ActOutcome,
    Actuator,
    ClusterReader,
    Forecaster,
    MetricsSource,
    MetricsUnavailable,
    Recorder,
    Stage,
    Standing,
    TickReport,
)

__all__ = ["DecisionMemory", "Stages", "reconcile_once"]


@dataclass(frozen=True, slots=True)
class Stages:
    reader: ClusterReader
    source: MetricsSource
    forecaster: Forecaster
    policy: Policy
    actuator: Actuator
    recorder: Recorder


@dataclass(slots=True)
class DecisionMemory:
    """Decision history per target, carried from tick to tick; forgotten with the target."""

    histories: dict[TargetRef, DecisionHistory] = field(default_factory=dict)

    def get(self, ref: TargetRef, found: int, now: float) -> DecisionHistory:
        """The target's history; for a target not seen before (a new workload, or every workload
        after a start or a take-over), the count found is its first recommendation, as the HPA
        records it: nothing is scaled down within the stabilization window of what was found."""
        history = self.histories.get(ref)
        if history is None:
            return DecisionHistory(recommendations=(Recommendation(now, found),))
        return history

    def keep_only(self, refs: set[TargetRef]) -> None:
        for gone in [ref for ref in self.histories if ref not in refs]:
            del self.histories[gone]


_NO_LOAD = LoadSnapshot()


def reconcile_once(stages: Stages, memory: DecisionMemory, now: float) -> TickReport:
    snapshot = stages.reader.snapshot(now)
    if not snapshot.synced:
        return TickReport.idle()
    by_standing: dict[Standing, list[TargetRef]] = {}
    for aside in snapshot.set_aside:
        by_standing.setdefault(aside.standing, []).append(aside.ref)
        stages.recorder.set_aside(aside, now)
    for release in snapshot.releases:
        stages.recorder.released(release, stages.actuator.release(release, now), now)
    targets = snapshot.targets
    metrics_error = ""
    try:
        loads = stages.source.observe(targets, now)
        rejected = stages.source.rejected()
    except MetricsUnavailable as error:
        loads, rejected = {}, ()
        metrics_error = str(error) or type(error).__name__
    for rejection in rejected:
        stages.recorder.rejected(rejection, now)
    forecasts: dict[TargetRef, Forecasts] = {}
    decisions: list[Decision] = []
    outcomes: dict[TargetRef, ActOutcome] = {}
    failed: dict[TargetRef, Stage] = {}
    for target in targets:
        ref = target.state.ref
        history = memory.get(ref, target.state.spec_replicas, now)
        load = loads.get(ref, _NO_LOAD)
        stage = Stage.FORECAST
        try:
            forecasts[ref] = stages.forecaster.forecast(target, load, now, stages.source)
            inputs = PolicyInputs(target, load, history, now, forecasts[ref])
            stage = Stage.DECIDE
            decision = stages.policy.decide(inputs)
            stage = Stage.ACT
            # Called on every decision: what the target's scale mode moves may change when the
            # replicas do not (the floor of an HPA), and the actuator says when nothing does.
            result = stages.actuator.apply(decision, target)
            memory.histories[ref] = history.after(
                decision,
                applied=result.applied,
                keep_s=stages.policy.memory_s(target.config),
                load=inputs.load,
            )
            stage = Stage.RECORD
            stages.recorder.record(target, decision, result)
            stages.reader.learn(ref, result, now)
        except Exception as error:  # whatever broke, it broke for this target only
            failed[ref] = stage
            stages.recorder.failed(target, stage, error, now)
            continue
        decisions.append(decision)
        outcomes[ref] = result.outcome
    live = {t.state.ref for t in targets}
    stages.forecaster.keep_only(live)
    if len(memory.histories) > len(targets):
        memory.keep_only(live)

    def standing(which: Standing) -> tuple[TargetRef, ...]:
        return tuple(by_standing.get(which, ()))

    report = TickReport(
        True,
        tuple(decisions),
        outcomes,
        not metrics_error,
        standing(Standing.REFUSED),
        standing(Standing.INVALID),
        standing(Standing.COOLING_DOWN),
        loads,
        forecasts,
        failed,
        standing(Standing.STALE_VIEW),
        metrics_error,
        rejected=rejected,
    )
    stages.recorder.finish(report)
    return report
