"""Qwen2.5-VL and Qwen3-VL in their cookbooks' formats: ``mobile_use`` / ``computer_use`` tool calls.

Format (QwenLM cookbooks, Hermes/Nous function calling)::

    <tool_call>
    {"name": "mobile_use", "arguments": {"action": "click", "coordinate": [546, 1204]}}
    </tool_call>

Qwen2.5-VL answers in absolute pixels of the resized image and its tool description states
that resolution; Qwen3-VL answers on a 0-999 grid (its prompt says the screen is 999x999)
and writes ``Thought: ...`` and ``Action: "..."`` before the call.

The parser accepts: the call with or without ``<tool_call>`` tags (also a missing closing
tag), in a code fence, after prose, with ``arguments`` as an object or a JSON string, a bare
arguments object, JSON defects (single quotes, trailing commas, Python ``None``/``True``, a
missing closing brace: repaired by json-repair), coordinates as ``[x, y]``, ``"(x, y)"``,
``{"x":..,"y":..}`` or a 4-number box (its centre), several calls (the first is taken).
It rejects (InvalidModelOutput): an answer longer than any step (``MAX_ANSWER_CHARS``), JSON
nested deeper than ``MAX_DEPTH`` or cut off inside a string (the token limit: never repaired
into half a text), no JSON object, no or an unknown ``action``, a missing or malformed
coordinate, numbers that are not finite or absurdly large, a point outside the grid,
``mouse_move`` (no hover action here) and ``left_click_drag`` without a start, unknown keys
or buttons, and actions the device cannot perform.

Action mapping: click/left_click -> click; double/right/middle/triple_click -> click with
that button/count; long_press(time) -> long press; swipe(coordinate, coordinate2) -> swipe
(finger path); type(text) -> type (a trailing newline submits); key(text) or key(keys[]) ->
key with modifiers; system_button(Back|Home|Menu|Enter) -> key; open(text) -> open app;
wait(time) -> wait; terminate(status) -> done; answer(text) -> done success with the answer;
computer_use scroll(pixels) -> scroll up for positive pixels, down for negative, one unit
per 100 pixels (1..10).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from vlagent.actions import Action, Click, Done, Key, LongPress, OpenApp, Scroll, Step, Swipe, Type, Wait
from vlagent.capabilities import Capabilities
from vlagent.policies.families._common import (
    SPECIAL_TOKENS,
    FamilyProblem,
    finish_step,
    finite_number,
    invalid,
    lark_literal,
    numbers_in,
    parse_keys,
    point_of,
    refuse_oversized,
    repair_json,
    shape_problem,
    shown,
)
from vlagent.policies.families.base import GrammarLimits, ModelFamily

__all__ = [
    "grammar_qwen3",
    "grammar_qwen25",
    "instructions_qwen3",
    "instructions_qwen25",
    "parse_tool_call",
    "render_tool_call",
    "user_turn_qwen3",
    "user_turn_qwen25",
]

# Labels are found with plain searches (no lazy groups followed by \s*, which are quadratic on a
# long run of whitespace); their text is cut with str.find.
_THOUGHT_LABEL = re.compile(r"Thought[ \t]*[:：][ \t]*", re.IGNORECASE)
_ACTION_LINE = re.compile(r"\n[ \t]*Action[ \t]*[:：]", re.IGNORECASE)
_HINT = (
    'Answer with one tool call:\n<tool_call>\n{"name": "mobile_use", "arguments": {"action": "click", '
    '"coordinate": [x, y]}}\n</tool_call>'
)
_BUTTONS = {"back": "back", "home": "home", "menu": "menu", "enter": "enter"}
_CLICKS = {
    "click": (1, "left"),
    "left_click": (1, "left"),
    "tap": (1, "left"),
    "double_click": (2, "left"),
    "triple_click": (3, "left"),
    "right_click": (1, "right"),
    "middle_click": (1, "middle"),
}
_SCROLL_UNIT = 100  # computer_use scroll pixels per vlagent scroll unit


# --- reading -----------------------------------------------------------------------------------


def _between(text: str, opening: str, closing: str) -> str | None:
    """The stripped text after the first ``opening`` up to the next ``closing`` (or the end), or None."""
    start = text.find(opening)
    if start < 0:
        return None
    start += len(opening)
    end = text.find(closing, start)
    return (text[start:] if end < 0 else text[start:end]).strip()


def _json_text(text: str) -> tuple[str, bool]:
    """(the JSON of the call, whether the model ended it: a closing tag or fence after it)."""
    call = _between(text, "<tool_call>", "</tool_call>")
    if call is not None:
        return call, "</tool_call>" in text
    fence = _between(text, "```", "```")
    if fence is not None:
        fence = fence.removeprefix("json").strip()
        if "{" in fence:
            return fence, text.count("```") > 1
    start = text.find("{")
    if start < 0:
        raise FamilyProblem("no tool call found")
    return text[start:], False


def _decode(blob: str, ended: bool = True) -> dict[str, Any]:
    """The call's JSON object. ``ended``: the model closed the call (a missing brace is then repaired);
    without it, JSON that never closes was cut off by the token limit and is refused."""
    problem = shape_problem(blob, closed=not ended)  # runaway nesting, or cut off: no repair
    if problem is not None:
        raise FamilyProblem(problem)
    try:
        value: object = json.loads(blob)
    except (ValueError, RecursionError):
        value = repair_json(blob)
    if isinstance(value, list):  # several calls: the first
        value = next((v for v in value if isinstance(v, dict)), None)
    if not isinstance(value, dict):
        raise FamilyProblem("the tool call is not a JSON object")
    return {str(k).lower(): v for k, v in value.items()}


def _arguments(call: dict[str, Any]) -> dict[str, Any]:
    args = call.get("arguments", call.get("parameters"))
    if isinstance(args, str):
        args = _decode(args)
    if args is None and "action" in call:
        args = call
    if not isinstance(args, Mapping):
        raise FamilyProblem('the tool call has no "arguments" object')
    return {str(k).lower(): v for k, v in args.items()}


def _thought(text: str) -> str | None:
    label = _THOUGHT_LABEL.search(text)
    if label is not None:
        rest = text[label.end() :]
        action = _ACTION_LINE.search(rest)
        ends = [i for i in (rest.find("<tool_call>"), rest.find("{")) if i >= 0]
        end = min([*ends, action.start()] if action is not None else ends, default=len(rest))
        return rest[:end].strip() or None
    head = text[: text.find("<tool_call>")] if "<tool_call>" in text else ""
    return head.strip() or None


def _numbers(value: object, what: str) -> list[float] | None:
    if isinstance(value, (list, tuple)):
        flat: list[object] = []
        for item in value[:9]:  # a point or a box; more is refused by point_of
            flat.extend(item[:9] if isinstance(item, (list, tuple)) else [item])
        if len(value) > 9:
            raise FamilyProblem(f"{what} must be [x, y]")
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in flat):
            out = [finite_number(v) for v in flat]
            if any(v is None for v in out):
                raise FamilyProblem(f"{what} has a number that is not a usable coordinate")
            return [v for v in out if v is not None]
        return [n for v in flat for n in numbers_in(v if isinstance(v, str) else shown(v), what)]
    if isinstance(value, Mapping):
        lowered = {str(k).lower(): v for k, v in value.items()}
        return _numbers([lowered.get("x"), lowered.get("y")], what) if "x" in lowered else None
    if isinstance(value, str):
        return numbers_in(value, what)
    return None


def _point(args: dict[str, Any], *keys: str) -> tuple[float, float]:
    for key in keys:
        if args.get(key) is not None:
            values = _numbers(args[key], f'"{key}"')
            if not values:
                raise FamilyProblem(f'"{key}" must be [x, y]')
            x, y = point_of(values, f'"{key}"')
            if not (math.isfinite(x) and math.isfinite(y)):
                raise FamilyProblem(f'"{key}" must be [x, y]')
            return x, y
    raise FamilyProblem(f'"{keys[0]}" [x, y] is required for action={shown(args.get("action"))}')


def _number(value: object, what: str) -> float:
    """A number written as a number or in a string (``2``, ``"2"``, ``"2 s"``); raises FamilyProblem."""
    if isinstance(value, str):
        found = numbers_in(value, what)
        number = found[0] if found else None
    else:
        number = finite_number(value)
    if number is None:
        raise FamilyProblem(f"{what} must be a number, got {shown(value)}")
    return number


def _seconds(args: dict[str, Any], default: float) -> float:
    value = args.get("time", args.get("duration", args.get("seconds")))
    if value is None:
        return default
    return _number(value, '"time" (seconds)')


def _text(args: dict[str, Any], action: str) -> str:
    value = args.get("text", args.get("content"))
    if not isinstance(value, str) or not value:
        raise FamilyProblem(f'action={action} needs "text"')
    return value


def _fields(args: dict[str, Any], caps: Capabilities | None) -> dict[str, object]:
    raw = args.get("action")
    if not isinstance(raw, str) or not raw.strip():
        raise FamilyProblem('the arguments have no "action"')
    action = raw.strip().lower().replace(" ", "_")
    if action in _CLICKS:
        clicks, button = _CLICKS[action]
        x, y = _point(args, "coordinate", "point", "position")
        return {"action": "click", "x": x, "y": y, "clicks": clicks, "button": button}
    if action == "long_press":
        x, y = _point(args, "coordinate", "point")
        return {"action": "long_press", "x": x, "y": y, "duration": _seconds(args, 1.0)}
    if action in ("swipe", "left_click_drag", "drag"):
        if action == "left_click_drag" and args.get("start_coordinate") is None:
            raise FamilyProblem('left_click_drag starts where the mouse is, which is unknown: give "start_coordinate"')
        x1, y1 = _point(args, "start_coordinate", "coordinate")
        x2, y2 = _point(args, "coordinate2", "end_coordinate") if action == "swipe" else _point(args, "coordinate")
        return {"action": "swipe", "x1": x1, "y1": y1, "x2": x2, "y2": y2}
    if action == "type":
        text = _text(args, action)
        body = text.rstrip("\n")
        if not body:
            return {"action": "key", "key": "enter"}
        return {"action": "type", "text": body, "submit": body != text}
    if action == "key":
        keys = args.get("keys", args.get("text", args.get("key")))
        if not isinstance(keys, (str, list)) or not keys:
            raise FamilyProblem('action=key needs "keys" (or "text")')
        return parse_keys(keys, caps)
    if action == "system_button":
        button = _word(args.get("button", ""))
        if button not in _BUTTONS:
            raise FamilyProblem(f"unknown system button {shown(args.get('button'))}; use Back, Home, Menu or Enter")
        return {"action": "key", "key": _BUTTONS[button]}
    if action in ("open", "open_app"):
        return {"action": "open_app", "name": _text(args, action).strip()}
    if action == "wait":
        return {"action": "wait", "seconds": _seconds(args, 1.0)}
    if action == "terminate":
        status = _word(args.get("status", "success"))
        return {"action": "done", "status": status, "answer": args.get("answer")}
    if action == "answer":
        return {"action": "done", "status": "success", "answer": _text(args, action)}
    if action == "scroll":
        pixels = [_number(args.get("pixels", 0), '"pixels"')]
        if not pixels[0]:
            raise FamilyProblem('scroll needs "pixels": positive scrolls up, negative down')
        fields: dict[str, object] = {
            "action": "scroll",
            "direction": "up" if pixels[0] > 0 else "down",
            "amount": min(10, max(1, round(abs(pixels[0]) / _SCROLL_UNIT))),
        }
        if args.get("coordinate") is not None:
            fields["x"], fields["y"] = _point(args, "coordinate")
        return fields
    if action == "mouse_move":
        raise FamilyProblem("mouse_move alone does nothing here; use left_click with the coordinate")
    raise FamilyProblem(f"unknown action {shown(action)}")


def _word(value: object) -> str:
    """An enum-like value (a status, a button) as a lower-case word; a non-string is no word."""
    return value.strip().lower() if isinstance(value, str) else shown(value)


def parse_tool_call(text: str, grid: tuple[int, int], capabilities: Capabilities | None) -> Step:
    """A mobile_use / computer_use tool call -> Step in grid coordinates."""
    refuse_oversized(text, _HINT)
    cleaned = SPECIAL_TOKENS.sub(" ", text)
    try:
        args = _arguments(_decode(*_json_text(cleaned)))
        return finish_step(_fields(args, capabilities), _thought(cleaned), grid, capabilities)
    except FamilyProblem as problem:
        raise invalid(problem, _HINT, text) from None


# --- writing back ---------------------------------------------------------------------------------


def _seconds_out(seconds: float) -> float | int:
    return int(seconds) if seconds == int(seconds) else seconds


def _args(action: Action) -> dict[str, object]:
    if isinstance(action, Click):
        name = {"right": "right_click", "middle": "middle_click"}.get(action.button, "click")
        name = {2: "double_click", 3: "triple_click"}.get(action.clicks, name) if name == "click" else name
        return {"action": name, "coordinate": [action.x, action.y]}
    if isinstance(action, LongPress):
        return {"action": "long_press", "coordinate": [action.x, action.y], "time": _seconds_out(action.duration)}
    if isinstance(action, Swipe):
        return {"action": "swipe", "coordinate": [action.x1, action.y1], "coordinate2": [action.x2, action.y2]}
    if isinstance(action, Type):
        return {"action": "type", "text": action.text + ("\n" if action.submit else "")}
    if isinstance(action, Key):
        if action.key in ("back", "home", "menu", "enter") and not action.modifiers:
            return {"action": "system_button", "button": action.key.capitalize()}
        return {"action": "key", "keys": [*action.modifiers, action.key]}
    if isinstance(action, Scroll):
        pixels = action.amount * _SCROLL_UNIT * (1 if action.direction == "up" else -1)
        return {"action": "scroll", "pixels": pixels}
    if isinstance(action, OpenApp):
        return {"action": "open", "text": action.name}
    if isinstance(action, Wait):
        return {"action": "wait", "time": _seconds_out(action.seconds)}
    assert isinstance(action, Done)
    if action.answer and action.status == "success":
        return {"action": "answer", "text": action.answer}
    return {"action": "terminate", "status": action.status}


def render_tool_call(action: Action, grid: tuple[int, int]) -> str:
    """The arguments a tool call for ``action`` would carry (one line, for the history)."""
    return json.dumps(_args(action), ensure_ascii=False)


# --- prompts -----------------------------------------------------------------------------------------

_MOBILE_DESCRIPTION = (
    "Use a touchscreen to interact with a mobile device, and take screenshots.\n"
    "* This is an interface to a mobile device with touchscreen. You can perform actions like clicking, typing, "
    "swiping, etc.\n"
    "* Some applications may take time to start or process actions, so you may need to wait and take successive "
    "screenshots to see the results of your actions.\n"
    "* The screen's resolution is {width}x{height}.\n"
    "* Make sure to click any buttons, links, icons, etc with the cursor tip in the center of the element. "
    "Don't click boxes on their edges unless asked."
)
_COMPUTER_DESCRIPTION = (
    "Use a mouse and keyboard to interact with a computer, and take screenshots.\n"
    "* This is an interface to a desktop GUI. You do not have access to a terminal or applications menu. "
    "You must click on desktop icons to start applications.\n"
    "* Some applications may take time to start or process actions, so you may need to wait and take successive "
    "screenshots to see the results of your actions. E.g. if you click on Firefox and a window doesn't open, try "
    "wait and taking another screenshot.\n"
    "* The screen's resolution is {width}x{height}.\n"
    "* Whenever you intend to move the cursor to click on an element like an icon, you should consult a screenshot "
    "to determine the coordinates of the element before moving the cursor.\n"
    "* If you tried clicking on a program or link but it failed to load, even after waiting, try adjusting your "
    "cursor position so that the tip of the cursor visually falls on the element that you want to click.\n"
    "* Make sure to click any buttons, links, icons, etc with the cursor tip in the center of the element. "
    "Don't click boxes on their edges unless asked."
)
_MOBILE_ACTIONS = {
    "key": "Perform a key event on the mobile device.\n    - This supports adb's `keyevent` syntax.\n"
    '    - Examples: "volume_up", "volume_down", "power", "camera", "clear".',
    "click": "Click the point on the screen with coordinate (x, y).",
    "long_press": "Press the point on the screen with coordinate (x, y) for specified seconds.",
    "swipe": "Swipe from the starting point with coordinate (x, y) to the end point with coordinates2 (x2, y2).",
    "type": "Input the specified text into the activated input box.",
    "answer": "Output the answer.",
    "system_button": "Press the system button.",
    "open": "Open an app on the device.",
    "wait": "Wait specified seconds for the change to happen.",
    "terminate": "Terminate the current task and report its completion status.",
}
_COMPUTER_ACTIONS = {
    "key": "Performs key down presses on the arguments passed in order, then performs key releases in reverse order.",
    "type": "Type a string of text on the keyboard.",
    "mouse_move": "Move the cursor to a specified (x, y) pixel coordinate on the screen.",
    "left_click": "Click the left mouse button.",
    "left_click_drag": "Click and drag the cursor to a specified (x, y) pixel coordinate on the screen.",
    "right_click": "Click the right mouse button.",
    "middle_click": "Click the middle mouse button.",
    "double_click": "Double-click the left mouse button.",
    "scroll": "Performs a scroll of the mouse scroll wheel.",
    "wait": "Wait specified seconds for the change to happen.",
    "terminate": "Terminate the current task and report its completion status.",
}
_HELPFUL = "You are a helpful assistant."
_TOOLS_HEAD = (
    "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
)
_TOOLS_TAIL = (
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
    '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n'
    "</tool_call>"
)
_QWEN3_FORMAT = (
    "\n\n# Response format\n\nResponse format for every step:\n"
    "1) Thought: one concise sentence explaining the next move (no multi-step reasoning).\n"
    "2) Action: a short imperative describing what to do in the UI.\n"
    '3) A single <tool_call>...</tool_call> block containing only the JSON: {"name": <function-name>, '
    '"arguments": <args-json-object>}.\n\nRules:\n- Output exactly in the order: Thought, Action, <tool_call>.\n'
    "- Be brief: one sentence for Thought, one for Action.\n- Do not output anything else outside those three parts.\n"
    "- If finishing, use action=terminate in the tool call."
)
_QWEN3_MOBILE = ("click", "long_press", "swipe", "type", "answer", "system_button", "wait", "terminate")
_QWEN25_MOBILE = ("key", "click", "long_press", "swipe", "type", "system_button", "open", "wait", "terminate")


def _is_phone(capabilities: Capabilities) -> bool:
    return capabilities.is_phone


def _required_by(actions: tuple[str, ...], users: tuple[str, ...]) -> str:
    """The cookbooks' "Required only by `action=a`, `action=b`, and `action=c`." over the listed actions."""
    names = [f"`action={a}`" for a in actions if a in users]
    if len(names) > 2:
        return f"Required only by {', '.join(names[:-1])}, and {names[-1]}."
    return f"Required only by {' and '.join(names)}."


def _tool(phone: bool, actions: tuple[str, ...], size: tuple[int, int], *, qwen_agent: bool) -> str:
    table = _MOBILE_ACTIONS if phone else _COMPUTER_ACTIONS
    listing = "\n".join(f"* `{a}`: {table[a]}" for a in actions)
    point = (
        "(x, y): The x (pixels from the left edge) and y (pixels from the top edge) coordinates to move the mouse to."
    )
    props: dict[str, object] = {
        "action": {
            "description": f"The action to perform. The available actions are:\n{listing}",
            "enum": list(actions),
            "type": "string",
        },
    }
    if phone:
        props |= {
            "coordinate": {
                "description": point + " Required only by `action=click`, `action=long_press`, and `action=swipe`.",
                "type": "array",
            },
            "coordinate2": {"description": point + " Required only by `action=swipe`.", "type": "array"},
            "text": {"description": _required_by(actions, ("key", "type", "answer", "open")), "type": "string"},
            "time": {
                "description": "The seconds to wait. Required only by `action=long_press` and `action=wait`.",
                "type": "number",
            },
            "button": {
                "description": "Back means returning to the previous interface, Home means returning to the desktop, "
                "Menu means opening the application background menu, and Enter means pressing the enter. Required "
                "only by `action=system_button`",
                "enum": ["Back", "Home", "Menu", "Enter"],
                "type": "string",
            },
        }
    else:
        props |= {
            "keys": {"description": "Required only by `action=key`.", "type": "array"},
            "text": {"description": "Required only by `action=type`.", "type": "string"},
            "coordinate": {
                "description": point + " Required only by `action=mouse_move` and `action=left_click_drag`.",
                "type": "array",
            },
            "pixels": {
                "description": "The amount of scrolling to perform. Positive values scroll up, negative values "
                "scroll down. Required only by `action=scroll`.",
                "type": "number",
            },
            "time": {"description": "The seconds to wait. Required only by `action=wait`.", "type": "number"},
        }
    props["status"] = {
        "description": "The status of the task. Required only by `action=terminate`.",
        "type": "string",
        "enum": ["success", "failure"],
    }
    name = "mobile_use" if phone else "computer_use"
    description = (_MOBILE_DESCRIPTION if phone else _COMPUTER_DESCRIPTION).format(width=size[0], height=size[1])
    parameters = {"properties": props, "required": ["action"], "type": "object"}
    function: dict[str, object]
    if qwen_agent:
        # qwen-agent's BaseTool.function (QwenLM/Qwen-Agent qwen_agent/tools/base.py), as the
        # Qwen2.5-VL cookbook passes it to NousFnCallPrompt: these five keys in this order.
        function = {
            "name_for_human": name,
            "name": name,
            "description": description,
            "parameters": parameters,
            "args_format": "Format the arguments as a JSON object.",
        }
    else:
        # The Qwen3-VL cookbook writes its system prompt out by hand with only these three keys.
        function = {"name": name, "description": description, "parameters": parameters}
    return json.dumps({"type": "function", "function": function}, ensure_ascii=False)


def instructions_qwen25(
    task: str, capabilities: Capabilities, family: ModelFamily, image_size: tuple[int, int], with_thought: bool
) -> str:
    # QwenLM/Qwen2.5-VL cookbooks/mobile_agent.ipynb: system "You are a helpful assistant." plus
    # NousFnCallPrompt's tool block (QwenLM/Qwen-Agent qwen_agent/llm/fncall_prompts/nous_fncall_prompt.py)
    # around MobileUse/ComputerUse of cookbooks/utils/agent_function_call.py. The task goes in the user
    # turn (user_turn_qwen25), as in the cookbook.
    return _HELPFUL + _tool_block(capabilities, family, image_size, _QWEN25_MOBILE, qwen_agent=True)


def instructions_qwen3(
    task: str, capabilities: Capabilities, family: ModelFamily, image_size: tuple[int, int], with_thought: bool
) -> str:
    # QwenLM/Qwen3-VL cookbooks/mobile_agent.ipynb writes the whole system prompt out: it starts with
    # "\n\n# Tools" (no assistant line) and ends with the response format. That cookbook has no
    # computer_use counterpart in the repository snapshot read, so a desktop gets Qwen2.5-VL's
    # computer_use tool in the same frame. The task goes in the user turn (user_turn_qwen3), as in the
    # cookbook.
    return _tool_block(capabilities, family, image_size, _QWEN3_MOBILE, qwen_agent=False) + _QWEN3_FORMAT


def _tool_block(
    capabilities: Capabilities,
    family: ModelFamily,
    image_size: tuple[int, int],
    mobile_actions: Sequence[str],
    *,
    qwen_agent: bool,
) -> str:
    """The "# Tools" block with the device's tool (mobile_use or computer_use) at the image's size."""
    phone = _is_phone(capabilities)
    actions = tuple(mobile_actions) if phone else tuple(_COMPUTER_ACTIONS)
    return _TOOLS_HEAD + _tool(phone, actions, family.grid(image_size), qwen_agent=qwen_agent) + _TOOLS_TAIL


_PROGRESS = "Task progress (You have done the following operation on the current device): "


def _steps(capabilities: Capabilities, actions: Sequence[str]) -> str:
    # "Step 1: {tool call}; Step 2: ...; ": the cookbooks' history ("The operation history can be
    # organized by Step x: [action]; Step x+1: [action]..."), each action as the tool call it was.
    name = "mobile_use" if _is_phone(capabilities) else "computer_use"
    return "".join(f'Step {i}: {{"name": "{name}", "arguments": {args}}}; ' for i, args in enumerate(actions, 1))


def user_turn_qwen25(task: str, capabilities: Capabilities, actions: Sequence[str], notes: Sequence[str]) -> str:
    """QwenLM/Qwen2.5-VL cookbooks/mobile_agent.ipynb: 'The user query:  <task>' (two spaces), a newline,
    then the progress line; the screenshot follows."""
    text = f"The user query:  {task}\n{_PROGRESS}{_steps(capabilities, actions)}"
    return "\n".join([text, *notes]) if notes else text


def user_turn_qwen3(task: str, capabilities: Capabilities, actions: Sequence[str], notes: Sequence[str]) -> str:
    """QwenLM/Qwen3-VL cookbooks/mobile_agent.ipynb: f"The user query: {instruction}.\\nTask progress
    (...): {stage2_history}.\\n"; the screenshot follows."""
    return f"The user query: {task}.\n{_PROGRESS}{_steps(capabilities, actions)}.\n" + "".join(f"{n}\n" for n in notes)


# --- grammars -------------------------------------------------------------------------------------------


def _arguments_schema(caps: Capabilities, grid: tuple[int, int], limits: GrammarLimits, answer: bool) -> list[object]:
    def point() -> dict[str, object]:
        return {
            "type": "array",
            "prefixItems": [
                {"type": "integer", "minimum": 0, "maximum": grid[0]},
                {"type": "integer", "minimum": 0, "maximum": grid[1]},
            ],
            "items": False,
            "minItems": 2,
            "maxItems": 2,
        }

    text = {"type": "string", "minLength": 1, "maxLength": limits.string_chars}
    seconds = {"type": "integer", "minimum": 1, "maximum": 10}

    def one(action: str, **props: object) -> dict[str, object]:
        return {
            "type": "object",
            "properties": {"action": {"const": action}, **props},
            "required": ["action", *props],
            "additionalProperties": False,
        }

    acts, phone = caps.actions, _is_phone(caps)
    out: list[object] = []
    if "click" in acts:
        out.append(one("click" if phone else "left_click", coordinate=point()))
        if "right" in caps.buttons:
            out.append(one("right_click", coordinate=point()))
    if "long_press" in acts:
        out.append(one("long_press", coordinate=point(), time=seconds))
    if "swipe" in acts and phone:
        out.append(one("swipe", coordinate=point(), coordinate2=point()))
    if "type" in acts:
        out.append(one("type", text=text))
    buttons = [b.capitalize() for b in _BUTTONS if b in caps.keys]
    if "key" in acts and phone and buttons:
        out.append(one("system_button", button={"enum": buttons}))
    if "open_app" in acts and not answer:
        out.append(one("open", text=text))
    if "wait" in acts:
        out.append(one("wait", time=seconds))
    if "done" in acts:
        out.append(one("terminate", status={"enum": ["success", "failure"]}))
        if answer:
            out.append(one("answer", text=text))
    return out


def _call_schema(caps: Capabilities, grid: tuple[int, int], limits: GrammarLimits, answer: bool) -> str:
    schema = {
        "x-guidance": {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "},
        "type": "object",
        "properties": {
            "name": {"const": "mobile_use" if _is_phone(caps) else "computer_use"},
            "arguments": {"anyOf": _arguments_schema(caps, grid, limits, answer)},
        },
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }
    return json.dumps(schema)


def grammar_qwen25(caps: Capabilities, grid: tuple[int, int], limits: GrammarLimits) -> str:
    return (
        f"start: {lark_literal('<tool_call>' + chr(10))} call {lark_literal(chr(10) + '</tool_call>')}\n"
        f"call: %json {_call_schema(caps, grid, limits, answer=False)}\n"
    )


def grammar_qwen3(caps: Capabilities, grid: tuple[int, int], limits: GrammarLimits) -> str:
    head = 'start: "Thought: " THOUGHT "\\nAction: \\"" SUMMARY "\\"\\n<tool_call>\\n" call "\\n</tool_call>"'
    if not limits.with_thought:
        head = 'start: "<tool_call>\\n" call "\\n</tool_call>"'
    return (
        f"{head}\n"
        f"THOUGHT: /[^\\n]{{1,{limits.thought_chars}}}/\n"
        f'SUMMARY: /[^\\n"]{{1,{limits.thought_chars}}}/\n'
        f"call: %json {_call_schema(caps, grid, limits, answer=True)}\n"
    )
