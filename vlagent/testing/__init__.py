"""UI testing with a model: ``Agent`` (act / assert_ / query / wait_until / locate), the
action cache, the state oracles (simulated phone, sample desktop app), and a pytest plugin (``vlagent.testing.plugin``).

Importing this package must stay light: no torch, transformers or pytest.
"""

from vlagent.testing.agent import (
    ActFailed,
    Agent,
    AssertionFailed,
    CallRecord,
    Judgement,
    LocateFailed,
    Location,
    Querier,
    Query,
    WaitTimeout,
    querier_for,
)
from vlagent.testing.cache import ActionCache, CachedPolicy, screen_fingerprint

__all__ = [
    "ActFailed",
    "ActionCache",
    "Agent",
    "AssertionFailed",
    "CachedPolicy",
    "CallRecord",
    "Judgement",
    "LocateFailed",
    "Location",
    "Querier",
    "Query",
    "SampleAppOracle",
    "SimOracle",
    "WaitTimeout",
    "querier_for",
    "screen_fingerprint",
]


def __getattr__(name: str) -> object:
    # The oracles pull in the simulated phone or the desktop driver's names; load them only when asked for.
    if name == "SimOracle":
        from vlagent.testing.oracle import SimOracle

        return SimOracle
    if name == "SampleAppOracle":
        from vlagent.testing.desktop_oracle import SampleAppOracle

        return SampleAppOracle
    raise AttributeError(f"module 'vlagent.testing' has no attribute {name!r}")
