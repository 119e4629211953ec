"""Points outside the screen are refused, not run silently: by the capabilities (with the screen's size,
for actions in device pixels), by every driver before it acts, and by the loop, which feeds the refusal
back to the model."""

from __future__ import annotations

import pytest

from vlagent.actions import Action, Click, Done, Key, LongPress, OpenApp, Scroll, Swipe, Type, Wait
from vlagent.agent import EndReason, run_episode
from vlagent.capabilities import DESKTOP_CAPABILITIES, PHONE_CAPABILITIES
from vlagent.coords import points_off_screen
from vlagent.drivers.registry import open_driver
from vlagent.drivers.sim import SimDriver
from vlagent.errors import ActionRefusedError
from vlagent.policies.base import Decision, Observation
from vlagent.policies.scripted import ScriptedPolicy

W, H = 1080, 2400
SCREEN = (W, H)

#: Every action that carries a point, placed at (x, y).
POINTED = {
    "click": lambda x, y: Click(x=x, y=y),
    "double click": lambda x, y: Click(x=x, y=y, clicks=2),
    "long press": lambda x, y: LongPress(x=x, y=y),
    "swipe start": lambda x, y: Swipe(x1=x, y1=y, x2=W // 2, y2=H // 2),
    "swipe end": lambda x, y: Swipe(x1=W // 2, y1=H // 2, x2=x, y2=y),
    "scroll at": lambda x, y: Scroll(direction="down", x=x, y=y),
}


@pytest.mark.parametrize("kind", sorted(POINTED))
@pytest.mark.parametrize(
    ("x", "y", "inside"),
    [
        (0, 0, True),
        (W - 1, H - 1, True),
        (W - 1, 0, True),
        (W, H // 2, False),
        (W // 2, H, False),
        (W, H, False),
        (5000, 9000, False),
    ],
)
def test_each_pointed_action_is_refused_just_past_the_edge(kind: str, x: int, y: int, inside: bool) -> None:
    action: Action = POINTED[kind](x, y)
    refusal = PHONE_CAPABILITIES.refusal(action, screen=SCREEN)
    if inside:
        assert refusal is None
        assert points_off_screen(action, W, H) == []
    else:
        assert refusal is not None
        assert "outside the captured screen (1080x2400)" in refusal and "0..1079" in refusal and "0..2399" in refusal
        assert f"({x}, {y})" in refusal
        assert points_off_screen(action, W, H) == [(x, y)]


def test_a_scroll_naming_one_coordinate_is_checked_on_that_axis() -> None:
    assert PHONE_CAPABILITIES.refusal(Scroll(direction="up", x=W - 1), screen=SCREEN) is None
    assert "x=1080 is outside" in (PHONE_CAPABILITIES.refusal(Scroll(direction="up", x=W), screen=SCREEN) or "")
    assert "y=2400 is outside" in (PHONE_CAPABILITIES.refusal(Scroll(direction="up", y=H), screen=SCREEN) or "")
    assert PHONE_CAPABILITIES.refusal(Scroll(direction="up"), screen=SCREEN) is None  # the driver picks the centre


def test_both_ends_of_a_swipe_off_the_screen_are_both_named() -> None:
    refusal = PHONE_CAPABILITIES.refusal(Swipe(x1=W, y1=0, x2=0, y2=H + 5), screen=SCREEN) or ""
    assert "(1080, 0)" in refusal and "(0, 2405)" in refusal


@pytest.mark.parametrize(
    "action", [Type(text="hi"), Key(key="back"), OpenApp(name="Settings"), Wait(seconds=0), Done()], ids=str
)
def test_actions_without_a_point_are_not_affected_by_the_screen(action: Action) -> None:
    assert PHONE_CAPABILITIES.refusal(action, screen=(1, 1)) is None


def test_without_a_screen_points_are_not_checked() -> None:
    # A parser checks an action still on the model's grid, which may exceed the screen (abs_resized
    # rounds 1080x2400 up to 1092x2408; norm1000 spans 0..1000 on a 720-pixel-wide phone).
    assert PHONE_CAPABILITIES.refusal(Click(x=1090, y=2405)) is None
    assert DESKTOP_CAPABILITIES.refusal(Click(x=999, y=999)) is None


def test_other_refusals_come_first() -> None:
    refusal = PHONE_CAPABILITIES.refusal(Click(x=5000, y=1, button="right"), screen=SCREEN) or ""
    assert "right button" in refusal


@pytest.mark.parametrize("kind", sorted(POINTED))
def test_the_driver_refuses_a_point_off_its_screen_before_acting(kind: str) -> None:
    driver = SimDriver(width=W, height=H)
    before = driver.phone.snapshot()
    with pytest.raises(ActionRefusedError, match=r"outside the captured screen \(1080x2400\)"):
        driver.execute(POINTED[kind](W, 10))
    assert driver.phone.snapshot() == before
    driver.execute(POINTED[kind](W - 1, 10))  # the last column is on the screen


class _Listening(ScriptedPolicy):
    """A scripted policy that keeps the feedback the loop gave it."""

    def __init__(self, script: list[Action]) -> None:
        super().__init__(script)
        self.feedback: list[str | None] = []

    def decide(self, observation: Observation) -> Decision:
        self.feedback.append(observation.feedback)
        return super().decide(observation)


def test_the_loop_feeds_an_offscreen_click_back_and_the_driver_never_gets_it(monkeypatch: pytest.MonkeyPatch) -> None:
    driver = open_driver("sim")
    width, height = driver.screen_size()
    received: list[Action] = []
    execute = driver.execute

    def spy(action: Action) -> object:
        received.append(action)
        return execute(action)

    monkeypatch.setattr(driver, "execute", spy)
    policy = _Listening([Click(x=5000, y=9000), Done(status="success")])
    with driver:
        episode = run_episode("tap far away", driver, policy)
    assert episode.end is EndReason.DONE_SUCCESS, episode.detail
    assert episode.invalid_outputs >= 1 and episode.steps[0].invalid_outputs >= 1
    assert received == []
    assert policy.feedback[0] is None
    assert f"outside the captured screen ({width}x{height})" in (policy.feedback[1] or "")
