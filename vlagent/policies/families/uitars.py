"""UI-TARS (v1 on Qwen2-VL, 0-1000) and UI-TARS-1.5 (on Qwen2.5-VL, pixels of the resized image).

Format (bytedance/UI-TARS README_v1.md and codes/prompts.py; the prompts below cite each source)::

    Thought: the search box is at the top
    Action: click(start_box='<|box_start|>(500,120)<|box_end|>')

Both versions are prompted in that syntax: v1 on a 0-1000 grid, 1.5 in pixels of the resized
image. The Doubao API prompt (codes/ui_tars/prompt.py) writes ``click(point='<point>546 120</point>')``;
the parser reads that too.

The parser accepts: box tokens kept or stripped by the server; boxes written ``(x,y)``,
``[x,y]``, ``[x1,y1,x2,y2]``, ``x1, y1, x2, y2`` (a box acts on its centre), ``<point>x y</point>``
and the API variant ``<bbox>x1 y1 x2 y2</bbox>`` (always 0-1000, rescaled to the grid);
no ``Thought:`` label, a ``Reflection:`` before it, a full-width ``Action：`` colon, double
quotes, escaped or raw newlines, a second action on a later line (ignored: one action per
step), leaked ``<|im_end|>``, a missing closing parenthesis at the very end of a call whose
arguments are points or keys.
It rejects (InvalidModelOutput): an answer longer than any step (``MAX_ANSWER_CHARS``), no
known action call, an unknown function, a missing or malformed box, a box outside the grid or
with absurd numbers, an answer cut off by the token limit (an unterminated string, an unclosed
bracket, a ``type``/``finished``/``open_app`` call without its ')'), an empty ``type``, an
unknown key, and any action the device cannot perform.

Action mapping: click/left_single -> click; left_double -> click x2; right_single -> right
click; drag/select -> swipe (finger path); hotkey('ctrl v') -> key v with ctrl;
type('...\\n') -> type with submit (a bare newline -> key enter); scroll(direction) ->
scroll with the same direction, since both UI-TARS and vlagent name the side whose content
comes into view (bytedance/UI-TARS#129: the finger moves the other way); mobile
scroll(start_box, end_box) -> swipe; wait() -> wait 5 s (the prompt's "sleep for 5s");
finished(content) -> done success with the content as answer; call_user() -> call_user while a person is at hand (the loop offers it), else done failure;
long_press(time) -> long press; press_home/press_back -> key home/back; open_app -> open app.
"""

# ruff: noqa: E501, W291  (the model cards' prompts are reproduced verbatim, trailing spaces included)

from __future__ import annotations

import re

from vlagent.actions import (
    Action,
    CallUser,
    Click,
    Done,
    Key,
    LongPress,
    OpenApp,
    Scroll,
    Step,
    Swipe,
    Type,
    Wait,
)
from vlagent.capabilities import Capabilities
from vlagent.policies.families._common import (
    SPECIAL_TOKENS,
    FamilyProblem,
    finish_step,
    int_range_regex,
    invalid,
    numbers_in,
    parse_keys,
    point_of,
    refuse_oversized,
    shown,
)
from vlagent.policies.families.base import GrammarLimits, ModelFamily

__all__ = [
    "answer_text",
    "grammar_v1",
    "grammar_v15",
    "instructions_v1",
    "instructions_v15",
    "parse_v1",
    "parse_v15",
    "render_v1",
    "render_v15",
]

_CLICKS = {"click": (1, "left"), "left_single": (1, "left"), "left_double": (2, "left"), "double_click": (2, "left")}
_CLICKS |= {"right_single": (1, "right"), "right_click": (1, "right"), "middle_single": (1, "middle")}
_FUNCTIONS = (
    *_CLICKS,
    "drag",
    "select",
    "hotkey",
    "press",
    "keydown",
    "type",
    "scroll",
    "wait",
    "finished",
    "call_user",
    "long_press",
    "press_home",
    "press_back",
    "open_app",
)
_CALL = re.compile(r"\b(" + "|".join(sorted(_FUNCTIONS, key=len, reverse=True)) + r")\s*\(")
_ANY_CALL = re.compile(r"\b([A-Za-z_]\w*)\s*\(")
# Only spaces and tabs before a label (not \s, which spans lines): runs of newlines must not make
# the search quadratic.
_ACTION_LABEL = re.compile(r"(?:^|\n)[ \t]*\**Action\**[ \t]*[:：]", re.IGNORECASE)
_THOUGHT_LABEL = re.compile(r"^[ \t]*(?:Thought|Reflection|Action_Summary)[ \t]*[:：]\s*", re.IGNORECASE | re.MULTILINE)
_ARG_END = re.compile(r"\s*(?:\)|,\s*[A-Za-z_]\w*\s*=)")
_NEXT_KEYWORD = re.compile(r",\s*[A-Za-z_]\w*\s*=")
_KEYWORD = re.compile(r"([A-Za-z_]\w*)\s*=\s*")
#: Functions whose argument is free text: without the closing ')' such a call may have been cut
#: off by the token limit right after a quote inside the text, so it is refused, not typed.
_FREE_TEXT = ("type", "finished", "open_app")
_ESCAPES = {"n": "\n", "t": "\t", "'": "'", '"': '"', "\\": "\\"}
_POINT_ARGS = ("start_box", "point", "start_point", "box", "position")
_END_ARGS = ("end_box", "end_point")
_WAIT_SECONDS = 5.0

_HINT_V1 = "Answer as:\nThought: ...\nAction: click(start_box='<|box_start|>(x1,y1)<|box_end|>')"
_HINT_V15 = _HINT_V1


# --- reading the text ----------------------------------------------------------------------


def _split_thought(text: str) -> tuple[str | None, str]:
    """(thought, the part holding the call)."""
    label = _ACTION_LABEL.search(text)
    if label is not None:
        head, tail = text[: label.start()], text[label.end() :]
    else:
        call = _CALL.search(text)
        if call is None:
            return None, text
        head, tail = text[: call.start()], text[call.start() :]
    thought = _THOUGHT_LABEL.sub("", head).strip()
    return thought or None, tail


def _read_string(text: str, i: int) -> tuple[str, int]:
    """A quoted argument starting at ``text[i]`` (the quote); returns (value, index after it)."""
    quote = text[i]
    out: list[str] = []
    i += 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            out.append(_ESCAPES.get(nxt, "\\" + nxt))
            i += 2
            continue
        # A quote ends the value only where an argument or the call ends: inner quotes survive.
        if ch == quote and (_ARG_END.match(text, i + 1) or i + 1 == len(text)):
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    raise FamilyProblem("a quoted argument is not closed (the answer may be cut off)")


def _read_bare(text: str, i: int) -> tuple[str, int]:
    depth = 0
    start = i
    while i < len(text):
        ch = text[i]
        if ch in "([":
            depth += 1
        elif ch in ")]":
            if depth == 0:
                break
            depth -= 1
        elif ch == "," and depth == 0 and _NEXT_KEYWORD.match(text, i):
            break
        i += 1
    if depth > 0:  # '(500,12' at the very end: the token limit cut the point short
        raise FamilyProblem("a bracket in the call is not closed (the answer may be cut off)")
    return text[start:i].strip(), i


def _arguments(text: str, i: int) -> tuple[dict[str, str], str]:
    """Keyword (and positional, as ``_0``...) arguments of a call whose '(' ends at ``i``, and how
    the call ends: ``")"``, or at the end of the text after a ``quoted`` or a ``bare`` argument
    (or with ``none``)."""
    args: dict[str, str] = {}
    positional = 0
    last = "none"
    while True:
        while i < len(text) and text[i] in " \t\r\n,":
            i += 1
        if i >= len(text):
            return args, last
        if text[i] == ")":
            return args, ")"
        match = _KEYWORD.match(text, i)
        if match:
            name = match.group(1).lower()
            i = match.end()
        else:
            name = f"_{positional}"
            positional += 1
        if i < len(text) and text[i] in "'\"":
            value, i = _read_string(text, i)
            last = "quoted"
        else:
            value, i = _read_bare(text, i)
            last = "bare"
        args[name] = value
        if len(args) > 16:
            raise FamilyProblem("the call has too many arguments")


def _call(text: str) -> tuple[str, dict[str, str]]:
    match = _CALL.search(text)
    if match is None:
        other = _ANY_CALL.search(text)
        if other is not None:
            raise FamilyProblem(f"unknown action {shown(other.group(1))}")
        raise FamilyProblem("no action found")
    name = match.group(1).lower()
    args, end = _arguments(text, match.end())
    # A missing ')' at the very end is forgiven after a closed quote ('...(500,120)'), not after
    # a bare argument ('start_box=500,12') or free text ("content='it'"): those may be cut short.
    if end == "bare" or (end == "quoted" and name in _FREE_TEXT):
        raise FamilyProblem(f"{name}(...) is not closed with ')' (the answer may be cut off)")
    return name, args


# --- meaning ---------------------------------------------------------------------------------


def _point(value: str, grid: tuple[int, int], what: str) -> tuple[float, float]:
    values = numbers_in(SPECIAL_TOKENS.sub(" ", value), what)
    x, y = point_of(values, what)
    if "<bbox>" in value:  # the API variant writes 0-1000 boxes whatever the model's grid
        x, y = x / 1000 * grid[0], y / 1000 * grid[1]
    return x, y


def _first(args: dict[str, str], names: tuple[str, ...]) -> str | None:
    return next((args[n] for n in names if args.get(n)), None)


def _required_point(
    args: dict[str, str], grid: tuple[int, int], names: tuple[str, ...], what: str
) -> tuple[float, float]:
    value = _first(args, names) or args.get("_0")
    if not value:
        raise FamilyProblem(f"{what} needs {names[0]}")
    return _point(value, grid, names[0])


def _fields(name: str, args: dict[str, str], grid: tuple[int, int], caps: Capabilities | None) -> dict[str, object]:
    if name in _CLICKS:
        clicks, button = _CLICKS[name]
        x, y = _required_point(args, grid, _POINT_ARGS, name)
        return {"action": "click", "x": x, "y": y, "clicks": clicks, "button": button}
    if name in ("drag", "select") or (name == "scroll" and _first(args, _END_ARGS)):
        x1, y1 = _required_point(args, grid, _POINT_ARGS, name)
        x2, y2 = _required_point(args, grid, _END_ARGS, name)
        return {"action": "swipe", "x1": x1, "y1": y1, "x2": x2, "y2": y2}
    if name in ("hotkey", "press", "keydown"):
        return parse_keys(args.get("key") or args.get("keys") or args.get("_0") or "", caps)
    if name == "type":
        content = args.get("content", args.get("text", args.get("_0", "")))
        text = content.rstrip("\n")
        submit = text != content
        if not text:
            if submit:
                return {"action": "key", "key": "enter"}
            raise FamilyProblem("type needs content='...' with the text to type")
        return {"action": "type", "text": text, "submit": submit}
    if name == "scroll":
        direction = (args.get("direction") or args.get("_1") or "").strip().lower()
        if direction not in ("up", "down", "left", "right"):
            raise FamilyProblem("scroll needs direction='down or up or right or left'")
        fields: dict[str, object] = {"action": "scroll", "direction": direction}
        where = _first(args, _POINT_ARGS)
        if where:
            fields["x"], fields["y"] = _point(where, grid, "start_box")
        return fields
    if name == "wait":
        return {"action": "wait", "seconds": _WAIT_SECONDS}
    if name == "finished":
        answer = (args.get("content") or args.get("_0") or "").strip()
        return {"action": "done", "status": "success", "answer": answer or None}
    if name == "call_user":
        # With a person at hand (the loop then offers call_user) the device is handed over and the
        # episode goes on; without one, UI-TARS' own meaning: the task ends, unsolved.
        if caps is not None and "call_user" in caps.actions:
            return {"action": "call_user", "reason": (args.get("content") or args.get("_0") or "").strip()[:500]}
        return {"action": "done", "status": "failure"}
    if name == "long_press":
        x, y = _required_point(args, grid, _POINT_ARGS, name)
        fields = {"action": "long_press", "x": x, "y": y}
        seconds = numbers_in(args.get("time", ""), "time")
        if seconds:
            fields["duration"] = seconds[0]
        return fields
    if name == "press_home":
        return {"action": "key", "key": "home"}
    if name == "press_back":
        return {"action": "key", "key": "back"}
    assert name == "open_app", name
    app = (args.get("app_name") or args.get("name") or args.get("_0") or "").strip()
    if not app:
        raise FamilyProblem("open_app needs app_name='...'")
    return {"action": "open_app", "name": app}


def _parse(text: str, grid: tuple[int, int], capabilities: Capabilities | None, hint: str) -> Step:
    refuse_oversized(text, hint)
    cleaned = text.replace("<|im_end|>", "").replace("<|endoftext|>", "").replace("：", ":")
    # Box tokens are kept until the point is read (a '<bbox>' marks the 0-1000 variant).
    thought, rest = _split_thought(cleaned)
    try:
        name, args = _call(rest)
        return finish_step(_fields(name, args, grid, capabilities), thought, grid, capabilities)
    except FamilyProblem as problem:
        raise invalid(problem, hint, text) from None


def parse_v1(text: str, grid: tuple[int, int], capabilities: Capabilities | None) -> Step:
    """UI-TARS v1 text -> Step on its 0-1000 grid."""
    return _parse(text, grid, capabilities, _HINT_V1)


def parse_v15(text: str, grid: tuple[int, int], capabilities: Capabilities | None) -> Step:
    """UI-TARS-1.5 text -> Step on the resized image's pixel grid."""
    return _parse(text, grid, capabilities, _HINT_V15)


# --- writing actions back (history) -------------------------------------------------------------


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")


def _render(action: Action, box: str, start: str, end: str) -> str:
    def at(x: int, y: int) -> str:
        return box.format(x=x, y=y)

    if isinstance(action, Click):
        fn = {"right": "right_single", "middle": "middle_single"}.get(action.button, "click")
        fn = "left_double" if action.clicks == 2 and fn == "click" else fn
        return f"{fn}({start}='{at(action.x, action.y)}')"
    if isinstance(action, LongPress):
        return f"long_press({start}='{at(action.x, action.y)}')"
    if isinstance(action, Swipe):
        return f"drag({start}='{at(action.x1, action.y1)}', {end}='{at(action.x2, action.y2)}')"
    if isinstance(action, Scroll):
        where = f"{start}='{at(action.x, action.y)}', " if action.x is not None and action.y is not None else ""
        return f"scroll({where}direction='{action.direction}')"
    if isinstance(action, Type):
        content = _quote(action.text + ("\n" if action.submit else ""))
        return f"type(content='{content}')"
    if isinstance(action, Key):
        if action.key in ("home", "back") and not action.modifiers:
            return f"press_{action.key}()"
        return f"hotkey(key='{' '.join((*action.modifiers, action.key))}')"
    if isinstance(action, OpenApp):
        return f"open_app(app_name='{_quote(action.name)}')"
    if isinstance(action, Wait):
        return "wait()"
    if isinstance(action, CallUser):
        return "call_user()"
    assert isinstance(action, Done)
    if action.status == "failure":
        return "call_user()"
    return f"finished(content='{_quote(action.answer or '')}')"


def render_v1(action: Action, grid: tuple[int, int]) -> str:
    return _render(action, "<|box_start|>({x},{y})<|box_end|>", "start_box", "end_box")


def render_v15(action: Action, grid: tuple[int, int]) -> str:
    # The same call syntax as v1 (codes/prompts.py COMPUTER_USE), in pixels of the resized image.
    return _render(action, "<|box_start|>({x},{y})<|box_end|>", "start_box", "end_box")


# --- prompts (the published templates, verbatim) ----------------------------------------------
#
# UI-TARS v1: bytedance/UI-TARS README_v1.md ("Prompt Templates", commit f6a5269), whose action
# lists these are. Its computer template sits in the frame of ``multi_step_prompt_1229`` from
# bytedance/UI-TARS infer/prompts.py (commit 5adcd33): the README prints it as a raw string, which
# would leave a literal backslash-n around the Output Format fence, so the frame's real newlines
# are used. The README's computer note says "Use Chinese" and "Summarize your next action"; the
# frame's English note (also the mobile template's) is used here.
#
# UI-TARS-1.5: COMPUTER_USE and MOBILE_USE from bytedance/UI-TARS codes/prompts.py (commit 6b315cc,
# released with UI-TARS-1.5), which write points as start_box='<|box_start|>(x1,y1)<|box_end|>' in
# pixels of the resized image (README_coordinates.md parses start_box='(197,525)'; UI-TARS-desktop
# apps/ui-tars/src/main/agent/prompts.ts getSystemPromptV1_5 uses the same). The later
# COMPUTER_USE_DOUBAO / MOBILE_USE_DOUBAO of codes/ui_tars/prompt.py, with point='<point>x1 y1</point>',
# are for the Doubao API models; the parser still reads that form.

_V1_COMPUTER = """You are a GUI agent. You are given a task and your action history, with screenshots. You need to perform the next action to complete the task. 

## Output Format
```
Thought: ...
Action: ...
```

## Action Space

click(start_box='<|box_start|>(x1,y1)<|box_end|>')
left_double(start_box='<|box_start|>(x1,y1)<|box_end|>')
right_single(start_box='<|box_start|>(x1,y1)<|box_end|>')
drag(start_box='<|box_start|>(x1,y1)<|box_end|>', end_box='<|box_start|>(x3,y3)<|box_end|>')
hotkey(key='')
type(content='') #If you want to submit your input, use "\\n" at the end of `content`.
scroll(start_box='<|box_start|>(x1,y1)<|box_end|>', direction='down or up or right or left')
wait() #Sleep for 5s and take a screenshot to check for any changes.
finished()
call_user() # Submit the task and call the user when the task is unsolvable, or when you need the user's help.


## Note
- Use English in `Thought` part.
- Write a small plan and finally summarize your next action (with its target element) in one sentence in `Thought` part.

## User Instruction
"""
_V1_MOBILE = """You are a GUI agent. You are given a task and your action history, with screenshots. You need to perform the next action to complete the task. 

## Output Format
```
Thought: ...
Action: ...
```

## Action Space
click(start_box='<|box_start|>(x1,y1)<|box_end|>')
long_press(start_box='<|box_start|>(x1,y1)<|box_end|>', time='')
type(content='')
scroll(start_box='<|box_start|>(x1,y1)<|box_end|>', end_box='<|box_start|>(x3,y3)<|box_end|>')
press_home()
press_back()
finished(content='') # Submit the task regardless of whether it succeeds or fails.

## Note
- Use English in `Thought` part.

- Write a small plan and finally summarize your next action (with its target element) in one sentence in `Thought` part.

## User Instruction
"""
_V15_COMPUTER = """You are a GUI agent. You are given a task and your action history, with screenshots. You need to perform the next action to complete the task.

## Output Format
```
Thought: ...
Action: ...
```

## Action Space

click(start_box='<|box_start|>(x1,y1)<|box_end|>')
left_double(start_box='<|box_start|>(x1,y1)<|box_end|>')
right_single(start_box='<|box_start|>(x1,y1)<|box_end|>')
drag(start_box='<|box_start|>(x1,y1)<|box_end|>', end_box='<|box_start|>(x3,y3)<|box_end|>')
hotkey(key='')
type(content='xxx') # Use escape characters \\', \\\", and \\n in content part to ensure we can parse the content in normal python string format. If you want to submit your input, use \\n at the end of content. 
scroll(start_box='<|box_start|>(x1,y1)<|box_end|>', direction='down or up or right or left')
wait() #Sleep for 5s and take a screenshot to check for any changes.
finished(content='xxx') # Use escape characters \\', \\", and \\n in content part to ensure we can parse the content in normal python string format.


## Note
- Use English in `Thought` part.
- Write a small plan and finally summarize your next action (with its target element) in one sentence in `Thought` part.

## User Instruction
{instruction}
"""
_V15_MOBILE = """You are a GUI agent. You are given a task and your action history, with screenshots. You need to perform the next action to complete the task. 
## Output Format
```
Thought: ...
Action: ...
```
## Action Space

click(start_box='<|box_start|>(x1,y1)<|box_end|>')
long_press(start_box='<|box_start|>(x1,y1)<|box_end|>')
type(content='') #If you want to submit your input, use "\\n" at the end of `content`.
scroll(start_box='<|box_start|>(x1,y1)<|box_end|>', direction='down or up or right or left')
open_app(app_name=\'\')
drag(start_box='<|box_start|>(x1,y1)<|box_end|>', end_box='<|box_start|>(x3,y3)<|box_end|>')
press_home()
press_back()
finished(content='xxx') # Use escape characters \\', \\", and \\n in content part to ensure we can parse the content in normal python string format.


## Note
- Use English in `Thought` part.
- Write a small plan and finally summarize your next action (with its target element) in one sentence in `Thought` part.

## User Instruction
{instruction}
"""

#: The functions each template lists: the grammar allows no other (intersected with the device).
_LISTED = {
    "v1_computer": (
        "click",
        "left_double",
        "right_single",
        "drag",
        "hotkey",
        "type",
        "scroll",
        "wait",
        "finished()",
        "call_user",
    ),
    "v1_mobile": ("click", "long_press", "type", "scroll_swipe", "press_home", "press_back", "finished"),
    "v15_computer": ("click", "left_double", "right_single", "drag", "hotkey", "type", "scroll", "wait", "finished"),
    "v15_mobile": ("click", "long_press", "type", "scroll", "open_app", "drag", "press_home", "press_back", "finished"),
}


def _is_phone(capabilities: Capabilities) -> bool:
    return capabilities.is_phone


def answer_text(thought: str | None, action: str) -> str:
    """An earlier answer as the model wrote it (``Thought: ...`` then ``Action: ...``), for the
    assistant turns of the conversation layout."""
    return f"Thought: {thought}\nAction: {action}" if thought else f"Action: {action}"


def instructions_v1(
    task: str, capabilities: Capabilities, family: ModelFamily, image_size: tuple[int, int], with_thought: bool
) -> str:
    # The README appends the instruction right after "## User Instruction\n" (prompt + instruction).
    return (_V1_MOBILE if _is_phone(capabilities) else _V1_COMPUTER) + task


def instructions_v15(
    task: str, capabilities: Capabilities, family: ModelFamily, image_size: tuple[int, int], with_thought: bool
) -> str:
    template = _V15_MOBILE if _is_phone(capabilities) else _V15_COMPUTER
    return template.replace("{instruction}", task)


# --- grammars (llguidance Lark) --------------------------------------------------------------------

_NATIVE_KEYS = {"escape": "esc", "page_up": "pageup", "page_down": "pagedown", "line_start": "home", "line_end": "end"}


def _grammar(caps: Capabilities, limits: GrammarLimits, point: str, listed: tuple[str, ...]) -> str:
    acts = caps.actions
    at = '"start_box=\'" point "\'"'
    end = '"end_box=\'" point "\'"'
    calls: list[str] = []
    if "click" in acts:
        calls.append(f'"click(" {at} ")"')
        if "left_double" in listed:
            calls.append(f'"left_double(" {at} ")"')
        if "right_single" in listed and "right" in caps.buttons:
            calls.append(f'"right_single(" {at} ")"')
    if "long_press" in acts and "long_press" in listed:
        calls.append(f'"long_press(" {at} ")"')
    if "swipe" in acts and "drag" in listed:
        calls.append(f'"drag(" {at} ", " {end} ")"')
    if "swipe" in acts and "scroll_swipe" in listed:  # v1 mobile: scroll(start_box, end_box) is a swipe
        calls.append(f'"scroll(" {at} ", " {end} ")"')
    if "scroll" in acts and "scroll" in listed:
        calls.append(f'"scroll(" {at} ", direction=\'" DIRECTION "\')"')
    if "type" in acts:
        calls.append('"type(content=\'" TEXT "\')"')
    keys = sorted(_NATIVE_KEYS.get(k, k) for k in caps.keys if k not in ("home", "back"))
    if "key" in acts:
        if "home" in caps.keys and "press_home" in listed:
            calls.append('"press_home()"')
        if "back" in caps.keys and "press_back" in listed:
            calls.append('"press_back()"')
        if keys and "hotkey" in listed:
            mods = '(("ctrl" | "alt" | "shift") " "){0,2} ' if caps.modifiers else ""
            calls.append(f'"hotkey(key=\'" {mods}KEY "\')"')
    if "open_app" in acts and "open_app" in listed:
        calls.append('"open_app(app_name=\'" TEXT "\')"')
    if "wait" in acts and "wait" in listed:
        calls.append('"wait()"')
    if "done" in acts:
        if "finished()" in listed:
            calls.append('"finished()"')
        else:
            calls.append('"finished(content=\'" TEXT? "\')"')
        if "call_user" in listed:
            calls.append('"call_user()"')
    lines = [
        'start: thought "Action: " call' if limits.with_thought else 'start: "Action: " call',
        'thought: "Thought: " THOUGHT "\\n"',
        "call: " + "\n    | ".join(calls),
        f"THOUGHT: /[^\\n]{{1,{limits.thought_chars}}}/",
        "TEXT: /([^'\\\\\\n]|\\\\['n\\\\])" + f"{{1,{limits.string_chars}}}/",
        'DIRECTION: "up" | "down" | "left" | "right"',
    ]
    if "key" in acts and keys and "hotkey" in listed:
        lines.append("KEY: " + " | ".join(f'"{k}"' for k in keys))
    lines.append(point)
    return "\n".join(lines) + "\n"


def _box_point(grid: tuple[int, int]) -> str:
    xs, ys = int_range_regex(grid[0]), int_range_regex(grid[1])
    return f'point: <|box_start|> "(" X "," Y ")" <|box_end|>\nX: /{xs}/\nY: /{ys}/'


def grammar_v1(caps: Capabilities, grid: tuple[int, int], limits: GrammarLimits) -> str:
    listed = _LISTED["v1_mobile" if _is_phone(caps) else "v1_computer"]
    return _grammar(caps, limits, _box_point(grid), listed)


def grammar_v15(caps: Capabilities, grid: tuple[int, int], limits: GrammarLimits) -> str:
    listed = _LISTED["v15_mobile" if _is_phone(caps) else "v15_computer"]
    return _grammar(caps, limits, _box_point(grid), listed)
