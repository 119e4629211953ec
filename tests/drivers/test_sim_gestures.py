"""Long press and edge-back gestures on the simulated phone, directly and over the adb protocol."""

from __future__ import annotations

import json

import adbutils
import pytest
from PIL import ImageStat

from vlagent.actions import Done, LongPress
from vlagent.agent import EndReason, run_episode
from vlagent.drivers.sim import SimDriver, SimPhone
from vlagent.drivers.sim.adb_server import SimAdbServer
from vlagent.drivers.sim.world import LONG_PRESS_TIMEOUT
from vlagent.policies import ScriptedPolicy
from vlagent.policies.task_scripts import task_script, ui_locator
from vlagent.tasks import get_task


def at(phone: SimPhone, label: str) -> tuple[int, int]:
    point = phone.locate(label)
    assert point is not None, f"{label!r} not on screen; visible: {phone.text_on_screen()}"
    return point


def notes_with_milk() -> SimPhone:
    phone = SimPhone()
    phone.add_note("Buy milk")
    assert phone.open_app("Notes")
    return phone


def brightness(phone: SimPhone) -> float:
    return ImageStat.Stat(phone.render().convert("L")).mean[0]


# --- long press vs tap ---------------------------------------------------------------------------


def test_long_press_on_a_note_opens_its_menu_and_a_tap_opens_the_editor() -> None:
    phone = notes_with_milk()
    phone.tap(*at(phone, "Buy milk"))
    assert phone.screen == "note_editor" and phone.popup is None
    phone.press_key("back")
    assert phone.screen == "notes"

    before = brightness(phone)
    phone.long_press(*at(phone, "Buy milk"))
    assert phone.screen == "notes"
    popup = phone.popup
    assert popup is not None and (popup.kind, popup.title) == ("note", "Buy milk")
    assert {"Delete", "Cancel", "Note actions"} <= set(phone.text_on_screen())
    assert brightness(phone) < before  # the screen behind the popup is dimmed
    assert json.loads(json.dumps(phone.snapshot()))["popup"] == {"kind": "note", "title": "Buy milk", "target": 2}


def test_a_press_released_before_the_timeout_is_a_tap() -> None:
    phone = notes_with_milk()
    phone.long_press(*at(phone, "Buy milk"), duration=LONG_PRESS_TIMEOUT - 0.1)
    assert phone.screen == "note_editor" and phone.popup is None
    assert phone.fields["note_text"] == "Buy milk"


def test_delete_removes_exactly_that_note() -> None:
    phone = notes_with_milk()
    phone.long_press(*at(phone, "Buy milk"), duration=LONG_PRESS_TIMEOUT)
    phone.tap(*at(phone, "Delete"))
    assert phone.popup is None and phone.screen == "notes"
    assert phone.notes == ["Call the dentist on Tuesday", "Ideas for the weekend\nHike, museum, pancakes"]
    assert "Buy milk" not in phone.text_on_screen() and "Delete" not in phone.text_on_screen()


@pytest.mark.parametrize("how", ["cancel", "back key", "nav back", "tap outside", "edge swipe"])
def test_cancel_back_or_outside_tap_closes_the_menu_and_keeps_the_note(how: str) -> None:
    phone = notes_with_milk()
    phone.long_press(*at(phone, "Buy milk"))
    assert phone.popup is not None
    if how == "cancel":
        phone.tap(*at(phone, "Cancel"))
    elif how == "back key":
        phone.press_key("back")
    elif how == "nav back":
        phone.tap(*at(phone, "Back"))
    elif how == "tap outside":
        phone.tap(540, 300)  # on a note row, under the dimmed backdrop: dismisses, opens nothing
    else:
        phone.swipe(5, 1200, 400, 1200)
    assert phone.popup is None and phone.screen == "notes"  # back closed the popup, not the app
    assert "Buy milk" in phone.notes and len(phone.notes) == 3


def test_the_menu_is_modal() -> None:
    phone = notes_with_milk()
    for i in range(12):
        phone.add_note(f"Note {i}")
    phone.long_press(*at(phone, "Buy milk"))
    rows = [t for t in phone.text_on_screen() if t.startswith("Note ")]
    phone.scroll("down")
    phone.swipe(540, 1800, 540, 600)
    assert [t for t in phone.text_on_screen() if t.startswith("Note ")] == rows
    assert any("ignored: a popup is open" in e for e in phone.events)
    phone.press_key("home")
    assert phone.screen == "home" and phone.popup is None


def test_long_press_without_a_long_press_action_is_a_tap_and_is_logged() -> None:
    phone = SimPhone()
    phone.open_app("Settings")
    phone.long_press(*at(phone, "Wi-Fi"), duration=1.5)
    assert phone.toggles["wifi"] is True and phone.popup is None
    assert any(e.startswith("long press") and "no long-press action, tap" in e for e in phone.events)


def test_long_press_on_a_home_icon_shows_app_info() -> None:
    phone = SimPhone()
    phone.long_press(*at(phone, "Clock"))
    popup = phone.popup
    assert popup is not None and (popup.kind, popup.title, popup.target) == (
        "app_info",
        "Clock",
        "com.android.deskclock",
    )
    assert phone.screen == "home"
    assert {"App info", "com.android.deskclock", "Close"} <= set(phone.text_on_screen())
    phone.tap(*at(phone, "Close"))
    assert phone.popup is None and phone.screen == "home"
    phone.tap(*at(phone, "Clock"))
    assert phone.screen == "clock"


def test_a_swipe_that_stays_put_is_a_tap_or_a_long_press_by_its_duration() -> None:
    phone = notes_with_milk()
    x, y = at(phone, "Buy milk")
    phone.swipe(x, y, x + 6, y + 4, duration=0.8)  # within the touch slop, held: long press
    assert phone.popup is not None and phone.popup.title == "Buy milk"
    phone.press_key("back")
    phone.swipe(x, y, x, y, duration=0.1)
    assert phone.screen == "note_editor" and phone.popup is None


def test_driver_long_press_action_opens_the_menu() -> None:
    driver = SimDriver()
    phone = driver.phone
    phone.add_note("Buy milk")
    phone.open_app("Notes")
    x, y = at(phone, "Buy milk")
    driver.execute(LongPress(x=x, y=y))
    assert phone.popup is not None and phone.popup.kind == "note"


# --- edge back gesture ---------------------------------------------------------------------------


@pytest.mark.parametrize(("x1", "x2"), [(5, 400), (50, 170), (1075, 600), (1030, 900)])
def test_a_swipe_inward_from_an_edge_is_back(x1: int, x2: int) -> None:
    phone = SimPhone()
    phone.open_app("Notes")
    phone.tap(*at(phone, "New note"))
    phone.tap(*at(phone, "Note text"))
    assert phone.screen == "note_editor" and phone.keyboard_shown
    phone.swipe(x1, 600, x2, 650)
    assert phone.screen == "note_editor" and not phone.keyboard_shown  # like Back: the keyboard goes first
    phone.swipe(x1, 600, x2, 650)
    assert phone.screen == "notes"  # one screen back, not home
    assert sum("edge swipe" in e and e.endswith("back") for e in phone.events) == 2


@pytest.mark.parametrize(
    ("x1", "x2"),
    [
        (300, 900),  # mid-screen
        (540, 60),  # mid-screen, ending at the edge
        (20, 100),  # from the left edge, shorter than 10% of the width
        (1075, 1000),  # from the right edge, too short
        (50, 0),  # from the left edge outward
        (1030, 1079),  # from the right edge outward
    ],
)
def test_other_horizontal_swipes_are_ignored(x1: int, x2: int) -> None:
    phone = SimPhone()
    phone.open_app("Notes")
    phone.tap(*at(phone, "New note"))
    version = phone.version
    phone.swipe(x1, 600, x2, 600)
    assert phone.screen == "note_editor" and phone.version == version
    assert phone.events[-1] == f"horizontal swipe {x1},600 -> {x2},600 ignored"


def test_edge_back_scales_with_the_screen_width() -> None:
    phone = SimPhone(width=720, height=1600)
    phone.open_app("Settings")
    phone.swipe(30, 800, 110, 800)  # 80 px: beyond 10% of 720 (72), though short of 10% of 1080
    assert phone.screen == "home"
    phone.open_app("Settings")
    phone.swipe(40, 800, 200, 800)  # starts beyond 5% of 720 (36)
    assert phone.screen == "settings"


# --- the delete_note task ------------------------------------------------------------------------


def test_delete_note_task_fails_when_not_done_or_done_wrong() -> None:
    task = get_task("delete_note")
    driver = SimDriver(SimPhone())
    driver.prepare(task.start)
    phone = driver.phone
    assert not task.passed(driver.state())
    episode = run_episode(task.instruction, driver, ScriptedPolicy([Done()]))
    assert episode.end is EndReason.DONE_SUCCESS and not task.passed(driver.state())  # claiming is not doing
    phone.open_app("Notes")
    phone.long_press(*at(phone, "Buy milk chocolate for Sam"))  # the near-miss
    phone.tap(*at(phone, "Delete"))
    assert "Buy milk" in phone.notes and not task.passed(driver.state())


def test_delete_note_oracle_long_presses() -> None:
    task = get_task("delete_note")
    driver = SimDriver(SimPhone(seed=3))
    driver.prepare(task.start)
    phone = driver.phone
    episode = run_episode(task.instruction, driver, ScriptedPolicy(task_script(task, ui_locator(driver))))
    assert episode.end is EndReason.DONE_SUCCESS and task.passed(driver.state())
    assert any(isinstance(step.action, LongPress) for step in episode.steps)
    assert "Buy milk" not in phone.notes and "Buy milk chocolate for Sam" in phone.notes


# --- over the adb protocol -----------------------------------------------------------------------


def test_adbutils_swipe_in_place_long_presses(adb_sim: SimAdbServer) -> None:
    phone = adb_sim["sim-0"].phone
    phone.add_note("Buy milk")
    phone.open_app("Notes")
    x, y = at(phone, "Buy milk")
    device = adbutils.AdbClient(port=adb_sim.port).device("sim-0")
    device.swipe(x, y, x, y, 0.8)
    assert adb_sim["sim-0"].log[-1] == ["input", "swipe", str(x), str(y), str(x), str(y), "800"]
    assert phone.popup is not None and phone.popup.title == "Buy milk"
    device.shell("input keyevent 4")
    assert phone.popup is None and phone.screen == "notes"
    device.shell(f"input swipe {x} {y} {x} {y} 100")  # released early: a tap opens the note
    assert phone.screen == "note_editor" and phone.popup is None
    device.shell("input swipe 2 1200 500 1200 200")  # edge swipe: back
    assert phone.screen == "notes"
    device.shell(f"input swipe {x} {y} {x} {y} 800")
    x, y = at(phone, "Delete")
    device.shell(["input", "tap", str(x), str(y)])
    assert "Buy milk" not in phone.notes and len(phone.notes) == 2
