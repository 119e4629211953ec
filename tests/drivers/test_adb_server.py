"""The simulated adb server: protocol fidelity (adbutils and Debian's adb CLI), shell parsing, robustness."""

from __future__ import annotations

import io
import socket
import struct
import subprocess
import time

import adbutils
import pytest
from adb_clients import ADB, needs_adb_cli
from PIL import Image

from vlagent.drivers.sim.adb_server import SimAdbServer, split_shell
from vlagent.drivers.sim.world import SimPhone


def _request(sock: socket.socket, text: str) -> None:
    data = text.encode()
    sock.sendall(f"{len(data):04x}".encode() + data)


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _recv_n(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n and (chunk := sock.recv(n - len(data))):
        data += chunk
    return data


def _connect(server: SimAdbServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    return sock


def _version_works(server: SimAdbServer) -> bool:
    return adbutils.AdbClient(port=server.port).server_version() == 41


# --- the shell ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "ran"),
    [
        ("echo 'a;b' \"c && d\"", [["echo", "a;b", "c && d"]]),
        ("echo a;reboot", [["echo", "a"], ["reboot"]]),
        ("echo a && true || rm x", [["echo", "a"], ["true"]]),
        ("echo a && id || rm x", [["echo", "a"], ["id"], ["rm", "x"]]),  # id is not found: 127
        ("false && reboot; echo $?", [["false"], ["echo", "1"]]),
        ("false || echo x", [["false"], ["echo", "x"]]),
        ("echo $(id) `whoami`", [["id"], ["whoami"], ["echo"]]),
        ("echo '$(id)' \"\\$(id)\" \\`id\\`", [["echo", "$(id)", "$(id)", "`id`"]]),
        ("echo a | cat\necho b", [["echo", "a"], ["cat"], ["echo", "b"]]),
        ("echo 'it'\"'\"'s' ''", [["echo", "it's", ""]]),
        ('echo "unterminated', []),
        ("echo x # a comment; reboot", [["echo", "x"]]),
    ],
)
def test_shell_lines_run_like_sh(adb_sim: SimAdbServer, line: str, ran: list[list[str]]) -> None:
    device = adb_sim["sim-0"]
    device.run_line(line)
    assert device.log == ran


def test_unknown_programs_fail_with_127(adb_sim: SimAdbServer) -> None:
    result = adb_sim["sim-0"].run_line("reboot; echo $?")
    assert result.stdout == b"127\n"
    assert b"reboot: inaccessible or not found" in result.stderr


def test_split_shell_shows_structure_without_running() -> None:
    assert split_shell("input text 'a b'; echo $(id)") == [["input", "text", "a b"], ["echo", "$cmd"]]


# --- adbutils -----------------------------------------------------------------------------------------


def test_adbutils_sees_devices_and_runs_shell(adb_sims: SimAdbServer) -> None:
    client = adbutils.AdbClient(port=adb_sims.port)
    assert client.server_version() == 41
    infos = client.list(extended=True)
    assert [(i.serial, i.state, i.tags["transport_id"]) for i in infos] == [
        ("sim-0", "device", "1"),
        ("sim-1", "device", "2"),
    ]
    device = client.device("sim-1")
    assert device.shell(["getprop", "ro.product.model"]) == "SimPhone"
    result = device.shell2("echo hi; false")
    assert (result.output, result.returncode) == ("hi\n", 1)
    v2 = device.shell2("echo out; echo $?", v2=True)
    assert (v2.stdout, v2.returncode) == ("out\n0\n", 0)
    assert device.get_state() == "device"
    assert device.get_features().startswith("shell_v2")
    assert adb_sims["sim-0"].log == []


def test_transport_id_selection(adb_sims: SimAdbServer) -> None:
    device = adbutils.AdbClient(port=adb_sims.port).device(transport_id=2)
    device.shell(["input", "keyevent", "187"])
    assert adb_sims["sim-1"].phone.screen == "recents"
    assert adb_sims["sim-0"].phone.screen == "home"


def test_adbutils_png_screenshot(adb_sim: SimAdbServer) -> None:
    image = adbutils.AdbClient(port=adb_sim.port).device("sim-0").screenshot(error_ok=False)
    assert image.size == (1080, 2400)


# --- robustness -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        b"\x00\xff\x10garbage",
        b"zzzzhost:version",
        b"0000",
        b"ffffhost:ver",  # promises more than it sends, then closes
        b"0004\xff\xfe\xfd\xfc",
        b"000chost:unknown",
        b"0012host:transport:no",
        b"000c",
        b"00",
    ],
)
def test_malformed_requests_do_not_kill_the_server(adb_sim: SimAdbServer, payload: bytes) -> None:
    with _connect(adb_sim) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        reply = _read_all(sock)
    assert reply == b"" or reply.startswith(b"FAIL")
    assert _version_works(adb_sim)


def test_bad_requests_fail_with_a_message(adb_sim: SimAdbServer) -> None:
    for request, message in (("host:transport:nope", b"device 'nope' not found"), ("host:frobnicate", b"unknown host")):
        with _connect(adb_sim) as sock:
            _request(sock, request)
            reply = _read_all(sock)
        assert reply.startswith(b"FAIL") and message in reply


def test_client_closing_mid_screenshot_leaves_server_usable(adb_sim: SimAdbServer) -> None:
    for _ in range(3):
        with _connect(adb_sim) as sock:
            _request(sock, "host:transport:sim-0")
            assert _recv_n(sock, 4) == b"OKAY"
            _request(sock, "exec:screencap")
            assert _recv_n(sock, 4) == b"OKAY"
            sock.recv(1000)  # read a little of the 10 MB, then hang up
    with _connect(adb_sim) as sock:
        sock.sendall(b"0012host:transport:")  # half a request, then close
    time.sleep(0.05)
    assert _version_works(adb_sim)
    with _connect(adb_sim) as sock:
        _request(sock, "host:tport:serial:sim-0")
        assert _recv_n(sock, 12) == b"OKAY" + struct.pack("<Q", 1)
        _request(sock, "exec:screencap")
        raw = _read_all(sock)[4:]
    assert struct.unpack_from("<III", raw) == (1080, 2400, 1)
    assert len(raw) == 16 + 1080 * 2400 * 4


def test_many_concurrent_clients(adb_sims: SimAdbServer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    client = adbutils.AdbClient(port=adb_sims.port)

    def work(i: int) -> str:
        return client.device(f"sim-{i % 2}").shell(["echo", str(i)])

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(work, range(40))) == [str(i) for i in range(40)]


def test_stop_cuts_open_connections(adb_sim: SimAdbServer) -> None:
    sock = _connect(adb_sim)
    _request(sock, "host:track-devices")
    assert _recv_n(sock, 4) == b"OKAY"
    adb_sim.stop()
    sock.settimeout(2)
    assert _read_all(sock).endswith(b"sim-0\tdevice\n")  # then EOF: the phone is gone
    sock.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", adb_sim.port), timeout=1).close()


def test_host_kill_stops_the_server(adb_sim: SimAdbServer) -> None:
    adbutils.AdbClient(port=adb_sim.port).server_kill()
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", adb_sim.port), timeout=0.2).close()
        except OSError:
            return
        time.sleep(0.05)
    pytest.fail("server still listening after host:kill")


def test_serials_must_be_unique() -> None:
    with pytest.raises(ValueError, match="unique"):
        SimAdbServer([SimPhone(serial="a"), SimPhone(serial="a")])


# --- Debian's adb command-line client ---------------------------------------------------------------------


def _adb(server: SimAdbServer, *args: str) -> subprocess.CompletedProcess[bytes]:
    assert ADB is not None
    return subprocess.run([ADB, "-P", str(server.port), *args], capture_output=True, timeout=20, check=False)


@needs_adb_cli
def test_adb_cli_lists_devices(adb_sims: SimAdbServer) -> None:
    result = _adb(adb_sims, "devices")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().splitlines()[1:3] == ["sim-0\tdevice", "sim-1\tdevice"]
    long = _adb(adb_sims, "devices", "-l").stdout.decode()
    assert "model:SimPhone" in long and "transport_id:2" in long


@needs_adb_cli
def test_adb_cli_shell_drives_the_phone(adb_sims: SimAdbServer) -> None:
    phone = adb_sims["sim-1"].phone
    x, y = phone.locate("Settings") or (0, 0)
    result = _adb(adb_sims, "-s", "sim-1", "shell", "input", "tap", str(x), str(y))
    assert result.returncode == 0, result.stderr
    assert phone.screen == "settings"
    assert adb_sims["sim-1"].log == [["input", "tap", str(x), str(y)]]
    assert adb_sims["sim-0"].log == []
    failing = _adb(adb_sims, "-s", "sim-0", "shell", "input", "tap", "nowhere", "1")
    assert failing.returncode == 1  # shell v2 carries the exit status
    assert b"Invalid arguments" in failing.stderr + failing.stdout
    assert _adb(adb_sims, "shell", "echo", "x").returncode != 0  # two devices, no -s


@needs_adb_cli
def test_adb_cli_exec_out_screencap(adb_sim: SimAdbServer) -> None:
    result = _adb(adb_sim, "-s", "sim-0", "exec-out", "screencap", "-p")
    assert result.returncode == 0, result.stderr
    with Image.open(io.BytesIO(result.stdout)) as image:
        assert image.size == (1080, 2400)
    state = _adb(adb_sim, "-s", "sim-0", "get-state")
    assert state.stdout.strip() == b"device"


# --- host services beyond the shell ----------------------------------------------------------------------


def test_wait_for_answers_when_true_and_holds_otherwise(adb_sim: SimAdbServer) -> None:
    client = adbutils.AdbClient(port=adb_sim.port)
    client.wait_for(transport="usb", state="device", timeout=1)
    client.wait_for("127.0.0.1:1234", state="disconnect", timeout=1)  # not connected: already true
    client.wait_for("sim-0", state="device", timeout=1)
    with pytest.raises(adbutils.AdbTimeout):
        client.wait_for(transport="usb", state="disconnect", timeout=0.3)
    with pytest.raises(adbutils.AdbTimeout):
        client.wait_for("sim-9", state="device", timeout=0.3)
    assert _version_works(adb_sim)


def test_forward_errors_and_kill_all(adb_sim: SimAdbServer) -> None:
    device = adbutils.AdbClient(port=adb_sim.port).device("sim-0")
    with pytest.raises(adbutils.AdbError, match="not found"):
        device.forward_remove("tcp:1")
    with pytest.raises(adbutils.AdbError, match="only tcp"):
        device.forward("localabstract:x", "tcp:1")
    device.forward_port(9000)
    device.forward_port(9001)
    assert len(device.forward_list()) == 2
    device.forward_remove_all()
    assert device.forward_list() == []


def test_sync_refusals_keep_the_server_up(adb_sim: SimAdbServer) -> None:
    device = adbutils.AdbClient(port=adb_sim.port).device("sim-0")
    with pytest.raises(adbutils.AdbError):  # adbutils shows only "FAIL"; the adb CLI prints the message
        device.sync.push(b"x", "/system/x")
    with pytest.raises(adbutils.AdbError, match="Is a directory"):
        device.sync.read_bytes("/sdcard")
    with _connect(adb_sim) as sock:
        _request(sock, "host:transport:sim-0")
        assert _recv_n(sock, 4) == b"OKAY"
        _request(sock, "sync:")
        assert _recv_n(sock, 4) == b"OKAY"
        sock.sendall(b"SEND" + struct.pack("<I", 2000) + b"x")  # promises a path longer than allowed
        sock.shutdown(socket.SHUT_WR)
        _read_all(sock)
    with _connect(adb_sim) as sock:
        _request(sock, "host:transport:sim-0")
        _recv_n(sock, 4)
        _request(sock, "sync:")
        _recv_n(sock, 4)
        sock.sendall(b"ZZZZ" + struct.pack("<I", 1) + b"/")
        assert _read_all(sock).startswith(b"FAIL")
    assert device.shell("echo alive") == "alive"


def test_a_full_phone_says_no_space_left_and_recovers_when_files_go(adb_sim: SimAdbServer) -> None:
    files = adb_sim.devices["sim-0"].files
    files.capacity = files.used + 10_000
    device = adbutils.AdbClient(port=adb_sim.port).device("sim-0")
    device.sync.push(b"a" * 6_000, "/sdcard/first.bin")
    with pytest.raises(adbutils.AdbError):  # 6,000 more bytes do not fit
        device.sync.push(b"b" * 6_000, "/sdcard/second.bin")
    assert device.shell2("echo hi > /sdcard/small.txt").returncode == 0  # small writes still fit
    assert not device.sync.exists("/sdcard/second.bin")
    append = device.shell2("cat /sdcard/first.bin >> /sdcard/first.bin")
    assert append.returncode != 0 and "No space left on device" in append.output
    device.shell("rm /sdcard/first.bin")
    device.sync.push(b"b" * 6_000, "/sdcard/second.bin")  # room again
    assert device.sync.read_bytes("/sdcard/second.bin") == b"b" * 6_000
    assert files.used <= files.capacity


def test_too_many_files_is_no_space_left_too() -> None:
    from vlagent.drivers.sim.files import FsError, SimFiles

    files = SimFiles(max_entries=20)
    with pytest.raises(FsError, match="No space left on device"):
        for i in range(30):
            files.write(f"/sdcard/f{i}", b"")
    with pytest.raises(FsError, match="No space left on device"):
        files.mkdir("/sdcard/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p", parents=True)
    assert not files.exists("/sdcard/a")  # nothing half made
    files.remove("/sdcard/f0")
    files.write("/sdcard/again", b"")


@needs_adb_cli
def test_adb_cli_forward_and_reverse(adb_sim: SimAdbServer) -> None:
    port = _adb(adb_sim, "forward", "tcp:0", "tcp:7912").stdout.decode().strip()
    assert port.isdigit()
    assert _adb(adb_sim, "forward", "--list").stdout.decode().splitlines()[0] == f"sim-0 tcp:{port} tcp:7912"
    assert _adb(adb_sim, "forward", "--remove", f"tcp:{port}").returncode == 0
    missing = _adb(adb_sim, "forward", "--remove", f"tcp:{port}")
    assert missing.returncode == 1 and b"not found" in missing.stderr
    assert _adb(adb_sim, "reverse", "tcp:5000", "tcp:6000").returncode == 0
    assert b" tcp:5000 tcp:6000" in _adb(adb_sim, "reverse", "--list").stdout
