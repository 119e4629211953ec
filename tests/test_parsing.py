"""parse_step: lenient about what models write, strict about what it means."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from vlagent.actions import (
    KEY_NAMES,
    Action,
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
from vlagent.drivers.base import DESKTOP_CAPABILITIES, PHONE_CAPABILITIES, Capabilities
from vlagent.errors import InvalidModelOutput
from vlagent.parsing import parse_step

CORPUS = yaml.safe_load((Path(__file__).parent / "data" / "malformed_outputs.yaml").read_text(encoding="utf-8"))
CAPS: dict[str | None, Capabilities | None] = {None: None, "phone": PHONE_CAPABILITIES, "desktop": DESKTOP_CAPABILITIES}


def test_corpus_is_big_enough_and_has_both_outcomes() -> None:
    assert len(CORPUS) >= 30
    assert sum("error" in case for case in CORPUS) >= 10
    assert sum("expect" in case for case in CORPUS) >= 20


@pytest.mark.parametrize("case", CORPUS, ids=[case["name"] for case in CORPUS])
def test_corpus(case: dict[str, Any]) -> None:
    grid = tuple(case.get("grid", (1000, 1000)))
    caps = CAPS[case.get("caps")]
    if "error" in case:
        with pytest.raises(InvalidModelOutput) as info:
            parse_step(case["input"], grid=grid, capabilities=caps)  # type: ignore[arg-type]
        assert case["error"] in info.value.feedback
        assert info.value.raw == case["input"]
        # the feedback always shows the expected shape, and stays short enough to show a model
        assert '{"thought": ' in info.value.feedback
        assert len(info.value.feedback) < 900
        return
    step = parse_step(case["input"], grid=grid, capabilities=caps)  # type: ignore[arg-type]
    got = step.action.model_dump()
    for field, value in case["expect"].items():
        assert got[field] == (tuple(value) if isinstance(value, list) else value), field
    if "thought" in case:
        assert step.thought == case["thought"]


def test_feedback_names_the_allowed_actions_of_the_device() -> None:
    with pytest.raises(InvalidModelOutput) as info:
        parse_step('{"action": "long_press", "x": 1, "y": 1}', capabilities=DESKTOP_CAPABILITIES)
    assert "click, done, key, scroll, swipe, type, wait" in info.value.feedback


def test_strict_json_is_taken_as_is_even_with_special_token_text_inside() -> None:
    step = Step(thought="the label reads <|im_end|>", action=Type(text="{not json}"))
    assert parse_step(step.model_dump_json()) == step


# --- round trip: any valid step, dumped to JSON, parses back equal -------------------------

GRID = (1000, 2000)
xs = st.integers(0, GRID[0])
ys = st.integers(0, GRID[1])
texts = st.text(min_size=1, max_size=50)
durations = st.floats(0.1, 5.0, allow_nan=False)

actions: st.SearchStrategy[Action] = st.one_of(
    st.builds(Click, x=xs, y=ys, button=st.sampled_from(["left", "right", "middle"]), clicks=st.integers(1, 3)),
    st.builds(LongPress, x=xs, y=ys, duration=durations),
    st.builds(Type, text=texts, submit=st.booleans()),
    st.builds(Swipe, x1=xs, y1=ys, x2=xs, y2=ys, duration=durations),
    st.builds(
        Scroll,
        direction=st.sampled_from(["up", "down", "left", "right"]),
        x=st.none() | xs,
        y=st.none() | ys,
        amount=st.integers(1, 10),
    ),
    st.builds(
        Key,
        key=st.sampled_from(KEY_NAMES),
        modifiers=st.lists(st.sampled_from(["ctrl", "alt", "shift", "super"]), max_size=4).map(tuple),
    ),
    st.builds(OpenApp, name=st.text(min_size=1, max_size=100)),
    st.builds(Wait, seconds=st.floats(0.0, 30.0, allow_nan=False)),
    st.builds(Done, status=st.sampled_from(["success", "failure"]), answer=st.none() | st.text(max_size=100)),
)
steps = st.builds(Step, thought=st.none() | st.text(max_size=200), action=actions)


@settings(max_examples=300, deadline=None)
@given(steps, st.booleans())
def test_round_trip(step: Step, exclude_none: bool) -> None:
    assert parse_step(step.model_dump_json(exclude_none=exclude_none), grid=GRID) == step


@settings(max_examples=100, deadline=None)
@given(steps)
def test_round_trip_through_a_code_fence_and_an_end_token(step: Step) -> None:
    text = "```json\n" + json.dumps(step.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n```<|im_end|>"
    assert parse_step(text, grid=GRID) == step


def test_special_tokens_inside_strings_are_kept_and_outside_removed() -> None:
    # A leaked end token after the fence goes; the same characters typed by the task stay.
    text = '```json\n{"action": {"action": "type", "text": "say <|0|> and <|im_end|>"}}\n```<|im_end|>'
    assert parse_step(text, grid=GRID).action == Type(text="say <|0|> and <|im_end|>")
    broken = '<|im_start|>{"action": {"action": "open_app", "name": "Notes"<|im_end|>'
    with pytest.raises(InvalidModelOutput, match="cut off before the object closed"):
        parse_step(broken, grid=GRID)  # an object left open is never guessed closed


def test_a_box_centre_is_rounded_once_to_a_device_pixel() -> None:
    from vlagent.coords import Relative, decode_action

    step = parse_step('{"action": "click", "bbox_2d": [578, 383, 597, 410]}')
    assert step.action == Click(x=588, y=396)  # the grid point shown back to the model
    # The exact centre (587.5, 396.5) on a 1080x2400 screen is (634.5, 951.6), not (635, 950).
    assert decode_action(step.action, Relative(), 1080, 2400) == Click(x=634, y=952)


@pytest.mark.parametrize("text", ["[" * 5000 + "]" * 5000, "{" * 65536, '{"a": ' * 100 + "1" + "}" * 100])
def test_runaway_nesting_is_fed_back_not_a_crash(text: str) -> None:
    with pytest.raises(InvalidModelOutput, match="nests brackets"):
        parse_step(text, capabilities=PHONE_CAPABILITIES)


def test_an_answer_cut_off_inside_a_string_is_not_executed() -> None:
    with pytest.raises(InvalidModelOutput, match="cut off inside a string"):
        parse_step('{"action": "type", "text": "hel', capabilities=PHONE_CAPABILITIES)
    # an object left open is cut off too (2 may have been 250), and is never repaired into an action;
    # quotes in prose around the JSON do not count
    for cut in ('{"action": "click", "x": 1, "y": 2', '{"action": "done"', '{"action": "wait",'):
        with pytest.raises(InvalidModelOutput, match="cut off before the object closed"):
            parse_step(cut, capabilities=PHONE_CAPABILITIES)
    assert parse_step('I\'ll tap "Settings {"action": "done"} and "then').action == Done()
    assert parse_step('{"action": "type", "text": "a \\"b\\" c"}').action == Type(text='a "b" c')
