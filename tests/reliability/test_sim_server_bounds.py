"""The simulated adb server stays bounded and standing under long runs, hostile input and bad settings.

A real server on a real loopback socket, driven by adbutils (and raw protocol bytes where a
client would never send them): the command log, the logcat ring and the phone's event list
keep a bounded number of bounded entries after thousands of long commands; deep command
substitution is one command's error; garbage on the wire closes that connection only, with
no traceback; ``serve_forever`` refuses impossible settings with a ConfigError.
"""

from __future__ import annotations

import logging
import math
import random
import socket
import struct
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import adbutils
import pytest

from vlagent.drivers.sim import device as device_module
from vlagent.drivers.sim.adb_server import SimAdbServer, serve_forever, serve_sim
from vlagent.drivers.sim.device import LOG_ENTRY_CHARS, LOG_SIZE
from vlagent.drivers.sim.forwards import MAX_FORWARDS, MAX_REVERSES
from vlagent.drivers.sim.logcat import BUFFER_BYTES, MAX_PAYLOAD
from vlagent.drivers.sim.shell import MAX_NESTING
from vlagent.drivers.sim.world import SimPhone
from vlagent.errors import ConfigError

SIM_LOGGERS = "vlagent.drivers.sim"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimAdbServer]:
    """One simulated phone, sim-0, on a free loopback port; adbutils may never start a real adb."""
    monkeypatch.setenv("ADBUTILS_ADB_PATH", "/bin/false")
    monkeypatch.delenv("ANDROID_SERIAL", raising=False)
    with serve_sim([SimPhone(serial="sim-0")], port=0) as served:
        yield served


def _device(server: SimAdbServer) -> adbutils.AdbDevice:
    return adbutils.AdbClient(port=server.port).device("sim-0")


def _request(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return f"{len(data):04x}".encode() + data


def _exchange(server: SimAdbServer, payload: bytes, *, half_close: bool = True) -> bytes:
    """Send raw bytes, then read what comes back until the server closes.

    Without ``half_close`` the server may rightly wait for the rest of a request: then whatever
    came within half a second.
    """
    chunks = []
    with socket.create_connection(("127.0.0.1", server.port), timeout=5 if half_close else 0.5) as sock:
        try:
            sock.sendall(payload)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:  # the server closed while bytes were unread: a fine answer to garbage
            pass
        except TimeoutError:
            if half_close:
                raise
    return b"".join(chunks)


def _entry_chars(argv: list[str]) -> int:
    return sum(map(len, argv))


# --- memory: what a long session accumulates -------------------------------------------------------------


def test_the_command_log_keeps_the_newest_commands_cut_to_size(server: SimAdbServer) -> None:
    dev = server["sim-0"]
    device = _device(server)
    filler = "x" * 2000

    def run(i: int) -> str:
        return device.shell(f"echo {i:05d} {filler}")

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(run, range(LOG_SIZE + 200)))
    assert answers[1034] == f"01034 {filler}"
    huge = "y" * 20_000
    assert device.shell(["echo", "last", huge]) == f"last {huge}"  # the phone ran all of it

    log, lines = dev.log, dev.lines
    assert len(log) == LOG_SIZE and len(lines) == LOG_SIZE  # not all 1,201
    assert all(len(entry) <= LOG_ENTRY_CHARS + 100 for entry in lines)
    assert max(_entry_chars(argv) for argv in log) <= LOG_ENTRY_CHARS + 100
    assert log[-1][:2] == ["echo", "last"]
    assert log[-1][2].startswith("y" * 1000) and log[-1][2].endswith(
        f"[{20_000 + 8 - LOG_ENTRY_CHARS} more characters]"
    )
    assert log[-2][0] == "echo" and log[-2][2] == filler  # 2 KB commands are kept whole
    dev.clear()
    assert dev.log == [] and dev.lines == []


def test_a_command_of_many_short_arguments_is_cut_too(server: SimAdbServer) -> None:
    dev = server["sim-0"]
    words = " ".join(["a"] * 20_000)  # 40 KB, 20,000 arguments: each costs an object, however short
    assert _device(server).shell(f"echo {words}") == words
    logged = dev.log[-1]
    assert len(logged) <= 300
    assert logged[-1].endswith("more arguments]")


def test_the_logcat_ring_and_the_event_list_stay_bounded(server: SimAdbServer) -> None:
    dev = server["sim-0"]
    device = _device(server)
    message = "m" * 3000

    def log_line(i: int) -> str:
        return device.shell(["log", "-t", "Bench", f"{i} {message}"])

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(log_line, range(200)))  # 600 KB written
    device.shell(["log", "-t", "Big", "z" * 10_000])
    assert dev.logcat.size <= BUFFER_BYTES
    assert 40 <= len(dev.logcat.entries) < 200
    newest = dev.logcat.entries[-1][1]
    assert newest.tag == "Big" and 3 + len("Big") + len(newest.message) == MAX_PAYLOAD  # cut as liblog cuts
    dumped = device.shell("logcat -d -v raw")
    assert len(dumped) <= BUFFER_BYTES and dumped.endswith("z" * 100)

    for _ in range(20):
        device.shell(["input", "text", "t" * 5000])  # no field has focus: each is an event
    events = list(dev.phone.events)
    assert len(events) <= 200 and max(map(len, events)) <= 600


# --- one command that the shell cannot run --------------------------------------------------------------


def test_deep_command_substitution_is_that_commands_error(
    server: SimAdbServer, caplog: pytest.LogCaptureFixture
) -> None:
    device = _device(server)
    deep = "echo " + "$(" * 900 + "x" + ")" * 900
    with caplog.at_level(logging.DEBUG, logger=SIM_LOGGERS):
        result = device.shell2(deep, v2=True, timeout=10)
    assert result.returncode == 2
    assert "/system/bin/sh: nesting too deep" in result.stderr
    assert "nesting too deep" in device.shell(deep, timeout=10)  # the v1 stream carries it too
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert device.shell("echo ok") == "ok"
    # As deep as allowed still runs, and what ran before the too-deep part stays printed.
    allowed = "echo " + "$(echo " * MAX_NESTING + "x" + ")" * MAX_NESTING
    assert device.shell(allowed) == "x"
    too_deep = device.shell2("echo before; " + allowed.replace("x", "$(echo x)"), v2=True)
    assert (too_deep.stdout, too_deep.returncode) == ("before\n", 2)


def test_a_failure_inside_the_shell_answers_that_command_only(
    server: SimAdbServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    device = _device(server)

    def broken(host: object, line: str) -> object:
        raise RuntimeError("simulated bug")

    with monkeypatch.context() as patch, caplog.at_level(logging.DEBUG, logger=SIM_LOGGERS):
        patch.setattr(device_module, "run_script", broken)
        result = device.shell2("echo hi", v2=True)
    assert result.returncode == 1 and "internal error" in result.stderr
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].exc_info is None and "simulated bug" in warnings[0].getMessage()
    assert any(r.levelno == logging.DEBUG and r.exc_info for r in caplog.records)  # the traceback, for debugging
    assert device.shell("echo ok") == "ok"


def test_a_failure_serving_a_connection_closes_it_only(
    server: SimAdbServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    def broken(self: object) -> bytes:
        raise RuntimeError("framebuffer bug")

    with monkeypatch.context() as patch, caplog.at_level(logging.DEBUG, logger=SIM_LOGGERS):
        patch.setattr(device_module.SimDevice, "framebuffer", broken)
        reply = _exchange(server, _request("host:transport:sim-0") + _request("framebuffer:"))
    assert reply == b"OKAY"  # the transport was chosen; then the connection closed
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and warnings[0].exc_info is None and "framebuffer bug" in warnings[0].getMessage()
    assert "Traceback" not in capfd.readouterr().err  # socketserver would print one to stderr
    assert _device(server).shell("echo ok") == "ok"


# --- bytes no client sends ------------------------------------------------------------------------------

_TRANSPORT = _request("host:transport:sim-0")
_SYNC = _TRANSPORT + _request("sync:")


_SEND_A = _SYNC + b"SEND" + struct.pack("<I", 13) + b"/sdcard/a,420"
#: name -> (bytes sent, then the write side closed; how the answer starts).
_GARBAGE: dict[str, tuple[bytes, bytes]] = {
    "length in 0x notation": (b"0x1fhost:version", b"FAIL"),  # int(..., 16) would read 0x1f as 31
    "length with sign and space": (b" +1fhost:version", b"FAIL"),
    "negative length": (b"-001", b"FAIL"),
    "length not hex": (b"zzzzhost:version", b"FAIL"),
    "empty request": (b"0000", b"FAIL"),
    "longest request, not UTF-8": (b"ffff" + b"\xfe" * 0xFFFF, b"FAIL"),  # read whole, then refused
    "longest request, unknown": (b"ffff" + b"host:" + b"A" * (0xFFFF - 5), b"FAIL"),
    "cut off in the length": (b"fff", b""),
    "cut off in the request": (b"0100host:", b""),
    "interactive shell": (_TRANSPORT + b"0005shell", b"OKAY"),
    "65 KB command line": (_TRANSPORT + _request("shell,v2:" + "echo " * 13_000), b"OKAY"),  # runs
    "sync path of 4 GB": (_SYNC + b"STAT" + struct.pack("<I", 0xFFFFFFFF), b"OKAYOKAY"),
    "sync path cut off": (_SYNC + b"SEND" + struct.pack("<I", 5) + b"/x,1", b"OKAYOKAY"),
    "sync request in host framing": (_SYNC + _request(b"SEND") + b"\x00" * 64, b"OKAYOKAY"),
    "sync DATA of 1 GB": (_SEND_A + b"DATA" + struct.pack("<I", 1 << 30), b"OKAYOKAY"),
    "sync SEND cut off in its data": (_SEND_A + b"DATA" + struct.pack("<I", 100) + b"abc", b"OKAYOKAY"),
    "sync junk inside SEND": (_SEND_A + b"JUNK" + bytes(8), b"OKAYOKAY"),
    "sync unknown request of 4 GB": (_SYNC + b"\xff" * 8 + b"/", b"OKAYOKAY"),
    "sync unknown request": (_SYNC + b"\xff" * 4 + struct.pack("<I", 1) + b"/", b"OKAYOKAYFAIL"),
    "sync RECV of a path not UTF-8": (_SYNC + b"RECV" + struct.pack("<I", 3) + b"\xff\xfe\xfd", b"OKAYOKAYFAIL"),
    "sync STAT of a path not UTF-8": (_SYNC + b"STA2" + struct.pack("<I", 3) + b"\xff\xfe\xfd", b"OKAYOKAYSTA2"),
    "sync LIST of a path not UTF-8": (_SYNC + b"LIS2" + struct.pack("<I", 3) + b"\xff\xfe\xfd", b"OKAYOKAYDONE"),
}


def test_settings_put_stops_at_androids_per_package_bound(server: SimAdbServer) -> None:
    """``system`` rows of one package: 20,000 bytes, as Android's SettingsState allows; then the
    phone's IllegalStateException, and a delete makes room again."""
    device = adbutils.AdbClient(port=server.port).device("sim-0")
    put = [device.shell2(f"settings put system vlagent_key_{i} {'v' * 900}") for i in range(30)]
    accepted = [r for r in put if r.returncode == 0]
    assert 15 <= len(accepted) < 30
    refused = put[len(accepted)]
    assert refused.returncode == 255 and "You are adding too many system settings" in refused.output
    assert device.shell("settings get system vlagent_key_0") == "v" * 900
    device.shell("settings delete system vlagent_key_0")
    assert device.shell2(f"settings put system vlagent_key_again {'v' * 900}").returncode == 0


def test_forwards_and_reverses_stop_at_their_bound_and_free_up(server: SimAdbServer) -> None:
    """Each forward is a listening socket: a loop of ``forward tcp:0`` gets adb's refusal at the
    bound instead of the host's file descriptors running out; removing forwards frees room."""
    device = adbutils.AdbClient(port=server.port).device("sim-0")
    ports = [device.forward_port(7000 + i) for i in range(MAX_FORWARDS)]
    assert len(set(ports)) == MAX_FORWARDS
    with pytest.raises(adbutils.AdbError):
        device.forward("tcp:0", "tcp:9999")
    device.forward(f"tcp:{ports[0]}", "tcp:1234")  # re-pointing an existing forward is still allowed
    device.forward_remove_all()
    assert device.forward_list() == []
    device.forward("tcp:0", "tcp:9999")
    for i in range(MAX_REVERSES):
        device.reverse(f"tcp:{20000 + i}", "tcp:80")
    with pytest.raises(adbutils.AdbError):
        device.reverse("tcp:30000", "tcp:80")
    device.reverse_remove_all()
    device.reverse("tcp:30000", "tcp:80")


@pytest.mark.parametrize("name", sorted(_GARBAGE))
def test_garbage_closes_one_connection_without_a_traceback(
    server: SimAdbServer,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    name: str,
) -> None:
    payload, reply = _GARBAGE[name]
    with caplog.at_level(logging.DEBUG, logger=SIM_LOGGERS):
        answer = _exchange(server, payload)
    assert answer.startswith(reply), answer[:100]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert "Traceback" not in capfd.readouterr().err
    assert _device(server).shell("echo ok") == "ok"


def test_random_bytes_on_many_connections_leave_the_server_serving(
    server: SimAdbServer, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(7)
    openings = [b"", _TRANSPORT, _SYNC, _TRANSPORT + _request("shell,v2:cat"), _request("host:tport:any")]
    sync_ids = [b"STAT", b"LSTA", b"STA2", b"LIST", b"LIS2", b"RECV", b"SEND", b"DATA", b"DONE", b"QUIT"]

    def one(_: int) -> None:
        body = rng.randbytes(rng.randrange(64))
        if rng.random() < 0.5:
            length = rng.choice([0, 1, 7, 1024, 1025, 0xFFFFFFFF])
            body = rng.choice(sync_ids) + struct.pack("<I", length) + body
        _exchange(server, rng.choice(openings) + body, half_close=rng.random() < 0.7)

    with caplog.at_level(logging.INFO, logger=SIM_LOGGERS), ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(300)))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert "Traceback" not in capfd.readouterr().err
    assert _device(server).shell("echo ok") == "ok"


# --- settings serve_forever (``vlagent sim serve``) refuses ----------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _refusal(port: int, serials: list[str], transition_delay: float = 0.0, drop_typed: int = 0) -> ConfigError:
    """The ConfigError serve_forever raises; fails the test (and stops the server) if it serves instead."""
    raised: list[BaseException] = []

    def target() -> None:
        try:
            serve_forever(port, serials, 0, transition_delay, drop_typed=drop_typed)
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(5)
    if thread.is_alive():
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(_request("host:kill"))
        thread.join(5)
        pytest.fail(f"serve_forever({port}, {serials}, 0, {transition_delay}) served instead of refusing")
    assert len(raised) == 1 and isinstance(raised[0], ConfigError), raised
    return raised[0]


@pytest.mark.parametrize("port", [0, -1, 65536, 10**9])
def test_serve_forever_refuses_a_port_out_of_range(port: int) -> None:
    assert str(port) in str(_refusal(port, ["sim-0"]))


def test_serve_forever_refuses_a_port_in_use() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        error = _refusal(port, ["sim-0"])
    assert f"port {port}" in str(error) and "in use" in str(error)
    assert isinstance(error.__cause__, OSError)


@pytest.mark.parametrize(
    ("serials", "needle"),
    [(["a", "b", "a"], "unique"), ([""], "non-empty"), (["sim 0"], "spaces"), (["sim-0\n"], "spaces")],
)
def test_serve_forever_refuses_bad_serials(serials: list[str], needle: str) -> None:
    assert needle in str(_refusal(_free_port(), serials))


@pytest.mark.parametrize("delay", [-1.0, math.nan, math.inf])
def test_serve_forever_refuses_a_bad_transition_delay(delay: float) -> None:
    assert "transition delay" in str(_refusal(_free_port(), ["sim-0"], transition_delay=delay))


def test_serve_forever_refuses_a_negative_drop_typed() -> None:
    assert "drop_typed" in str(_refusal(_free_port(), ["sim-0"], drop_typed=-2))


def test_the_server_class_refuses_the_same_mistakes() -> None:
    with pytest.raises(ConfigError, match="unique"):
        SimAdbServer([SimPhone(serial="a"), SimPhone(serial="a")])
    with pytest.raises(ValueError, match="non-empty"):  # also a ValueError, as SimAdbServer raised before
        SimAdbServer([SimPhone(serial="")])
    with pytest.raises(ConfigError, match="65536"):
        SimAdbServer([SimPhone()], port=65536)
    with pytest.raises(ConfigError, match="loopback"):
        SimAdbServer([SimPhone()], host="0.0.0.0")
    with serve_sim([SimPhone()], port=0) as first, pytest.raises(ConfigError, match=f"port {first.port}"):
        SimAdbServer([SimPhone()], port=first.port)
    with pytest.raises(ValueError, match="transition_delay"):
        SimPhone(transition_delay=math.nan)
