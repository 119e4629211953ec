"""The Policy boundary: whatever decides the next step from what is on screen.

A policy receives an Observation (task, current frame, the images and text history that
memory selected, feedback about a rejected answer) and returns a Decision whose action is
in device pixels. Converting from the model's grid is the policy's job (it knows its
model's convention); validating JSON is the policy's job too, raising InvalidModelOutput
with a message the loop feeds back on the next try.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Protocol, runtime_checkable

from vlagent.actions import Action, Step, describe_action
from vlagent.capabilities import Capabilities
from vlagent.errors import ModelError
from vlagent.frames import Frame

__all__ = ["Decision", "HistoryEntry", "Observation", "Policy", "decide_each"]


@dataclass(frozen=True)
class HistoryEntry:
    """What the model is told about an earlier step."""

    index: int
    action: Action
    thought: str | None = None
    effect: str | None = None
    """e.g. 'no visible change'; None when unknown."""

    def render(self, action_text: str | None = None) -> str:
        """One history line; ``action_text`` replaces the default rendering of the action
        (model families show actions in their own grid and syntax)."""
        text = f"Step {self.index + 1}: {action_text or describe_action(self.action)}"
        if self.thought:
            text += f" - {self.thought}"
        if self.effect:
            text += f" [{self.effect}]"
        return text


@dataclass(frozen=True)
class Observation:
    """Everything a policy may look at to choose the next step."""

    task: str
    frame: Frame
    """The current screen at capture resolution (its geometry decodes coordinates)."""
    capabilities: Capabilities
    step_index: int = 0
    history: tuple[HistoryEntry, ...] = ()
    images: tuple[Frame, ...] = ()
    """Images to send, oldest first, the current screen last, already sized by memory.
    Empty means: ask ``select_images``, or else send ``frame`` alone."""
    select_images: Callable[[], tuple[Frame, ...]] | None = field(default=None, compare=False, repr=False)
    """Memory's selection, computed only if a policy looks at the images (scripted ones do not)."""
    feedback: str | None = None
    """Why the previous answer was rejected; show it to the model."""
    hint: str | None = None
    """A note from a watcher, e.g. that the last actions changed nothing."""

    @cached_property
    def prompt_images(self) -> tuple[Frame, ...]:
        """The images for the prompt: ``images``, else memory's selection, else the current frame."""
        if self.images:
            return self.images
        selected = self.select_images() if self.select_images is not None else ()
        return selected or (self.frame,)


def _no_usage() -> Mapping[str, float]:
    return MappingProxyType({})


@dataclass(frozen=True)
class Decision:
    """A policy's answer: the step in device pixels, the raw text, and accounting."""

    step: Step
    raw: str = ""
    usage: Mapping[str, float] = field(default_factory=_no_usage)
    """Counters such as prompt_tokens, visual_tokens, output_tokens, and timings in seconds."""

    @property
    def action(self) -> Action:
        return self.step.action


@runtime_checkable
class Policy(Protocol):
    """Chooses steps. ``decide_batch`` lets one model call serve many episodes."""

    name: str

    def decide(self, observation: Observation) -> Decision: ...

    def decide_batch(self, observations: Sequence[Observation]) -> list[Decision | ModelError]: ...


def decide_each(policy: Policy, observations: Sequence[Observation]) -> list[Decision | ModelError]:
    """A batch form for policies without real batching: one ``decide`` per observation."""
    results: list[Decision | ModelError] = []
    for obs in observations:
        try:
            results.append(policy.decide(obs))
        except ModelError as exc:
            results.append(exc)
    return results
