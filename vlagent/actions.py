"""The action vocabulary shared by every policy, driver, recorder and scorer.

Actions are frozen pydantic models discriminated by the field ``action``. Coordinates are
plain non-negative integers: in a model's answer they are on the model's grid (e.g. 0-1000
for Qwen2-VL), inside vlagent they are device pixels. Converting between the two is the job
of :mod:`vlagent.coords`, never of this module.

This module must not import heavy libraries; it is imported by ``import vlagent``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Literal, Self, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, TypeAdapter

__all__ = [
    "KEY_NAMES",
    "MAX_COORD",
    "MAX_TEXT",
    "Action",
    "CallUser",
    "Click",
    "Done",
    "Key",
    "KeyName",
    "LongPress",
    "Modifier",
    "OpenApp",
    "Scroll",
    "Step",
    "Swipe",
    "Type",
    "Wait",
    "action_points",
    "describe_action",
    "map_points",
]

#: Upper bound of any coordinate inside vlagent (device pixels of an 8K screen and more).
MAX_COORD = 16384
#: Longest text a single ``type`` action may carry.
MAX_TEXT = 500

Coord = Annotated[int, Field(ge=0, le=MAX_COORD)]
_PointFn = Callable[[int, int], tuple[int, int]]

KeyName = Literal[
    # phone buttons
    "home",
    "back",
    "app_switch",
    "menu",
    "power",
    "volume_up",
    "volume_down",
    # keyboard keys (phone and desktop)
    "enter",
    "escape",
    "tab",
    "backspace",
    "delete",
    "space",
    "up",
    "down",
    "left",
    "right",
    "page_up",
    "page_down",
    "line_start",
    "line_end",
    "f1",
    "f2",
    "f3",
    "f4",
    "f5",
    "f6",
    "f7",
    "f8",
    "f9",
    "f10",
    "f11",
    "f12",
    # letters and digits, for hotkeys such as ctrl+c
    "a",
    "b",
    "c",
    "d",
    "e",
    "f",
    "g",
    "h",
    "i",
    "j",
    "k",
    "l",
    "m",
    "n",
    "o",
    "p",
    "q",
    "r",
    "s",
    "t",
    "u",
    "v",
    "w",
    "x",
    "y",
    "z",
    "0",
    "1",
    "2",
    "3",
    "4",
    "5",
    "6",
    "7",
    "8",
    "9",
]
Modifier = Literal["ctrl", "alt", "shift", "super"]

KEY_NAMES: tuple[str, ...] = KeyName.__args__  # type: ignore[attr-defined]


class _ActionBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    _exact_points: dict[tuple[int, int], tuple[float, float]] = PrivateAttr(default_factory=dict)
    """Exact values of points a parser rounded to the model's grid (a box's centre, a fraction),
    so that decoding to device pixels rounds once. Not a field: never serialised or compared."""

    def with_exact_points(self, points: Mapping[tuple[int, int], tuple[float, float]]) -> Self:
        """This action, remembering the exact grid values its whole-number points were rounded from."""
        self._exact_points.update(points)
        return self

    def exact_point(self, x: int, y: int) -> tuple[float, float]:
        """The exact grid value behind the point ``(x, y)`` (itself when it was not rounded)."""
        return self._exact_points.get((x, y), (x, y))

    def __eq__(self, other: object) -> bool:
        # Fields only: the exact points are a decoding aid, not part of what the action is.
        if not isinstance(other, BaseModel):
            return NotImplemented
        return type(self) is type(other) and self.__dict__ == other.__dict__

    __hash__ = BaseModel.__hash__


class Click(_ActionBase):
    """Click or tap at a point."""

    action: Literal["click"] = "click"
    x: Coord
    y: Coord
    button: Literal["left", "right", "middle"] = "left"
    clicks: int = Field(default=1, ge=1, le=3)


class LongPress(_ActionBase):
    """Press and hold at a point."""

    action: Literal["long_press"] = "long_press"
    x: Coord
    y: Coord
    duration: float = Field(default=1.0, ge=0.1, le=10.0)


class Type(_ActionBase):
    """Type text into the focused field; ``submit`` presses enter afterwards."""

    action: Literal["type"] = "type"
    text: str = Field(min_length=1, max_length=MAX_TEXT)
    submit: bool = False


class Swipe(_ActionBase):
    """Drag a finger (or the mouse) from one point to another."""

    action: Literal["swipe"] = "swipe"
    x1: Coord
    y1: Coord
    x2: Coord
    y2: Coord
    duration: float = Field(default=0.3, ge=0.05, le=5.0)


class Scroll(_ActionBase):
    """Scroll the view so that content in ``direction`` comes into sight.

    ``down`` reveals what is below (the finger moves up). The optional point says where to
    scroll; without it the centre of the screen is used.
    """

    action: Literal["scroll"] = "scroll"
    direction: Literal["up", "down", "left", "right"]
    x: Coord | None = None
    y: Coord | None = None
    amount: int = Field(default=1, ge=1, le=10)


class Key(_ActionBase):
    """Press a named key or button, optionally with modifiers (a desktop hotkey)."""

    action: Literal["key"] = "key"
    key: KeyName
    modifiers: tuple[Modifier, ...] = Field(default=(), max_length=4)


class OpenApp(_ActionBase):
    """Open an application by its visible name or package name."""

    action: Literal["open_app"] = "open_app"
    name: str = Field(min_length=1, max_length=100)


class Wait(_ActionBase):
    """Do nothing for a while (e.g. while something loads)."""

    action: Literal["wait"] = "wait"
    seconds: float = Field(default=1.0, ge=0.0, le=30.0)


class Done(_ActionBase):
    """End the task, reporting success or failure and optionally an answer."""

    action: Literal["done"] = "done"
    status: Literal["success", "failure"] = "success"
    answer: str | None = Field(default=None, max_length=1000)


class CallUser(_ActionBase):
    """Hand control to a person (a login, a CAPTCHA, a choice only they can make); go on when they are done.

    Offered to the model only while a person is at hand (see :mod:`vlagent.confirm`); no driver performs it."""

    action: Literal["call_user"] = "call_user"
    reason: str = Field(default="", max_length=500)


Action: TypeAlias = Annotated[
    Click | LongPress | Type | Swipe | Scroll | Key | OpenApp | Wait | Done | CallUser,
    Field(discriminator="action"),
]

ACTION_TYPES: dict[str, type[_ActionBase]] = {
    cls.model_fields["action"].default: cls
    for cls in (Click, LongPress, Type, Swipe, Scroll, Key, OpenApp, Wait, Done, CallUser)
}

ACTION_ADAPTER: TypeAdapter[Action] = TypeAdapter(Action)


class Step(BaseModel):
    """One model decision: an optional thought followed by exactly one action."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    thought: str | None = Field(default=None, max_length=1000)
    action: Action


#: Finger motion (dx, dy) of a scroll: scrolling down (revealing what is below) moves the finger up.
SCROLL_FINGER: dict[str, tuple[int, int]] = {"down": (0, -1), "up": (0, 1), "right": (-1, 0), "left": (1, 0)}


def tap_point(action: Action) -> tuple[int, int] | None:
    """Where a click or long press lands; None for other actions."""
    if isinstance(action, (Click, LongPress)):
        return action.x, action.y
    return None


def action_points(action: Action) -> list[tuple[int, int]]:
    """The points an action addresses, in its own coordinate space."""
    if isinstance(action, (Click, LongPress)):
        return [(action.x, action.y)]
    if isinstance(action, Swipe):
        return [(action.x1, action.y1), (action.x2, action.y2)]
    if isinstance(action, Scroll) and action.x is not None and action.y is not None:
        return [(action.x, action.y)]
    return []


def map_points(action: Action, fn: _PointFn) -> Action:
    """Return a copy of ``action`` with every point passed through ``fn`` (exact points not carried over)."""
    moved = _moved(action, fn)
    if moved is not action:
        moved._exact_points = {}  # model_copy shares the private dict; the copy's points are new
    return moved


def _moved(action: Action, fn: _PointFn) -> Action:
    if isinstance(action, (Click, LongPress)):
        x, y = fn(action.x, action.y)
        return action.model_copy(update={"x": x, "y": y})
    if isinstance(action, Swipe):
        x1, y1 = fn(action.x1, action.y1)
        x2, y2 = fn(action.x2, action.y2)
        return action.model_copy(update={"x1": x1, "y1": y1, "x2": x2, "y2": y2})
    if isinstance(action, Scroll) and action.x is not None and action.y is not None:
        x, y = fn(action.x, action.y)
        return action.model_copy(update={"x": x, "y": y})
    return action


def describe_action(action: Action) -> str:
    """A short human (and model) readable rendering, e.g. ``click(540, 1200)``."""
    if isinstance(action, Click):
        extra = "" if action.button == "left" and action.clicks == 1 else f", {action.button} x{action.clicks}"
        return f"click({action.x}, {action.y}{extra})"
    if isinstance(action, LongPress):
        return f"long_press({action.x}, {action.y}, {action.duration:g}s)"
    if isinstance(action, Type):
        return f"type({action.text!r}{', submit' if action.submit else ''})"
    if isinstance(action, Swipe):
        return f"swipe({action.x1}, {action.y1} -> {action.x2}, {action.y2})"
    if isinstance(action, Scroll):
        at = f" at ({action.x}, {action.y})" if action.x is not None else ""
        return f"scroll({action.direction}{at})"
    if isinstance(action, Key):
        return "key(" + "+".join((*action.modifiers, action.key)) + ")"
    if isinstance(action, OpenApp):
        return f"open_app({action.name!r})"
    if isinstance(action, Wait):
        return f"wait({action.seconds:g}s)"
    if isinstance(action, CallUser):
        return f"call_user({action.reason!r})" if action.reason else "call_user()"
    return f"done({action.status}{', ' + repr(action.answer) if action.answer else ''})"
