"""The tail every answer parser shares: key vocabulary, points and boxes, validation feedback.

:func:`vlagent.parsing.parse_step` (vlagent JSON) and the native-format parsers of
:mod:`vlagent.policies.families` each read their own syntax into vlagent action fields
(``{"action": "key", "key": "pagedown"}``, grid coordinates); from there on they go through
this module, so that a spelling one parser accepts is accepted by all, with the same meaning,
and a mistake is explained to the model in the same words.

This module must not import heavy libraries, nor anything from :mod:`vlagent.policies`.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping

import json_repair
from pydantic import ValidationError

from vlagent.actions import KEY_NAMES, Step
from vlagent.capabilities import Capabilities

__all__ = [
    "KEY_ALIASES",
    "MAX_ANSWER_CHARS",
    "MAX_DEPTH",
    "MAX_MAGNITUDE",
    "MAX_REPAIR_CHARS",
    "MODIFIERS",
    "NUMBER",
    "ParseProblem",
    "clipped",
    "explain",
    "finite_number",
    "key_name",
    "nesting_problem",
    "numbers_in",
    "object_slice",
    "oversized",
    "point_of",
    "repair_json",
    "shape_problem",
    "shown",
    "split_hotkey",
    "validate_step",
]

#: A number as models write it in text (coordinates, seconds).
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
#: Longest answer any parser reads. A step is a few hundred characters; anything longer is
#: runaway output (a repeated action, a model that never stopped) and is refused before any
#: repair, so that no parser spends more than a few milliseconds on it, whatever its size.
MAX_ANSWER_CHARS = 8_000
#: Deepest bracket nesting a JSON or Python-literal answer may have (a step nests 3 levels);
#: deeper is refused before the repairing parsers, whose time and stack grow with it.
MAX_DEPTH = 32
#: Longest text handed to json-repair in one call. Repair is for short, slightly broken steps
#: (the longest valid step is about 2,600 characters); json-repair reads some inputs at ~60 µs a
#: character, so an 8,000-character answer could otherwise take half a second per attempt.
MAX_REPAIR_CHARS = 3_000
#: Largest magnitude a number in an answer may have: coordinates, seconds and amounts are all
#: far below it, and anything above (``1e999``, 400 digits) is refused rather than converted.
MAX_MAGNITUDE = 1e9
#: Digits a number written in text may have before it is refused unread (Python refuses to
#: convert integers longer than 4300 digits, and float() of a long string costs its length).
_MAX_DIGITS = 32
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

log = logging.getLogger(__name__)


class ParseProblem(Exception):
    """What is wrong with an answer; becomes the feedback shown to the model."""


def oversized(text: str) -> str | None:
    """Why ``text`` is too long to be read at all, or None: the first check of every parser."""
    if len(text) > MAX_ANSWER_CHARS:
        return (
            f"your answer is {len(text)} characters long; a step is one short answer "
            f"(at most {MAX_ANSWER_CHARS} characters): answer with one action only"
        )
    return None


def clipped(text: str) -> str:
    """``text`` as kept with an error (``InvalidModelOutput.raw``): at most MAX_ANSWER_CHARS characters."""
    if len(text) <= MAX_ANSWER_CHARS:
        return text
    return text[:MAX_ANSWER_CHARS] + f"... [{len(text)} characters in all]"


def shown(value: object, limit: int = 60) -> str:
    """A short ``repr`` of a value from an answer, for feedback; never fails (a 5000-digit integer
    or a deep list cannot be turned into text by ``repr`` itself)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return "a number with far too many digits"
    try:
        text = repr(value)
    except (ValueError, RecursionError):
        return f"a {type(value).__name__} that cannot be shown"
    return text if len(text) <= limit else text[:limit] + "..."


def shape_problem(text: str, quotes: str = '"', *, closed: bool = False) -> str | None:
    """Why ``text`` cannot hold a usable JSON (or Python-literal) object whatever is repaired, or None.

    Two things no repair should paper over: brackets nested far deeper than a step (runaway
    output, which would also make the repairing parsers slow or overflow their stack), and an
    answer cut off inside a string of an unclosed object (``{"action": "type", "text": "hel``),
    which repaired would type half the text. ``quotes`` are the characters that open a string
    (``"`` for JSON, both ``"`` and ``'`` for Python literals); a string ends at its own quote.
    Quotes outside any bracket belong to prose and do not count. With ``closed``, an object that
    never closes is refused too (a format whose answers always close, where a missing bracket
    means the token limit cut it). One pass, linear in ``text``.
    """
    deepest, depth, in_string = _scan(text, quotes)
    if deepest > MAX_DEPTH:
        return _too_deep(deepest)
    if in_string and depth > 0:
        return "your answer was cut off inside a string before the object closed; answer again, shorter"
    if closed and depth > 0:
        return "your answer was cut off before the object closed; answer again, shorter"
    return None


def nesting_problem(text: str) -> str | None:
    """Why ``text`` nests brackets too deep to be read, or None (the first check of :func:`shape_problem`)."""
    deepest = _scan(text, '"')[0]
    return _too_deep(deepest) if deepest > MAX_DEPTH else None


def _too_deep(deepest: int) -> str:
    return f"your answer nests brackets {deepest} deep; a step is one flat object"


def _scan(text: str, quotes: str) -> tuple[int, int, bool]:
    """(deepest nesting, open brackets at the end, whether the end is inside a string)."""
    depth = deepest = parens = 0
    quote = ""
    escaped = False
    for ch in text:
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
        elif ch in "{[":
            depth += 1
            deepest = max(deepest, depth + parens)
        elif ch in "}]":
            depth = max(0, depth - 1)
        elif ch == "(":  # json-repair reads parentheses as tuples: they nest too (prose's rarely deep)
            parens += 1
            deepest = max(deepest, depth + parens)
        elif ch == ")":
            parens = max(0, parens - 1)
        elif ch in quotes and depth > 0:
            quote = ch
    return deepest, depth, bool(quote)


def object_slice(text: str, start: int, limit: int = MAX_REPAIR_CHARS) -> str | None:
    """The object opening at ``text[start]`` (a brace or bracket) up to its matching close, or to the
    end of ``text`` when it never closes; None when it runs past ``limit`` characters (a slice cut
    there could end inside a string and be repaired into half a value). JSON strings are skipped."""
    depth = 0
    in_string = escaped = False
    end = min(len(text), start + limit)
    for i in range(start, end):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth <= 0:
                return text[start : i + 1]
    return text[start:] if end == len(text) else None


def repair_json(text: str) -> object:
    """What json-repair makes of ``text`` (at most MAX_REPAIR_CHARS characters), or None.

    Callers check :func:`shape_problem` first: json-repair closes a string cut off by the token
    limit as if it were complete, and its time grows with nesting.
    """
    if len(text) > MAX_REPAIR_CHARS:
        log.debug("not repairing %d characters (more than %d)", len(text), MAX_REPAIR_CHARS)
        return None
    try:
        return json_repair.loads(text)
    except (ValueError, RecursionError) as exc:  # json-repair gives up on some inputs
        log.debug("json-repair failed: %s", exc)
        return None


def finite_number(value: object) -> float | None:
    """``value`` as a float when it is a plain, finite number of sane size (bools, NaN, infinities,
    ``1e999`` and 400-digit integers are None); strings are read too (``" 12 "``, ``"-0"``)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip()
        if not value or len(value) > _MAX_DIGITS + 8:
            return None
        try:
            number = float(value)
        except ValueError:
            return None
    elif isinstance(value, int):
        if value.bit_length() > 64:
            return None
        number = float(value)
    elif isinstance(value, float):
        number = value
    else:
        return None
    if not math.isfinite(number) or abs(number) > MAX_MAGNITUDE:
        return None
    return number + 0.0  # -0.0 -> 0.0


def numbers_in(text: str, what: str) -> list[float]:
    """The numbers written in ``text`` (``'(12, 34)'``, ``'<point>12 34</point>'``); raises ParseProblem
    for one that is absurdly long or large, naming ``what``."""
    out: list[float] = []
    for match in NUMBER.finditer(text):
        number = finite_number(match.group()) if len(match.group()) <= _MAX_DIGITS else None
        if number is None:
            raise ParseProblem(f"{what} has a number that is far too large: {match.group()[:20]}...")
        out.append(number)
        if len(out) > 8:
            raise ParseProblem(f"{what} must be a point [x, y], got more than 8 numbers")
    return out


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
