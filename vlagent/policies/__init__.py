"""Policies: what decides the next step. See :mod:`vlagent.policies.base`."""

from vlagent.policies.base import Decision, HistoryEntry, Observation, Policy, check_policy, decide_each
from vlagent.policies.qwen2vl import Qwen2VLPolicy, QwenPolicyConfig
from vlagent.policies.scripted import ScriptedPolicy

__all__ = [
    "Decision",
    "HistoryEntry",
    "Observation",
    "Policy",
    "Qwen2VLPolicy",
    "QwenPolicyConfig",
    "ScriptedPolicy",
    "check_policy",
    "decide_each",
]
