"""One key vocabulary: every parser that reads keys accepts every spelling any of them does, alike."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from vlagent.actions import KEY_NAMES, Key, Step
from vlagent.drivers.base import DESKTOP_CAPABILITIES, PHONE_CAPABILITIES, Capabilities
from vlagent.errors import InvalidModelOutput
from vlagent.parsetail import KEY_ALIASES, MODIFIERS
from vlagent.parsing import parse_step
from vlagent.policies.families import BUILTIN
from vlagent.policies.prompt import get_family

#: Every key spelling a parser accepts, and the key it means.
SPELLINGS = {**{name: name for name in KEY_NAMES}, **KEY_ALIASES}
GRID = (1000, 1000)


def _tool_call(name: str, arguments: dict[str, object]) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}) + "\n</tool_call>"


#: How each parser's format writes "press these keys" (modifiers first, then the key), by family;
#: "json" is vlagent's own format, read by parse_step.
ANSWERS: dict[str, Callable[[list[str]], str]] = {
    "json": lambda keys: json.dumps({"action": "key", "key": "+".join(keys)}),
    "qwen25vl": lambda keys: _tool_call("computer_use", {"action": "key", "keys": keys}),
    "qwen3vl": lambda keys: _tool_call("mobile_use", {"action": "key", "text": " ".join(keys)}),
    "uitars": lambda keys: f"Thought: press it\nAction: hotkey(key='{' '.join(keys)}')",
    "uitars15": lambda keys: f"Action: hotkey(key='{'+'.join(keys)}')",
}


def _parse(family: str, keys: list[str], caps: Capabilities | None = None) -> Step:
    text = ANSWERS[family](keys)
    if family == "json":
        return parse_step(text, grid=GRID, capabilities=caps)
    fam = get_family(family)
    return fam.parse(text, fam.grid(GRID), caps)


def test_every_family_that_reads_keys_is_checked() -> None:
    # qwen2vl answers vlagent JSON ("json" above); ShowUI has no key action, only ENTER and COPY.
    assert {family.name for family in BUILTIN} - set(ANSWERS) == {"qwen2vl", "showui"}
    step = get_family("qwen2vl").parse('{"action": "key", "key": "pgdn"}', GRID, None)
    assert step.action == Key(key="page_down")


def test_the_vocabulary_is_vlagents_key_names_and_their_aliases() -> None:
    assert all(key in KEY_NAMES for key in KEY_ALIASES.values())
    assert not set(KEY_ALIASES) & set(KEY_NAMES)
    assert {"pagedown", "arrowup", "end"} <= set(KEY_ALIASES) and "command" in MODIFIERS


@pytest.mark.parametrize("family", sorted(ANSWERS))
@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
def test_every_parser_reads_every_key_spelling_alike(family: str, spelling: str) -> None:
    for written in (spelling, spelling.upper()):
        assert _parse(family, [written]).action == Key(key=SPELLINGS[spelling]), written  # type: ignore[arg-type]


@pytest.mark.parametrize("family", sorted(ANSWERS))
@pytest.mark.parametrize("spelling", sorted(MODIFIERS))
def test_every_parser_reads_every_modifier_spelling_alike(family: str, spelling: str) -> None:
    expected = Key(key="c", modifiers=(MODIFIERS[spelling],))  # type: ignore[arg-type]
    assert _parse(family, [spelling, "c"]).action == expected
    assert _parse(family, [spelling.capitalize(), "C"]).action == expected


@pytest.mark.parametrize("family", sorted(ANSWERS))
def test_keys_the_json_parser_used_to_refuse(family: str) -> None:
    assert _parse(family, ["pagedown"]).action == Key(key="page_down")
    assert _parse(family, ["ArrowUp"]).action == Key(key="up")
    assert _parse(family, ["end"]).action == Key(key="line_end")
    assert _parse(family, ["command", "c"]).action == Key(key="c", modifiers=("super",))


@pytest.mark.parametrize("family", ["qwen25vl", "uitars", "uitars15"])
def test_a_native_home_is_the_line_start_on_a_keyboard(family: str) -> None:
    assert _parse(family, ["home"], DESKTOP_CAPABILITIES).action == Key(key="line_start")
    assert _parse(family, ["home"], PHONE_CAPABILITIES).action == Key(key="home")


def test_vlagent_json_home_is_only_the_phone_button() -> None:
    with pytest.raises(InvalidModelOutput, match="no key 'home'"):
        _parse("json", ["home"], DESKTOP_CAPABILITIES)
    assert _parse("json", ["line_start"], DESKTOP_CAPABILITIES).action == Key(key="line_start")


@pytest.mark.parametrize("family", sorted(ANSWERS))
def test_an_unknown_key_is_refused_by_every_parser(family: str) -> None:
    with pytest.raises(InvalidModelOutput, match="key"):
        _parse(family, ["hyper"])
