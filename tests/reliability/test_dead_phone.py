"""A dead phone ends an episode with an error within a bounded time, and adb is never started behind the
user's back.

The adb driver retries each device call itself (new connection, back-off) within
``AdbConfig.call_deadline``; a phone that vanishes, an adb server that goes away or hangs, ends
``run_episode`` with ``EndReason.ERROR`` naming the device and the step, within 30 s by default. A phone
offline for a moment is reconnected and the step goes on. Where the user named the adb server's port and
nothing listens there, the driver says so and starts no server.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vlagent.actions import Action, Click, Done, Key
from vlagent.agent import EndReason, Episode, Hook, StepRecord, run_episode
from vlagent.drivers.android import AdbConfig, AdbDriver, list_serials
from vlagent.drivers.registry import open_driver
from vlagent.drivers.sim.adb_server import SimAdbServer, SimDevice, serve_sim
from vlagent.drivers.sim.world import SimPhone
from vlagent.errors import ConfigError, DeviceError, DeviceNotFoundError, DeviceTimeoutError
from vlagent.policies.scripted import ScriptedPolicy
from vlagent.recorder import Recorder

ADB = "/usr/bin/adb" if os.path.exists("/usr/bin/adb") else None


@pytest.fixture
def no_server_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No adb server named by the environment; adbutils' own fallback (`adb start-server`) made harmless."""
    monkeypatch.setenv("ADBUTILS_ADB_PATH", "/bin/false")
    for name in ("ANDROID_SERIAL", "ANDROID_ADB_SERVER_PORT", "ANDROID_ADB_SERVER_HOST"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server(no_server_env: None) -> Iterator[SimAdbServer]:
    with serve_sim([SimPhone(serial="sim-0")], port=0) as served:
        yield served


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@contextlib.contextmanager
def _hung_server(port: int) -> Iterator[socket.socket]:
    """A listener on ``port`` that accepts connections (the kernel's backlog) and never answers: a hung adb server."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(128)
        yield sock


class _AtStep(Hook):
    """Runs ``harm`` once, right after step ``index`` was decided (before its action reaches the phone)."""

    def __init__(self, index: int, harm: Callable[[], object]) -> None:
        self.index = index
        self.harm = harm
        self.at: float | None = None

    def on_decision(self, episode: Episode, record: StepRecord) -> None:
        if record.index == self.index and self.at is None:
            self.harm()
            self.at = time.monotonic()


def _script(steps: int = 3) -> ScriptedPolicy:
    taps: list[Action] = [Click(x=540, y=1200 + 10 * i) for i in range(steps)]
    return ScriptedPolicy([*taps, Done(status="success")])


def _end_line(run_dir: Path) -> dict[str, object]:
    lines = [json.loads(line) for line in (run_dir / "trajectory.jsonl").read_text(encoding="utf-8").splitlines()]
    end = lines[-1]
    assert end["type"] == "end"
    return end  # type: ignore[no-any-return]


def _assert_one_line_naming(detail: str, *words: str) -> None:
    assert "\n" not in detail, detail
    for word in words:
        assert word in detail, (word, detail)


# --- a dead phone ends the episode ------------------------------------------------------------------


def test_a_stopped_adb_server_ends_the_episode_with_an_error_in_seconds(server: SimAdbServer, tmp_path: Path) -> None:
    driver = open_driver("adb:sim-0", port=server.port)  # the default config
    assert isinstance(driver, AdbDriver) and driver.retries_device_errors
    assert driver.config.call_deadline == AdbConfig().call_deadline <= 25
    harm = _AtStep(1, lambda: threading.Thread(target=server.stop).start())
    with driver:
        episode = run_episode("tap", driver, _script(), hooks=[harm, Recorder(tmp_path / "run")])
    assert harm.at is not None
    took = time.monotonic() - harm.at
    assert episode.end is EndReason.ERROR
    _assert_one_line_naming(episode.detail, "sim-0", "adb server", "tap", "Gave up after")
    assert took < 30, took
    end = _end_line(tmp_path / "run")
    assert end["reason"] == "error" and "sim-0" in str(end["detail"])


def test_a_vanished_phone_ends_the_episode_naming_it(server: SimAdbServer, tmp_path: Path) -> None:
    driver = open_driver("adb:sim-0", port=server.port)
    harm = _AtStep(1, lambda: server.devices.pop("sim-0"))
    with driver:
        episode = run_episode("tap", driver, _script(), hooks=[harm, Recorder(tmp_path / "run")])
    assert harm.at is not None
    took = time.monotonic() - harm.at
    assert episode.end is EndReason.ERROR
    assert episode.detail.startswith("DeviceNotFoundError")
    _assert_one_line_naming(episode.detail, "sim-0 is not available while tap", "not found")
    assert took < 30, took
    assert _end_line(tmp_path / "run")["reason"] == "error"


def _hang_server_at(server: SimAdbServer, stack: contextlib.ExitStack) -> None:
    server.stop()
    stack.enter_context(_hung_server(server.port))


def test_a_hung_adb_server_ends_the_episode_within_the_call_deadline(server: SimAdbServer, tmp_path: Path) -> None:
    deadline = 1.5
    driver = open_driver("adb:sim-0", port=server.port, call_deadline=deadline)
    with contextlib.ExitStack() as stack, driver:
        harm = _AtStep(1, lambda: _hang_server_at(server, stack))
        episode = run_episode("tap", driver, _script(), hooks=[harm, Recorder(tmp_path / "run")])
        assert harm.at is not None
        took = time.monotonic() - harm.at
    assert episode.end is EndReason.ERROR
    assert episode.detail.startswith("DeviceTimeoutError")
    _assert_one_line_naming(episode.detail, "tap on sim-0 timed out")
    # One call's deadline, plus (were the loop to retry on top) two looks of a fifth of it each; without
    # the deadline the tap's tries would wait 10 s each.
    assert deadline * 0.9 < took < deadline + 3.0, took
    assert _end_line(tmp_path / "run")["reason"] == "error"


@pytest.mark.slow
def test_a_hung_adb_server_ends_the_episode_within_30_s_by_default(server: SimAdbServer, tmp_path: Path) -> None:
    driver = open_driver("adb:sim-0", port=server.port)
    started = time.monotonic()
    with contextlib.ExitStack() as stack, driver:
        harm = _AtStep(1, lambda: _hang_server_at(server, stack))
        episode = run_episode("tap", driver, _script(), hooks=[harm, Recorder(tmp_path / "run")])
        assert harm.at is not None
        took = time.monotonic() - harm.at
    logging.getLogger(__name__).info("a hung adb server ended the episode %.1f s after it hung", took)
    assert episode.end is EndReason.ERROR
    _assert_one_line_naming(episode.detail, "sim-0", "timed out")
    assert took < 30, took
    assert time.monotonic() - started < 30
    assert _end_line(tmp_path / "run")["reason"] == "error"


# --- a phone offline for a moment is reconnected ------------------------------------------------------


class _PlugBackIn(logging.Handler):
    """Puts the phone back on the server when the driver says its try ``after`` failed: offline for two tries."""

    def __init__(self, server: SimAdbServer, device: SimDevice, after: int) -> None:
        super().__init__(logging.WARNING)
        self.server, self.device, self.after = server, device, after
        self.said: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.said.append(record.getMessage())
        if f"failed (try {self.after}), trying again" in record.getMessage():
            self.server.devices[self.device.serial] = self.device


def test_a_phone_offline_for_a_moment_is_reconnected_and_the_step_goes_on(server: SimAdbServer, tmp_path: Path) -> None:
    device = server["sim-0"]
    driver = open_driver("adb:sim-0", port=server.port)
    harm = _AtStep(1, lambda: server.devices.pop("sim-0"))
    back = _PlugBackIn(server, device, after=2)
    logger = logging.getLogger("vlagent.drivers.android")
    logger.addHandler(back)
    device.clear()
    try:
        with driver:
            episode = run_episode("tap", driver, _script(), hooks=[harm, Recorder(tmp_path / "run")])
    finally:
        logger.removeHandler(back)
    assert episode.end is EndReason.DONE_SUCCESS, episode.detail
    assert episode.device_retries == 0  # the driver reconnected; the loop saw nothing
    assert [m for m in back.said if "trying again" in m] == [
        f"tap on sim-0 failed (try {n}), trying again: sim-0 is not available while tap: device 'sim-0' not found. "
        "Check 'adb devices'."
        for n in (1, 2)
    ]
    taps = [argv[2:4] for argv in device.commands("input") if argv[1] == "tap"]
    assert taps == [["540", "1200"], ["540", "1210"], ["540", "1220"]]  # the tap of step 1 arrived, once
    assert _end_line(tmp_path / "run")["reason"] == "done_success"


# --- each call is bounded -------------------------------------------------------------------------------


def test_a_hung_screenshot_gives_up_at_the_call_deadline_not_the_capture_timeout(
    server: SimAdbServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    driver = open_driver("adb:sim-0", port=server.port, call_deadline=1.0)
    assert isinstance(driver, AdbDriver) and driver.config.capture_timeout == 20.0
    driver.screenshot()
    release = threading.Event()
    device: SimDevice = server["sim-0"]
    real = device.screencap

    def hung(png: bool) -> bytes:
        release.wait(30)
        return real(png)

    monkeypatch.setattr(device, "screencap", hung)
    try:
        started = time.monotonic()
        with pytest.raises(DeviceTimeoutError, match=r"taking a screenshot on sim-0 timed out") as info:
            driver.screenshot()
        took = time.monotonic() - started
        assert 0.9 < took < 3.0, took  # not the 20 s of capture_timeout
        assert "\n" not in str(info.value) and "Gave up after" in str(info.value)
    finally:
        release.set()
    # The phone still answers a shell: the next call looks, finds it answering, and goes on.
    driver.execute(Key(key="home"))
    assert server["sim-0"].commands("input")[-1][:2] == ["input", "keyevent"]


def test_after_a_call_gave_up_the_next_fails_at_once_while_the_phone_stays_dead(server: SimAdbServer) -> None:
    driver = open_driver("adb:sim-0", port=server.port, retry_wait=0.05)
    server.stop()
    with pytest.raises(DeviceError, match="Gave up after 5 tries"):
        driver.execute(Key(key="back"))
    started = time.monotonic()
    with pytest.raises(DeviceError, match=r"taking a screenshot on sim-0 not tried: the phone has not answered"):
        driver.screenshot()
    assert time.monotonic() - started < 1.0  # not five tries again


@pytest.mark.parametrize("name", ["timeout", "capture_timeout", "call_deadline", "dump_timeout"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, -1.0, 0.0])
def test_durations_that_are_not_finite_positive_seconds_are_refused(name: str, value: float) -> None:
    with pytest.raises(ConfigError, match=f"adb {name} must be a finite number of seconds > 0"):
        AdbConfig(**{name: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["retry_wait", "wake_timeout"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -0.5])
def test_waits_that_are_not_finite_or_negative_are_refused(name: str, value: float) -> None:
    with pytest.raises(ConfigError, match=f"adb {name} must be a finite number of seconds >= 0"):
        AdbConfig(**{name: value})  # type: ignore[arg-type]
    assert getattr(AdbConfig(**{name: 0.0}), name) == 0.0  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["nan", "inf", "-3", "0"])
def test_a_bad_deadline_in_the_device_spec_is_refused_before_connecting(no_server_env: None, text: str) -> None:
    with pytest.raises(ConfigError, match="call_deadline"):
        open_driver(f"adb:sim-0?call_deadline={text}", port=_free_port())


# --- no adb server is started where the user named one ----------------------------------------------


def _adb_pids() -> set[int]:
    psutil = pytest.importorskip("psutil", reason="needs psutil (the test extra)")
    pids: set[int] = set()
    for proc in psutil.process_iter(["name", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            if proc.info["name"] == "adb" or any("fork-server" in part for part in proc.info["cmdline"] or []):
                pids.add(proc.pid)
    return pids


@pytest.fixture
def real_adb(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """adbutils free to run the real adb (as on a user's machine); any adb server the test starts is ended."""
    if ADB is None:
        pytest.skip("the adb command is not installed (apt-get install adb)")
    for name in ("ADBUTILS_ADB_PATH", "ANDROID_SERIAL", "ANDROID_ADB_SERVER_PORT", "ANDROID_ADB_SERVER_HOST"):
        monkeypatch.delenv(name, raising=False)
    before = _adb_pids()
    yield
    psutil = pytest.importorskip("psutil", reason="needs psutil (the test extra)")
    for pid in _adb_pids() - before:  # only what this test started, by its id
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).kill()


def _nothing_listens(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.mark.parametrize("how", ["option", "spec", "environment"])
def test_a_named_port_where_nothing_listens_is_reported_and_no_server_is_started(
    real_adb: None, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    port = _free_port()
    before = _adb_pids()
    started = time.monotonic()
    with pytest.raises(DeviceNotFoundError, match=rf"adb server at 127\.0\.0\.1:{port}: nothing listens there") as info:
        if how == "option":
            open_driver("adb:sim-0", port=port)
        elif how == "spec":
            open_driver(f"adb:sim-0?port={port}")
        else:
            monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(port))
            open_driver("adb:sim-0")
    assert "does not start a server on a host or port you named" in str(info.value)
    assert time.monotonic() - started < 2  # not retried: the setup's, not a blip
    time.sleep(0.3)  # a server being started would be listening by now
    assert _nothing_listens(port)
    assert _adb_pids() - before == set()


def test_listing_phones_on_a_named_port_starts_no_server(real_adb: None, monkeypatch: pytest.MonkeyPatch) -> None:
    port = _free_port()
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(port))
    before = _adb_pids()
    with pytest.raises(DeviceNotFoundError, match=rf"127\.0\.0\.1:{port}: nothing listens there"):
        list_serials()
    time.sleep(0.3)
    assert _nothing_listens(port)
    assert _adb_pids() - before == set()


def test_the_default_server_is_started_once_when_absent_as_adb_does(
    no_server_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if not _nothing_listens(5037):
        pytest.skip("an adb server runs on the default port 5037")
    calls = tmp_path / "calls"
    fake = tmp_path / "adb"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexit 1\n', encoding="utf-8")
    fake.chmod(0o755)
    monkeypatch.setenv("ADBUTILS_ADB_PATH", str(fake))
    with pytest.raises(DeviceNotFoundError, match=r"127\.0\.0\.1:5037: nothing listens there\. .*'adb start-server'"):
        open_driver("adb")
    assert calls.read_text(encoding="utf-8").splitlines() == ["-P 5037 start-server"]
