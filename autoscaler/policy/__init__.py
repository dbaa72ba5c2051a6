"""Decision rules. Pure: state, observations, config, history and `now` in; a `Decision` out."""

from autoscaler.policy.decision import (
    Decision,
    DecisionHistory,
    Policy,
    PolicyInputs,
    Reason,
)
from autoscaler.policy.hpa import HpaBehavior, HpaPolicy

__all__ = [
    "Decision",
    "DecisionHistory",
    "HpaBehavior",
    "HpaPolicy",
    "Policy",
    "PolicyInputs",
    "Reason",
]
