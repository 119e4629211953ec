"""Device pools: taking and giving back, a device that drops off, an empty pool, Ctrl-C while waiting;
resolving ``adb:*`` and ``adb:HOST:PORT`` against a real simulated adb server over its socket."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from vlagent.drivers.sim.adb_server import SimAdbServer, serve_sim
from vlagent.drivers.sim.world import SimPhone
from vlagent.errors import ConfigError, PoolEmptyError
from vlagent.pool import DevicePool, adb_probe, is_network_address, resolve_devices


class _Gone:
    """A probe saying which devices are gone (and recording what it was asked)."""

    def __init__(self, *gone: str) -> None:
        self.gone = set(gone)
        self.asked: list[str] = []

    def __call__(self, device: str) -> str | None:
        self.asked.append(device)
        return "unplugged" if device in self.gone else None


def _in_thread(fn: object) -> tuple[threading.Thread, list[object]]:
    out: list[object] = []

    def run() -> None:
        try:
            out.append(fn())  # type: ignore[operator]
        except Exception as exc:
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def test_each_device_is_taken_by_one_scenario_at_a_time_and_comes_back() -> None:
    pool = DevicePool(["sim:1", "sim:2"], probe=_Gone())
    first, second = pool.take(), pool.take()
    assert {first, second} == {"sim:1", "sim:2"}
    thread, out = _in_thread(pool.take)  # none free: it waits
    time.sleep(0.3)
    assert thread.is_alive() and not out
    assert second is not None
    pool.give_back(second)
    thread.join(5)
    assert out == [second]
    assert pool.report() == {"devices": ["sim:1", "sim:2"], "runs": {"sim:1": 1, "sim:2": 2}, "dropped": {}}


def test_a_device_is_looked_at_only_after_a_failure_and_stays_when_it_is_there() -> None:
    probe = _Gone()
    pool = DevicePool(["adb:a"], probe=probe)
    with pool.lease() as lease:
        assert lease.device == "adb:a"
    assert probe.asked == []
    with pool.lease() as lease:
        lease.failed = True  # the scenario errored, but the phone is still listed
    assert probe.asked == ["adb:a"]
    assert pool.alive == ("adb:a",) and pool.take() == "adb:a"


def test_a_device_that_dropped_off_leaves_the_pool_and_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    pool = DevicePool(["adb:a", "adb:b"], probe=_Gone("adb:a"))
    with pool.lease() as lease:
        assert lease.device == "adb:a"
        lease.failed, lease.error = True, "sim-wifi-on: DeviceNotFoundError: device 'a' not found"
    assert pool.alive == ("adb:b",)
    why = "unplugged (after: sim-wifi-on: DeviceNotFoundError: device 'a' not found)"
    assert pool.report()["dropped"] == {"adb:a": why}
    assert "device adb:a dropped off and leaves the pool" in caplog.text and "1 left" in caplog.text
    assert pool.take() == "adb:b"


def test_a_probe_that_breaks_drops_the_device_and_wakes_the_waiting() -> None:
    def broken(device: str) -> str | None:
        raise RuntimeError("probe bug")

    pool = DevicePool(["adb:a"], probe=broken)
    taken = pool.take()
    thread, out = _in_thread(pool.take)
    assert taken is not None
    pool.give_back(taken, failed=True)
    thread.join(5)
    assert len(out) == 1 and isinstance(out[0], PoolEmptyError)
    assert pool.report()["dropped"] == {"adb:a": "could not be looked at (RuntimeError: probe bug)"}


def test_an_exception_in_the_block_counts_as_a_failure() -> None:
    pool = DevicePool(["adb:a", "adb:b"], probe=_Gone("adb:a"))
    with pytest.raises(RuntimeError), pool.lease():
        raise RuntimeError("boom")
    assert pool.alive == ("adb:b",)


def test_an_empty_pool_fails_every_taker_at_once_also_those_waiting() -> None:
    pool = DevicePool(["adb:a"], probe=_Gone("adb:a"))
    taken = pool.take()
    thread, out = _in_thread(pool.take)  # waits for adb:a
    time.sleep(0.2)
    assert thread.is_alive()
    assert taken is not None
    started = time.monotonic()
    pool.give_back(taken, failed=True)
    thread.join(5)
    assert time.monotonic() - started < 2
    assert len(out) == 1 and isinstance(out[0], PoolEmptyError)
    assert "every device of the pool dropped off (adb:a: unplugged)" in str(out[0])
    with pytest.raises(PoolEmptyError):
        pool.take()


def test_a_stop_wakes_a_waiting_scenario_with_no_device() -> None:
    pool = DevicePool(["sim:1"], probe=_Gone())
    stop = threading.Event()
    assert pool.take(stop) == "sim:1"
    thread, out = _in_thread(lambda: pool.take(stop))
    time.sleep(0.2)
    stop.set()
    thread.join(5)
    assert out == [None]


def test_a_pool_needs_a_device_and_names_each_once() -> None:
    with pytest.raises(ConfigError, match="at least one device"):
        DevicePool([])
    assert DevicePool(["sim:1", "sim:1", "sim:2"]).devices == ("sim:1", "sim:2")


@pytest.mark.parametrize(
    ("serial", "network"),
    [("10.0.0.7:5555", True), ("phone.lan:40001", True), ("[fe80::1]:5555", True), ("emulator-5554", False),
     ("R58M123ABC", False), ("10.0.0.7", False), ("a:b", False)],
)  # fmt: skip
def test_network_addresses_are_told_from_usb_serials(serial: str, network: bool) -> None:
    assert is_network_address(serial) is network


# --- against a real simulated adb server -------------------------------------------------------------


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimAdbServer]:
    """Two phones, a and b, and one address (10.0.0.7:5555) where adb connect finds a third."""
    monkeypatch.setenv("ADBUTILS_ADB_PATH", "/bin/false")
    for name in ("ANDROID_SERIAL", "ANDROID_ADB_SERVER_HOST"):
        monkeypatch.delenv(name, raising=False)
    with serve_sim([SimPhone(serial="a"), SimPhone(serial="b")], port=0, reachable=["10.0.0.7:5555"]) as served:
        monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(served.port))
        yield served


def test_adb_star_is_every_phone_listed_and_a_network_phone_joins(server: SimAdbServer) -> None:
    devices = resolve_devices(["adb:*", "adb:10.0.0.7:5555?call_deadline=5", "sim:3"])
    assert devices == ("adb:a", "adb:b", "adb:10.0.0.7:5555?call_deadline=5", "sim:3")
    assert "10.0.0.7:5555" in server.devices  # joined with adb connect
    assert resolve_devices(["adb:10.0.0.7:5555", "adb:*"]) == ("adb:10.0.0.7:5555", "adb:a", "adb:b")
    assert resolve_devices([f"adb:*?port={server.port}&wake=0"])[0] == f"adb:a?port={server.port}&wake=0"


def test_a_network_phone_that_does_not_answer_is_a_one_line_error(server: SimAdbServer) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_devices(["adb:10.0.0.9:5555"])
    assert str(caught.value) == (
        "--device adb:10.0.0.9:5555: adb connect 10.0.0.9:5555: "
        "failed to connect to '10.0.0.9:5555': Connection refused"
    )


def test_adb_star_with_no_phone_or_no_server_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADBUTILS_ADB_PATH", "/bin/false")
    with serve_sim([], port=0) as empty:
        monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(empty.port))
        with pytest.raises(ConfigError, match=r"^--device adb:\*: the adb server at 127.0.0.1:\d+ lists no phone"):
            resolve_devices(["adb:*"])
    with pytest.raises(ConfigError, match=r"^--device adb:\*: cannot reach the adb server at 127.0.0.1:\d+"):
        resolve_devices(["adb:*"])  # the server is gone now


def test_the_adb_probe_sees_a_phone_leave(server: SimAdbServer) -> None:
    resolve_devices(["adb:10.0.0.7:5555"])
    assert adb_probe("adb:10.0.0.7:5555") is None
    assert adb_probe("adb:a?wake=0") is None
    assert adb_probe("sim:3") is None
    server.disconnect("10.0.0.7:5555")  # wireless debugging dropped the connection: adb connect again
    assert adb_probe("adb:10.0.0.7:5555") is None and "10.0.0.7:5555" in server.devices
    server.disconnect("10.0.0.7:5555")
    server.reachable = frozenset()  # and now the phone itself is gone from the network
    assert adb_probe("adb:10.0.0.7:5555") == (
        "the adb server lost 10.0.0.7:5555 and adb connect failed "
        "(failed to connect to '10.0.0.7:5555': Connection refused)"
    )
    server.stop()
    assert "cannot reach the adb server" in (adb_probe("adb:a") or "")
