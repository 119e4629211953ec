"""`uiautomator dump` on the simulated phone, read by real clients (adbutils, Debian's adb CLI) over the socket."""

from __future__ import annotations

from pathlib import Path

import adbutils
import pytest
from adb_clients import adb, adbutils_device, needs_adb_cli

from vlagent.drivers.sim.adb_server import SimAdbServer
from vlagent.drivers.sim.uitree import phone_ui_tree
from vlagent.drivers.sim.world import SimPhone
from vlagent.tasks.uitree import UiDumpError, parse_hierarchy


def _settings_open(phone: SimPhone) -> None:
    assert phone.open_app("Settings")


def test_adbutils_dump_hierarchy_dumps_to_a_file_and_pulls_it(adb_sim: SimAdbServer) -> None:
    phone = adb_sim["sim-0"].phone
    _settings_open(phone)
    xml = adbutils_device(adb_sim).dump_hierarchy()
    assert xml.startswith("<?xml version='1.0' encoding='UTF-8' standalone='yes' ?><hierarchy rotation=\"0\">")
    assert parse_hierarchy(xml).nodes == phone_ui_tree(phone).nodes
    assert adb_sim["sim-0"].files.read("/data/local/tmp/uidump.xml").decode() == xml
    wifi = parse_hierarchy(xml).find("Wi-Fi")
    assert wifi and wifi[0].package == "com.android.settings"


def test_dump_to_dev_tty_glues_the_message_after_the_xml(adb_sim: SimAdbServer) -> None:
    out = adbutils_device(adb_sim).shell("uiautomator dump /dev/tty")
    assert out.endswith("</hierarchy>UI hierchary dumped to: /dev/tty")
    assert parse_hierarchy(out).nodes == phone_ui_tree(adb_sim["sim-0"].phone).nodes


def test_dump_without_a_file_writes_the_default_one(adb_sim: SimAdbServer) -> None:
    device = adbutils_device(adb_sim)
    assert device.shell("uiautomator dump --compressed") == "UI hierchary dumped to: /sdcard/window_dump.xml"
    xml = device.sync.read_text("/sdcard/window_dump.xml")
    assert parse_hierarchy(xml).texts() == phone_ui_tree(adb_sim["sim-0"].phone).texts()


@needs_adb_cli
def test_adb_cli_dumps_to_tty_and_pulls_a_dump(adb_sim: SimAdbServer, tmp_path: Path) -> None:
    phone = adb_sim["sim-0"].phone
    _settings_open(phone)
    shown = adb(adb_sim, "shell", "uiautomator", "dump", "/dev/tty")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.endswith(b"</hierarchy>UI hierchary dumped to: /dev/tty\n")
    assert parse_hierarchy(shown.stdout).nodes == phone_ui_tree(phone).nodes
    assert (
        adb(adb_sim, "shell", "uiautomator dump /sdcard/ui.xml").stdout == b"UI hierchary dumped to: /sdcard/ui.xml\n"
    )
    pulled = adb(adb_sim, "pull", "/sdcard/ui.xml", str(tmp_path / "ui.xml"))
    assert pulled.returncode == 0, pulled.stderr
    assert parse_hierarchy((tmp_path / "ui.xml").read_bytes()).nodes == phone_ui_tree(phone).nodes


def test_screen_off_prints_the_aosp_error(adb_sim: SimAdbServer) -> None:
    adb_sim["sim-0"].phone.sleep()
    result = adbutils_device(adb_sim).shell2("uiautomator dump /dev/tty")
    assert result.output == "ERROR: null root node returned by UiTestAutomationBridge.\n"
    assert result.returncode == 0  # DumpCommand prints the error and returns normally
    with pytest.raises(adbutils.AdbError, match="uiautomator dump failed"):
        adbutils_device(adb_sim).dump_hierarchy()


def test_injected_idle_failures_then_success(adb_sim: SimAdbServer) -> None:
    sim = adb_sim["sim-0"]
    sim.dump_failures = 2
    device = adbutils_device(adb_sim)
    for _ in range(2):
        assert device.shell("uiautomator dump /dev/tty") == "ERROR: could not get idle state."
    assert device.shell("uiautomator dump /dev/tty").endswith("dumped to: /dev/tty")
    assert sim.dump_failures == 0


def test_injected_truncation_is_caught_by_the_parser(adb_sim: SimAdbServer) -> None:
    sim = adb_sim["sim-0"]
    sim.truncated_dumps = 1
    device = adbutils_device(adb_sim)
    with pytest.raises(UiDumpError, match="truncated"):
        parse_hierarchy(device.shell("uiautomator dump /dev/tty"))
    assert parse_hierarchy(device.shell("uiautomator dump /dev/tty")).nodes == phone_ui_tree(sim.phone).nodes


def test_dump_into_a_read_only_place_fails_visibly(adb_sim: SimAdbServer) -> None:
    result = adbutils_device(adb_sim).shell2("uiautomator dump /system/ui.xml")
    assert result.returncode == 1 and "Read-only file system" in result.output


def test_unsimulated_uiautomator_commands_fail(adb_sim: SimAdbServer) -> None:
    result = adbutils_device(adb_sim).shell2("uiautomator events")
    assert result.returncode != 0 and "is simulated" in result.output
