"""The action union: validation bounds, immutability, capability refusals."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from vlagent.actions import ACTION_ADAPTER, Click, Done, Key, Step, Swipe, Type, describe_action
from vlagent.drivers.base import DESKTOP_CAPABILITIES, PHONE_CAPABILITIES


def test_discriminated_union_validates_by_action_field() -> None:
    action = ACTION_ADAPTER.validate_python({"action": "click", "x": 10, "y": 20})
    assert action == Click(x=10, y=20)
    with pytest.raises(ValidationError):
        ACTION_ADAPTER.validate_python({"action": "teleport", "x": 1})


@pytest.mark.parametrize(
    "bad",
    [
        {"action": "click", "x": -1, "y": 0},
        {"action": "click", "x": 1, "y": 2, "clicks": 4},
        {"action": "type", "text": ""},
        {"action": "type", "text": "x" * 501},
        {"action": "swipe", "x1": 0, "y1": 0, "x2": 1, "y2": 1, "duration": 60},
        {"action": "wait", "seconds": 31},
        {"action": "key", "key": "hyper"},
        {"action": "done", "status": "maybe"},
        {"action": "click", "x": 1, "y": 2, "extra": True},
    ],
)
def test_bounds_and_unknown_fields_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ACTION_ADAPTER.validate_python(bad)


def test_actions_are_frozen() -> None:
    click = Click(x=1, y=2)
    with pytest.raises(ValidationError):
        click.x = 5  # type: ignore[misc]


def test_step_thought_is_optional() -> None:
    assert Step.model_validate({"action": {"action": "done"}}).action == Done()


def test_capabilities_refuse_what_a_device_lacks() -> None:
    assert PHONE_CAPABILITIES.refusal(Key(key="home")) is None
    assert "no key 'home'" in (DESKTOP_CAPABILITIES.refusal(Key(key="home")) or "")
    assert "right button" in (PHONE_CAPABILITIES.refusal(Click(x=1, y=1, button="right")) or "")
    assert "modifier" in (PHONE_CAPABILITIES.refusal(Key(key="enter", modifiers=("ctrl",))) or "")
    assert DESKTOP_CAPABILITIES.refusal(Key(key="c", modifiers=("ctrl",))) is None
    assert "open_app" in (
        DESKTOP_CAPABILITIES.refusal(ACTION_ADAPTER.validate_python({"action": "open_app", "name": "x"})) or ""
    )


def test_describe_action_is_readable() -> None:
    assert describe_action(Click(x=5, y=6)) == "click(5, 6)"
    assert describe_action(Type(text="hi", submit=True)) == "type('hi', submit)"
    assert describe_action(Swipe(x1=1, y1=2, x2=3, y2=4)) == "swipe(1, 2 -> 3, 4)"
    assert describe_action(Key(key="c", modifiers=("ctrl",))) == "key(ctrl+c)"
