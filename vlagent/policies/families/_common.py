"""Shared pieces of the native-format parsers and grammars: keys, points, validation, Lark bits.

Each family module turns its model's text into a plain dict in vlagent's action vocabulary
(``{"action": "click", "x": 12, "y": 34}``, grid coordinates); :func:`finish_step` turns
that dict into a validated Step or raises InvalidModelOutput with feedback that ends in the
family's own format hint. This module must not import heavy libraries.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from pydantic import ValidationError

from vlagent.actions import KEY_NAMES, Step, action_points
from vlagent.drivers.base import Capabilities
from vlagent.errors import InvalidModelOutput

__all__ = [
    "NUMBER",
    "SPECIAL_TOKENS",
    "FamilyProblem",
    "finish_step",
    "int_range_regex",
    "lark_literal",
    "parse_keys",
    "point_of",
]

#: Special tokens that leak into decoded text (``<|im_end|>``, box tokens when not skipped).
SPECIAL_TOKENS = re.compile(r"<\|[A-Za-z0-9_]+\|>")
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")

_KEY_ALIASES = {
    "esc": "escape",
    "return": "enter",
    "del": "delete",
    "pgup": "page_up",
    "pageup": "page_up",
    "pgdn": "page_down",
    "pagedown": "page_down",
    "arrowup": "up",
    "arrowdown": "down",
    "arrowleft": "left",
    "arrowright": "right",
    "end": "line_end",
    "back": "back",
    "recent": "app_switch",
    "recents": "app_switch",
    "app_switch": "app_switch",
    "bksp": "backspace",
    "spacebar": "space",
}
_MODIFIERS = {
    "ctrl": "ctrl",
    "control": "ctrl",
    "alt": "alt",
    "option": "alt",
    "shift": "shift",
    "super": "super",
    "cmd": "super",
    "command": "super",
    "win": "super",
    "meta": "super",
}


class FamilyProblem(Exception):
    """What is wrong with an answer; becomes the feedback shown to the model."""


def _key_name(word: str, capabilities: Capabilities | None) -> str:
    word = word.strip().lower().replace("-", "_")
    word = word.removeprefix("keycode_")
    if word == "home":
        # The phone's home button, or on a keyboard the key that goes to the line start.
        if capabilities is not None and "home" not in capabilities.keys and "line_start" in capabilities.keys:
            return "line_start"
        return "home"
    key = _KEY_ALIASES.get(word, word)
    if key not in KEY_NAMES:
        raise FamilyProblem(f"unknown key {word!r}")
    return key


def parse_keys(keys: str | Iterable[str], capabilities: Capabilities | None) -> dict[str, object]:
    """A hotkey such as ``'ctrl v'``, ``'ctrl+shift+a'`` or ``['ctrl', 'c']`` -> key action fields."""
    words = re.split(r"[\s+]+", keys.strip()) if isinstance(keys, str) else [str(k).strip() for k in keys]
    words = [w for w in words if w]
    if not words:
        raise FamilyProblem("the key is empty")
    modifiers = [_MODIFIERS[w.lower()] for w in words[:-1] if w.lower() in _MODIFIERS]
    rest = [w for w in words[:-1] if w.lower() not in _MODIFIERS]
    if rest:
        raise FamilyProblem(f"press one key at a time (with modifiers), got {' '.join(words)!r}")
    last = words[-1]
    if last.lower() in _MODIFIERS and not modifiers:
        raise FamilyProblem(f"a modifier alone ({last!r}) is not a key")
    fields: dict[str, object] = {"action": "key", "key": _key_name(last, capabilities)}
    if modifiers:
        fields["modifiers"] = modifiers
    return fields


def point_of(values: list[float], what: str) -> tuple[float, float]:
    """A point from 2 numbers, or the centre of a box from 4."""
    if len(values) == 2:
        return values[0], values[1]
    if len(values) == 4:
        return (values[0] + values[2]) / 2, (values[1] + values[3]) / 2
    raise FamilyProblem(f"{what} must be a point (x, y), got {len(values)} numbers")


def _explain(name: str, exc: ValidationError) -> str:
    problems = []
    for error in exc.errors()[:3]:
        loc = [str(p) for p in error["loc"] if p not in ("action", name)]
        where = ".".join(loc) or name
        problems.append(f"'{name}' needs {where}" if error["type"] == "missing" else f"{where}: {error['msg']}")
    return "; ".join(problems)


def finish_step(
    fields: Mapping[str, object],
    thought: str | None,
    grid: tuple[int, int],
    capabilities: Capabilities | None,
) -> Step:
    """A validated Step (grid coordinates) from vlagent action fields; raises FamilyProblem."""
    action = dict(fields)
    name = str(action.get("action"))
    for key in ("x", "y", "x1", "y1", "x2", "y2"):
        value = action.get(key)
        if isinstance(value, float):
            action[key] = round(value)
    payload: dict[str, object] = {"action": action}
    if thought:
        payload["thought"] = thought[:1000]
    try:
        step = Step.model_validate(payload)
    except ValidationError as exc:
        raise FamilyProblem(_explain(name, exc)) from exc
    for x, y in action_points(step.action):
        if not (0 <= x <= grid[0] and 0 <= y <= grid[1]):
            raise FamilyProblem(f"point ({x}, {y}) is outside the screen: x must be 0..{grid[0]}, y 0..{grid[1]}")
    if capabilities is not None:
        refusal = capabilities.refusal(step.action)
        if refusal is not None:
            raise FamilyProblem(refusal)
    return step


def invalid(problem: FamilyProblem | str, hint: str, raw: str) -> InvalidModelOutput:
    """The typed error the loop feeds back: the problem, then how a valid answer looks."""
    return InvalidModelOutput(f"{problem}. {hint}", raw)


# --- Lark helpers ------------------------------------------------------------------------


def lark_literal(text: str) -> str:
    """A Lark string literal for ``text``."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def int_range_regex(limit: int) -> str:
    """A regex (no anchors) matching the decimal integers 0..``limit`` without leading zeros."""
    if limit < 0:
        raise ValueError("limit must be >= 0")
    digits = str(limit)
    if len(digits) == 1:
        return f"[0-{limit}]"
    alternatives = ["[0-9]"]
    alternatives += [f"[1-9][0-9]{{{k - 1}}}" for k in range(2, len(digits))]
    for i, ch in enumerate(digits):
        low = 1 if i == 0 else 0
        d = int(ch)
        if d > low:
            rest = len(digits) - i - 1
            tail = f"[0-9]{{{rest}}}" if rest else ""
            alternatives.append(f"{digits[:i]}[{low}-{d - 1}]{tail}")
    alternatives.append(digits)
    return "(" + "|".join(alternatives) + ")"
