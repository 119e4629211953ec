"""AdbDriver against simulated phones served over the real adb protocol (real sockets, real adbutils)."""

from __future__ import annotations

import logging
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest
from adb_clients import NASTY, focus_note_field, open_adb
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageChops

from vlagent.actions import Click, Done, Key, LongPress, OpenApp, Scroll, Swipe, Type, Wait
from vlagent.agent import EndReason, Hook, StepRecord, run_episode
from vlagent.drivers import check_driver, open_driver
from vlagent.drivers.android import (
    AdbDriver,
    DeviceLockedError,
    decode_raw_screencap,
    input_text_chunks,
    parse_keyguard_showing,
    parse_wakefulness,
)
from vlagent.drivers.sim import adb_server
from vlagent.drivers.sim.adb_server import SimAdbServer, _decode_input_text, serve_sim
from vlagent.drivers.sim.state import SimState
from vlagent.drivers.sim.world import SimPhone
from vlagent.errors import (
    ActionNotSupportedError,
    ConfigError,
    DeviceError,
    DeviceNotFoundError,
    DeviceTimeoutError,
)
from vlagent.policies.scripted import ScriptedPolicy
from vlagent.policies.task_scripts import task_script
from vlagent.tasks import BUILTIN_TASKS


def test_driver_passes_the_conformance_check(adb_sim: SimAdbServer) -> None:
    with open_adb(adb_sim) as driver:
        check_driver(driver)
        assert driver.name == "adb:sim-0"
        assert driver.screen_size() == (1080, 2400)
    assert ["input", "tap", "540", "1200"] in adb_sim["sim-0"].commands("input")


def test_open_without_serial_picks_the_only_device(adb_sim: SimAdbServer) -> None:
    driver = open_driver("adb", port=adb_sim.port)
    assert driver.name == "adb:sim-0"


def test_open_with_several_devices_needs_a_serial(adb_sims: SimAdbServer) -> None:
    with pytest.raises(ConfigError, match=r"sim-0, sim-1.*adb:SERIAL"):
        open_driver("adb", port=adb_sims.port)
    driver = open_adb(adb_sims, "sim-1")
    driver.execute(Key(key="app_switch"))
    assert adb_sims["sim-1"].phone.screen == "recents"
    assert adb_sims["sim-0"].phone.screen == "home"
    assert adb_sims["sim-0"].commands("input") == []


def test_unknown_serial_lists_connected_devices(adb_sims: SimAdbServer) -> None:
    with pytest.raises(DeviceNotFoundError, match=r"no device 'nope'.*sim-0, sim-1.*USB debugging"):
        open_driver("adb:nope", port=adb_sims.port, retry_wait=0.01)


def test_no_adb_server_says_how_to_start_one(no_real_adb: None) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once closed
    with pytest.raises(DeviceNotFoundError, match=r"cannot reach the adb server at 127\.0\.0\.1:\d+.*adb start-server"):
        open_driver("adb", port=port, retry_wait=0.01)


def test_unknown_option_is_a_config_error(adb_sim: SimAdbServer) -> None:
    with pytest.raises(ConfigError, match="unknown adb option"):
        open_driver("adb", port=adb_sim.port, colour="blue")


@pytest.mark.parametrize("header", [12, 16])
def test_raw_screenshot_is_pixel_exact(no_real_adb: None, header: int) -> None:
    with serve_sim([SimPhone(serial="sim-0")], raw_header=header) as server:
        driver = open_adb(server)
        frame = driver.screenshot()
        expected = server["sim-0"].phone.render()
    assert frame.size == (1080, 2400)
    assert frame.device["capture"] == "raw"
    assert frame.device["density"] == "420"
    assert frame.device["rotation"] == "0"
    assert frame.device["serial"] == "sim-0"
    assert ImageChops.difference(frame.image, expected).getbbox() is None


def test_rotated_phone_reports_landscape_geometry(no_real_adb: None) -> None:
    with serve_sim([SimPhone(serial="sim-0", width=2400, height=1080)]) as server:
        server["sim-0"].rotation = 90
        driver = open_adb(server)
        frame = driver.screenshot()
        assert driver.screen_size() == frame.size == (2400, 1080)
        assert frame.device["rotation"] == "90"
        assert frame.scale == 1.0


def test_rotation_during_a_session_is_noticed(adb_sim: SimAdbServer) -> None:
    driver = open_adb(adb_sim)
    assert driver.screenshot().size == (1080, 2400)
    adb_sim["sim-0"].phone = SimPhone(serial="sim-0", width=2400, height=1080)  # the user turned the phone
    adb_sim["sim-0"].rotation = 270
    frame = driver.screenshot()
    assert frame.size == driver.screen_size() == (2400, 1080)
    assert frame.device["rotation"] == "270"


def test_server_port_from_the_environment(adb_sim: SimAdbServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(adb_sim.port))
    assert open_driver("adb").name == "adb:sim-0"


def test_png_screenshot_matches_raw(adb_sim: SimAdbServer) -> None:
    raw = open_adb(adb_sim).screenshot()
    png = open_adb(adb_sim, screencap="png").screenshot()
    assert png.device["capture"] == "png"
    assert ImageChops.difference(raw.image, png.image).getbbox() is None
    assert ["screencap", "-p"] in adb_sim["sim-0"].commands()


@pytest.mark.parametrize(
    ("fmt", "mode", "bpp"), [(1, "RGBA", 4), (2, "RGBX", 4), (3, "RGB", 3), (5, "BGRA", 4), (4, "BGR;16", 2)]
)
def test_decode_raw_screencap_formats(fmt: int, mode: str, bpp: int) -> None:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)] * 3
    image = Image.frombytes("RGB", (4, 3), bytes(v for rgb in colours for v in rgb))
    if fmt == 4:  # RGB565 little-endian words, red in the top bits
        pixels = b"".join(struct.pack("<H", (r >> 3) << 11 | (g >> 2) << 5 | b >> 3) for r, g, b in colours)
    elif fmt == 5:
        pixels = b"".join(bytes((b, g, r, 255)) for r, g, b in colours)
    else:
        pixels = image.convert("RGBA" if bpp == 4 else "RGB").tobytes()
    for header in (struct.pack("<III", 4, 3, fmt), struct.pack("<IIII", 4, 3, fmt, 0)):
        decoded = decode_raw_screencap(header + pixels)
        assert decoded.mode == "RGB"
        assert decoded.tobytes() == image.tobytes()
    with pytest.raises(ValueError, match="does not hold"):
        decode_raw_screencap(struct.pack("<III", 4, 3, fmt) + pixels[:-1])


def test_unusable_raw_capture_falls_back_to_png(adb_sim: SimAdbServer, monkeypatch: pytest.MonkeyPatch) -> None:
    device = adb_sim["sim-0"]
    monkeypatch.setattr(device, "screencap", lambda png: device.__class__.screencap(device, png) if png else b"junk")
    driver = open_adb(adb_sim)
    assert driver.screenshot().device["capture"] == "png"
    assert driver.screenshot().device["capture"] == "png"
    assert device.commands("screencap") == [["screencap"], ["screencap", "-p"], ["screencap", "-p"]]


def test_tap_keys_and_open_app_change_the_phone(adb_sim: SimAdbServer) -> None:
    phone = adb_sim["sim-0"].phone
    driver = open_adb(adb_sim)
    point = phone.locate("Settings")
    assert point is not None
    driver.execute(Click(x=point[0], y=point[1]))
    assert phone.screen == "settings"
    driver.execute(Key(key="home"))
    assert phone.screen == "home"
    driver.execute(OpenApp(name="Clock"))  # label -> com.android.deskclock via the stock-app aliases
    assert phone.current_app == "com.android.deskclock"
    driver.execute(Key(key="back"))
    driver.execute(OpenApp(name="com.vlagent.notes"))
    assert phone.current_app == "com.vlagent.notes"
    driver.execute(OpenApp(name="Gallery"))  # label found inside the package name com.android.gallery3d
    assert phone.current_app == "com.android.gallery3d"
    monkeys = adb_sim["sim-0"].commands("monkey")
    assert monkeys[0] == ["monkey", "-p", "com.android.deskclock", "-c", "android.intent.category.LAUNCHER", "1"]
    assert adb_sim["sim-0"].commands("input")[1:3] == [["input", "keyevent", "3"], ["input", "keyevent", "4"]]


def test_unknown_app_opens_nothing(adb_sim: SimAdbServer, caplog: pytest.LogCaptureFixture) -> None:
    driver = open_adb(adb_sim)
    driver.execute(OpenApp(name="Flight Simulator"))
    assert adb_sim["sim-0"].phone.screen == "home"
    assert adb_sim["sim-0"].commands("monkey") == []
    assert "no installed app matches 'Flight Simulator'" in caplog.text


def test_gestures_become_input_swipes(adb_sim: SimAdbServer) -> None:
    driver = open_adb(adb_sim)
    driver.execute(LongPress(x=100, y=200, duration=1.5))
    driver.execute(Swipe(x1=10, y1=20, x2=30, y2=40, duration=0.25))
    driver.execute(Scroll(direction="down"))
    driver.execute(Scroll(direction="up", x=300, y=600, amount=2))
    driver.execute(Scroll(direction="right"))
    swipes = adb_sim["sim-0"].commands("input")
    assert swipes[0] == ["input", "swipe", "100", "200", "100", "200", "1500"]
    assert swipes[1] == ["input", "swipe", "10", "20", "30", "40", "250"]
    down = [int(v) for v in swipes[2][2:6]]
    assert down[0] == down[2] == 540 and down[1] > down[3]  # reveal below: the finger moves up
    up = [int(v) for v in swipes[3][2:6]]
    assert up[0] == up[2] == 300 and up[1] < up[3]
    assert all(0 < v < 2400 for v in up)
    right = [int(v) for v in swipes[4][2:6]]
    assert right[1] == right[3] == 1200 and right[0] > right[2]


def test_hostile_text_is_typed_verbatim_and_runs_nothing_else(adb_sim: SimAdbServer) -> None:
    device = adb_sim["sim-0"]
    focus_note_field(device.phone)
    driver = open_adb(adb_sim)
    device.clear()
    driver.execute(Type(text=NASTY))
    assert device.phone.fields["note_text"] == NASTY
    programs = {argv[0] for argv in device.commands()}
    assert programs == {"input", "uiautomator"}, device.log  # the field is read back before and after
    assert all(argv[:2] == ["input", "text"] for argv in device.commands("input"))
    # the literal "%s" in the text needs a split: input text would turn it into a space
    assert len(device.commands("input")) == 2


def test_newlines_and_tabs_become_key_events(adb_sim: SimAdbServer) -> None:
    device = adb_sim["sim-0"]
    driver = open_adb(adb_sim)
    device.clear()  # forget the power / lock screen look at open
    driver.execute(Type(text="a b\n$(reboot)\tc", submit=True))
    assert device.commands() == [
        ["input", "text", "a%sb"],
        ["input", "keyevent", "66"],
        ["input", "text", "$(reboot)"],
        ["input", "keyevent", "61"],
        ["input", "text", "c"],
        ["input", "keyevent", "66"],
    ]


def test_unicode_text_goes_through_adbkeyboard(adb_sim: SimAdbServer) -> None:
    device = adb_sim["sim-0"]
    focus_note_field(device.phone)
    driver = open_adb(adb_sim)
    device.clear()
    text = "买牛奶 🥛 café; $(id) 'x'"
    driver.execute(Type(text=text))
    driver.execute(Type(text="ü"))
    assert device.phone.fields["note_text"] == text + "ü"
    assert device.current_ime == "com.android.adbkeyboard/.AdbIME"
    assert [argv[:2] for argv in device.commands() if argv[0] != "uiautomator"] == [
        ["ime", "list"],
        ["pm", "list"],
        ["ime", "enable"],
        ["settings", "get"],
        ["ime", "set"],
        ["am", "broadcast"],
        ["am", "broadcast"],  # the IME check is done once per driver
    ]


def test_unicode_without_adbkeyboard_names_the_fix(no_real_adb: None) -> None:
    with serve_sim([SimPhone(serial="sim-0")], adbkeyboard=False) as server:
        driver = open_adb(server)
        with pytest.raises(ActionNotSupportedError, match=r"ADBKeyboard.*ime set com\.android\.adbkeyboard/\.AdbIME"):
            driver.execute(Type(text="日本語"))
        assert server["sim-0"].commands("am") == []


def test_ime_is_not_switched_when_told_not_to(adb_sim: SimAdbServer) -> None:
    driver = open_adb(adb_sim, switch_ime=False)
    with pytest.raises(ActionNotSupportedError, match="ADBKeyboard"):
        driver.execute(Type(text="é"))
    assert adb_sim["sim-0"].current_ime != "com.android.adbkeyboard/.AdbIME"


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=40))
def test_input_text_chunks_round_trip_through_androids_decoding(text: str) -> None:
    chunks = input_text_chunks(text)
    assert "".join(_decode_input_text(chunk) for chunk in chunks) == text
    assert all(" " not in chunk for chunk in chunks)


def test_unsupported_actions_are_refused_before_the_device(adb_sim: SimAdbServer) -> None:
    driver = open_adb(adb_sim)
    adb_sim["sim-0"].clear()
    with pytest.raises(ActionNotSupportedError):
        driver.execute(Key(key="f1"))
    with pytest.raises(ActionNotSupportedError):
        driver.execute(Click(x=1, y=1, button="right"))
    driver.execute(Wait(seconds=0))
    driver.execute(Done())
    assert adb_sim["sim-0"].commands() == []


class _SlowPhone(SimPhone):
    def render(self, copy: bool = True) -> Image.Image:
        time.sleep(1.0)
        return super().render(copy)


def test_a_device_that_stops_answering_times_out(no_real_adb: None) -> None:
    with serve_sim([_SlowPhone(serial="sim-0")]) as server:
        driver = open_adb(server, capture_timeout=0.2, attempts=2)
        started = time.perf_counter()
        with pytest.raises(DeviceTimeoutError, match="taking a screenshot on sim-0 timed out"):
            driver.screenshot()
        assert time.perf_counter() - started < 1.5


def test_lost_server_is_retried_then_a_device_error(adb_sim: SimAdbServer) -> None:
    driver = open_adb(adb_sim, attempts=3)
    adb_sim.stop()
    with pytest.raises(DeviceError, match="lost the connection to the adb server") as info:
        driver.execute(Click(x=5, y=5))
    assert info.value.__cause__ is not None  # the adbutils error is chained


# --- whole episodes over adb ------------------------------------------------------------------------


@pytest.fixture
def fresh_server(no_real_adb: None) -> Iterator[SimAdbServer]:
    with serve_sim([SimPhone(serial="sim-0")]) as server:
        yield server


@pytest.mark.parametrize("name", sorted(BUILTIN_TASKS))
def test_sim_tasks_solved_over_adb(fresh_server: SimAdbServer, name: str) -> None:
    task = BUILTIN_TASKS[name]
    phone = fresh_server["sim-0"].phone
    SimState(phone).prepare(task.start)
    assert not task.passed(SimState(phone))
    with open_adb(fresh_server) as driver:
        episode = run_episode(task.instruction, driver, ScriptedPolicy(task_script(task, phone.locate)), max_steps=15)
    assert episode.end is EndReason.DONE_SUCCESS, episode.detail
    assert task.passed(SimState(phone)), phone.snapshot()
    unexpected = {argv[0] for argv in fresh_server["sim-0"].commands()} - {
        "screencap", "input", "wm", "dumpsys", "ime", "pm", "settings", "am", "monkey", "uiautomator"
    }  # fmt: skip
    assert not unexpected


def test_device_lost_mid_episode_ends_with_error(fresh_server: SimAdbServer) -> None:
    task = BUILTIN_TASKS["wifi"]
    phone = fresh_server["sim-0"].phone

    class Unplug(Hook):
        def on_step(self, episode: object, record: object, after: object) -> None:
            threading.Thread(target=fresh_server.stop).start()
            time.sleep(0.2)

    with open_adb(fresh_server) as driver:
        episode = run_episode(
            task.instruction, driver, ScriptedPolicy(task_script(task, phone.locate)), hooks=[Unplug()]
        )
    assert episode.end is EndReason.ERROR
    assert "DeviceError" in episode.detail and "adb server" in episode.detail
    assert len(episode.steps) == 2
    # the driver retries (reconnecting) itself, within its deadline; the loop does not retry again
    assert re.search(r"after [2-9]\d* tries", episode.detail), episode.detail
    assert episode.device_retries == 0


def test_long_sideways_scrolls_stay_out_of_the_back_gesture_edges(adb_sim: SimAdbServer) -> None:
    driver = open_adb(adb_sim)
    device = adb_sim["sim-0"]
    driver.execute(OpenApp(name="Settings"))
    for amount in (1, 3, 10):
        driver.execute(Scroll(direction="right", amount=amount))
        driver.execute(Scroll(direction="left", x=5, amount=amount))
        driver.execute(Scroll(direction="down", y=2399, amount=amount))
    assert device.phone.screen == "settings"  # no scroll was read as Back
    for command in device.commands("input")[-9:]:
        x1, y1, x2, y2 = (int(v) for v in command[2:6])
        assert all(0.08 * 1080 - 1 <= x <= 0.92 * 1080 + 1 for x in (x1, x2)), command
        assert all(0.08 * 2400 - 1 <= y <= 0.92 * 2400 + 1 for y in (y1, y2)), command


# --- a phone whose screen is off or locked ------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["delegate", "status_bar", "lockscreen"])
def test_open_wakes_a_sleeping_phone_and_dismisses_its_lock_screen(
    adb_sim: SimAdbServer, caplog: pytest.LogCaptureFixture, fmt: str
) -> None:
    caplog.set_level(logging.INFO, logger="vlagent.drivers.android")
    device = adb_sim["sim-0"]
    device.keyguard_format = fmt  # type: ignore[assignment]  # the keyguard lines of Android 10+, 8-9, <=7
    device.phone.sleep()
    driver = open_adb(adb_sim)
    assert device.phone.awake and not device.phone.keyguard_shown
    assert ["input", "keyevent", "224"] in device.commands("input")
    assert ["wm", "dismiss-keyguard"] in device.commands("wm")
    assert "Settings" in device.phone.text_on_screen()
    assert "woke it with KEYCODE_WAKEUP" in caplog.text and "dismissed the lock screen" in caplog.text
    assert driver.screenshot().image.getbbox() is not None


def test_open_on_an_awake_unlocked_phone_only_looks(adb_sim: SimAdbServer) -> None:
    open_adb(adb_sim)
    assert adb_sim["sim-0"].commands() == [["dumpsys", "power"], ["dumpsys", "window", "policy"]]


def test_lock_screen_is_swiped_up_where_wm_cannot_dismiss_it(
    adb_sim: SimAdbServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    wm = adb_server._PROGRAMS["wm"]

    def old_wm(dev: adb_server.SimDevice, args: list[str]) -> adb_server._Result:
        if args[:1] == ["dismiss-keyguard"]:  # Android 5: no such wm command
            return adb_server._Result(stderr=b"Error: unknown command 'dismiss-keyguard'\n", status=1)
        return wm(dev, args)

    monkeypatch.setitem(adb_server._PROGRAMS, "wm", old_wm)
    caplog.set_level(logging.INFO, logger="vlagent.drivers.android")
    device = adb_sim["sim-0"]
    device.phone.sleep()
    open_adb(adb_sim)
    assert device.phone.awake and not device.phone.keyguard_shown
    assert ["input", "swipe", "540", "1920", "540", "480", "300"] in device.commands("input")
    assert "with a swipe up" in caplog.text


def test_wake_off_leaves_a_sleeping_phone_asleep(adb_sim: SimAdbServer) -> None:
    device = adb_sim["sim-0"]
    device.phone.sleep()
    for driver in (open_adb(adb_sim, wake=False), open_driver("adb:sim-0?wake=0", port=adb_sim.port)):
        assert isinstance(driver, AdbDriver) and driver.config.wake is False
        assert driver.screenshot().image.getbbox() is None  # black, as the phone shows it
    assert not device.phone.awake
    looked_at = {tuple(argv[:2]) for argv in device.commands()}
    assert looked_at == {("screencap",), ("wm", "size"), ("dumpsys", "input"), ("wm", "density")}  # geometry only


def test_device_spec_options_are_typed(adb_sim: SimAdbServer) -> None:
    driver = open_driver(f"adb:sim-0?wake=off&timeout=5&screencap=png&port={adb_sim.port}")
    assert isinstance(driver, AdbDriver)
    assert (driver.config.wake, driver.config.timeout, driver.config.screencap) == (False, 5.0, "png")
    assert open_driver(f"adb:?port={adb_sim.port}").name == "adb:sim-0"  # no serial: the only device
    with pytest.raises(ConfigError, match=r"bad adb option wake='maybe'"):
        open_driver(f"adb:sim-0?wake=maybe&port={adb_sim.port}")
    with pytest.raises(ConfigError, match="unknown adb option"):
        open_driver(f"adb:sim-0?colour=blue&port={adb_sim.port}")
    with pytest.raises(ConfigError, match="needs a value"):
        open_driver(f"adb:sim-0?wake&port={adb_sim.port}")


def test_pin_locked_phone_is_a_clear_device_error(no_real_adb: None) -> None:
    phone = SimPhone(serial="sim-0", screen_lock="pin")
    phone.sleep()
    with serve_sim([phone]) as server:
        with pytest.raises(DeviceLockedError, match=r"locked with a PIN, pattern or password.*will not guess"):
            open_adb(server, wake_timeout=0.05)
        assert phone.keyguard_shown
        assert not any(argv[:2] == ["input", "text"] for argv in server["sim-0"].commands())


def test_phone_locked_with_a_pin_mid_episode_ends_it_instead_of_running_blind(no_real_adb: None) -> None:
    phone = SimPhone(serial="sim-0", screen_lock="pin")
    task = BUILTIN_TASKS["dark_mode"]

    class ScreenTimesOut(Hook):
        def on_step(self, episode: object, record: object, after: object) -> None:
            phone.sleep()

    with serve_sim([phone]) as server, open_adb(server, wake_timeout=0.05) as driver:
        episode = run_episode(
            task.instruction, driver, ScriptedPolicy(task_script(task, phone.locate)), hooks=[ScreenTimesOut()]
        )
    assert episode.end is EndReason.ERROR
    assert "DeviceLockedError" in episode.detail and "PIN" in episode.detail
    assert len(episode.steps) == 2 and not task.passed(SimState(phone))
    assert episode.device_retries == 0  # a locked phone stays locked: no retries


def test_black_screen_of_an_awake_phone_is_not_woken(no_real_adb: None) -> None:
    class BlackApp(SimPhone):  # an app drawing a black screen, e.g. a video player between clips
        def render(self, copy: bool = True) -> Image.Image:
            return Image.new("RGB", (self.width, self.height))

    with serve_sim([BlackApp(serial="sim-0")]) as server:
        driver = open_adb(server)
        device = server["sim-0"]
        device.clear()
        frames = [driver.screenshot(), driver.screenshot()]
        assert all(frame.image.getbbox() is None for frame in frames)
        shells = [argv for argv in device.commands() if argv[0] != "screencap" and argv[:2] != ["wm", "size"]]
        shells = [argv for argv in shells if argv not in (["dumpsys", "input"], ["wm", "density"])]
        assert shells == [["dumpsys", "power"], ["dumpsys", "power"]]  # one look per black frame, nothing sent


def test_phone_falling_asleep_mid_episode_still_completes_the_task(
    fresh_server: SimAdbServer, caplog: pytest.LogCaptureFixture
) -> None:
    task = BUILTIN_TASKS["wifi"]
    phone = fresh_server["sim-0"].phone

    class ScreenTimesOut(Hook):
        """The screen times out while the model thinks about the step after the first one."""

        def on_step(self, episode: object, record: StepRecord, after: object) -> None:
            if record.index == 0:
                phone.sleep()

    with open_adb(fresh_server) as driver:
        episode = run_episode(
            task.instruction, driver, ScriptedPolicy(task_script(task, phone.locate)), hooks=[ScreenTimesOut()]
        )
    assert episode.end is EndReason.DONE_SUCCESS, episode.detail
    assert task.passed(SimState(phone)) and phone.awake and not phone.keyguard_shown
    assert "the screenshot was black because the phone was asleep" in caplog.text
    assert "woke it with KEYCODE_WAKEUP" in caplog.text
    assert fresh_server["sim-0"].commands("input").count(["input", "keyevent", "224"]) == 1
    assert all(step.frame.image.getbbox() is not None for step in episode.steps)  # the model never saw black


@pytest.mark.parametrize(
    ("dump", "state"),
    [
        ("Power Manager State:\n  mDirty=0x0\n  mWakefulness=Dozing\n  mWakefulnessChanging=false\n", "Dozing"),
        ("  getWakefulnessLocked()=Asleep\n", "Asleep"),
        ("  mWakefulness=1\n", "Awake"),
        ("Display Power: state=OFF\n", "Asleep"),
        ("Display Power: state=DOZE_SUSPEND\n", "Dozing"),
        ("  mScreenOn=true\n", "Awake"),
        ("Display Power: com.android.server.power.PowerManagerService$1@ec9ada9\n", None),
    ],
)
def test_parse_wakefulness_across_android_versions(dump: str, state: str | None) -> None:
    assert parse_wakefulness(dump) == state


@pytest.mark.parametrize(
    ("dump", "showing"),
    [
        # Android 10+ (AOSP KeyguardServiceDelegate.dump; appium-adb's lock management tests use the same text)
        ("    KeyguardServiceDelegate\n      showing=false\n      showingAndNotOccluded=true\n", False),
        ("    KeyguardServiceDelegate\n      inputRestricted=true\n      showing=true\n", True),
        ("    mStatusBar=Window{5b1d3a0 u0 StatusBar} isStatusBarKeyguard=true\n", True),
        ("    mShowingLockscreen=false mShowingDream=false mDreamingLockscreen=false\n", False),
        ("    mShowingLockscreen=false mShowingDream=true mDreamingLockscreen=true\n", True),
        ("    KeyguardStateMonitor\n      mIsShowing=true\n      mSimSecure=false\n", True),
        ("    mSafeMode=false mSystemReady=true\n", None),
    ],
)
def test_parse_keyguard_showing_across_android_versions(dump: str, showing: bool | None) -> None:
    assert parse_keyguard_showing(dump) is showing
