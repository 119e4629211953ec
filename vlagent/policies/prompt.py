"""What a model is shown: the chat messages of one step, and each model family's conventions.

``build_messages`` turns an Observation into chat messages in the content-list form that
Qwen chat templates and OpenAI-compatible servers share: text parts
``{"type": "text", "text": ...}`` and image parts ``{"type": "image", "image": PIL.Image}``.
Backends convert image parts as they need (the in-process policy passes the images to the
processor; an HTTP backend encodes them as data URLs).

A ``ModelFamily`` is the one place that knows a family's conventions: its coordinate grid
(Qwen2-VL relative 0-1000, Qwen2.5-VL absolute pixels of the resized image, Qwen3-VL
relative 0-999), how its prompt states that grid, whether it answers in vlagent's JSON (so
constrained decoding applies) and how its text is parsed. Families are registered by name
and detected from a model's ``model_type`` or name; a family with a native action format
(UI-TARS, ShowUI) is a new registered family with its own ``instructions`` and ``parse``.

This module must not import heavy libraries and must not talk to any model.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vlagent.actions import Step
from vlagent.coords import CoordCodec, OutOfRange, Relative, codec_by_name, encode_action
from vlagent.drivers.base import Capabilities
from vlagent.errors import ConfigError, InvalidModelOutput
from vlagent.parsing import parse_step
from vlagent.policies.base import HistoryEntry, Observation
from vlagent.schema import describe_actions

__all__ = [
    "FAMILIES",
    "ImageGrid",
    "InstructionsFn",
    "Message",
    "ModelFamily",
    "ParseFn",
    "build_messages",
    "detect_family",
    "get_family",
    "register_family",
    "system_prompt",
]

log = logging.getLogger(__name__)

Message = dict[str, Any]
ParseFn = Callable[[str, tuple[int, int], Capabilities | None], Step]
#: (task, capabilities, family, image size, with_thought) -> system prompt text.
InstructionsFn = Callable[[str, Capabilities, "ModelFamily", tuple[int, int], bool], str]


def _parse_json(text: str, grid: tuple[int, int], capabilities: Capabilities | None) -> Step:
    return parse_step(text, grid=grid, capabilities=capabilities)


@dataclass(frozen=True)
class ImageGrid:
    """Absolute pixels of the image the model was shown (``abs_resized``), for one image size."""

    width: int
    height: int
    name: str = "abs_resized"

    def grid_size(self, width: int, height: int) -> tuple[int, int]:
        return self.width, self.height

    def to_grid(self, x: float, y: float, width: int, height: int) -> tuple[float, float]:
        return x / width * self.width, y / height * self.height

    def to_device(
        self, x: float, y: float, width: int, height: int, *, out_of_range: OutOfRange = "raise"
    ) -> tuple[int, int]:
        if not (0 <= x <= self.width and 0 <= y <= self.height):
            if out_of_range == "raise":
                raise InvalidModelOutput(
                    f"point ({x:g}, {y:g}) is outside the screenshot: x must be 0..{self.width} "
                    f"and y 0..{self.height} (pixels of the screenshot you were shown)"
                )
            x, y = min(max(x, 0.0), self.width), min(max(y, 0.0), self.height)
        return (
            min(width - 1, max(0, round(x / self.width * width))),
            min(height - 1, max(0, round(y / self.height * height))),
        )


@dataclass(frozen=True)
class ModelFamily:
    """The conventions of one family of models."""

    name: str
    coords: str
    """Coordinate codec: ``norm1000``, ``norm999`` or ``abs_resized`` (pixels of the image shown)."""
    model_types: tuple[str, ...] = ()
    """``config.model_type`` values of this family, e.g. ``qwen2_vl``."""
    name_hints: tuple[str, ...] = ()
    """Lower-case substrings of a hub id or path that identify the family (checked in order)."""
    json_actions: bool = True
    """Answers are vlagent JSON steps, so the step schema can constrain decoding."""
    parse: ParseFn = _parse_json
    """Model text -> Step in grid coordinates; raises InvalidModelOutput."""
    instructions: InstructionsFn | None = None
    """The family's own system prompt (a native action format); None: vlagent's JSON instructions."""

    def codec(self, image_size: tuple[int, int]) -> CoordCodec:
        """The codec for a prompt whose current screenshot has ``image_size`` (width, height)."""
        if self.coords == "abs_resized":
            return ImageGrid(*image_size)
        return codec_by_name(self.coords)

    def grid(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """Largest valid (x, y) the model may answer for that screenshot."""
        return self.codec(image_size).grid_size(*image_size)

    def coordinate_rule(self, image_size: tuple[int, int]) -> str:
        """One sentence telling the model what its numbers mean."""
        gx, gy = self.grid(image_size)
        codec = self.codec(image_size)
        if isinstance(codec, Relative):
            return (
                f"Points are relative to the current screenshot: x=0 is its left edge and x={gx} its right edge, "
                f"y=0 its top edge and y={gy} its bottom edge, whatever the screen's real size."
            )
        return (
            f"Points are pixel positions in the current screenshot, which is {gx}x{gy} pixels: "
            "x from the left edge, y from the top edge."
        )


FAMILIES: dict[str, ModelFamily] = {}


def register_family(family: ModelFamily) -> ModelFamily:
    """Add (or replace) a family; later registrations take precedence in detection."""
    FAMILIES[family.name] = family
    return family


register_family(ModelFamily("qwen2vl", "norm1000", model_types=("qwen2_vl",), name_hints=("qwen2-vl", "qwen2_vl")))
register_family(
    ModelFamily("qwen25vl", "abs_resized", model_types=("qwen2_5_vl",), name_hints=("qwen2.5-vl", "qwen2_5_vl"))
)
register_family(ModelFamily("qwen3vl", "norm999", model_types=("qwen3_vl", "qwen3_vl_moe"), name_hints=("qwen3-vl",)))


def get_family(name: str) -> ModelFamily:
    """The family registered as ``name``; unknown names list the known ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ConfigError(f"unknown model family '{name}'. Known families: {', '.join(sorted(FAMILIES))}") from None


def detect_family(model_type: str | None, name: str = "", *, default: str = "qwen2vl") -> ModelFamily:
    """The family of a model from its config's ``model_type``, else from its id or path."""
    newest_first = list(reversed(FAMILIES.values()))
    lowered = name.lower()
    # A name hint wins first, so a fine-tune (UI-TARS on qwen2_vl) beats its base architecture,
    # but only when the architecture agrees (or is unknown).
    for family in newest_first:
        if any(hint in lowered for hint in family.name_hints) and (
            not model_type or not family.model_types or model_type in family.model_types
        ):
            return family
    for family in newest_first:
        if model_type and model_type in family.model_types:
            return family
    log.warning("unknown model family for model_type=%r name=%r; assuming %s", model_type, name, default)
    return get_family(default)


@functools.lru_cache(maxsize=256)
def system_prompt(
    task: str,
    capabilities: Capabilities,
    family: ModelFamily,
    image_size: tuple[int, int],
    *,
    with_thought: bool = True,
) -> str:
    """The instructions: role, task, coordinate convention, allowed actions and answer format.

    Cached: a batch of episodes on one kind of device shares it, and rendering the action
    list from the schema costs milliseconds.
    """
    if family.instructions is not None:
        return family.instructions(task, capabilities, family, image_size, with_thought)
    device = "phone" if "open_app" in capabilities.actions else "computer"
    grid = family.grid(image_size)
    answer = (
        'First write a short "thought" about what you see and what to do next, then the action.'
        if with_thought
        else 'Answer with the action only: {"action": {...}}.'
    )
    return "\n".join(
        [
            f"You control a {device} by choosing one action at a time, looking at its screenshots.",
            f"Task: {task}",
            family.coordinate_rule(image_size),
            describe_actions(capabilities, grid),
            answer,
            'When the task is complete, answer with the "done" action; if it cannot be done, use status "failure".',
        ]
    )


def _history_line(entry: HistoryEntry, codec: CoordCodec, screen: tuple[int, int]) -> str:
    # Memory keeps actions in device pixels; the model must read them in its own grid.
    shown = dataclasses.replace(entry, action=encode_action(entry.action, codec, *screen))
    return shown.render()


def build_messages(
    observation: Observation,
    family: ModelFamily,
    *,
    with_thought: bool = True,
) -> list[Message]:
    """Chat messages for one step: system instructions, then the screenshots and the history.

    Images come oldest first and the current screen last, each after a text label, so a
    model reading the sequence knows which one its coordinates refer to.
    """
    images = observation.prompt_images
    current = images[-1].image.size
    codec = family.codec(current)
    screen = observation.frame.size
    system = system_prompt(observation.task, observation.capabilities, family, current, with_thought=with_thought)
    content: list[dict[str, Any]] = []
    for i, frame in enumerate(images[:-1]):
        content.append({"type": "text", "text": f"Earlier screenshot {i + 1} of {len(images) - 1}:"})
        content.append({"type": "image", "image": frame.image})
    content.append({"type": "text", "text": f"Current screen (step {observation.step_index + 1}):"})
    content.append({"type": "image", "image": images[-1].image})
    lines: list[str] = []
    if observation.history:
        lines.append("Previous steps:")
        lines.extend(_history_line(entry, codec, screen) for entry in observation.history)
    else:
        lines.append("No previous steps.")
    if observation.hint:
        lines.append(f"Note: {observation.hint}")
    if observation.feedback:
        lines.append(f"Your previous answer was rejected: {observation.feedback}")
    lines.append("What is the next action? Answer with one JSON object.")
    content.append({"type": "text", "text": "\n".join(lines)})
    return [
        {"role": "system", "content": [{"type": "text", "text": system}]},
        {"role": "user", "content": content},
    ]
