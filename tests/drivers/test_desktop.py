"""The desktop driver against a real X server (Xvfb) and a real Tk app, judged by the app's state file."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from PIL import Image

from vlagent.actions import Action, Click, Done, Key, Scroll, Swipe, Type, Wait
from vlagent.agent import EndReason, run_episode
from vlagent.apps.sample_desktop import ITEMS, PASSWORD, TITLE
from vlagent.drivers import DESKTOP_CAPABILITIES, check_driver, open_driver
from vlagent.drivers.desktop import DesktopConfig, DesktopDriver, create_driver
from vlagent.errors import ActionNotSupportedError, ActionRefusedError, ConfigError, DeviceError, UserError
from vlagent.policies.base import Observation
from vlagent.policies.scripted import ScriptedPolicy

if TYPE_CHECKING:
    from tests.conftest import SampleApp

UNICODE = "买牛奶 🥛 café"


def desktop(**options: Any) -> DesktopDriver:
    driver = open_driver("desktop", **options)
    assert isinstance(driver, DesktopDriver)
    return driver


def click_on(app: SampleApp, widget: str) -> Callable[[Observation], Action]:
    """A script step that clicks wherever the widget is when the step runs."""

    def step(obs: Observation) -> Action:
        x, y = app.center(widget)
        return Click(x=x, y=y)

    return step


# --- without an X server --------------------------------------------------------------


def test_importing_the_driver_needs_no_display() -> None:
    code = (
        "import sys, vlagent, vlagent.drivers.desktop, vlagent.apps.sample_desktop;"
        "heavy = {'pyautogui', 'mss', 'Xlib'} & set(sys.modules); assert not heavy, heavy"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)


def test_missing_display_is_a_user_error_saying_how_to_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(UserError, match=r"DISPLAY.*Xvfb :99"):
        open_driver("desktop")
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    with pytest.raises(UserError, match="Wayland"):
        open_driver("desktop")


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="monitor index"):
        create_driver("left")
    with pytest.raises(ConfigError, match=r"unknown desktop option.*colour"):
        create_driver(None, colour="red")
    with pytest.raises(ConfigError, match="scale"):
        DesktopConfig(scale=0)
    with pytest.raises(ConfigError, match="rect"):
        DesktopConfig.from_options({"allowed_regions": [[0, 0, 0, 10]]})
    config = DesktopConfig.from_options({"allowed_regions": [[1, 2, 3, 4]], "allowed_windows": "Editor"})
    assert config.allowed_regions == ((1, 2, 3, 4),) and config.allowed_windows == ("Editor",)


# --- on Xvfb ----------------------------------------------------------------------------


@pytest.mark.xvfb
def test_unreachable_display_is_a_user_error(xvfb_display: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPLAY", ":4093")
    with pytest.raises(UserError, match="cannot open the screen"):
        open_driver("desktop")


@pytest.mark.xvfb
def test_check_driver_passes_and_frames_show_the_screen(sample_app: SampleApp) -> None:
    with desktop() as driver:
        check_driver(driver)
        assert driver.capabilities is DESKTOP_CAPABILITIES
        assert driver.screen_size() == (1280, 800) and driver.scale == 1.0
        frame = driver.screenshot()
        assert frame.image.size == (1280, 800) and frame.scale == 1.0
        assert frame.device["driver"] == "desktop" and frame.device["monitor"] == "1"
    with open_driver("desktop:0") as all_monitors:
        assert all_monitors.screen_size() == (1280, 800)
    with pytest.raises(ConfigError, match="no monitor 7"):
        open_driver("desktop:7")


@pytest.mark.xvfb
def test_region_of_interest_captures_and_clicks_relative_to_the_region(sample_app: SampleApp) -> None:
    wx, wy, ww, wh = sample_app.state()["widgets"]["dark_mode"]
    region = (300, 0, 400, 300)
    with desktop() as full, desktop(region=region) as roi:
        assert roi.screen_size() == (400, 300)
        crop = full.screenshot().image.crop((300, 0, 700, 300))
        assert roi.screenshot().image.tobytes() == crop.tobytes()
        roi.execute(Click(x=wx + ww // 2 - 300, y=wy + wh // 2))
        with pytest.raises(ActionRefusedError, match="outside the captured screen"):
            roi.execute(Click(x=450, y=10))
    state = sample_app.wait_for(lambda s: s["settings"]["dark_mode"] and s["last_click"] is not None)
    assert state["last_click"]["widget"] == "dark_mode"


@pytest.mark.xvfb
def test_episode_logs_in_toggles_searches_and_types_unicode(sample_app: SampleApp) -> None:
    script = [
        click_on(sample_app, "username"),
        Type(text="alice"),
        click_on(sample_app, "password"),
        Type(text=PASSWORD),
        click_on(sample_app, "login_button"),
        click_on(sample_app, "dark_mode"),
        click_on(sample_app, "notifications"),
        click_on(sample_app, "search"),
        Type(text="co"),
        click_on(sample_app, "note"),
        Type(text=UNICODE),
        Done(),
    ]
    with desktop() as driver:
        episode = run_episode("log in and set up", driver, ScriptedPolicy(script), max_steps=20)
    assert episode.end is EndReason.DONE_SUCCESS, episode.detail
    assert len(episode.steps) == len(script)
    state = sample_app.wait_for(lambda s: s["note"] == UNICODE)
    assert state["logged_in"] is True and state["user"] == "alice"
    assert state["settings"]["dark_mode"] is True and state["settings"]["notifications"] is False
    assert state["visible_items"] == [item for item in ITEMS if "co" in item.casefold()] == ["Coffee beans"]
    assert state["note"] == UNICODE


@pytest.mark.xvfb
@pytest.mark.parametrize("typing", ["auto", "clipboard"])
def test_unicode_typing_methods(sample_app: SampleApp, typing: str) -> None:
    with desktop(typing=typing) as driver:
        driver.execute(Click(x=sample_app.center("note")[0], y=sample_app.center("note")[1]))
        sample_app.wait_for(lambda s: s["focus"] == "note")
        driver.execute(Type(text=UNICODE))
    assert sample_app.wait_for(lambda s: s["note"] == UNICODE)["note"] == UNICODE


@pytest.mark.xvfb
def test_pyautogui_typing_refuses_text_it_would_drop(sample_app: SampleApp) -> None:
    with desktop(typing="pyautogui") as driver:
        driver.execute(Click(x=sample_app.center("note")[0], y=sample_app.center("note")[1]))
        with pytest.raises(ActionNotSupportedError, match="non-ASCII"):
            driver.execute(Type(text="café"))
        driver.execute(Type(text="tea & cake", submit=True))
    state = sample_app.wait_for(lambda s: s["note"] == "tea & cake" and s["last_key"]["keysym"] == "Return")
    assert state["focus"] == "note"


@pytest.mark.xvfb
def test_hotkeys_carry_their_modifiers(sample_app: SampleApp) -> None:
    with desktop() as driver:
        x, y = sample_app.center("search")
        driver.execute(Click(x=x, y=y))
        driver.execute(Type(text="milk"))
        driver.execute(Key(key="s", modifiers=("ctrl", "shift")))
        state = sample_app.wait_for(lambda s: (s["last_key"] or {}).get("keysym") in ("S", "s"))
        assert state["last_key"]["ctrl"] and state["last_key"]["shift"] and not state["last_key"]["alt"]
        # Tk entry bindings: Home goes to the line start, Ctrl+K deletes to the end.
        driver.execute(Key(key="line_start"))
        driver.execute(Key(key="k", modifiers=("ctrl",)))
    assert sample_app.wait_for(lambda s: s["search"] == "")["visible_items"] == list(ITEMS)


@pytest.mark.xvfb
def test_scroll_direction_names_the_content_to_reveal(sample_app: SampleApp) -> None:
    x, y = sample_app.center("items")
    with desktop() as driver:
        driver.execute(Scroll(direction="down", x=x, y=y))
        below = sample_app.wait_for(lambda s: s["list_top"] > 0)
        assert below["rows"][0][0] != ITEMS[0]  # the first item scrolled out of sight
        driver.execute(Scroll(direction="up", x=x, y=y, amount=3))
    assert sample_app.wait_for(lambda s: s["list_top"] == 0)["rows"][0][0] == ITEMS[0]


@pytest.mark.xvfb
def test_swipe_drags_the_volume_slider(sample_app: SampleApp) -> None:
    x, y, w, h = sample_app.state()["widgets"]["volume"]
    assert sample_app.state()["settings"]["volume"] == 30
    # The slider knob sits in the lower part of the widget, at 30 % of the trough.
    knob_x, knob_y = x + 10 + round(0.3 * (w - 24)), y + h - 12
    with desktop() as driver:
        driver.execute(Swipe(x1=knob_x, y1=knob_y, x2=x + w - 5, y2=knob_y, duration=0.2))
    assert sample_app.wait_for(lambda s: s["settings"]["volume"] == 100)


@pytest.mark.xvfb
def test_double_right_and_middle_clicks(sample_app: SampleApp) -> None:
    with desktop() as driver:
        bx, by = sample_app.row_center("Bread")
        driver.execute(Click(x=bx, y=by, clicks=2))
        assert sample_app.wait_for(lambda s: s["opened"] == "Bread")["selected"] == "Bread"
        mx, my = sample_app.row_center("Cheese")
        driver.execute(Click(x=mx, y=my, button="right"))
        assert sample_app.wait_for(lambda s: s["context_item"] == "Cheese")["last_click"]["button"] == "right"
        driver.execute(Click(x=mx, y=my, button="middle"))
        assert sample_app.wait_for(lambda s: s["last_click"]["button"] == "middle")["last_click"]["y"] == my


@pytest.mark.xvfb
def test_dry_run_records_but_does_not_act(sample_app: SampleApp, caplog: pytest.LogCaptureFixture) -> None:
    x, y = sample_app.center("dark_mode")
    actions: list[Action] = [Click(x=x, y=y), Type(text="hello"), Key(key="enter"), Wait(seconds=5)]
    with desktop(dry_run=True) as dry:
        check_driver(dry)
        caplog.set_level("INFO", logger="vlagent.drivers.desktop")
        for action in actions:
            dry.execute(action)
        assert dry.journal[-4:] == actions
    assert "dry run, not performed: click" in caplog.text
    state = sample_app.settle()
    assert state["last_click"] is None and state["settings"]["dark_mode"] is False
    with desktop() as real:  # the same click does change the app when it is performed
        real.execute(actions[0])
    assert sample_app.wait_for(lambda s: s["settings"]["dark_mode"])


@pytest.mark.xvfb
def test_allowed_regions_refuse_clicks_elsewhere(sample_app: SampleApp) -> None:
    login_panel = (10, 10, 300, 540)
    with desktop(allowed_regions=[login_panel]) as driver:
        dx, dy = sample_app.center("dark_mode")
        with pytest.raises(ActionRefusedError, match="outside the allowed regions"):
            driver.execute(Click(x=dx, y=dy))
        with pytest.raises(ActionRefusedError):
            driver.execute(Swipe(x1=100, y1=100, x2=dx, y2=dy))
        ux, uy = sample_app.center("username")
        driver.execute(Click(x=ux, y=uy))
        episode = run_episode("t", driver, ScriptedPolicy([Click(x=dx, y=dy), Done()]), device_attempts=3)
    state = sample_app.wait_for(lambda s: s["last_click"] is not None)
    assert state["last_click"]["widget"] == "username" and state["settings"]["dark_mode"] is False
    assert episode.end is EndReason.ERROR and "ActionRefusedError" in episode.detail
    assert episode.device_retries == 0  # a refusal is final, not retried


@pytest.mark.xvfb
def test_allowed_windows_refuse_other_windows(sample_app: SampleApp) -> None:
    ux, uy = sample_app.center("username")
    with desktop(allowed_windows=[TITLE]) as driver:
        driver.execute(Click(x=ux, y=uy))
        driver.execute(Type(text="alice"))
        with pytest.raises(ActionRefusedError, match="no window"):
            driver.execute(Click(x=1200, y=700))  # the bare root window, outside the app
    assert sample_app.wait_for(lambda s: s["username"] == "alice")
    with desktop(allowed_windows=["Some other app"]) as driver:
        with pytest.raises(ActionRefusedError, match=f"'{TITLE}'"):
            driver.execute(Click(x=ux, y=uy))
        with pytest.raises(ActionRefusedError, match="focused window"):
            driver.execute(Type(text="bob"))
    assert sample_app.settle()["username"] == "alice"


@pytest.mark.xvfb
def test_hidpi_scale_maps_logical_points_to_the_pointer(sample_app: SampleApp) -> None:
    """scale=2: the logical screen is half the capture; a point seen on the image lands there."""
    x, y, w, h = sample_app.state()["widgets"]["dark_mode"]
    with desktop(scale=2.0) as driver:
        assert driver.screen_size() == (640, 400)
        frame = driver.screenshot()
        assert frame.image.size == (1280, 800) and frame.scale == 2.0 and frame.size == (640, 400)
        px, py = x + w // 2, y + h // 2  # where the checkbox is on the (physical) image
        driver.execute(Click(x=round(px / frame.scale), y=round(py / frame.scale)))
    state = sample_app.wait_for(lambda s: s["settings"]["dark_mode"] and s["last_click"] is not None)
    assert abs(state["last_click"]["x"] - px) <= 1 and abs(state["last_click"]["y"] - py) <= 1


class _DoubledCapture:
    """A Retina-like capture: 2 physical pixels per pointer unit (as mss reports on macOS)."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.monitors = real.monitors
        self.primary_monitor = real.primary_monitor

    def grab(self, box: dict[str, int]) -> Any:
        shot = self._real.grab(box)
        image = Image.frombytes("RGB", shot.size, shot.bgra, "raw", "BGRX").resize(
            (shot.size[0] * 2, shot.size[1] * 2), Image.Resampling.NEAREST
        )

        class Shot:
            size = image.size
            bgra = image.convert("RGBA").tobytes("raw", "BGRA")

        return Shot()

    def close(self) -> None:
        self._real.close()


@pytest.mark.xvfb
def test_retina_like_capture_is_detected_and_clicks_land(
    sample_app: SampleApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mss

    real_mss = mss.MSS
    monkeypatch.setattr(mss, "MSS", lambda: _DoubledCapture(real_mss()))
    x, y, w, h = sample_app.state()["widgets"]["auto_save"]
    with desktop() as driver:
        assert driver.scale == 2.0 and driver.screen_size() == (1280, 800)
        frame = driver.screenshot()
        assert frame.image.size == (2560, 1600) and frame.scale == 2.0
        px, py = 2 * (x + w // 2), 2 * (y + h // 2)  # the checkbox as the model sees it
        assert frame.image.getpixel((px, py)) == frame.image.getpixel((px + 1, py + 1))
        driver.execute(Click(x=round(px / frame.scale), y=round(py / frame.scale)))
    state = sample_app.wait_for(lambda s: s["settings"]["auto_save"] and s["last_click"] is not None)
    assert (state["last_click"]["x"], state["last_click"]["y"]) == (x + w // 2, y + h // 2)


@pytest.mark.xvfb
def test_failsafe_is_an_explicit_option(sample_app: SampleApp) -> None:
    import pyautogui

    x, y = sample_app.center("username")
    with desktop() as driver:
        assert pyautogui.PAUSE == 0 and pyautogui.FAILSAFE is False
        subprocess.run(["xdotool", "mousemove", "0", "0"], check=True)
        driver.execute(Click(x=x, y=y))  # pointer in the corner: ignored by default
    with desktop(failsafe=True) as driver:
        assert pyautogui.FAILSAFE is True
        subprocess.run(["xdotool", "mousemove", "0", "0"], check=True)
        with pytest.raises(UserError, match="fail-safe"):
            driver.execute(Click(x=x, y=y))
    with desktop():  # back to the unattended default for the tests that follow
        pass
    assert sample_app.wait_for(lambda s: s["last_click"] is not None)["last_click"]["count"] == 1


@pytest.mark.xvfb
def test_closed_driver_refuses_work(xvfb_display: str) -> None:
    driver = desktop()
    driver.close()
    driver.close()
    with pytest.raises(DeviceError, match="closed"):
        driver.screenshot()
    with pytest.raises(DeviceError, match="closed"):
        driver.execute(Wait(seconds=0))
