"""The Policy boundary: whatever decides the next step from what is on screen.

A policy receives an Observation (task, current frame, the images and text history that
memory selected, feedback about a rejected answer) and returns a Decision whose action is
in device pixels. Converting from the model's grid is the policy's job (it knows its
model's convention); validating JSON is the policy's job too, raising InvalidModelOutput
with a message the loop feeds back on the next try.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Protocol, runtime_checkable

from vlagent.actions import Action, Step, action_points
from vlagent.capabilities import Capabilities
from vlagent.errors import ModelError, PolicyConformanceError
from vlagent.frames import Frame
from vlagent.memory import HistoryEntry, ImageChoice

__all__ = [
    "Decision",
    "HistoryEntry",
    "Observation",
    "Policy",
    "Prefetcher",
    "check_policy",
    "decide_each",
    "step_seed",
]


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
    Empty means: take memory's ``choice``, or else send ``frame`` alone."""
    choice: ImageChoice | None = field(default=None, compare=False, repr=False)
    """Memory's choice of images, made only if a policy looks at the images (scripted ones do not);
    afterwards ``choice.selection`` says what was sent."""
    feedback: str | None = None
    """Why the previous answer was rejected; show it to the model."""
    hint: str | None = None
    """A note from a watcher, e.g. that the last actions changed nothing."""
    seed: int | None = None
    """The episode's sampling seed (``run_episode(seed=)``); a sampling policy draws from
    ``sampling_seed``, so a repeat on the same seed samples the same answers."""

    @property
    def sampling_seed(self) -> int | None:
        """This step's seed, derived from the episode's ``seed`` and ``step_index`` (None without one)."""
        if self.seed is None:
            return None
        return step_seed(self.seed, self.step_index)

    @cached_property
    def prompt_images(self) -> tuple[Frame, ...]:
        """The images for the prompt: ``images``, else memory's selection, else the current frame."""
        if self.images:
            return self.images
        selected = self.choice.frames() if self.choice is not None else ()
        return selected or (self.frame,)


def step_seed(seed: int, step_index: int) -> int:
    """A 31-bit seed for one step of an episode seeded ``seed``: stable across runs and machines,
    different for every step, so consecutive steps do not draw the same random stream."""
    mixed = (seed * 0x9E3779B1 + (step_index + 1) * 0x85EBCA77) & 0xFFFFFFFFFFFFFFFF
    mixed ^= mixed >> 29
    return (mixed * 0xBF58476D1CE4E5B9 >> 33) & 0x7FFFFFFF


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


@runtime_checkable
class Prefetcher(Protocol):
    """A policy that can work ahead: the agent loop calls ``prefetch`` on a thread while the device
    acts, with the next step's observation, its current screen a stand-in of the same size (memory's
    ``preview`` and ``lazy_choice(stand_in=True)``). It must not change any later answer, and it
    must be safe alongside ``decide`` on another thread. Returns the work done (policy's unit; 0: none).
    """

    def prefetch(self, observation: Observation) -> int: ...


def check_policy(policy: Policy, observation: Observation) -> None:
    """Check that ``policy`` behaves as vlagent expects on ``observation``; raise PolicyConformanceError
    listing every problem: a str ``name``; ``decide`` answers a Decision whose action is in device
    pixels (inside the frame) or raises a ModelError; ``decide_batch`` answers one item per
    observation, each a Decision or a ModelError, in order."""
    problems: list[str] = []
    if not isinstance(getattr(policy, "name", None), str):
        problems.append("policy.name must be a str")
    frame = observation.frame
    try:
        decision = policy.decide(observation)
    except ModelError:
        decision = None
    except Exception as exc:
        problems.append(f"decide() raised {exc!r}; only ModelError (e.g. InvalidModelOutput) may escape")
        decision = None
    if decision is not None:
        problems.extend(_decision_problems("decide()", decision, frame))
    try:
        answers = policy.decide_batch([observation, observation])
    except Exception as exc:
        problems.append(f"decide_batch() raised {exc!r}; a failed item is returned as its ModelError")
    else:
        if not isinstance(answers, list) or len(answers) != 2:
            problems.append(f"decide_batch() of 2 observations must return a list of 2, got {answers!r}")
        else:
            for i, answer in enumerate(answers):
                if not isinstance(answer, ModelError):
                    problems.extend(_decision_problems(f"decide_batch()[{i}]", answer, frame))
    if problems:
        raise PolicyConformanceError(problems)


def _decision_problems(where: str, decision: object, frame: Frame) -> list[str]:
    if not isinstance(decision, Decision):
        return [f"{where} must return a Decision (or raise a ModelError), got {type(decision).__name__}"]
    w, h = frame.width, frame.height
    outside = [(x, y) for x, y in action_points(decision.action) if not (0 <= x < w and 0 <= y < h)]
    if outside:
        return [f"{where}: points {outside} are outside the {w}x{h} frame (device pixels expected)"]
    return []


def decide_each(policy: Policy, observations: Sequence[Observation]) -> list[Decision | ModelError]:
    """A batch form for policies without real batching: one ``decide`` per observation."""
    results: list[Decision | ModelError] = []
    for obs in observations:
        try:
            results.append(policy.decide(obs))
        except ModelError as exc:
            results.append(exc)
    return results
