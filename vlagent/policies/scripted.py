"""ScriptedPolicy: plays a fixed list of steps (tests, demos, replays).

Each item is an Action, a Step, or a callable that computes the action from the
observation (e.g. to click wherever a label is on a simulated screen). When the script
runs out it answers ``done(failure)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from vlagent.actions import Action, Done, Step
from vlagent.errors import ModelError
from vlagent.policies.base import Decision, Observation, decide_each

__all__ = ["ScriptItem", "ScriptedPolicy"]

ScriptItem = Action | Step | Callable[[Observation], Action | Step]


class ScriptedPolicy:
    """Plays ``script`` in order, one item per call to ``decide``."""

    name = "scripted"

    def __init__(self, script: Iterable[ScriptItem]) -> None:
        self._script = list(script)
        self._next = 0

    def reset(self) -> None:
        self._next = 0

    @property
    def remaining(self) -> int:
        return len(self._script) - self._next

    def decide(self, observation: Observation) -> Decision:
        if self._next >= len(self._script):
            step = Step(action=Done(status="failure", answer="script exhausted"))
        else:
            item = self._script[self._next]
            self._next += 1
            produced = item(observation) if callable(item) else item
            step = produced if isinstance(produced, Step) else Step(action=produced)
        return Decision(step=step, raw=step.model_dump_json(exclude_none=True))

    def decide_batch(self, observations: Sequence[Observation]) -> list[Decision | ModelError]:
        return decide_each(self, observations)
