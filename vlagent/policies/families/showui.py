"""ShowUI-2B (a Qwen2-VL-2B fine-tune) in its navigation format: Python dicts, 0-1 positions.

Format (showlab/ShowUI QUICK_START.md)::

    {'action': 'TAP', 'value': None, 'position': [0.49, 0.42]}

The system prompt is the quick start's ``_NAV_SYSTEM`` + ``_NAV_FORMAT`` with the ``phone``
action space on a phone and the ``web`` one on a desktop. Positions are fractions of the
screenshot; the parser multiplies them by 1000, so the family's grid is ``norm1000``.

The parser accepts: Python-literal syntax (single quotes, ``None``, ``True``) and JSON,
upper- or lower-case action names, several dicts separated by commas or newlines (the first
is taken: one action per step), a position as ``[x, y]``, ``[[x1, y1], [x2, y2]]`` or a
4-number box (its centre), leaked special tokens, surrounding prose or code fences.
It rejects (InvalidModelOutput): an answer longer than any step (``MAX_ANSWER_CHARS``), a dict
nested deeper than ``MAX_DEPTH`` or cut off inside a string (the token limit), no dict, an
unknown action (also ``HOVER``: there is no hover here), a missing or malformed position
(also NaN, infinite or absurd numbers), positions above 1 (not fractions), an empty ``INPUT``
value, and actions the device cannot perform.

Action mapping: TAP/CLICK/SELECT -> click; INPUT(value) -> type (the position is where the
text goes: ShowUI taps it itself, here the field must already be focused); SWIPE with two
positions -> swipe (finger path); SWIPE with a direction value -> scroll the other way
(the finger's direction); SCROLL(value=direction) -> scroll (content side); ENTER -> key
enter; ANSWER(value) -> done success with the value as answer; SELECT_TEXT -> swipe (drag);
COPY -> key ctrl+c.
"""

# ruff: noqa: E501, W291  (the model cards' prompts are reproduced verbatim, trailing spaces included)

from __future__ import annotations

import ast
from collections.abc import Sequence
from typing import Any

from vlagent.actions import Action, Click, Done, Key, LongPress, OpenApp, Scroll, Step, Swipe, Type, Wait
from vlagent.capabilities import Capabilities
from vlagent.policies.families._common import (
    SPECIAL_TOKENS,
    FamilyProblem,
    finish_step,
    finite_number,
    invalid,
    point_of,
    refuse_oversized,
    repair_json,
    shape_problem,
    shown,
)
from vlagent.policies.families.base import GrammarLimits, ModelFamily

__all__ = ["grammar_showui", "instructions_showui", "parse_showui", "render_showui"]

_SCALE = 1000  # fractions -> the norm1000 grid
_HINT = "Answer with one dictionary like {'action': 'TAP', 'value': None, 'position': [0.5, 0.5]}"
_OPPOSITE = {"up": "down", "down": "up", "left": "right", "right": "left"}

# _NAV_SYSTEM, _NAV_FORMAT and the action spaces are showlab/ShowUI QUICK_START.md ("GUI Navigation",
# commit 21ed7cb) verbatim. The training template data/template/shared_navigation.py names the apps
# "website"/"smartphone" and its smartphone INPUT line says the position "is not applicable"; the
# quick start is the documented inference prompt, so its wording is kept. The quick start sends all
# of it as the user turn's first text, then "Task: <task>", then the screenshot; here it is the
# system prompt, ending with the task line. Grounding (its _SYSTEM prompt) is not a step format here.
_NAV_SYSTEM = """You are an assistant trained to navigate the {app} screen. 
Given a task instruction, a screen observation, and an action history sequence, 
output the next action and wait for the next observation. 
Here is the action space:
{space}
"""
_NAV_FORMAT = """
Format the action as a dictionary with the following keys:
{'action': 'ACTION_TYPE', 'value': 'element', 'position': [x,y]}

If value or position is not applicable, set it as `None`.
Position might be [[x1,y1], [x2,y2]] if the action requires a start and end position.
Position represents the relative coordinates on the screenshot and should be scaled to a range of 0-1.
"""
_SPACES = {
    "web": """
1. `CLICK`: Click on an element, value is not applicable and the position [x,y] is required. 
2. `INPUT`: Type a string into an element, value is a string to type and the position [x,y] is required. 
3. `SELECT`: Select a value for an element, value is not applicable and the position [x,y] is required. 
4. `HOVER`: Hover on an element, value is not applicable and the position [x,y] is required.
5. `ANSWER`: Answer the question, value is the answer and the position is not applicable.
6. `ENTER`: Enter operation, value and position are not applicable.
7. `SCROLL`: Scroll the screen, value is the direction to scroll and the position is not applicable.
8. `SELECT_TEXT`: Select some text content, value is not applicable and position [[x1,y1], [x2,y2]] is the start and end position of the select operation.
9. `COPY`: Copy the text, value is the text to copy and the position is not applicable.
""",
    "phone": """
1. `INPUT`: Type a string into an element, value is a string to type and the position [x,y] is required. 
2. `SWIPE`: Swipe the screen, value is not applicable and the position [[x1,y1], [x2,y2]] is the start and end position of the swipe operation.
3. `TAP`: Tap on an element, value is not applicable and the position [x,y] is required.
4. `ANSWER`: Answer the question, value is the status (e.g., 'task complete') and the position is not applicable.
5. `ENTER`: Enter operation, value and position are not applicable.
""",
}


def _is_phone(capabilities: Capabilities) -> bool:
    return capabilities.is_phone


def instructions_showui(
    task: str, capabilities: Capabilities, family: ModelFamily, image_size: tuple[int, int], with_thought: bool
) -> str:
    app = "phone" if _is_phone(capabilities) else "web"
    return _NAV_SYSTEM.format(app=app, space=_SPACES[app]) + _NAV_FORMAT


def user_turn_showui(task: str, capabilities: Capabilities, actions: Sequence[str], notes: Sequence[str]) -> str:
    """showlab/ShowUI data/template/shared_navigation.py ``navigation_to_qwen``: after the instructions
    (the same user turn) comes ``f"Task: {task}\\n"``, then the earlier answers as text (the
    'tttt' history of data/dset_shared_navigation.py), then the screenshot."""
    return f"Task: {task}\n" + "".join(actions) + "".join(f"\n{note}" for note in notes)


# --- reading ----------------------------------------------------------------------------------------


def _first_dict(text: str) -> dict[str, Any]:
    start = text.find("{")
    if start < 0:
        raise FamilyProblem("no action dictionary found")
    depth, end = 0, len(text)
    quote: str | None = None
    for i in range(start, len(text)):
        ch = text[i]
        if quote:
            if ch == quote and text[i - 1] != "\\":
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                end = i + 1
                break
    blob = text[start:end]
    # Runaway nesting, or a dict the token limit cut short (a ShowUI answer always closes its dict:
    # "[0.5, 0." repaired would tap the top edge).
    problem = shape_problem(blob, quotes="'\"", closed=True)
    if problem is not None:
        raise FamilyProblem(problem)
    value: object
    try:
        value = ast.literal_eval(blob)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        # TypeError: an unhashable key or set item ({[1]: 2}); the others: not a literal at all
        value = repair_json(blob)
    if not isinstance(value, dict):
        raise FamilyProblem("the action is not a dictionary")
    return {(k if isinstance(k, str) else shown(k)).lower(): v for k, v in value.items()}


def _fractions(value: object) -> list[float]:
    flat: list[object] = []
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    for item in items[:5]:  # a point, two points or a box; more is refused below
        flat.extend(item[:5] if isinstance(item, (list, tuple)) else [item])
    numbers = [finite_number(v) for v in flat]
    if len(items) > 4 or not numbers or any(n is None for n in numbers):
        raise FamilyProblem("position must be [x, y] with fractions 0-1")
    checked = [n for n in numbers if n is not None]
    if any(not 0 <= n <= 1 for n in checked):
        raise FamilyProblem("position values are fractions of the screenshot and must be 0-1")
    return [n * _SCALE for n in checked]


def _point(action: dict[str, Any], name: str) -> tuple[float, float]:
    if action.get("position") is None:
        raise FamilyProblem(f"{name} needs position [x, y]")
    return point_of(_fractions(action["position"]), "position")


def _fields(action: dict[str, Any]) -> dict[str, object]:
    raw = action.get("action", "")
    name = (raw if isinstance(raw, str) else shown(raw)).strip().upper().replace(" ", "_")
    value = action.get("value")
    text = value.strip() if isinstance(value, str) and value.strip().lower() != "none" else ""
    if name in ("TAP", "CLICK", "SELECT"):
        x, y = _point(action, name)
        return {"action": "click", "x": x, "y": y}
    if name == "INPUT":
        if not text:
            raise FamilyProblem("INPUT needs the text to type as value")
        return {"action": "type", "text": text}
    if name in ("SWIPE", "SELECT_TEXT", "SCROLL"):
        position = action.get("position")
        if position is not None and len(_fractions(position)) == 4:
            x1, y1, x2, y2 = _fractions(position)
            return {"action": "swipe", "x1": x1, "y1": y1, "x2": x2, "y2": y2}
        direction = text.lower()
        if direction not in _OPPOSITE:
            raise FamilyProblem(f"{name} needs position [[x1,y1], [x2,y2]] or a direction up/down/left/right as value")
        # SWIPE names the finger's motion; SCROLL (and vlagent) the side whose content appears.
        return {"action": "scroll", "direction": _OPPOSITE[direction] if name == "SWIPE" else direction}
    if name == "ENTER":
        return {"action": "key", "key": "enter"}
    if name == "ANSWER":
        return {"action": "done", "status": "success", "answer": text or None}
    if name == "COPY":
        return {"action": "key", "key": "c", "modifiers": ["ctrl"]}
    if name == "HOVER":
        raise FamilyProblem("HOVER is not available here; use CLICK")
    raise FamilyProblem(f"unknown action {shown(action.get('action'))}")


def parse_showui(text: str, grid: tuple[int, int], capabilities: Capabilities | None) -> Step:
    """A ShowUI navigation dict -> Step on the 0-1000 grid."""
    refuse_oversized(text, _HINT)
    cleaned = SPECIAL_TOKENS.sub(" ", text)
    try:
        return finish_step(_fields(_first_dict(cleaned)), None, grid, capabilities)
    except FamilyProblem as problem:
        raise invalid(problem, _HINT, text) from None


# --- writing back -------------------------------------------------------------------------------------


def _frac(v: int) -> str:
    return f"{v / _SCALE:.3f}".rstrip("0").rstrip(".") if v else "0"


def render_showui(action: Action, grid: tuple[int, int]) -> str:
    def pos(x: int, y: int) -> str:
        return f"[{_frac(x)}, {_frac(y)}]"

    if isinstance(action, (Click, LongPress)):
        return f"{{'action': 'TAP', 'value': None, 'position': {pos(action.x, action.y)}}}"
    if isinstance(action, Swipe):
        both = f"[{pos(action.x1, action.y1)}, {pos(action.x2, action.y2)}]"
        return f"{{'action': 'SWIPE', 'value': None, 'position': {both}}}"
    if isinstance(action, Type):
        return f"{{'action': 'INPUT', 'value': {action.text!r}, 'position': None}}"
    if isinstance(action, Scroll):
        return f"{{'action': 'SCROLL', 'value': '{action.direction}', 'position': None}}"
    if isinstance(action, Key) and action.key == "enter":
        return "{'action': 'ENTER', 'value': None, 'position': None}"
    if isinstance(action, Done):
        return f"{{'action': 'ANSWER', 'value': {(action.answer or 'task complete')!r}, 'position': None}}"
    if isinstance(action, (Key, OpenApp, Wait)):
        from vlagent.actions import describe_action

        return describe_action(action)
    raise AssertionError(action)


# --- grammar -------------------------------------------------------------------------------------------


def grammar_showui(caps: Capabilities, grid: tuple[int, int], limits: GrammarLimits) -> str:
    phone = _is_phone(caps)
    acts = caps.actions
    calls: list[str] = []
    none_pos = "\"'position': None}\""
    if "click" in acts:
        calls.append(f"\"{{'action': '{'TAP' if phone else 'CLICK'}', 'value': None, 'position': \" point \"}}\"")
    if "type" in acts:
        calls.append("\"{'action': 'INPUT', 'value': '\" TEXT \"', 'position': \" point \"}\"")
    if "swipe" in acts and phone:
        calls.append("\"{'action': 'SWIPE', 'value': None, 'position': [\" point \", \" point \"]}\"")
    if "scroll" in acts and not phone:
        calls.append(f"\"{{'action': 'SCROLL', 'value': '\" DIRECTION \"', \" {none_pos}")
    if "key" in acts and "enter" in caps.keys:
        calls.append(f"\"{{'action': 'ENTER', 'value': None, \" {none_pos}")
    if "done" in acts:
        calls.append(f"\"{{'action': 'ANSWER', 'value': '\" TEXT \"', \" {none_pos}")
    return (
        "\n".join(
            [
                "start: " + "\n    | ".join(calls),
                'point: "[" FRACTION ", " FRACTION "]"',
                'FRACTION: /0\\.[0-9]{1,3}/ | "1.0"',
                "TEXT: /([^'\\\\\\n]|\\\\['\\\\])" + f"{{1,{limits.string_chars}}}/",
                'DIRECTION: "up" | "down" | "left" | "right"',
            ]
        )
        + "\n"
    )
