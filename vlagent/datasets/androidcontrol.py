"""AndroidControl: its TFRecord files as episodes, scored by OS-Atlas's and Qwen's rules.

Schema, from google-research/google-research ``android_control/README.md`` ("Dataset
format", "Action space"): GZIP TFRecord files, one ``tf.train.Example`` per episode::

    episode_id            int64   a unique integer per episode
    goal                  bytes   the high-level instruction
    screenshots           bytes   one PNG per observation
    accessibility_trees   bytes   one android_env AndroidAccessibilityForest per observation
    screenshot_widths     int64   one per screenshot
    screenshot_heights    int64   one per screenshot
    actions               bytes   JSON dicts, len(screenshots) - 1 of them, each between
                                  consecutive screenshots
    step_instructions     bytes   the low-level instruction of each action

Actions have an ``action_type``: ``click`` / ``long_press`` (``x``, ``y`` pixels),
``scroll`` (``direction`` up/down/left/right), ``open_app`` (``app_name``), ``type``
(click at ``x``, ``y``, type ``text``, press enter), ``input_text`` (``text`` only),
``navigate_home``, ``navigate_back``, ``wait``.

The README does not say which way a scroll direction points; this reads it as android_world's
JSON actions do (the same group's action space, its prompt says: scroll ``down`` reveals the
content below), which is vlagent's :class:`~vlagent.actions.Scroll`. The accessibility trees
are read by :mod:`~vlagent.datasets.a11y` when a step is scored: they give the Qwen rule its
candidate boxes (the element under a gold click, the app's icon for ``open_app``); a step
without a tree is judged by the rule's distance alone.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal

from PIL import Image

from vlagent.actions import MAX_COORD, MAX_TEXT, Action, Click, Key, LongPress, OpenApp, Scroll, Type, Wait
from vlagent.datasets.a11y import app_icon_boxes, candidate_boxes, parse_forest
from vlagent.datasets.base import DatasetEpisode, decode_image, pixel
from vlagent.datasets.example import ExampleError, Features, parse_example
from vlagent.datasets.tfrecord import MAX_RECORD_BYTES, DatasetError, read_records
from vlagent.frames import Frame
from vlagent.scoring import Box, Convention, StepScore, osatlas_action, qwen_ac_action, score_step

__all__ = ["ANDROIDCONTROL_CONVENTIONS", "AcAction", "AcStep", "androidcontrol_record", "read_androidcontrol"]

log = logging.getLogger(__name__)

ANDROIDCONTROL_CONVENTIONS: tuple[Convention, ...] = ("osatlas", "qwen_androidcontrol")

AcActionType = Literal[
    "click", "long_press", "scroll", "open_app", "type", "input_text", "navigate_home", "navigate_back", "wait"
]
_TYPES: tuple[str, ...] = AcActionType.__args__  # type: ignore[attr-defined]
_DIRECTIONS = ("up", "down", "left", "right")
#: Longest action JSON read (the published ones are under 200 characters).
_MAX_ACTION_CHARS = 20_000


@dataclass(frozen=True)
class AcAction:
    """One action as AndroidControl writes it (``x``/``y`` in the screenshot's pixels)."""

    action_type: AcActionType
    x: float | None = None
    y: float | None = None
    direction: str | None = None
    text: str | None = None
    app_name: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def to_action(self, size: tuple[int, int]) -> Action:
        """The action in vlagent's vocabulary, on a ``size`` screen."""
        width, height = size
        kind = self.action_type
        if kind in ("click", "long_press"):
            assert self.x is not None and self.y is not None
            x, y = pixel(self.x / width, width), pixel(self.y / height, height)
            return Click(x=x, y=y) if kind == "click" else LongPress(x=x, y=y)
        if kind == "scroll":
            return Scroll(direction=self.direction)  # type: ignore[arg-type]  # checked when read
        if kind == "open_app":
            return OpenApp(name=(self.app_name or " ")[:100])
        if kind in ("type", "input_text"):
            return Type(text=(self.text or " ")[:MAX_TEXT], submit=kind == "type")
        if kind == "navigate_home":
            return Key(key="home")
        if kind == "navigate_back":
            return Key(key="back")
        return Wait()


def _number(data: Mapping[str, object], key: str) -> float:
    """A finite number, kept as written (an int stays an int)."""
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ExampleError(f"a {data.get('action_type')} action needs a finite number {key!r}, got {value!r}")
    return value


def _string(data: Mapping[str, object], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise ExampleError(f"a {data.get('action_type')} action needs a string {key!r}, got {value!r}")
    return value


def parse_action(text: str) -> AcAction:
    """One ``actions`` entry; raises ExampleError when it is not an AndroidControl action."""
    if len(text) > _MAX_ACTION_CHARS:
        raise ExampleError(f"an action of {len(text)} characters is not an AndroidControl action")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ExampleError(f"an action is not JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise ExampleError(f"an action is a JSON {type(data).__name__}, not a dict")
    kind = data.get("action_type")
    if kind not in _TYPES:
        raise ExampleError(f"action_type {kind!r} is not one of {', '.join(_TYPES)}")
    if kind in ("click", "long_press"):
        return AcAction(kind, x=_number(data, "x"), y=_number(data, "y"))
    if kind == "scroll":
        direction = _string(data, "direction")
        if direction not in _DIRECTIONS:
            raise ExampleError(f"a scroll direction is {direction!r}, not one of {', '.join(_DIRECTIONS)}")
        return AcAction(kind, direction=direction)
    if kind == "open_app":
        return AcAction(kind, app_name=_string(data, "app_name"))
    if kind == "type":
        has_point = "x" in data or "y" in data
        x, y = (_number(data, "x"), _number(data, "y")) if has_point else (None, None)
        return AcAction(kind, x=x, y=y, text=_string(data, "text"))
    if kind == "input_text":
        return AcAction(kind, text=_string(data, "text"))
    return AcAction(kind)


@dataclass(frozen=True)
class AcStep:
    """One AndroidControl action with the screenshot before it."""

    episode_id: str
    index: int
    goal: str
    instruction: str | None
    action: AcAction
    size: tuple[int, int]
    source: str
    screenshot: bytes = field(repr=False)
    tree: bytes = field(default=b"", repr=False)
    """The serialized accessibility forest of the screen before the action (empty when absent)."""

    @property
    def has_tree(self) -> bool:
        return bool(self.tree)

    @cached_property
    def candidates(self) -> tuple[tuple[int, int, int, int], ...]:
        """The gold's candidate boxes in screen pixels (see :mod:`~vlagent.datasets.a11y`); a tree
        that cannot be read gives none, logged, rather than ending the evaluation."""
        if not self.tree or self.action.action_type not in ("click", "long_press", "open_app"):
            return ()
        try:
            nodes = parse_forest(self.tree)
        except ExampleError as exc:
            log.warning("%s, step %d: accessibility tree not read (%s)", self.source, self.index, exc)
            return ()
        if self.action.action_type == "open_app":
            return tuple(app_icon_boxes(nodes, self.action.app_name or ""))
        gold = self.gold
        assert isinstance(gold, (Click, LongPress))
        return tuple(candidate_boxes(nodes, gold.x, gold.y))

    @property
    def kind(self) -> str:
        return self.action.action_type

    @cached_property
    def gold(self) -> Action:
        return self.action.to_action(self.size)

    def frame(self) -> Frame:
        image = decode_image(self.screenshot, f"{self.source}, screenshot {self.index}", expected=self.size)
        return Frame(image, image.width, image.height, device={"dataset": "androidcontrol", "episode": self.episode_id})

    def native(self) -> dict[str, object]:
        return {
            **self.action.as_dict(),
            "accessibility_tree": self.has_tree,
            "candidate_bbox": [list(b) for b in self.candidates],
        }

    def predicted_native(self, prediction: Action) -> dict[str, object]:
        return {
            "osatlas": osatlas_action(prediction, self.size),
            "qwen_androidcontrol": dict(qwen_ac_action(prediction, self.size, gold=False)),
        }

    def _boxes(self) -> list[Box]:
        width, height = self.size
        return [Box.from_pixels(*b, width, height) for b in self.candidates]

    def score(self, prediction: Action | None) -> dict[Convention, StepScore]:
        gold = self.gold
        grounded = isinstance(gold, (Click, LongPress))
        texted = isinstance(gold, (Type, OpenApp))
        out: dict[Convention, StepScore] = {}
        for convention in ANDROIDCONTROL_CONVENTIONS:
            if prediction is None:
                out[convention] = StepScore(
                    convention, False, False if grounded else None, False if texted else None, False, "no valid answer"
                )
                continue
            try:
                boxes = self._boxes() if convention == "qwen_androidcontrol" else []
                out[convention] = score_step(prediction, gold, self.size, boxes=boxes, convention=convention)
            except ValueError as exc:  # where the reference script itself fails
                out[convention] = StepScore(
                    convention, False, False if grounded else None, False if texted else None, False, str(exc)
                )
        return out


def _episode(features: Features, source: str) -> DatasetEpisode:
    episode_id = str(features.int("episode_id"))
    goal = features.text("goal")
    shots = features.bytes_list("screenshots")
    widths, heights = features.ints("screenshot_widths"), features.ints("screenshot_heights")
    actions = [parse_action(t) for t in features.texts("actions")]
    instructions = features.texts("step_instructions") if features.kind("step_instructions") else []
    trees = features.bytes_list("accessibility_trees") if features.kind("accessibility_trees") else []
    if len(actions) != len(shots) - 1:
        raise ExampleError(f"{len(actions)} actions for {len(shots)} screenshots (there must be one fewer)")
    if len(widths) != len(shots) or len(heights) != len(shots):
        raise ExampleError(f"{len(widths)} widths and {len(heights)} heights for {len(shots)} screenshots")
    if instructions and len(instructions) != len(actions):
        raise ExampleError(f"{len(instructions)} step instructions for {len(actions)} actions")
    steps = []
    for i, action in enumerate(actions):
        size = (widths[i], heights[i])
        if not all(0 < v <= MAX_COORD for v in size):
            raise ExampleError(f"screenshot {i} is {size[0]}x{size[1]} pixels")
        steps.append(
            AcStep(
                episode_id=episode_id,
                index=i,
                goal=goal,
                instruction=instructions[i] if instructions else None,
                action=action,
                size=size,
                source=source,
                screenshot=shots[i],
                tree=trees[i] if i < len(trees) else b"",
            )
        )
    return DatasetEpisode(episode_id, goal, steps, source)


def read_androidcontrol(
    paths: Iterable[Path | str], *, max_record_bytes: int = MAX_RECORD_BYTES
) -> Iterator[DatasetEpisode]:
    """The episodes of AndroidControl TFRecord files, one per record, in file order."""
    for path in paths:
        for index, data in read_records(path, max_record_bytes=max_record_bytes):
            source = f"{path}: record {index}"
            try:
                yield _episode(parse_example(data), source)
            except ExampleError as exc:
                raise DatasetError(f"{source}: not an AndroidControl episode ({exc})") from None


def androidcontrol_record(
    *,
    episode_id: int,
    goal: str,
    screenshots: Sequence[Image.Image],
    actions: Sequence[Mapping[str, object]],
    step_instructions: Sequence[str] = (),
    accessibility_trees: Sequence[bytes] | None = None,
) -> bytes:
    """One episode as a serialized ``tf.train.Example`` in AndroidControl's schema (PNG screenshots)."""
    pngs = []
    for image in screenshots:
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="PNG")
        pngs.append(buffer.getvalue())
    return Features(
        bytes_lists={
            "goal": [goal.encode()],
            "screenshots": pngs,
            "accessibility_trees": list(accessibility_trees or [b""] * len(pngs)),
            "actions": [json.dumps(a).encode() for a in actions],
            "step_instructions": [s.encode() for s in step_instructions],
        },
        int64_lists={
            "episode_id": [episode_id],
            "screenshot_widths": [im.width for im in screenshots],
            "screenshot_heights": [im.height for im in screenshots],
        },
    ).encode()
