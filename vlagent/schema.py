"""The JSON schema of a step as shown to a model, restricted to what a driver can do.

The schema is generated from the pydantic models in :mod:`vlagent.actions` and then
narrowed: action types, keys and mouse buttons the driver lacks are removed, modifiers
disappear when unsupported, and every coordinate gets the model's grid as its bound. The
result is meant for constrained decoding (llguidance ``grammar_from_json_schema``) and for
the ``response_format`` of OpenAI-compatible servers (vLLM, SGLang), so it sticks to the
common JSON-schema subset: ``anyOf`` instead of ``oneOf`` plus ``discriminator``, ``$defs``
references, ``enum``, ``const``, numeric bounds and ``maxLength``.

Anything valid under a restricted schema is a valid :class:`vlagent.actions.Step`; the
converse is not a goal (the schema is stricter, e.g. ``action`` is required inside each
action object so a constrained model always names what it does).

This module must not import heavy libraries; it is imported by policies at start-up.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from typing import TypeAlias

from vlagent.actions import ACTION_TYPES, MAX_COORD, Step
from vlagent.capabilities import Capabilities

__all__ = ["JSON", "JSONObject", "describe_actions", "example_step", "step_schema"]

JSON: TypeAlias = dict[str, "JSON"] | list["JSON"] | str | int | float | bool | None
JSONObject: TypeAlias = dict[str, JSON]

_X_FIELDS = ("x", "x1", "x2")
_Y_FIELDS = ("y", "y1", "y2")
#: Noise for a model and for grammar compilers; the structure is what matters.
_DROPPED_KEYWORDS = ("title",)


@cache
def _full_schema_text() -> str:
    # Generated once; callers get a deep copy to narrow.
    return json.dumps(Step.model_json_schema())


def _obj(value: JSON) -> JSONObject:
    assert isinstance(value, dict), f"expected a JSON object in the schema, got {value!r}"
    return value


def _strip(node: JSON) -> None:
    if isinstance(node, dict):
        for keyword in _DROPPED_KEYWORDS:
            node.pop(keyword, None)
        for value in node.values():
            _strip(value)
    elif isinstance(node, list):
        for value in node:
            _strip(value)


def _bound(prop: JSONObject, maximum: int) -> None:
    """Set the upper bound of an integer property, also inside ``anyOf [int, null]``."""
    if prop.get("type") == "integer":
        prop["maximum"] = maximum
    for branch in prop.get("anyOf", []) or []:  # type: ignore[union-attr]
        branch_obj = _obj(branch)
        if branch_obj.get("type") == "integer":
            branch_obj["maximum"] = maximum


def _restrict_enum(prop: JSONObject, allowed: frozenset[str]) -> None:
    values = prop.get("enum")
    assert isinstance(values, list)
    prop["enum"] = [v for v in values if v in allowed]


def step_schema(
    capabilities: Capabilities | None = None,
    *,
    grid: tuple[int, int] = (1000, 1000),
    with_thought: bool = True,
) -> JSONObject:
    """JSON schema of a Step for a driver with ``capabilities`` and a model grid.

    ``grid`` is the largest valid (x, y) value, as returned by ``CoordCodec.grid_size``:
    ``(1000, 1000)`` for ``norm1000`` allows 0..1000 inclusive on both axes. Without
    ``capabilities`` every action is allowed. ``with_thought`` makes a short ``thought``
    string required before the action (it helps small models); without it the schema has
    no thought at all.
    """
    max_x, max_y = grid
    if not (0 < max_x <= MAX_COORD and 0 < max_y <= MAX_COORD):
        raise ValueError(f"grid {grid} must be positive and at most {MAX_COORD}")
    schema: JSONObject = json.loads(_full_schema_text())
    _strip(schema)
    defs = _obj(schema["$defs"])

    allowed = set(ACTION_TYPES)
    if capabilities is not None:
        allowed &= set(capabilities.actions)
        if not capabilities.keys:
            allowed.discard("key")
    if not allowed:
        raise ValueError("capabilities allow no action at all")

    for name, cls in ACTION_TYPES.items():
        def_name = cls.__name__
        if name not in allowed:
            defs.pop(def_name, None)
            continue
        action_def = _obj(defs[def_name])
        props = _obj(action_def["properties"])
        # "action" has a default in pydantic; a constrained model must still write it.
        required = [r for r in action_def.get("required", []) or [] if r != "action"]  # type: ignore[union-attr]
        action_def["required"] = ["action", *required]
        for field in _X_FIELDS:
            if field in props:
                _bound(_obj(props[field]), max_x)
        for field in _Y_FIELDS:
            if field in props:
                _bound(_obj(props[field]), max_y)
        if capabilities is not None and name == "click":
            _restrict_enum(_obj(props["button"]), capabilities.buttons)
        if capabilities is not None and name == "key":
            _restrict_enum(_obj(props["key"]), capabilities.keys)
            if not capabilities.modifiers:
                props.pop("modifiers", None)

    # Keep the union in the order of vlagent.actions; anyOf is what every backend supports.
    union: list[JSON] = [{"$ref": f"#/$defs/{cls.__name__}"} for name, cls in ACTION_TYPES.items() if name in allowed]
    step_props = _obj(schema["properties"])
    step_props["action"] = {"anyOf": union} if len(union) > 1 else union[0]
    if with_thought:
        thought = _obj(step_props["thought"])
        string_branch = next(_obj(b) for b in thought["anyOf"] or [] if _obj(b).get("type") == "string")  # type: ignore[union-attr]
        step_props["thought"] = copy.deepcopy(string_branch)
        schema["required"] = ["thought", "action"]
    else:
        step_props.pop("thought")
        schema["required"] = ["action"]
    return schema


def _example_action(allowed: set[str], grid: tuple[int, int]) -> JSONObject:
    x, y = grid[0] // 2, grid[1] // 2
    if "click" in allowed:
        return {"action": "click", "x": x, "y": y}
    if "type" in allowed:
        return {"action": "type", "text": "hello"}
    return {"action": "done", "status": "success"}


def example_step(capabilities: Capabilities | None = None, grid: tuple[int, int] = (1000, 1000)) -> str:
    """A one-line example answer valid for these capabilities (used in prompts and feedback)."""
    allowed = set(capabilities.actions) if capabilities is not None else set(ACTION_TYPES)
    step: JSONObject = {"thought": "why this action", "action": _example_action(allowed, grid)}
    return json.dumps(step)


def _render_value(prop: JSONObject) -> str:
    if "const" in prop:
        return json.dumps(prop["const"])
    if "anyOf" in prop:
        branches = [_render_value(_obj(b)) for b in prop["anyOf"] or []]  # type: ignore[union-attr]
        return "|".join(b for b in branches if b != "null") or "null"
    kind = prop.get("type")
    if "enum" in prop:
        return "|".join(json.dumps(v) for v in prop["enum"] or [])  # type: ignore[union-attr]
    if kind == "array":
        return "[" + _render_value(_obj(prop["items"])) + ", ...]"
    if kind in ("integer", "number"):
        lo, hi = prop.get("minimum"), prop.get("maximum")
        if lo is not None and hi is not None:
            return f"{lo}..{hi}"
        return str(kind)
    if kind == "string":
        limit = prop.get("maxLength")
        return f"string (max {limit} chars)" if limit is not None else "string"
    if kind == "null":
        return "null"
    if kind == "boolean":
        return "true|false"
    return str(kind)


def describe_actions(capabilities: Capabilities | None = None, grid: tuple[int, int] = (1000, 1000)) -> str:
    """A compact text rendering of the allowed actions for a system prompt.

    One line per action: its required fields with their allowed values, then the optional
    ones with their defaults, then the action's one-line description.
    """
    schema = step_schema(capabilities, grid=grid)
    defs = _obj(schema["$defs"])
    lines = [
        f"Coordinates are integers from 0 to {grid[0]} for x (left to right) and 0 to {grid[1]} for y (top to bottom).",
        "Actions:",
    ]
    for cls in ACTION_TYPES.values():
        if cls.__name__ not in defs:
            continue
        action_def = _obj(defs[cls.__name__])
        props = _obj(action_def["properties"])
        required = action_def.get("required", []) or []
        assert isinstance(required, list)
        parts: list[str] = []
        options: list[str] = []
        for field, raw_prop in props.items():
            prop = _obj(raw_prop)
            if field in required:
                parts.append(f'"{field}": {_render_value(prop)}')
            else:
                if len(prop.get("enum", []) or []) == 1:  # type: ignore[arg-type]
                    continue  # a single choice is no choice worth describing
                has_default = prop.get("default") is not None
                default = f" (default {json.dumps(prop['default'])})" if has_default else ""
                options.append(f'"{field}": {_render_value(prop)}{default}')
        doc = str(action_def.get("description", "")).split("\n", 1)[0].replace("``", "")
        line = "- {" + ", ".join(parts) + "}"
        if options:
            line += "; optional " + ", ".join(options)
        lines.append(line + (f". {doc}" if doc else ""))
    lines.append(
        "Answer with exactly one JSON object and nothing else, for example: " + example_step(capabilities, grid)
    )
    return "\n".join(lines)
