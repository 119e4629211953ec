"""Policies: what decides the next step. See :mod:`vlagent.policies.base`."""

from vlagent.policies.base import Decision, HistoryEntry, Observation, Policy, decide_each
from vlagent.policies.scripted import ScriptedPolicy

__all__ = ["Decision", "HistoryEntry", "Observation", "Policy", "ScriptedPolicy", "decide_each"]
