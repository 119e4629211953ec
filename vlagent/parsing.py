"""Parse what a model actually wrote into a Step, leniently in form and strictly in meaning.

Form: models fence their JSON, add prose around it, leak special tokens (``<|im_end|>``),
write Python literals (single quotes, ``None``, ``True``), leave trailing commas, forget the
closing brace, or put unescaped quotes inside strings. Syntax repair is delegated to the
``json-repair`` library rather than to hand-written regular expressions; this module only
strips special tokens and then normalises the *shape* of what was decoded:

- a bare action ``{"action": "click", "x": 1, "y": 2, "thought": "..."}`` or the wrapped
  form ``{"thought": ..., "action": {...}}``;
- ``"type"`` instead of ``"action"`` as the discriminator; upper-case action names; a
  Hermes tool call ``{"name": ..., "arguments": {...}}``;
- numbers written as strings, and coordinate pairs such as ``"point": [x, y]`` or
  ``"coordinate": "(x, y)"`` mapped onto ``x``/``y`` (``x1``.. ``y2`` for swipes);
- several JSON objects: the first one that is a valid step wins.

Runaway output is refused before any repair, in time that does not depend on its size: an
answer over ``MAX_ANSWER_CHARS`` (8,000) characters, brackets nested deeper than ``MAX_DEPTH``,
and an answer cut off inside a string by the token limit (repaired, it would type half the
text). json-repair reads at most ``MAX_REPAIR_CHARS`` per attempt and twice that per answer.
Numbers that are NaN, infinite or absurdly large are refused, not converted.

Meaning is never guessed: an unknown action, a missing field, a coordinate outside the
model's grid or an action the driver cannot perform raises
:class:`vlagent.errors.InvalidModelOutput` with short feedback written for the model.

The returned Step is in GRID coordinates; converting to device pixels is
:mod:`vlagent.coords`' job. This module must not import heavy libraries.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Mapping
from itertools import islice
from typing import cast

from vlagent.actions import ACTION_TYPES, Step, action_points
from vlagent.capabilities import Capabilities
from vlagent.errors import InvalidModelOutput
from vlagent.parsetail import (
    MAX_ANSWER_CHARS,
    MAX_DEPTH,
    MAX_REPAIR_CHARS,
    MODIFIERS,
    ParseProblem,
    clipped,
    finite_number,
    key_name,
    nesting_problem,
    numbers_in,
    object_slice,
    oversized,
    point_of,
    repair_json,
    shape_problem,
    shown,
    split_hotkey,
    validate_step,
)
from vlagent.schema import example_step

__all__ = ["parse_step"]

log = logging.getLogger(__name__)

#: Special tokens of the Qwen family and friends that leak into decoded text.
_SPECIAL_TOKENS = re.compile(r"<\|[A-Za-z0-9_]+\|>|</?tool_call>|</?s>|<\|?endoftext\|?>")
#: How many later '{' positions to try when the whole text does not decode to a step.
_MAX_STARTS = 20
#: Most dicts tried as a step per answer (an answer of ``{}{}{}...`` decodes to thousands).
_MAX_CANDIDATES = 32
#: Characters json-repair may read per answer, over all its attempts (it costs up to ~60 µs each).
_REPAIR_BUDGET = 2 * MAX_REPAIR_CHARS
#: Longest answer looked at (shared by every family's parser): longer is runaway output, refused.
_MAX_ANSWER_CHARS = MAX_ANSWER_CHARS
#: Deepest bracket nesting an answer may have (a step nests 3 levels); deeper is rejected at once,
#: before the repairing parser, whose time grows with the number of open brackets.
_MAX_DEPTH = MAX_DEPTH

_ACTION_ALIASES = {
    "tap": "click",
    "left_click": "click",
    "long_click": "long_press",
    "input": "type",
    "input_text": "type",
    "type_text": "type",
    "open": "open_app",
    "launch": "open_app",
    "press": "key",
    "key_press": "key",
    "finish": "done",
    "finished": "done",
    "terminate": "done",
}
_THOUGHT_ALIASES = ("thought", "thoughts", "thinking", "reasoning", "reason", "explanation", "rationale")
_POINT_KEYS = ("point", "coordinate", "coordinates", "coord", "position", "point_2d", "start_box", "box", "bbox_2d")
_START_KEYS = ("start", "from", "start_point", "start_coordinate", "coordinate", "point", "start_box")
_END_KEYS = ("end", "to", "end_point", "end_coordinate", "coordinate2", "end_box")
_COORD_FIELDS = ("x", "y", "x1", "y1", "x2", "y2")
_WORD_FIELDS = ("button", "direction", "status")

JsonDict = dict[str, object]


def parse_step(
    text: str,
    *,
    grid: tuple[int, int] = (1000, 1000),
    capabilities: Capabilities | None = None,
) -> Step:
    """Parse a model's answer into a Step in grid coordinates, or raise InvalidModelOutput.

    ``grid`` is the largest valid (x, y) value (``CoordCodec.grid_size``); ``capabilities``
    restricts the allowed actions, keys and buttons.
    """
    expected = "Answer with one JSON object like " + example_step(capabilities, grid)
    # Runaway nesting is named first (it is the likelier cause of an overlong answer), then the size.
    if len(text) > _MAX_ANSWER_CHARS:
        problem = nesting_problem(text[:_MAX_ANSWER_CHARS]) or oversized(text)
        raise InvalidModelOutput(f"{problem}. {expected}", clipped(text))
    stripped = text.strip()
    # An object left open at the end was cut off (the token limit), whatever it looks like:
    # ``"y": 2`` may have been 250, and ``{"action": "done"`` may have gone on to "failure".
    problem = shape_problem(stripped, closed=True)
    if problem is not None:
        raise InvalidModelOutput(f"{problem}. {expected}", text)
    first_error: str | None = None
    seen_candidate = False
    for candidate in _candidates(stripped):
        seen_candidate = True
        try:
            return _to_step(candidate, grid, capabilities)
        except ParseProblem as problem:
            log.debug("candidate %s rejected: %s", shown(candidate, 200), problem)
            first_error = first_error or str(problem)
    if not seen_candidate:
        raise InvalidModelOutput(f"no JSON object found in your answer. {expected}", text)
    raise InvalidModelOutput(f"{first_error}. {expected}", text)


# --- finding JSON objects ---------------------------------------------------------------


def _candidates(text: str) -> Iterator[JsonDict]:
    """Dicts decoded from ``text``: strict JSON first, then repaired JSON from each '{'.

    At most ``_MAX_CANDIDATES`` dicts, and json-repair reads at most ``_REPAIR_BUDGET`` characters
    in all, so that no answer (``{}{}{}...``, a thousand actions) costs more than a fraction of
    a second.
    """
    stripped = text.strip()
    try:
        # Well-formed answers (the common case with constrained decoding) take no repair.
        yield from islice(_dicts(json.loads(stripped)), _MAX_CANDIDATES)
        return
    except (ValueError, RecursionError):
        pass
    # Special tokens outside string literals first, so a typed "<|x|>" survives; then
    # everywhere, for answers whose quotes are too broken to tell strings from prose.
    outside = _strip_outside_strings(stripped)
    everywhere = _SPECIAL_TOKENS.sub(" ", stripped)
    seen: set[str] = set()
    budget = _REPAIR_BUDGET
    for cleaned in dict.fromkeys((outside, everywhere)):
        # The whole text first (json-repair skips prose and splits several objects); then from
        # each later '{', for prose whose own braces confused the first pass. A long text is only
        # read from its braces, each object up to its closing brace.
        starts = [m.start() for m in re.finditer(r"\{", cleaned)][:_MAX_STARTS]
        slices = [cleaned] if len(cleaned) <= MAX_REPAIR_CHARS else []
        slices += [piece for start in starts if (piece := object_slice(cleaned, start)) is not None]
        for piece in slices:
            if budget < len(piece) or len(seen) >= _MAX_CANDIDATES:
                return
            budget -= len(piece)
            for found in islice(_dicts(repair_json(piece)), _MAX_CANDIDATES):
                key = _key(found)
                if key not in seen:
                    seen.add(key)
                    yield found


def _key(found: JsonDict) -> str:
    """An identity for a decoded dict, to try each one once."""
    try:
        return json.dumps(found, sort_keys=True, default=str)
    except (ValueError, TypeError, RecursionError):
        return repr(id(found))


def _strip_outside_strings(text: str) -> str:
    """``text`` with special tokens replaced by a space wherever they are not inside a JSON string."""
    out: list[str] = []
    i, n, in_string = 0, len(text), False
    while i < n:
        ch = text[i]
        if in_string:
            if ch == "\\" and i + 1 < n:
                out.append(text[i : i + 2])
                i += 2
                continue
            in_string = ch != '"'
        elif ch == '"':
            in_string = True
        elif ch == "<" and (token := _SPECIAL_TOKENS.match(text, i)) is not None:
            out.append(" ")
            i = token.end()
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _dicts(value: object, depth: int = 0) -> Iterator[JsonDict]:
    if isinstance(value, dict):
        yield cast(JsonDict, value)
    elif isinstance(value, list) and depth < _MAX_DEPTH:
        for item in value:
            yield from _dicts(item, depth + 1)


# --- normalising the shape --------------------------------------------------------------


def _lower_keys(obj: Mapping[str, object] | Mapping[object, object]) -> JsonDict:
    return {str(k).strip().lower(): v for k, v in obj.items()}


def _as_dict(value: object) -> JsonDict | None:
    if isinstance(value, dict):
        return _lower_keys(value)
    if isinstance(value, str) and value.strip().startswith("{") and shape_problem(value) is None:
        decoded = repair_json(value)
        return _lower_keys(decoded) if isinstance(decoded, dict) else None
    return None


def _split(obj: JsonDict) -> tuple[object, JsonDict]:
    """(thought, action dict) from any of the accepted outer shapes."""
    thought = _thought_of(obj)
    inner = _as_dict(obj.get("action"))
    if inner is not None:  # {"thought": ..., "action": {...}}
        return thought if thought is not None else _thought_of(inner), inner
    arguments = _as_dict(obj.get("arguments"))
    if arguments is not None and "action" not in obj:  # {"name": "mobile_use", "arguments": {...}}
        return thought if thought is not None else _thought_of(arguments), arguments
    return thought, obj


def _thought_of(obj: JsonDict) -> object:
    if obj.get("thought") is not None:  # kept as written, even empty
        return obj["thought"]
    return next((obj[k] for k in _THOUGHT_ALIASES if obj.get(k) not in (None, "")), None)


def _action_name(action: JsonDict) -> str:
    raw = action.get("action")
    if not isinstance(raw, str):
        raw = action.pop("type", None)
        if not isinstance(raw, str):
            raise ParseProblem('the action object has no "action" field naming the action')
    name = raw.strip().lower().replace(" ", "_").replace("-", "_")
    return _ACTION_ALIASES.get(name, name)


def _numbers(value: object, what: str) -> list[float] | None:
    """[x, y, ...] from a list, a dict with x/y, or a string such as '(12, 34)' or '12 34'."""
    if isinstance(value, (list, tuple)):
        flat: list[object] = []
        for item in value[:9]:  # a point or a box; more numbers are refused by point_of
            flat.extend(item[:9] if isinstance(item, (list, tuple)) else [item])
        out = [finite_number(v) for v in flat]
        if len(value) > 9:
            out.append(None)
        return None if any(v is None for v in out) else cast(list[float], out)
    if isinstance(value, dict):
        lowered = _lower_keys(value)
        if "x" in lowered and "y" in lowered:
            return _numbers([lowered["x"], lowered["y"]], what)
        return None
    if isinstance(value, str):
        return numbers_in(value, what) or None
    return None


def _pop_point(action: JsonDict, keys: tuple[str, ...]) -> tuple[str, tuple[float, float]] | None:
    for key in keys:
        if key in action:
            values = _numbers(action[key], f'"{key}"')
            if values is None:
                raise ParseProblem(f'"{key}" must be a point [x, y]')
            point = point_of(values, f'"{key}"')  # a box: its centre
            del action[key]
            return key, point
    return None


def _map_points(name: str, action: JsonDict) -> None:
    """Move coordinate pairs onto the x/y fields the action models use."""
    if name == "swipe":
        if "x1" not in action:
            start = _pop_point(action, _START_KEYS)
            if start is not None:
                action["x1"], action["y1"] = start[1]
        if "x2" not in action:
            end = _pop_point(action, _END_KEYS)
            if end is not None:
                action["x2"], action["y2"] = end[1]
    elif "x" not in action and "y" not in action:
        found = _pop_point(action, _POINT_KEYS)
        if found is not None:
            action["x"], action["y"] = found[1]


def _coerce_coords(action: JsonDict, grid: tuple[int, int]) -> None:
    """Numbers-as-strings become numbers (rounded to the grid later); out-of-grid values are refused."""
    for field in _COORD_FIELDS:
        if field not in action or action[field] is None:
            continue
        value = finite_number(action[field])
        if value is None:
            raise ParseProblem(f'"{field}" must be an integer, got {shown(action[field])}')
        limit = grid[0] if field.startswith("x") else grid[1]
        if not 0 <= value <= limit:
            raise ParseProblem(
                f'"{field}"={value:g} is outside the screen: x must be 0..{grid[0]} and y must be 0..{grid[1]}'
            )
        action[field] = value


def _normalise_words(name: str, action: JsonDict) -> None:
    """Case and spelling of enum values: "Enter" -> "enter", "Ctrl+C" -> key c with ctrl."""
    for field in _WORD_FIELDS:
        value = action.get(field)
        if isinstance(value, str):
            action[field] = value.strip().lower().replace(" ", "_")
    key = action.get("key")
    if name != "key" or not isinstance(key, str):
        return
    modifiers, word = split_hotkey(key)
    # vlagent JSON names the phone's home and the keyboard's line_start apart: no capabilities.
    # An unknown key is left for validation to explain.
    action["key"] = key_name(word) or word.strip().lower().replace(" ", "_")
    existing = action.get("modifiers")
    if isinstance(existing, (list, tuple)):
        listed = [(m if isinstance(m, str) else shown(m)).strip().lower() for m in existing[:8]]
        action["modifiers"] = [MODIFIERS.get(m, m) for m in listed] + modifiers
    elif modifiers:
        action["modifiers"] = modifiers


def _dumps(value: object) -> str:
    """A non-string thought (a list of reasons, a number) as JSON text."""
    try:
        return json.dumps(value, ensure_ascii=False)
    except (ValueError, TypeError, RecursionError):  # a number too long to write, a non-JSON value
        return shown(value)


def _to_step(obj: JsonDict, grid: tuple[int, int], capabilities: Capabilities | None) -> Step:
    thought, action = _split(_lower_keys(obj))
    action = dict(action)
    name = _action_name(action)
    allowed = sorted(capabilities.actions) if capabilities is not None else list(ACTION_TYPES)
    if name not in ACTION_TYPES:
        raise ParseProblem(f"unknown action {shown(name)}; use one of: {', '.join(allowed)}")
    if name not in allowed:
        raise ParseProblem(f"this device cannot '{name}'; use one of: {', '.join(allowed)}")
    action["action"] = name
    for key in _THOUGHT_ALIASES:
        action.pop(key, None)
    _map_points(name, action)
    _coerce_coords(action, grid)
    _normalise_words(name, action)
    fields = ACTION_TYPES[name].model_fields
    dropped = [k for k in action if k not in fields]
    if dropped:  # extra keys ("element", "description", ...) carry no executable meaning
        log.debug("ignoring fields %s of %s", dropped, name)
    text = None if thought is None else thought if isinstance(thought, str) else _dumps(thought)
    step = validate_step({k: v for k, v in action.items() if k in fields}, text, grid)
    if capabilities is not None:
        refusal = capabilities.refusal(step.action)
        if refusal is not None:
            raise ParseProblem(refusal)
    assert all(0 <= x <= grid[0] and 0 <= y <= grid[1] for x, y in action_points(step.action))
    return step
