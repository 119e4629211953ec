"""What the adb tests share: real clients (adbutils, Debian's adb CLI) pointed at a simulated server,
the adb driver opened on it, and text no device shell may interpret."""

from __future__ import annotations

import os
import shutil
import subprocess

import adbutils
import pytest

from vlagent.drivers.android import AdbDriver
from vlagent.drivers.registry import open_driver
from vlagent.drivers.sim.adb_server import SimAdbServer
from vlagent.drivers.sim.world import SimPhone

ADB = shutil.which("adb")
needs_adb_cli = pytest.mark.skipif(ADB is None, reason="Debian's adb CLI is not installed (apt-get install adb)")
#: Typed text that a shell would interpret in every way it can if it were ever unquoted.
NASTY = 'it\'s "quoted"; rm -rf / && reboot || id | cat $(id) `id` ${HOME} 100%s 50% \\ * ~ <x> #c'


def adbutils_device(server: SimAdbServer, serial: str = "sim-0") -> adbutils.AdbDevice:
    """adbutils' handle on a served phone."""
    return adbutils.AdbClient(port=server.port).device(serial)


def adb(server: SimAdbServer, *args: str, serial: str | None = "sim-0") -> subprocess.CompletedProcess[bytes]:
    """Debian's adb CLI against the server (``serial=None``: no ``-s``, e.g. for ``adb devices``)."""
    assert ADB is not None
    env = {**os.environ, "ANDROID_ADB_SERVER_PORT": str(server.port)}
    chosen = ["-s", serial] if serial else []
    return subprocess.run([ADB, *chosen, *args], capture_output=True, timeout=20, check=False, env=env)


def open_adb(server: SimAdbServer, serial: str = "sim-0", **options: object) -> AdbDriver:
    """The adb driver on a served phone, retrying fast."""
    driver = open_driver(f"adb:{serial}", port=server.port, retry_wait=0.01, **options)
    assert isinstance(driver, AdbDriver)
    return driver


def focus_note_field(phone: SimPhone) -> None:
    """Open a new note with its text field focused."""
    assert phone.open_app("Notes")
    for label in ("New note", "Note text"):
        point = phone.locate(label)
        assert point is not None, label
        phone.tap(*point)
    assert phone.focused_field == "note_text"
