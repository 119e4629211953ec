"""The tail every answer parser shares: key vocabulary, points and boxes, validation feedback.

:func:`vlagent.parsing.parse_step` (vlagent JSON) and the native-format parsers of
:mod:`vlagent.policies.families` each read their own syntax into vlagent action fields
(``{"action": "key", "key": "pagedown"}``, grid coordinates); from there on they go through
this module, so that a spelling one parser accepts is accepted by all, with the same meaning,
and a mistake is explained to the model in the same words.

This module must not import heavy libraries, nor anything from :mod:`vlagent.policies`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

from pydantic import ValidationError

from vlagent.actions import KEY_NAMES, Step
from vlagent.capabilities import Capabilities

__all__ = [
    "KEY_ALIASES",
    "MODIFIERS",
    "NUMBER",
    "ParseProblem",
    "explain",
    "key_name",
    "point_of",
    "split_hotkey",
    "validate_step",
]

#: A number as models write it in text (coordinates, seconds).
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
#: Other spellings of vlagent's key names (:data:`vlagent.actions.KEY_NAMES`), as models write
#: them (after lower-casing, ``-`` and spaces -> ``_``, and without an Android ``KEYCODE_`` prefix).
KEY_ALIASES: dict[str, str] = {
    "esc": "escape",
    "return": "enter",
    "del": "delete",
    "bksp": "backspace",
    "spacebar": "space",
    "pgup": "page_up",
    "pageup": "page_up",
    "pgdn": "page_down",
    "pagedown": "page_down",
    "arrowup": "up",
    "arrowdown": "down",
    "arrowleft": "left",
    "arrowright": "right",
    "end": "line_end",
    "recent": "app_switch",
    "recents": "app_switch",
}
#: Modifier spellings -> vlagent's modifiers (:data:`vlagent.actions.Modifier`).
MODIFIERS: dict[str, str] = {
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
_COORD_PAIRS = (("x", "y"), ("x1", "y1"), ("x2", "y2"))


class ParseProblem(Exception):
    """What is wrong with an answer; becomes the feedback shown to the model."""


def key_name(word: str, capabilities: Capabilities | None = None) -> str | None:
    """vlagent's name of the key ``word`` spells (``'PageDown'`` -> ``page_down``), or None.

    ``home`` is ambiguous in the models' native formats: the phone's home button, or on a
    keyboard the key that goes to the line start. Given ``capabilities`` of a device that has
    ``line_start`` and no ``home``, it means the latter. vlagent JSON names the two apart, so
    its parser passes no capabilities here.
    """
    word = re.sub(r"[\s-]+", "_", word.strip().lower()).removeprefix("keycode_")
    if word == "home":
        if capabilities is not None and "home" not in capabilities.keys and "line_start" in capabilities.keys:
            return "line_start"
        return "home"
    key = KEY_ALIASES.get(word, word)
    return key if key in KEY_NAMES else None


def split_hotkey(keys: str | Iterable[str]) -> tuple[list[str], str]:
    """(modifiers, the key as written) of ``'ctrl v'``, ``'Ctrl+Shift+A'``, ``['ctrl', 'c']``, ``'page down'``.

    The modifiers are vlagent's (``cmd`` -> ``super``); the key still needs :func:`key_name`.
    """
    words = re.split(r"[\s+]+", keys.strip()) if isinstance(keys, str) else [str(k).strip() for k in keys]
    words = [w for w in words if w]
    if not words:
        raise ParseProblem("the key is empty")
    modifiers: list[str] = []
    while len(words) > 1 and words[0].lower() in MODIFIERS:
        modifiers.append(MODIFIERS[words.pop(0).lower()])
    if len(words) > 1:  # a key name written in words ('page down'), or several keys
        joined = "_".join(words)
        if key_name(joined) is None:
            raise ParseProblem(f"press one key at a time (with modifiers), got {' '.join(words)!r}")
        words = [joined]
    if words[0].lower() in MODIFIERS and not modifiers:
        raise ParseProblem(f"a modifier alone ({words[0]!r}) is not a key")
    return modifiers, words[0]


def point_of(values: list[float], what: str) -> tuple[float, float]:
    """A point from 2 numbers, or the centre of a box from 4 (exact: it is rounded once, later)."""
    if len(values) == 2:
        return values[0], values[1]
    if len(values) == 4:
        return (values[0] + values[2]) / 2, (values[1] + values[3]) / 2
    raise ParseProblem(f"{what} must be a point [x, y], got {len(values)} numbers")


def explain(name: str, exc: ValidationError) -> str:
    """Feedback for the model from the errors of validating a ``name`` action."""
    problems = []
    for error in exc.errors()[:3]:
        loc = [str(p) for p in error["loc"] if p not in ("action", name)]
        where = ".".join(loc) or name
        if error["type"] == "missing":
            problems.append(f"'{name}' needs \"{where}\"")
        else:
            problems.append(f'"{where}": {error["msg"]}')
    return "; ".join(problems)


def validate_step(fields: Mapping[str, object], thought: str | None, grid: tuple[int, int]) -> Step:
    """A Step from vlagent action fields in units of ``grid``; raises ParseProblem.

    Coordinates may be floats (a box's centre, a fraction of the screen): they are rounded to
    the grid here, and the exact values (within ``grid``: the range check is the parser's, on
    the integers) are kept on the action
    (``with_exact_points``) for :func:`vlagent.coords.decode_action`, so that a point is rounded
    once, to a device pixel, rather than to the grid and then again.
    """
    action = dict(fields)
    name = str(action.get("action"))
    fine: dict[tuple[int, int], tuple[float, float]] = {}
    for fx, fy in _COORD_PAIRS:
        x, y = action.get(fx), action.get(fy)
        for field, value in ((fx, x), (fy, y)):
            if isinstance(value, float):
                if not math.isfinite(value):
                    raise ParseProblem(f'"{field}" must be a number, got {value}')
                action[field] = round(value)
        if isinstance(x, (int, float)) and isinstance(y, (int, float)) and (round(x), round(y)) != (x, y):
            fine[(round(x), round(y))] = (min(max(float(x), 0.0), grid[0]), min(max(float(y), 0.0), grid[1]))
    payload: dict[str, object] = {"action": action}
    if thought is not None:
        payload["thought"] = thought
    try:
        step = Step.model_validate(payload)
    except ValidationError as exc:
        raise ParseProblem(explain(name, exc)) from exc
    step.action.with_exact_points(fine)
    return step
