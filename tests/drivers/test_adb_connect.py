"""``adb connect HOST:PORT`` on the simulated adb server: a phone on the network joins (and leaves)
as a phone with wireless debugging does, answered in adb's own words, over the real protocol."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator

import adbutils
import pytest
from adb_clients import adb, needs_adb_cli

from vlagent.drivers.sim.adb_server import SimAdbServer, serve_sim
from vlagent.drivers.sim.world import SimPhone


@pytest.fixture
def gated(no_real_adb: None) -> Iterator[SimAdbServer]:
    """A server where only 10.0.0.7 (port 5555) and 10.0.0.8:40001 answer ``adb connect``."""
    with serve_sim([SimPhone(serial="sim-0")], port=0, reachable=["10.0.0.7", "10.0.0.8:40001"]) as server:
        yield server


def test_connect_attaches_a_phone_that_adbutils_then_drives(adb_sim: SimAdbServer) -> None:
    client = adbutils.AdbClient(port=adb_sim.port)
    assert client.connect("192.168.1.20:5555") == "connected to 192.168.1.20:5555"
    assert client.connect("192.168.1.20:5555") == "already connected to 192.168.1.20:5555"
    assert [d.serial for d in client.list()] == ["sim-0", "192.168.1.20:5555"]
    phone = client.device("192.168.1.20:5555")
    assert phone.shell("getprop ro.serialno").strip() == "192.168.1.20:5555"
    phone.shell("svc wifi enable")
    assert phone.shell("settings get global wifi_on").strip() == "1"
    assert client.device("sim-0").shell("settings get global wifi_on").strip() == "0"  # its own phone


def test_a_port_left_out_is_adbs_5555(adb_sim: SimAdbServer) -> None:
    client = adbutils.AdbClient(port=adb_sim.port)
    assert client.connect("phone.lan") == "connected to phone.lan:5555"
    assert client.connect("phone.lan:5555") == "already connected to phone.lan:5555"


def test_an_address_with_no_phone_fails_in_adbs_words(gated: SimAdbServer) -> None:
    client = adbutils.AdbClient(port=gated.port)
    assert client.connect("10.0.0.9:5555") == "failed to connect to '10.0.0.9:5555': Connection refused"
    assert client.connect("10.0.0.8:40001") == "connected to 10.0.0.8:40001"
    assert client.connect("not an address") == "failed to connect to 'not an address': bad address"
    assert [d.serial for d in client.list()] == ["sim-0", "10.0.0.8:40001"]


def test_disconnect_takes_the_phone_away_and_cuts_its_connections(adb_sim: SimAdbServer) -> None:
    client = adbutils.AdbClient(port=adb_sim.port)
    client.connect("10.1.1.1:5555")
    client.connect("10.1.1.2:5555")
    follow = client.device("10.1.1.1:5555").shell("logcat", stream=True)  # an open stream to the phone
    assert client.disconnect("10.1.1.1:5555") == "disconnected 10.1.1.1:5555"
    follow.conn.settimeout(5)
    while follow.read(65536):  # the server closed it; no timeout
        pass
    assert [d.serial for d in client.list()] == ["sim-0", "10.1.1.2:5555"]
    with pytest.raises(adbutils.AdbError, match=re.escape("no such device '10.1.1.1:5555'")):
        client.disconnect("10.1.1.1:5555", raise_error=True)
    with pytest.raises(adbutils.AdbError, match="no such device 'sim-0:5555'"):  # a USB phone stays
        client.disconnect("sim-0", raise_error=True)
    with pytest.raises(adbutils.AdbError, match="not found"):
        client.device("10.1.1.1:5555").shell("echo hi")
    assert client.disconnect("") == "disconnected everything"
    assert [d.serial for d in client.list()] == ["sim-0"]
    assert client.connect("10.1.1.1:5555") == "connected to 10.1.1.1:5555"  # it may join again


def test_joined_phones_get_their_own_transport_ids(adb_sim: SimAdbServer) -> None:
    client = adbutils.AdbClient(port=adb_sim.port)
    client.connect("10.2.0.1:5555")
    client.connect("10.2.0.2:5555")
    ids = [adb_sim[s].transport_id for s in ("sim-0", "10.2.0.1:5555", "10.2.0.2:5555")]
    assert len(set(ids)) == 3
    client.disconnect("10.2.0.1:5555")
    client.connect("10.2.0.3:5555")
    assert adb_sim["10.2.0.3:5555"].transport_id not in ids


@needs_adb_cli
def test_debian_adb_connects_lists_and_disconnects(gated: SimAdbServer) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[bytes]:
        return adb(gated, *args, serial=None)

    joined = run("connect", "10.0.0.7:5555")
    assert joined.stdout.decode().strip() == "connected to 10.0.0.7:5555", joined
    refused = run("connect", "10.0.0.9:5555")
    assert "failed to connect to '10.0.0.9:5555'" in refused.stdout.decode() + refused.stderr.decode()
    assert "10.0.0.7:5555\tdevice" in run("devices").stdout.decode()
    said = adb(gated, "shell", "echo", "hello", serial="10.0.0.7:5555")
    assert said.stdout.decode().strip() == "hello"
    left = run("disconnect", "10.0.0.7:5555")
    assert left.stdout.decode().strip() == "disconnected 10.0.0.7:5555"
    assert "10.0.0.7" not in run("devices").stdout.decode()
