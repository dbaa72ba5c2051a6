"""Decision rules. Pure: state, observations, config, history and `now` in; a `Decision` out."""

from autoscaler.policy.decision import Decision, DecisionHistory, Mode, Policy, PolicyInputs, Reason
from autoscaler.policy.hpa import HpaBehavior, HpaPolicy
from autoscaler.policy.predictive import PredictivePolicy, TrustRules

__all__ = [
    "Decision",
    "DecisionHistory",
    "HpaBehavior",
    "HpaPolicy",
    "Mode",
    "Policy",
    "PolicyInputs",
    "PredictivePolicy",
    "Reason",
    "TrustRules",
]
