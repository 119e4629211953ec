"""Every answer parser survives any text: a valid Step or InvalidModelOutput, never a crash or a hang.

The parsers are :func:`vlagent.parsing.parse_step` and the parser of each registered model
family (found through the families registry, so a new family is covered without editing this
file). The corpus holds what runaway or broken generation produces: deep nesting of each
bracket kind, megabytes of braces, digits and whitespace, absurd and non-finite numbers,
control characters, NUL bytes, lone surrogates, invalid UTF-8 decoded with surrogateescape,
unbalanced quotes, thousands of actions, enormous and duplicate keys. Answers cut off by the
token limit are refused in every family's format. Hypothesis adds random text and broken
JSON-like and call-like answers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vlagent.actions import Click, Step, action_points
from vlagent.capabilities import DESKTOP_CAPABILITIES, PHONE_CAPABILITIES, Capabilities
from vlagent.errors import InvalidModelOutput
from vlagent.parsetail import MAX_ANSWER_CHARS
from vlagent.parsing import parse_step
from vlagent.policies.prompt import FAMILIES

GRID = (1000, 1000)
MB = 1024 * 1024
Parser = Callable[[str], Step]


def _parsers() -> dict[str, Parser]:
    found: dict[str, Parser] = {"parse_step": lambda text: parse_step(text, grid=GRID)}
    for name, family in FAMILIES.items():
        found[name] = lambda text, family=family: family.parse(text, GRID, None)  # type: ignore[misc]
    return found


PARSERS = _parsers()
NATIVE = ("qwen25vl", "qwen3vl", "showui", "uitars", "uitars15")
BAD_UTF8 = bytes([0xFF, 0xFE, 0x80, 0xC3, 0x28, 0xED, 0xA0, 0x80]).decode("utf-8", "surrogateescape")
HUGE = "1" + "9" * 400


def _fill(head: str, unit: str, tail: str = "", size: int = MB) -> str:
    body = size - len(head) - len(tail)
    return head + (unit * (body // len(unit) + 1))[:body] + tail


#: Answers of a megabyte: each must be refused (or read) in well under a second by every parser.
MEGABYTE = {
    "braces": "{" * MB,
    "brackets": "[" * MB,
    "parens": "(" * MB,
    "nested brackets": "[" * (MB // 2) + "]" * (MB // 2),
    "nested objects": _fill("", '{"a": '),
    "digits": "1" * MB,
    "json digits": _fill('{"action": "click", "x": 1', "9", ', "y": 5}'),
    "tars digits": _fill("Action: click(start_box='(1", "9", ",5)')"),
    "quotes": '"' * MB,
    "single quotes": "'" * MB,
    "backslashes": "\\" * MB,
    "whitespace after a label": _fill("Thought:", "\n "),
    "nul bytes": "\x00" * MB,
    "one valid action then junk": '{"action": "wait"}' + "x" * MB,
    "actions": _fill("", '{"action": "click", "x": 1, "y": 1}\n'),
    "tars actions": _fill("", "Action: click(start_box='(1,1)')\n"),
    "enormous key": _fill('{"', "k", '": 1}'),
    "cut off string": _fill('{"action": "type", "text": "', "a"),
}

#: Shorter hostile answers (most within MAX_ANSWER_CHARS, so they reach the repairing code).
CORPUS: dict[str, str] = {
    # nesting of each bracket kind, just over the bound and far over it
    **{
        f"{kind} nested {n}": o * n + c * n
        for kind, o, c in (("braces", "{", "}"), ("brackets", "[", "]"), ("parens", "(", ")"))
        for n in (33, 3000)
    },
    "objects nested 33": '{"a": ' * 33 + "1" + "}" * 33,
    "python dict nested": "{'a': " * 40 + "1" + "}" * 40,
    "tool call nested": "<tool_call>" + "[" * 4000,
    "showui tuple nested": "{'action': " + "(" * 3000,
    "unary minus chain": "{'action': " + "-" * 7000 + "1}",
    "power chain": "{'action': 1" + "**1" * 2000 + "}",
    "brackets 5000 deep": "[" * 5000 + "]" * 5000,
    # numbers: huge, non-finite, exponents, negative zero
    "tars 400 digits": f"click(start_box='({HUGE},5)')",
    "tars nan": "Action: click(start_box='(nan,5)')",
    "tars huge time": f"Action: long_press(start_box='(5,5)', time='{HUGE}')",
    "json nan": '{"action": "click", "x": NaN, "y": 5}',
    "json infinity": '{"action": "click", "x": Infinity, "y": -Infinity}',
    "json huge exponent": '{"action": "click", "x": 1e999999, "y": 5}',
    "json 400 digits": f'{{"action": "click", "x": {HUGE}, "y": 5}}',
    "json 5000 digits": '{"action": "click", "x": ' + "9" * 5000 + ', "y": 5}',
    "json 5000 digit clicks": '{"action": "click", "x": 1, "y": 5, "clicks": ' + "9" * 5000 + "}",
    "json 5000 digit thought": '{"thought": ' + "9" * 5000 + ', "action": "wait"}',
    "json huge seconds": '{"action": "wait", "seconds": 1e308}',
    "json huge string number": '{"action": "click", "x": "1e999999", "y": "5"}',
    "json point of huge": f'{{"action": "click", "point": [{HUGE}, 5]}}',
    "json point string": f'{{"action": "click", "coordinate": "({HUGE}, 5)"}}',
    "json negative zero": '{"action": "click", "x": -0, "y": -0.0}',
    "json many modifiers": '{"action": "key", "key": "a", "modifiers": [' + ", ".join(["9" * 5000] * 3) + "]}",
    "tool huge coordinate": '<tool_call>{"name": "mobile_use", "arguments": {"action": "click", "coordinate": ['
    + HUGE
    + ", 5]}}</tool_call>",
    "tool nan coordinate": '{"name": "mobile_use", "arguments": {"action": "click", "coordinate": [NaN, 5]}}',
    "tool infinite pixels": '{"name": "computer_use", "arguments": {"action": "scroll", "pixels": 1e999}}',
    "tool nan pixels": '{"name": "computer_use", "arguments": {"action": "scroll", "pixels": NaN}}',
    "tool huge time": f'{{"name": "mobile_use", "arguments": {{"action": "wait", "time": "{HUGE}"}}}}',
    "tool 5000 digit status": '{"name": "mobile_use", "arguments": {"action": "terminate", "status": '
    + "9" * 5000
    + "}}",
    "showui huge position": f"{{'action': 'TAP', 'value': None, 'position': [{HUGE}, 0.5]}}",
    "showui infinite position": "{'action': 'TAP', 'value': None, 'position': [1e999, 0.5]}",
    "showui nan position": '{"action": "TAP", "value": null, "position": [NaN, 0.5]}',
    "showui negative zero": "{'action': 'TAP', 'value': None, 'position': [-0.0, 0.5]}",
    "showui unhashable key": "{[1]: 2, 'action': 'TAP'}",
    "showui 5000 digit action": "{'action': " + "9" * 5000 + "}",
    "showui long position": "{'action': 'TAP', 'value': None, 'position': [" + "0.5, " * 1500 + "0.5]}",
    # characters no model should write
    "control characters": '{"action": "type", "text": "\x1b[31mred\x07\x08"}',
    "nul in text": '{"action": "type", "text": "a\x00b"}',
    "nul everywhere": "\x00{\x00}\x00Action:\x00click(\x00",
    "lone surrogate": '{"action": "type", "text": "\ud800"}',
    "lone surrogates everywhere": '\udc80\ud800{\udfff"action": "type", "text": "\ud800"}',
    "tars lone surrogate": "Thought: \ud800\nAction: type(content='\udc00')",
    "tool lone surrogate": '<tool_call>{"name": "mobile_use", "arguments": {"action": "type", "text": "\ud800"}}',
    "showui lone surrogate": "{'action': 'INPUT', 'value': '\ud800', 'position': [0.5, 0.5]}",
    "invalid utf-8": '{"action": "type", "text": "' + BAD_UTF8 + '"}',
    "invalid utf-8 call": f"Action: type(content='{BAD_UTF8}')",
    "invalid utf-8 alone": BAD_UTF8 * 100,
    "byte order marks": "\ufeff" * 10 + '{"action": "wait"}',
    "line separators": '{"action":\u2028"type",\u2029"text": "a\u2028b"}',
    # quotes
    "unbalanced double quotes": '"' * 1001,
    "unbalanced single quotes": "'" * 1001,
    "quote soup": '{"action": "click", "x": "1, "y": 2}',
    "escaped quote at end": '{"action": "type", "text": "a\\"}',
    "backslash run": '{"action": "type", "text": "' + "\\" * 3001 + '"}',
    # volume
    "10k json actions": '{"action": "click", "x": 1, "y": 1}\n' * 10_000,
    "10k tars actions": "Action: click(start_box='(1,1)')\n" * 10_000,
    "200 json actions": '{"action": "click", "x": 1, "y": 1}\n' * 200,
    "empty objects": "{}" * 3999,
    "many keys": "{" + '"k": 1, ' * 990 + '"action": "wait"}',
    "enormous key": '{"' + "k" * 7000 + '": 1, "action": "wait"}',
    "enormous action name": '{"action": "' + "x" * 7000 + '"}',
    "duplicate keys": '{"action": "click", "x": 1, "y": 2, "x": 5000, "action": "type"}',
    "100 arguments": "Action: click(" + ", ".join(f"a{i}='1'" for i in range(100)) + ")",
    "keyword soup": "Action: click(" + ", a=" * 1500,
    "bare commas": "Action: click(start_box=" + "1," * 3000,
    "empty": "",
    "whitespace": " \n\t" * 100,
}

#: Answers the token limit cut off, in each format: refused, never executed half-typed or half-read.
TRUNCATED: dict[str, list[str]] = {
    "parse_step": [
        '{"action": "type", "text": "hel',
        '{"thought": "I will type the na',
        '{"thought": "x", "action": {"action": "open_app", "name": "Cloc',
        '```json\n{"action": {"action": "type", "text": "weather tod',
    ],
    "qwen25vl": [
        '<tool_call>\n{"name": "mobile_use", "arguments": {"action": "type", "text": "hel',
        '<tool_call>\n{"name": "mobile_use", "arguments": {"action": "click", "coordinate": [546, 12',
        '{"name": "mobile_use", "arguments": {"action": "open", "text": "Cl',
    ],
    "qwen3vl": [
        'Thought: type it.\nAction: "Type"\n<tool_call>\n{"name": "mobile_use", "arguments": '
        '{"action": "type", "text": "he',
        'Thought: tap.\nAction: "Tap"\n<tool_call>\n{"name": "mobile_use", "arguments": '
        '{"action": "click", "coordinate": [33',
    ],
    "showui": [
        "{'action': 'INPUT', 'value': 'hel",
        "{'action': 'TAP', 'value': None, 'position': [0.5, 0.",
        "{'action': 'ANSWER', 'value': 'The battery is at 8",
    ],
    "uitars": [
        "Thought: typing\nAction: type(content='hel",
        "Thought: typing\nAction: type(content='it'",
        "Action: click(start_box='<|box_start|>(500,12",
        "Action: click(start_box=(500,12",
        "Action: click(start_box=500,12",
        "Action: finished(content='The battery is at 80%'",
        "Action: open_app(app_name='Sett",
    ],
    "uitars15": [
        "Thought: typing\nAction: type(content='hello wor",
        "Action: click(point='<point>546 12",
        "Action: drag(start_box='(1,2)', end_box='(3,",
    ],
}


def _check(parse: Parser, text: str) -> Step | None:
    """Parse ``text``: a Step on the grid, or None for InvalidModelOutput; anything else fails the test."""
    try:
        step = parse(text)
    except InvalidModelOutput as exc:
        assert exc.feedback and len(exc.feedback) < 2000, exc.feedback
        assert len(exc.raw) <= MAX_ANSWER_CHARS + 100
        return None
    assert isinstance(step, Step)
    assert all(0 <= x <= GRID[0] and 0 <= y <= GRID[1] for x, y in action_points(step.action))
    return step


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize("name", MEGABYTE)
def test_a_megabyte_answer_is_refused_in_well_under_a_second(parser: str, name: str) -> None:
    text = MEGABYTE[name]
    assert len(text) >= MB
    started = time.perf_counter()
    with pytest.raises(InvalidModelOutput, match=r"characters long|nests brackets") as info:
        PARSERS[parser](text)
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0, f"{parser} took {elapsed:.2f} s on 1 MB of {name}"
    assert len(info.value.raw) <= MAX_ANSWER_CHARS + 100  # the error does not carry the megabyte around


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize("name", CORPUS)
def test_a_hostile_answer_is_a_step_or_feedback(parser: str, name: str) -> None:
    started = time.perf_counter()
    _check(PARSERS[parser], CORPUS[name])
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0, f"{parser} took {elapsed:.2f} s on {name}"


@pytest.mark.parametrize(("parser", "text"), [(p, t) for p, texts in TRUNCATED.items() for t in texts])
def test_an_answer_cut_off_by_the_token_limit_is_refused(parser: str, text: str) -> None:
    with pytest.raises(InvalidModelOutput, match="cut off"):
        PARSERS[parser](text)


def test_each_format_of_a_truncated_answer_is_covered() -> None:
    assert set(TRUNCATED) | {"qwen2vl"} >= set(PARSERS)  # qwen2vl's parser is parse_step


@pytest.mark.parametrize(
    "text",
    [
        '{"action": "click", "x": NaN, "y": 5}',
        '{"action": "click", "x": 1e999999, "y": 5}',
        f'{{"action": "click", "x": {HUGE}, "y": 5}}',
        '{"action": "click", "x": "inf", "y": 5}',
        '{"action": "wait", "seconds": Infinity}',
    ],
)
def test_non_finite_and_absurd_numbers_are_refused(text: str) -> None:
    with pytest.raises(InvalidModelOutput):
        parse_step(text)


@pytest.mark.parametrize("parser", ["uitars", "uitars15"])
def test_the_400_digit_ui_tars_coordinate_is_refused_with_feedback(parser: str) -> None:
    with pytest.raises(InvalidModelOutput, match="far too large"):
        PARSERS[parser](f"Thought: tap\nAction: click(start_box='({HUGE},5)')")


@pytest.mark.parametrize("parser", ["qwen25vl", "qwen3vl"])
def test_non_finite_tool_numbers_are_refused(parser: str) -> None:
    for text in (CORPUS["tool huge coordinate"], CORPUS["tool infinite pixels"], CORPUS["tool nan pixels"]):
        with pytest.raises(InvalidModelOutput):
            PARSERS[parser](text)


def test_negative_zero_is_the_screen_edge() -> None:
    assert parse_step(CORPUS["json negative zero"], grid=GRID).action == Click(x=0, y=0)
    step = PARSERS["showui"](CORPUS["showui negative zero"])
    assert step.action == Click(x=0, y=500)


def test_complete_answers_still_parse_next_to_the_bound() -> None:
    # a long but valid answer just under the bound is read, one just over it is refused
    pad = " " * (MAX_ANSWER_CHARS - 40)
    assert parse_step('{"action": "wait"}' + pad).action.action == "wait"
    with pytest.raises(InvalidModelOutput, match="characters long"):
        parse_step('{"action": "wait"}' + pad + " " * 100)
    tars = "Thought: tap\nAction: click(start_box='(1,2)')"  # no closing ')' after a closed quote: forgiven
    assert PARSERS["uitars"](tars).action == Click(x=1, y=2)


# --- random answers ------------------------------------------------------------------------------

_ALPHABET = st.one_of(
    st.characters(),
    st.sampled_from([*"{}[]()<>\"'\\:,.-+eE0123456789 \n\t=", "\x00", "\ud800", "\udcff", "\u2028", "："]),
)
_FRAGMENTS = st.sampled_from(
    [
        '{"action": ',
        '"click"',
        '"type"',
        '"text": "',
        '"x": ',
        '"y": ',
        "1e999",
        "NaN",
        "-0",
        HUGE,
        "Action: ",
        "Thought: ",
        "click(start_box='",
        "type(content='",
        "(500,500)",
        "<|box_start|>",
        "<tool_call>",
        "</tool_call>",
        '{"name": "mobile_use", "arguments": ',
        "{'action': 'TAP', 'value': None, 'position': [",
        "0.5, 0.5]",
        "```json\n",
        "}",
        "]",
        ")",
        "'",
        '"',
    ]
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(_ALPHABET, max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(_ALPHABET, max_size=8), inner, max_size=4),
    max_leaves=12,
)
_RANDOM = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_RANDOM
@given(st.text(_ALPHABET, max_size=400))
def test_random_text(text: str) -> None:
    for parse in PARSERS.values():
        _check(parse, text)


@_RANDOM
@given(st.lists(st.one_of(_FRAGMENTS, st.text(_ALPHABET, max_size=6)), max_size=30))
def test_random_fragments_of_every_format(fragments: list[str]) -> None:
    text = "".join(fragments)
    for parse in PARSERS.values():
        _check(parse, text)


@_RANDOM
@given(_JSON, st.data())
def test_random_json_cut_anywhere(value: object, data: st.DataObject) -> None:
    text = json.dumps({"action": value} if data.draw(st.booleans()) else value, ensure_ascii=data.draw(st.booleans()))
    cut = data.draw(st.integers(0, len(text)))
    wrap = data.draw(st.sampled_from(["{}", "<tool_call>{}</tool_call>", "Action: click(start_box={})", "```{}"]))
    for piece in (text, text[:cut], wrap.format(text), wrap.format(text[:cut])):
        for parse in PARSERS.values():
            _check(parse, piece)


@pytest.mark.parametrize("capabilities", [PHONE_CAPABILITIES, DESKTOP_CAPABILITIES], ids=["phone", "desktop"])
def test_hostile_answers_with_device_capabilities(capabilities: Capabilities) -> None:
    for family in FAMILIES.values():
        for text in CORPUS.values():
            try:
                step = family.parse(text, GRID, capabilities)
            except InvalidModelOutput:
                continue
            assert capabilities.refusal(step.action) is None, (family.name, text[:80], step)
