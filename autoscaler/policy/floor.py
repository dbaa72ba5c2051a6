"""Mode `hpa`: the HPA keeps the reactive part and we only move its floor.

The floor is raised to what the forecast needs ahead of the load and lowered back to the owner's own
floor when the forecast falls or can no longer be trusted; the HPA's own scale-down stabilization then
decides how fast replicas follow. With metrics missing the floor stays where it is: lowering it blind
could let the HPA scale down a service we can no longer see.
"""

from __future__ import annotations

from autoscaler.policy.decision import Decision, Mode

__all__ = ["hpa_floor"]


def hpa_floor(decision: Decision, original_min: int, current_min: int, max_replicas: int) -> int:
    """The HPA's `minReplicas` for this decision: between the owner's floor and the HPA's maximum."""
    if decision.mode is Mode.HOLD:
        return current_min
    wanted = original_min
    if decision.mode is Mode.PREDICTIVE and decision.predictive_replicas is not None:
        wanted = max(original_min, decision.predictive_replicas)
    return max(original_min, min(wanted, max_replicas))
