"""Scale modes as strategies: one object per mode that admits a workload, aims a decision at what
the mode moves (a `Setpoint`), builds the patch that sets it, and gives back what it changed when the
workload leaves. Pure: the actuator sends the patches, the recorder tells people.

- `replicas` sets the workload's replicas (a Deployment's or a StatefulSet's) through its `scale`
  subresource, only when they change. A workload that an HPA also targets is refused: it never
  fights an HPA.
- `hpa` leaves the HPA in charge of the reactive part and moves only its floor (`minReplicas`): up
  to what the forecast needs ahead of the load (never above the HPA's maximum), back down to the
  owner's own floor (kept in an annotation on the HPA meanwhile) when the forecast falls or can no
  longer be trusted; the HPA's own scale-down stabilization then decides how fast replicas follow.
  With metrics missing the floor stays where it is: lowering it blind could let the HPA scale down a
  service we can no longer see.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Protocol

from autoscaler.model import (
    Bounds,
    HpaInfo,
    Knob,
    ScaleMode,
    Setpoint,
    Target,
    TargetConfig,
    WorkloadKind,
)
from autoscaler.patches import Patch, hpa_floor_patch, scale_patch
from autoscaler.policy import Decision, Mode

__all__ = [
    "MODES",
    "Refusal",
    "ScaleStrategy",
    "hpa_floor",
    "restore_floor",
    "strategy_of",
]


@dataclasses.dataclass(frozen=True, slots=True)
class Refusal:
    """Why a mode cannot act on a workload: an Event reason and message, and the key that makes it
    the same problem as the last tick's (reported once)."""

    reason: str
    message: str
    key: tuple[str, str]


class ScaleStrategy(Protocol):
    # Whether a floor this mode raised stays ours while the workload is in it.
    keeps_hpa_floor: bool

    def admit(self, hpa: HpaInfo | None, kind: WorkloadKind) -> Refusal | None:
        """Why the mode cannot act on a workload of `kind` that `hpa` targets (or none does)."""
        ...

    def configure(self, config: TargetConfig, hpa: HpaInfo | None) -> TargetConfig:
        """The config the policy plans with in this mode."""
        ...

    def setpoint(self, decision: Decision, target: Target) -> Setpoint: ...

    def patch(self, setpoint: Setpoint, target: Target) -> Patch: ...


class ReplicasMode:
    keeps_hpa_floor = False

    def admit(self, hpa: HpaInfo | None, kind: WorkloadKind) -> Refusal | None:
        if hpa is None:
            return None
        return Refusal(
            "RefusedHPAConflict",
            f"HPA {hpa.name} already scales this {kind.value}; mode replicas would fight "
            f"it: set predictive-autoscaler.io/mode to hpa to move its floor instead",
            ("refused", hpa.name),
        )

    def configure(self, config: TargetConfig, hpa: HpaInfo | None) -> TargetConfig:
        return config

    def setpoint(self, decision: Decision, target: Target) -> Setpoint:
        return Setpoint(Knob.REPLICAS, decision.current, decision.replicas, decision.changed)

    def patch(self, setpoint: Setpoint, target: Target) -> Patch:
        version = "" if target.scaling is None else target.scaling.resource_version
        return scale_patch(target.state.ref, setpoint.wanted, version)


def hpa_floor(decision: Decision, original_min: int, current_min: int, max_replicas: int) -> int:
    """The HPA's `minReplicas` for this decision: between the owner's floor and the HPA's maximum."""
    if decision.mode is Mode.HOLD:
        return current_min
    wanted = original_min
    if decision.mode is Mode.PREDICTIVE and decision.predictive_replicas is not None:
        wanted = max(original_min, decision.predictive_replicas)
    return max(original_min, min(wanted, max_replicas))


class HpaFloorMode:
    keeps_hpa_floor = True

    def admit(self, hpa: HpaInfo | None, kind: WorkloadKind) -> Refusal | None:
        if hpa is not None:
            return None
        return Refusal(
            "NoHPA",
            f"mode hpa needs an HPA that targets this {kind.value}; none was found",
            ("no-hpa", ""),
        )

    def configure(self, config: TargetConfig, hpa: HpaInfo | None) -> TargetConfig:
        if hpa is None:
            return config
        # The HPA owns the bounds in this mode; the floor we plan from is the user's own.
        upper = max(hpa.max_replicas, hpa.original_min)
        return dataclasses.replace(config, bounds=Bounds(hpa.original_min, upper))

    def setpoint(self, decision: Decision, target: Target) -> Setpoint:
        hpa = _hpa(target)
        floor = hpa_floor(decision, hpa.original_min, hpa.min_replicas, hpa.max_replicas)
        # A floor back at the owner's still has our annotation to remove.
        needed = floor != hpa.min_replicas or (floor == hpa.original_min and hpa.raised)
        return Setpoint(
            Knob.HPA_FLOOR,
            hpa.min_replicas,
            floor,
            needed,
            hpa=hpa.name,
            restoring=floor == hpa.original_min,
        )

    def patch(self, setpoint: Setpoint, target: Target) -> Patch:
        hpa = _hpa(target)
        original = None if setpoint.restoring else hpa.original_min
        return hpa_floor_patch(hpa.namespace, hpa.name, hpa.resource_version, setpoint.wanted, original)


def _hpa(target: Target) -> HpaInfo:
    hpa = None if target.scaling is None else target.scaling.hpa
    if hpa is None:
        # `admit` keeps such a target out of every tick.
        raise ValueError(f"{target.state.ref} is in mode hpa without an HPA")
    return hpa


def restore_floor(hpa: HpaInfo) -> tuple[Setpoint, Patch]:
    """The owner's floor back on an HPA we no longer plan for, our annotation removed."""
    setpoint = Setpoint(
        Knob.HPA_FLOOR, hpa.min_replicas, hpa.original_min, True, hpa=hpa.name, restoring=True
    )
    patch = hpa_floor_patch(hpa.namespace, hpa.name, hpa.resource_version, hpa.original_min, None)
    return setpoint, patch


MODES: Mapping[ScaleMode, ScaleStrategy] = {
    ScaleMode.REPLICAS: ReplicasMode(),
    ScaleMode.HPA: HpaFloorMode(),
}
_PLAIN = ReplicasMode()


def strategy_of(target: Target) -> ScaleStrategy:
    """The strategy of the target's mode; a target outside a cluster has its replicas set."""
    return _PLAIN if target.scaling is None else MODES[target.scaling.mode]
