"""The actuator in a cluster: sends the patch that carries a decision's setpoint out, through the
target's scale mode (`autoscaler.modes`), and gives back raised HPA floors nobody plans for.

Failures map to what helps, as the outcome of the result: a conflict is retried on the next tick; a
permission error is reported and not retried for a while (a loop of 403s helps nobody); a workload
that is gone is forgotten; an unavailable API server leaves everything as it was. Dry-run writes
nothing to the workload or its HPA; a replica that does not lead writes nothing at all, nor one
that does not hold the workload's shard (`owns`, checked at the write).

A scale patch carries the workload's resourceVersion, so an opt-out or a switch to dry-run made
since the view was read makes it fail (409). An HPA floor patch is preconditioned on the HPA's
version, which an edit of the workload does not move: the workload (the Deployment or StatefulSet
the target names) is read again first, and a
floor it no longer asks for (opted out, dry-run, another mode, annotations now unusable) is not
written; the next tick decides from the new view.
"""

from __future__ import annotations

from collections.abc import Callable

from autoscaler.config import AnnotationError, parse_annotations
from autoscaler.kube import Conflict, Forbidden, Gone, Kube, KubeError
from autoscaler.model import Setpoint, Target, TargetRef
from autoscaler.modes import restore_floor, strategy_of
from autoscaler.patches import Patch, Patched
from autoscaler.policy import Decision
from autoscaler.stages import ActOutcome, ActuationResult, Release

__all__ = ["ClusterActuator"]


class ClusterActuator:
    def __init__(
        self,
        kube: Kube,
        *,
        may_act: Callable[[], bool],
        dry_run: bool = False,
        owns: Callable[[TargetRef], bool] = lambda ref: True,
    ) -> None:
        self._kube = kube
        self._may_act = may_act
        self._owns = owns
        self._dry_run = dry_run

    def apply(self, decision: Decision, target: Target) -> ActuationResult:
        mode = strategy_of(target)
        setpoint = mode.setpoint(decision, target)
        if not setpoint.needed:
            return ActuationResult(ActOutcome.UNCHANGED, setpoint)
        if self._dry_run or (target.scaling is not None and target.scaling.dry_run):
            return ActuationResult(ActOutcome.DRY_RUN, setpoint)
        patch = mode.patch(setpoint, target)
        if patch.what is Patched.HPA and self._may_act():
            try:
                withdrawn = self._withdrawn(target)
            except Gone as error:
                return ActuationResult(ActOutcome.GONE, setpoint, str(error))
            except KubeError as error:
                return ActuationResult(ActOutcome.UNAVAILABLE, setpoint, str(error))
            if withdrawn is not None:
                return ActuationResult(ActOutcome.CONFLICT, setpoint, withdrawn)
        return self._send(patch, setpoint, target.state.ref)

    def release(self, release: Release, now: float) -> ActuationResult:
        setpoint, patch = restore_floor(release.hpa)
        if self._dry_run:
            return ActuationResult(ActOutcome.DRY_RUN, setpoint)
        return self._send(patch, setpoint, release.ref)

    def _withdrawn(self, target: Target) -> str | None:
        """Why the workload, read again now, no longer asks for what `target` was decided as."""
        ref, scaling = target.state.ref, target.scaling
        workload = self._kube.read_workload(ref)
        the = f"the {ref.kind.value}"
        if workload is None:
            raise Gone(f"{ref.kind.value.lower()} {ref.namespace}/{ref.name} is gone")
        meta = workload.get("metadata") or {}
        if scaling is None or str(meta.get("resourceVersion", "")) == scaling.resource_version:
            return None
        annotations = meta.get("annotations") or {}
        try:
            settings = parse_annotations({str(k): str(v) for k, v in annotations.items()})
        except AnnotationError as error:
            return f"{the}'s annotations changed since it was read: {error}"
        if settings is None:
            return f"{the} opted out since it was read"
        if settings.dry_run:
            return f"{the} was switched to dry-run since it was read"
        if settings.mode is not scaling.mode:
            return f"{the}'s mode changed to {settings.mode.value} since it was read"
        return None

    def _send(self, patch: Patch, setpoint: Setpoint, ref: TargetRef) -> ActuationResult:
        if not (self._may_act() and self._owns(ref)):
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
