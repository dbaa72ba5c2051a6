"""The actuator in a cluster: sends the patch that carries a decision's setpoint out, through the
target's scale mode (`autoscaler.modes`), and gives back raised HPA floors nobody plans for.

Failures map to what helps, as the outcome of the result: a conflict is retried on the next tick; a
permission error is reported and not retried for a while (a loop of 403s helps nobody); a workload
that is gone is forgotten; an unavailable API server leaves everything as it was. Dry-run writes
nothing to the workload or its HPA; a replica that does not lead writes nothing at all.
"""

from __future__ import annotations

from collections.abc import Callable

from autoscaler.kube import Conflict, Forbidden, Gone, Kube, KubeError
from autoscaler.model import Setpoint, Target
from autoscaler.modes import restore_floor, strategy_of
from autoscaler.patches import Patch
from autoscaler.policy import Decision
from autoscaler.stages import ActOutcome, ActuationResult, Release

__all__ = ["ClusterActuator"]


class ClusterActuator:
    def __init__(self, kube: Kube, *, may_act: Callable[[], bool], dry_run: bool = False) -> None:
        self._kube = kube
        self._may_act = may_act
        self._dry_run = dry_run

    def apply(self, decision: Decision, target: Target) -> ActuationResult:
        mode = strategy_of(target)
        setpoint = mode.setpoint(decision, target)
        if not setpoint.needed:
            return ActuationResult(ActOutcome.UNCHANGED, setpoint)
        if self._dry_run or (target.scaling is not None and target.scaling.dry_run):
            return ActuationResult(ActOutcome.DRY_RUN, setpoint)
        return self._send(mode.patch(setpoint, target), setpoint)

    def release(self, release: Release, now: float) -> ActuationResult:
        setpoint, patch = restore_floor(release.hpa)
        if self._dry_run:
            return ActuationResult(ActOutcome.DRY_RUN, setpoint)
        return self._send(patch, setpoint)

    def _send(self, patch: Patch, setpoint: Setpoint) -> ActuationResult:
        if not self._may_act():
            return ActuationResult(ActOutcome.NOT_LEADER, setpoint)
        try:
            self._kube.patch(patch)
        except Conflict as error:
            return ActuationResult(ActOutcome.CONFLICT, setpoint, str(error))
        except Forbidden as error:
            return ActuationResult(ActOutcome.FORBIDDEN, setpoint, str(error))
        except Gone as error:
            return ActuationResult(ActOutcome.GONE, setpoint, str(error))
        except KubeError as error:
            return ActuationResult(ActOutcome.UNAVAILABLE, setpoint, str(error))
        return ActuationResult(ActOutcome.APPLIED, setpoint)
