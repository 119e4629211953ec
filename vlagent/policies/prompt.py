"""What a model is shown: the chat messages of one step, and each model family's conventions.

``build_messages`` turns an Observation into chat messages in the content-list form that
Qwen chat templates and OpenAI-compatible servers share: text parts
``{"type": "text", "text": ...}`` and image parts ``{"type": "image", "image": PIL.Image}``.
Backends convert image parts as they need (the in-process policy passes the images to the
processor; an HTTP backend encodes them as data URLs).

The model families (their own prompts, output formats, units and parsers) live in
:mod:`vlagent.policies.families`; this module re-exports the family API and registers the
built-in families (qwen2vl, qwen25vl, qwen3vl, showui, uitars, uitars15). A family with
a native action format brings its own system prompt, history rendering and last line.

This module must not import heavy libraries and must not talk to any model.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Sequence
from typing import Any

from vlagent.capabilities import Capabilities
from vlagent.coords import CoordCodec, encode_action
from vlagent.frames import Frame
from vlagent.memory import HistoryEntry
from vlagent.policies.base import Observation
from vlagent.policies.families import BUILTIN
from vlagent.policies.families.base import (
    FAMILIES,
    GrammarFn,
    GrammarLimits,
    ImageGrid,
    InstructionsFn,
    ModelFamily,
    ParseFn,
    RenderFn,
    detect_family,
    get_family,
    register_family,
)
from vlagent.schema import describe_actions

__all__ = [
    "FAMILIES",
    "GrammarFn",
    "GrammarLimits",
    "ImageGrid",
    "InstructionsFn",
    "Message",
    "ModelFamily",
    "ParseFn",
    "RenderFn",
    "build_messages",
    "detect_family",
    "get_family",
    "register_family",
    "system_prompt",
]

log = logging.getLogger(__name__)

Message = dict[str, Any]

for _family in BUILTIN:
    if _family.name not in FAMILIES:  # a re-import must not undo a user's replacement
        register_family(_family)


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
    device = "phone" if capabilities.is_phone else "computer"
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


_PLAIN_RENDER = ModelFamily.__dataclass_fields__["render"].default


def _history_line(entry: HistoryEntry, family: ModelFamily, codec: CoordCodec, screen: tuple[int, int]) -> str:
    # Memory keeps actions in device pixels; the model must read them in its own grid and format.
    action = encode_action(entry.action, codec, *screen)
    if family.render is _PLAIN_RENDER:
        return dataclasses.replace(entry, action=action).render()
    return entry.render(family.render(action, codec.grid_size(*screen)))


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
    if family.history_turns is not None:
        return _conversation(observation, family, codec, screen, images, system)
    if family.user_turn is not None:
        user = _native_user_turn(observation, family, codec, screen, images)
        if family.instructions_in_user:
            return [{"role": "user", "content": [{"type": "text", "text": system}, *user]}]
        return [
            {"role": "system", "content": [{"type": "text", "text": system}]},
            {"role": "user", "content": user},
        ]
    content: list[dict[str, Any]] = []
    for label, frame in zip(_earlier_labels(observation, images), images[:-1], strict=True):
        content.append({"type": "text", "text": label})
        content.append({"type": "image", "image": frame.image})
    content.append({"type": "text", "text": f"Current screen (step {observation.step_index + 1}):"})
    content.append({"type": "image", "image": images[-1].image})
    lines: list[str] = []
    if observation.history:
        lines.append("Previous steps:")
        lines.extend(_history_line(entry, family, codec, screen) for entry in observation.history)
    else:
        lines.append("No previous steps.")
    lines.extend(_notes(observation))
    lines.append(family.ask)
    content.append({"type": "text", "text": "\n".join(lines)})
    return [
        {"role": "system", "content": [{"type": "text", "text": system}]},
        {"role": "user", "content": content},
    ]


def _native_user_turn(
    observation: Observation, family: ModelFamily, codec: CoordCodec, screen: tuple[int, int], images: Sequence[Frame]
) -> list[dict[str, Any]]:
    """The family's own opening text, then the screenshots (earlier ones labelled, the current one last)."""
    assert family.user_turn is not None
    grid = codec.grid_size(*screen)
    actions = [family.render(encode_action(entry.action, codec, *screen), grid) for entry in observation.history]
    notes = _notes(observation)
    text = family.user_turn(observation.task, observation.capabilities, actions, notes)
    content: list[dict[str, Any]] = [{"type": "text", "text": text}]
    for label, frame in zip(_earlier_labels(observation, images), images[:-1], strict=True):
        content.append({"type": "text", "text": label})
        content.append({"type": "image", "image": frame.image})
    if len(images) > 1:
        content.append({"type": "text", "text": "Current screen:"})
    content.append({"type": "image", "image": images[-1].image})
    return content


def _conversation(
    observation: Observation,
    family: ModelFamily,
    codec: CoordCodec,
    screen: tuple[int, int],
    images: Sequence[Frame],
    instructions: str,
) -> list[Message]:
    """The UI-TARS clients' layout (bytedance/UI-TARS-desktop packages/ui-tars/sdk/src/utils.ts,
    ``toVlmModelFormat`` + ``convertToOpenAIMessages``): no system turn, the instructions with the
    task as the first user turn, then per earlier step its screenshot and the model's answer, the
    current screenshot last. Screenshots leave the window oldest first while their answers stay.
    Memory keeps the newest screens, so the earlier images belong to the newest history entries."""
    assert family.history_turns is not None
    grid = codec.grid_size(*screen)
    history = observation.history
    earlier = images[:-1][-len(history) :] if history else ()
    first_shown = len(history) - len(earlier)
    messages: list[Message] = [{"role": "user", "content": [{"type": "text", "text": instructions}]}]
    for n, entry in enumerate(history):
        if n >= first_shown:
            messages.append({"role": "user", "content": [{"type": "image", "image": earlier[n - first_shown].image}]})
        action = family.render(encode_action(entry.action, codec, *screen), grid)
        answer = family.history_turns(entry.thought, action)
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    last: list[dict[str, Any]] = [{"type": "image", "image": images[-1].image}]
    notes = _notes(observation)
    if notes:
        last.append({"type": "text", "text": "\n".join(notes)})
    messages.append({"role": "user", "content": last})
    return messages


def _earlier_labels(observation: Observation, images: Sequence[Frame]) -> list[str]:
    """The label of each earlier screenshot: the step it was taken at when memory chose the images.

    A step label stays the same while the screenshot stays in the prompt, so the start of the
    prompt is unchanged from one step to the next (a policy can reuse what it computed for it);
    without memory's selection the screenshots are counted.
    """
    earlier = len(images) - 1
    selection = observation.choice.selection if observation.choice is not None else None
    if selection is not None and len(selection.images) == len(images):
        steps = [image.step for image in selection.images[:-1]]
        if all(step is not None for step in steps):
            return [f"Screenshot at step {(step or 0) + 1}:" for step in steps]
    return [f"Earlier screenshot {i + 1} of {earlier}:" for i in range(earlier)]


def _notes(observation: Observation) -> list[str]:
    """A watcher's hint and why the previous answer was rejected, one line each (any layout)."""
    notes = [f"Note: {observation.hint}"] if observation.hint else []
    if observation.feedback:
        notes.append(f"Your previous answer was rejected: {observation.feedback}")
    return notes
