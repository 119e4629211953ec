"""Capabilities: what a device can do, so a model is only offered actions that device can perform.

A driver declares its capabilities; the schema, the parsers and the prompts read them. The
form factor says what kind of device it is (a phone has home/back keys and apps to open, a
desktop has a mouse and modifier keys), so nothing has to guess it from the action list.
This module sits just above the action types and must not import drivers or policies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from vlagent.actions import ACTION_TYPES, KEY_NAMES, Action, Click, Key
from vlagent.coords import points_off_screen

__all__ = ["DESKTOP_CAPABILITIES", "DESKTOP_KEYS", "PHONE_CAPABILITIES", "PHONE_KEYS", "Capabilities", "FormFactor"]

FormFactor = Literal["phone", "desktop"]

PHONE_KEYS = frozenset(
    {
        "home",
        "back",
        "app_switch",
        "menu",
        "power",
        "volume_up",
        "volume_down",
        "enter",
        "backspace",
        "delete",
        "space",
        "tab",
    }
)
DESKTOP_KEYS = frozenset(set(KEY_NAMES) - {"home", "back", "app_switch", "menu", "power", "volume_up", "volume_down"})


@dataclass(frozen=True)
class Capabilities:
    """What a driver can do; used to restrict the schema shown to a model."""

    actions: frozenset[str]
    keys: frozenset[str] = field(default_factory=frozenset)
    buttons: frozenset[str] = frozenset({"left"})
    modifiers: bool = False
    form_factor: FormFactor | None = None
    """"phone" or "desktop"; when not given, a device that can open apps is a phone."""

    def __post_init__(self) -> None:
        if self.form_factor is None:
            object.__setattr__(self, "form_factor", "phone" if "open_app" in self.actions else "desktop")
        unknown = set(self.actions) - set(ACTION_TYPES)
        if unknown:
            raise ValueError(f"unknown action types in capabilities: {sorted(unknown)}")

    def refusal(self, action: Action, *, screen: tuple[int, int] | None = None) -> str | None:
        """Why this driver cannot perform ``action``, or None when it can; the reason is worded for the model.

        ``screen``: the (width, height) of the screen when ``action`` is in device pixels (a policy's
        decision, what a driver executes): a point outside it is refused too, naming the screen's
        size. Leave it None for an action still on a model's grid (a parser's check): a grid may be
        larger than the screen (``abs_resized`` rounds up to 28 pixels, ``norm1000`` spans 0..1000 on
        a 720-pixel-wide phone), so its points are checked against the grid instead.
        """
        if action.action not in self.actions:
            return f"this device cannot '{action.action}'; allowed actions: {', '.join(sorted(self.actions))}"
        if isinstance(action, Click) and action.button not in self.buttons:
            return f"this device has no {action.button} button; allowed: {', '.join(sorted(self.buttons))}"
        if isinstance(action, Key):
            if action.key not in self.keys:
                return f"this device has no key '{action.key}'; allowed keys: {', '.join(sorted(self.keys))}"
            if action.modifiers and not self.modifiers:
                return "this device does not support modifier keys"
        outside = points_off_screen(action, *screen) if screen is not None else []
        if screen is not None and outside:
            width, height = screen
            where = ", ".join(_point(x, y) for x, y in outside)
            limits = f"x must be 0..{width - 1}, y 0..{height - 1}"
            return f"{where} is outside the captured screen ({width}x{height}): {limits}"
        return None

    @property
    def is_phone(self) -> bool:
        """True for a phone (home/back keys, apps to open), False for a desktop."""
        return self.form_factor == "phone"


def _point(x: int | None, y: int | None) -> str:
    if x is None or y is None:
        return f"x={x}" if y is None else f"y={y}"
    return f"point ({x}, {y})"


PHONE_CAPABILITIES = Capabilities(
    actions=frozenset({"click", "long_press", "type", "swipe", "scroll", "key", "open_app", "wait", "done"}),
    keys=PHONE_KEYS,
    form_factor="phone",
)
DESKTOP_CAPABILITIES = Capabilities(
    actions=frozenset({"click", "type", "swipe", "scroll", "key", "wait", "done"}),
    keys=DESKTOP_KEYS,
    buttons=frozenset({"left", "right", "middle"}),
    modifiers=True,
    form_factor="desktop",
)
