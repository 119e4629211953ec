"""The simulated phone's state over adb: settings, cmd/svc, dumpsys, as real phones print them."""

from __future__ import annotations

import os
import subprocess

import pytest
from adb_clients import ADB, adbutils_device, needs_adb_cli

from vlagent.drivers.sim.adb_server import SimAdbServer
from vlagent.tasks.settings import TOGGLES


def _adb_shell(server: SimAdbServer, *args: str) -> subprocess.CompletedProcess[bytes]:
    assert ADB is not None
    env = {**os.environ, "ANDROID_ADB_SERVER_PORT": str(server.port)}
    return subprocess.run([ADB, "-s", "sim-0", "shell", *args], capture_output=True, timeout=20, check=False, env=env)


@needs_adb_cli
def test_wifi_switched_on_in_the_ui_reads_1_over_adb(adb_sim: SimAdbServer) -> None:
    phone = adb_sim["sim-0"].phone
    assert _adb_shell(adb_sim, "settings", "get", "global", "wifi_on").stdout == b"0\n"
    assert phone.open_app("Settings")
    point = phone.locate("Wi-Fi")
    assert point is not None
    phone.tap(*point)
    assert phone.toggles["wifi"]
    assert _adb_shell(adb_sim, "settings", "get", "global", "wifi_on").stdout == b"1\n"


def test_every_toggle_reads_back_through_its_settings_key(adb_sim: SimAdbServer) -> None:
    phone, device = adb_sim["sim-0"].phone, adbutils_device(adb_sim)
    for toggle in TOGGLES.values():
        assert toggle.namespace is not None and toggle.key is not None
        for on in (True, False):
            phone.set_toggle(toggle.toggle, on)
            assert toggle.is_on(device.shell(["settings", "get", toggle.namespace, toggle.key])) is on, toggle


def test_each_toggles_real_command_switches_it(adb_sim: SimAdbServer) -> None:
    phone, device = adb_sim["sim-0"].phone, adbutils_device(adb_sim)
    for toggle in TOGGLES.values():
        for on in (True, False):
            result = device.shell2(toggle.command(on))
            assert result.returncode == 0, (toggle.toggle, result.output)
            assert phone.toggles[toggle.toggle] is on, toggle.toggle


def test_settings_put_does_not_switch_a_radio(adb_sim: SimAdbServer) -> None:
    phone, device = adb_sim["sim-0"].phone, adbutils_device(adb_sim)
    assert device.shell("settings put global wifi_on 1") == ""
    assert device.shell("settings get global wifi_on") == "1"  # the row changed...
    assert not phone.toggles["wifi"]  # ...the radio did not (svc wifi enable does that)
    device.shell("svc wifi enable")
    device.shell("svc wifi disable")
    assert device.shell("settings get global wifi_on") == "0"
    device.shell("settings put secure location_mode 0")  # read by the system as it changes
    assert not phone.toggles["location"]


def test_other_keys_are_kept_per_namespace(adb_sim: SimAdbServer) -> None:
    device = adbutils_device(adb_sim)
    assert device.shell("settings get system my_key") == "null"
    device.shell("settings put system my_key 42")
    assert device.shell("settings get system my_key") == "42"
    assert device.shell("settings get global my_key") == "null"
    assert "my_key=42" in device.shell("settings list system").splitlines()
    assert device.shell("settings delete system my_key") == "Deleted 1 rows"
    assert device.shell("settings get system my_key") == "null"
    assert device.shell("settings get secure default_input_method").endswith("LatinIME")
    bad = device.shell2("settings get nowhere key")
    assert bad.returncode == 255 and "Invalid namespace" in bad.output


def test_adbutils_brightness_round_trips(adb_sim: SimAdbServer) -> None:
    device = adbutils_device(adb_sim)
    device.brightness_value = 200
    assert device.brightness_value == 200


def test_cmd_services(adb_sim: SimAdbServer) -> None:
    phone, device = adb_sim["sim-0"].phone, adbutils_device(adb_sim)
    assert device.shell("cmd uimode night yes") == "Night mode: yes"
    assert phone.toggles["dark_mode"]
    assert device.shell("cmd uimode night") == "Night mode: yes"
    assert device.shell("cmd uimode night no") == "Night mode: no"
    unknown = device.shell2("cmd frobnicator list")
    assert (unknown.returncode, unknown.output) == (20, "cmd: Can't find service: frobnicator\n")
    clip = device.shell2("cmd clipboard get")
    assert (clip.returncode, clip.output) == (0, "No shell command implementation.\n")


def test_unsimulated_commands_fail_visibly(adb_sim: SimAdbServer) -> None:
    device = adbutils_device(adb_sim)
    for line in ("dumpsys wifi", "svc usb setFunctions", "pm install /sdcard/x.apk", "am stack list", "reboot"):
        result = device.shell2(line)
        assert result.returncode != 0 and result.output, line


def test_is_screen_on_follows_the_phone(adb_sim: SimAdbServer) -> None:
    device = adbutils_device(adb_sim)
    assert device.is_screen_on() is True
    device.switch_screen(False)
    assert device.is_screen_on() is False
    device.switch_screen(True)
    assert device.is_screen_on() is True


@pytest.mark.parametrize(
    ("fmt", "line"),
    [
        ("resumed", "    mResumedActivity: ActivityRecord{"),
        ("top_resumed", "    topResumedActivity=ActivityRecord{"),
    ],
)
def test_dumpsys_activity_names_the_resumed_activity_per_android_version(
    adb_sim: SimAdbServer, fmt: str, line: str
) -> None:
    sim = adb_sim["sim-0"]
    sim.activity_format = fmt  # type: ignore[assignment]  # checked: one of the ActivityFormat values
    assert sim.phone.open_app("Settings")
    out = adbutils_device(adb_sim).shell("dumpsys activity activities")
    resumed = next(x for x in out.splitlines() if x.startswith(line))
    assert " u0 com.android.settings/.Settings t" in resumed and resumed.endswith("}")
    if fmt == "top_resumed":
        assert "\n  ResumedActivity: ActivityRecord{" in out


def test_adbutils_app_current_and_app_info(adb_sim: SimAdbServer) -> None:
    sim, device = adb_sim["sim-0"], adbutils_device(adb_sim)
    assert sim.phone.open_app("Notes")
    current = device.app_current()
    assert (current.package, current.activity) == ("com.vlagent.notes", "com.vlagent.notes.MainActivity")
    window = device.shell("dumpsys window windows")
    assert "  mCurrentFocus=Window{" in window and " u0 com.vlagent.notes/com.vlagent.notes.MainActivity}" in window
    assert "  mFocusedApp=ActivityRecord{" in window
    info = device.app_info("com.vlagent.notes")
    assert info is not None and info.version_name == "1.0" and "/data/app/" in info.path
    assert device.app_info("com.example.none") is None
    device.app_stop("com.vlagent.notes")
    assert sim.phone.screen == "home"


def test_dumpsys_battery_in_the_real_format(adb_sim: SimAdbServer) -> None:
    battery = adbutils_device(adb_sim).battery()
    assert (battery.level, battery.scale, battery.present, battery.usb_powered) == (85, 100, True, True)
    assert battery.temperature == 25.0


def test_dumpsys_power_and_window_policy_still_answer(adb_sim: SimAdbServer) -> None:
    device = adbutils_device(adb_sim)
    assert "mWakefulness=Awake" in device.shell("dumpsys power")
    assert "showing=false" in device.shell("dumpsys window policy")


def test_pm_lists_third_party_packages(adb_sim: SimAdbServer) -> None:
    device = adbutils_device(adb_sim)
    assert device.list_packages(["-3"]) == ["com.android.adbkeyboard", "com.vlagent.notes"]
    system = device.list_packages(["-s"])
    assert "com.android.settings" in system and "com.vlagent.notes" not in system
