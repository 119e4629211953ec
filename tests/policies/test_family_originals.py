"""Native prompts keep the published templates' key lines; their grammars allow what those templates ask for.

Each pinned line is copied from the template the model was trained or documented with (the
source is named in the family module); a drift in wording, order or layout fails here before
it costs accuracy in an evaluation.
"""

# ruff: noqa: E501  (template lines are pinned whole)

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vlagent.drivers.base import DESKTOP_CAPABILITIES, PHONE_CAPABILITIES
from vlagent.policies.prompt import GrammarLimits, get_family, system_prompt

IMAGE = (1092, 2408)
TASK = "Turn on Wi-Fi"
FIRST = (
    "You are a GUI agent. You are given a task and your action history, with screenshots. "
    "You need to perform the next action to complete the task."
)


def _prompt(family: str, device: str) -> str:
    caps = PHONE_CAPABILITIES if device == "phone" else DESKTOP_CAPABILITIES
    return system_prompt(TASK, caps, get_family(family), IMAGE)


def _tool(prompt: str) -> dict[str, Any]:
    block = prompt.split("<tools>\n", 1)[1].split("\n</tools>", 1)[0]
    assert "\n" not in block, "one tool: one JSON line between the tags"
    tool: dict[str, Any] = json.loads(block)
    return tool


# --- UI-TARS ---------------------------------------------------------------------------------


def test_uitars15_mobile_is_codes_prompts_mobile_use() -> None:
    text = _prompt("uitars15", "phone")
    # MOBILE_USE's first line keeps a trailing space and runs straight into the Output Format.
    assert text.startswith(FIRST + " \n## Output Format\n```\nThought: ...\nAction: ...\n```\n## Action Space\n\n")
    assert (
        "\nclick(start_box='<|box_start|>(x1,y1)<|box_end|>')\nlong_press(start_box='<|box_start|>(x1,y1)<|box_end|>')\n"
        in text
    )
    assert (
        "\nopen_app(app_name='')\ndrag(start_box='<|box_start|>(x1,y1)<|box_end|>', end_box='<|box_start|>(x3,y3)<|box_end|>')\npress_home()\npress_back()\n"
        in text
    )
    assert "wait()" not in text and "<point>" not in text
    assert text.endswith(
        "\n\n\n## Note\n- Use English in `Thought` part.\n" + _PLAN + "\n\n## User Instruction\n" + TASK + "\n"
    )


_PLAN = "- Write a small plan and finally summarize your next action (with its target element) in one sentence in `Thought` part."


def test_uitars15_computer_is_codes_prompts_computer_use() -> None:
    text = _prompt("uitars15", "desktop")
    assert text.startswith(
        FIRST + "\n\n## Output Format\n```\nThought: ...\nAction: ...\n```\n\n## Action Space\n\nclick("
    )
    assert "\nhotkey(key='')\ntype(content='xxx') # Use escape characters \\', \\\", and \\n in content part" in text
    assert "\nwait() #Sleep for 5s and take a screenshot to check for any changes.\nfinished(content='xxx') #" in text
    assert "call_user" not in text


def test_uitars_v1_templates_are_readme_v1s() -> None:
    phone = _prompt("uitars", "phone")
    assert phone == (
        FIRST + " \n\n## Output Format\n```\nThought: ...\nAction: ...\n```\n\n## Action Space\n"
        "click(start_box='<|box_start|>(x1,y1)<|box_end|>')\n"
        "long_press(start_box='<|box_start|>(x1,y1)<|box_end|>', time='')\n"
        "type(content='')\n"
        "scroll(start_box='<|box_start|>(x1,y1)<|box_end|>', end_box='<|box_start|>(x3,y3)<|box_end|>')\n"
        "press_home()\npress_back()\n"
        "finished(content='') # Submit the task regardless of whether it succeeds or fails.\n\n"
        "## Note\n- Use English in `Thought` part.\n\n" + _PLAN + "\n\n## User Instruction\n" + TASK
    )
    desktop = _prompt("uitars", "desktop")
    assert "\nfinished()\ncall_user() # Submit the task and call the user when the task is unsolvable" in desktop
    assert "\ntype(content='') #If you want to submit your input, use \"\\n\" at the end of `content`.\n" in desktop
    assert desktop.endswith("## User Instruction\n" + TASK)


def _matcher_accepts(lark: str, text: str, tiny: Path) -> bool:
    pytest.importorskip("llguidance", reason="needs the qwen extra (llguidance)")
    transformers = pytest.importorskip("transformers", reason="needs the qwen extra (transformers)")
    import llguidance
    import llguidance.hf

    tok = transformers.AutoTokenizer.from_pretrained(str(tiny))
    ll_tok = llguidance.hf.from_tokenizer(tok, n_vocab=len(tok), eos_token=tok.convert_tokens_to_ids("<|im_end|>"))
    matcher = llguidance.LLMatcher(ll_tok, llguidance.LLMatcher.grammar_from_lark(lark), log_level=0)
    assert not matcher.is_error(), matcher.get_error()
    return bool(matcher.consume_tokens(tok.encode(text, add_special_tokens=False)) and matcher.is_accepting())


BOX = "<|box_start|>({x},{y})<|box_end|>"


@pytest.mark.parametrize(
    ("family", "device", "answer", "allowed"),
    [
        ("uitars", "phone", f"scroll(start_box='{BOX}', end_box='{BOX}')", True),  # v1 mobile's swipe
        ("uitars", "phone", "wait()", False),  # not in the v1 mobile template
        ("uitars", "desktop", "finished()", True),
        ("uitars", "desktop", "call_user()", True),
        ("uitars15", "phone", f"drag(start_box='{BOX}', end_box='{BOX}')", True),
        ("uitars15", "phone", "open_app(app_name='Settings')", True),
        ("uitars15", "phone", "wait()", False),  # MOBILE_USE lists no wait
        ("uitars15", "desktop", "finished(content='done')", True),
        ("uitars15", "desktop", "call_user()", False),  # COMPUTER_USE lists no call_user
        ("uitars15", "desktop", "click(point='<point>10 20</point>')", False),  # the Doubao API syntax
    ],
)
def test_uitars_grammar_allows_what_its_template_lists(
    family: str, device: str, answer: str, allowed: bool, tiny_qwen2vl: Path
) -> None:
    caps = PHONE_CAPABILITIES if device == "phone" else DESKTOP_CAPABILITIES
    fam = get_family(family)
    lark = fam.lark_grammar(caps, fam.grid(IMAGE), GrammarLimits(40, 20, True))
    assert lark is not None
    text = "Thought: go on\nAction: " + answer.format(x=500, y=800)
    assert _matcher_accepts(lark, text, tiny_qwen2vl) is allowed
    if allowed:
        fam.parse(text, fam.grid(IMAGE), caps)  # what the grammar allows, the parser reads


# --- Qwen2.5-VL / Qwen3-VL ---------------------------------------------------------------------

_TOOLS = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
)
_CALL = (
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
    '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n'
    "</tool_call>"
)


@pytest.mark.parametrize("device", ["phone", "desktop"])
def test_qwen25_system_is_qwen_agents_nous_template(device: str) -> None:
    text = _prompt("qwen25vl", device)
    assert text.startswith(
        "You are a helpful assistant.\n\n" + _TOOLS + '{"type": "function", "function": {"name_for_human": '
    )
    assert text.endswith(_CALL) and TASK not in text  # the task opens the user turn instead
    function = _tool(text)["function"]
    assert list(function) == ["name_for_human", "name", "description", "parameters", "args_format"]
    assert function["args_format"] == "Format the arguments as a JSON object."
    assert "* The screen's resolution is 1092x2408.\n" in function["description"]
    props = function["parameters"]["properties"]
    if device == "phone":
        assert list(props) == ["action", "coordinate", "coordinate2", "text", "time", "button", "status"]
        assert props["action"]["enum"] == [
            "key", "click", "long_press", "swipe", "type", "system_button", "open", "wait", "terminate"
        ]  # fmt: skip
        assert props["text"]["description"] == "Required only by `action=key`, `action=type`, and `action=open`."
    else:
        assert list(props) == ["action", "keys", "text", "coordinate", "pixels", "time", "status"]
        assert props["text"]["description"] == "Required only by `action=type`."


def test_qwen3_mobile_system_is_the_cookbooks() -> None:
    text = _prompt("qwen3vl", "phone")
    assert text.startswith("\n\n" + _TOOLS + '{"type": "function", "function": {"name": "mobile_use", ')
    function = _tool(text)["function"]
    assert list(function) == ["name", "description", "parameters"]
    assert "* The screen's resolution is 999x999.\n" in function["description"]
    props = function["parameters"]["properties"]
    assert props["action"]["enum"] == [
        "click",
        "long_press",
        "swipe",
        "type",
        "answer",
        "system_button",
        "wait",
        "terminate",
    ]
    assert props["text"]["description"] == "Required only by `action=type` and `action=answer`."
    assert (
        _CALL + "\n\n# Response format\n\nResponse format for every step:\n"
        "1) Thought: one concise sentence explaining the next move (no multi-step reasoning).\n"
    ) in text
    assert text.endswith("- If finishing, use action=terminate in the tool call.") and TASK not in text


def _user_turn(family: str, history: tuple[Any, ...] = ()) -> list[Any]:
    from PIL import Image

    from vlagent.frames import Frame
    from vlagent.policies.base import HistoryEntry, Observation
    from vlagent.policies.prompt import build_messages

    frame = Frame.of(Image.new("RGB", IMAGE))
    entries = tuple(HistoryEntry(i, action) for i, action in enumerate(history))
    observation = Observation(TASK, frame, PHONE_CAPABILITIES, len(entries), entries)
    content: list[Any] = build_messages(observation, get_family(family))[-1]["content"]
    return content


def test_qwen25_user_turn_is_the_cookbooks_query_then_the_screenshot() -> None:
    from vlagent.actions import OpenApp

    # QwenLM/Qwen2.5-VL cookbooks/mobile_agent.ipynb, the user_query of its first example.
    content = _user_turn("qwen25vl", (OpenApp(name="File Manager"),))
    assert [part["type"] for part in content] == ["text", "image"]
    assert content[0]["text"] == (
        "The user query:  Turn on Wi-Fi\nTask progress (You have done the following operation on the current "
        'device): Step 1: {"name": "mobile_use", "arguments": {"action": "open", "text": "File Manager"}}; '
    )


def test_qwen3_user_turn_is_the_cookbooks_query_then_the_screenshot() -> None:
    # QwenLM/Qwen3-VL cookbooks/mobile_agent.ipynb: f"The user query: {instruction}.\nTask progress (...): {stage2_history}.\n"
    content = _user_turn("qwen3vl")
    assert [part["type"] for part in content] == ["text", "image"]
    assert content[0]["text"] == (
        "The user query: Turn on Wi-Fi.\nTask progress (You have done the following operation on the current "
        "device): .\n"
    )


# --- ShowUI ------------------------------------------------------------------------------------------


def test_showui_navigation_prompt_is_the_quick_starts() -> None:
    phone = _prompt("showui", "phone")
    assert phone.startswith(
        "You are an assistant trained to navigate the phone screen. \n"
        "Given a task instruction, a screen observation, and an action history sequence, \n"
        "output the next action and wait for the next observation. \nHere is the action space:\n\n"
        "1. `INPUT`: Type a string into an element, value is a string to type and the position [x,y] is required. \n"
    )
    assert "\n3. `TAP`: Tap on an element, value is not applicable and the position [x,y] is required.\n" in phone
    assert (
        "\nFormat the action as a dictionary with the following keys:\n"
        "{'action': 'ACTION_TYPE', 'value': 'element', 'position': [x,y]}\n\n"
        "If value or position is not applicable, set it as `None`.\n"
    ) in phone
    assert phone.endswith("should be scaled to a range of 0-1.\n") and TASK not in phone  # task: in the user turn
    desktop = _prompt("showui", "desktop")
    assert desktop.startswith("You are an assistant trained to navigate the web screen. \n")
    assert "\n9. `COPY`: Copy the text, value is the text to copy and the position is not applicable.\n" in desktop


def test_uitars_history_is_a_conversation_as_the_sdk_sends_it() -> None:
    # bytedance/UI-TARS-desktop packages/ui-tars/sdk/src/utils.ts: the instructions (with the task)
    # are the first user turn, then screenshot / answer pairs; old screenshots leave, answers stay.
    from PIL import Image

    from vlagent.actions import Click, OpenApp
    from vlagent.frames import Frame
    from vlagent.policies.base import HistoryEntry, Observation
    from vlagent.policies.prompt import build_messages

    current = Frame.of(Image.new("RGB", IMAGE))
    older = Frame.of(Image.new("RGB", (546, 1204)))
    history = (
        HistoryEntry(0, OpenApp(name="Settings"), "Open Settings."),
        HistoryEntry(1, Click(x=546, y=1204), "Tap Wi-Fi."),
        HistoryEntry(2, Click(x=10, y=20)),
    )
    observation = Observation(TASK, current, PHONE_CAPABILITIES, 3, history, (older, older, current))
    messages = build_messages(observation, get_family("uitars15"))
    shape = [(m["role"], [part["type"] for part in m["content"]]) for m in messages]
    assert shape == [
        ("user", ["text"]),
        ("assistant", ["text"]),  # step 1: its screenshot has left the window
        ("user", ["image"]),
        ("assistant", ["text"]),
        ("user", ["image"]),
        ("assistant", ["text"]),
        ("user", ["image"]),  # the current screen
    ]
    assert messages[0]["content"][0]["text"].endswith("## User Instruction\n" + TASK + "\n")
    assert messages[1]["content"][0]["text"] == "Thought: Open Settings.\nAction: open_app(app_name='Settings')"
    assert messages[3]["content"][0]["text"] == (
        "Thought: Tap Wi-Fi.\nAction: click(start_box='<|box_start|>(546,1204)<|box_end|>')"
    )
    assert messages[5]["content"][0]["text"] == "Action: click(start_box='<|box_start|>(10,20)<|box_end|>')"


def test_showui_instructions_task_and_history_share_one_user_turn() -> None:
    # showlab/ShowUI data/template/shared_navigation.py navigation_to_qwen: [instructions, "Task: ...\n",
    # earlier answers, screenshot] in a single user turn.
    from vlagent.actions import Click

    content = _user_turn("showui", (Click(x=546, y=1204),))
    assert [part["type"] for part in content] == ["text", "text", "image"]
    assert content[0]["text"].startswith("You are an assistant trained to navigate the phone screen.")
    assert content[1]["text"] == "Task: Turn on Wi-Fi\n{'action': 'TAP', 'value': None, 'position': [0.5, 0.5]}"
