"""check_policy: the conformance check every policy passes, and what it reports for one that does not."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from vlagent.actions import Click, Done, Step
from vlagent.drivers.base import PHONE_CAPABILITIES
from vlagent.drivers.sim import SimDriver
from vlagent.errors import InvalidModelOutput, ModelError, PolicyConformanceError
from vlagent.policies import Decision, Observation, ScriptedPolicy, check_policy


def _observation() -> Observation:
    return Observation("tap the centre", SimDriver().screenshot(), PHONE_CAPABILITIES)


def test_the_scripted_policy_conforms() -> None:
    check_policy(ScriptedPolicy([Click(x=540, y=1200), Done(), Done()]), _observation())


def test_a_policy_that_refuses_with_a_model_error_conforms() -> None:
    class Refuser:
        name = "refuser"

        def decide(self, observation: Observation) -> Decision:
            raise InvalidModelOutput("not JSON", raw="?")

        def decide_batch(self, observations: Sequence[Observation]) -> list[Decision | ModelError]:
            return [InvalidModelOutput("not JSON", raw="?") for _ in observations]

    check_policy(Refuser(), _observation())


def test_check_policy_lists_every_problem() -> None:
    class Sloppy:
        name = 3  # not a str

        def decide(self, observation: Observation) -> Decision:
            return Decision(step=Step(action=Click(x=5000, y=9000)))  # grid units, not device pixels

        def decide_batch(self, observations: Sequence[Observation]) -> list[Decision | ModelError]:
            return [Decision(step=Step(action=Done()))]  # one answer for two observations

    with pytest.raises(PolicyConformanceError) as info:
        check_policy(Sloppy(), _observation())  # type: ignore[arg-type]
    problems = info.value.problems
    assert any("name must be a str" in p for p in problems)
    assert any("must return a list of 2" in p for p in problems)
    assert any("outside the 1080x2400 frame" in p for p in problems)
