"""The simulated phone's shell and files: pipes, redirections, exit codes, the sync service, forwards, input loss."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import time
from pathlib import Path

import adbutils
import pytest
from adb_clients import ADB, adb, adbutils_device, focus_note_field, needs_adb_cli

from vlagent.drivers.sim.adb_server import SimAdbServer, serve_sim
from vlagent.drivers.sim.world import SimPhone


@pytest.mark.parametrize(
    ("line", "output", "status"),
    [
        ("pm list packages | grep -c notes", "1\n", 0),
        ("pm list packages | grep -i NOTES", "package:com.vlagent.notes\n", 0),
        ("pm list packages | grep -q nothing-like-this", "", 1),
        ("pm list packages -3 | grep -v notes", "package:com.android.adbkeyboard\n", 0),
        ("pm list packages -3 | grep -E 'notes|keyboard' | wc -l", "2\n", 0),
        ("echo a; exit 3; echo b", "a\n", 3),
        ("false || exit 7", "", 7),
        ("true && echo $?", "0\n", 0),
        ("echo $(exit 4; echo no) $?", "0\n", 0),
        ("cat /sdcard/missing 2>&1 | wc -l", "1\n", 0),
        ("echo out; cat /sdcard/missing 2>/dev/null; echo $?", "out\n1\n", 0),
        ("echo err >&2", "", 0),
        ('echo "$EXTERNAL_STORAGE" ${TMPDIR} $UNSET.', "/sdcard /data/local/tmp .\n", 0),
    ],
)
def test_pipes_and_exit_codes(adb_sim: SimAdbServer, line: str, output: str, status: int) -> None:
    result = adb_sim["sim-0"].run_line(line)
    assert (result.stdout.decode(), result.status) == (output, status)


def test_exit_codes_reach_adbutils_and_the_adb_cli(adb_sim: SimAdbServer) -> None:
    device = adbutils_device(adb_sim)
    assert device.shell2("exit 5", v2=True).returncode == 5  # v1 would lose adbutils' X4EXIT marker, as on a phone
    assert device.shell2("no-such-program", v2=True).returncode == 127
    assert device.shell2("screenrecord /sdcard/a.mp4", v2=True).returncode != 0  # not simulated: fails, never silent
    if ADB is not None:
        assert adb(adb_sim, "shell", "exit 9").returncode == 9


def test_sleep_waits_without_holding_up_the_phone(adb_sim: SimAdbServer) -> None:
    device = adbutils_device(adb_sim)
    start = time.monotonic()
    with pytest.raises(adbutils.AdbTimeout):
        device.shell("sleep 3", timeout=0.5)
    assert device.shell("echo meanwhile") == "meanwhile"  # another connection is answered at once
    assert time.monotonic() - start < 2
    assert device.shell2("sleep 0.2; echo done").output == "done\n"


def test_redirections_write_into_the_phone_files(adb_sim: SimAdbServer) -> None:
    sim = adb_sim["sim-0"]
    run = sim.run_line
    assert run("mkdir -p /sdcard/a/b && echo one > /sdcard/a/b/f.txt && echo two >> /sdcard/a/b/f.txt").status == 0
    assert sim.files.read("/sdcard/a/b/f.txt") == b"one\ntwo\n"
    assert run("cat < /sdcard/a/b/f.txt | grep tw").stdout == b"two\n"
    assert run("ls /sdcard/a/b").stdout == b"f.txt\n"
    assert run("cat /storage/emulated/0/a/b/f.txt").stdout == b"one\ntwo\n"  # the same directory
    denied = run("echo x > /system/x")
    assert denied.status == 1 and b"Read-only file system" in denied.stderr
    assert run("rm /sdcard/a").status == 1  # a directory needs -r
    assert run("rm -r /sdcard/a; ls /sdcard/a").stderr == b"ls: /sdcard/a: No such file or directory\n"
    assert run("rm -f /sdcard/never").status == 0


def test_adbutils_sync_push_pull_list_stat(adb_sim: SimAdbServer, tmp_path: Path) -> None:
    device = adbutils_device(adb_sim)
    device.sync.push(io.BytesIO(b"hello"), "/data/local/tmp/Hi-世界.txt")
    assert device.sync.read_bytes("/data/local/tmp/Hi-世界.txt") == b"hello"
    assert device.shell("cat /data/local/tmp/Hi-世界.txt") == "hello"
    assert [f.path for f in device.sync.list("/data/local/tmp")] == ["Hi-世界.txt"]
    info = device.sync.stat("/data/local/tmp/Hi-世界.txt")
    assert info.size == 5 and info.mtime is not None
    assert not device.sync.exists("/data/local/tmp/none")
    with pytest.raises(adbutils.AdbError, match="No such file or directory"):
        device.sync.read_bytes("/data/local/tmp/none")
    local = tmp_path / "pulled.txt"
    device.sync.pull("/data/local/tmp/Hi-世界.txt", local)
    assert local.read_bytes() == b"hello"


@needs_adb_cli
def test_adb_cli_push_and_pull_a_directory(adb_sim: SimAdbServer, tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "sub" / "empty").mkdir(parents=True)
    (source / "a.txt").write_text("a\n")
    (source / "sub" / "b.bin").write_bytes(bytes(range(256)) * 600)  # more than one 64 KiB chunk
    pushed = adb(adb_sim, "push", str(source), "/sdcard/dir")
    assert pushed.returncode == 0, pushed.stderr
    files = adb_sim["sim-0"].files
    assert files.read("/sdcard/dir/sub/b.bin") == bytes(range(256)) * 600
    pulled = adb(adb_sim, "pull", "/sdcard/dir", str(tmp_path / "back"))
    assert pulled.returncode == 0, pulled.stderr
    assert (tmp_path / "back" / "a.txt").read_text() == "a\n"
    assert (tmp_path / "back" / "sub" / "b.bin").read_bytes() == bytes(range(256)) * 600
    assert adb(adb_sim, "pull", "/sdcard/none", str(tmp_path / "x")).returncode != 0


def test_forward_listens_and_lists(adb_sim: SimAdbServer) -> None:
    device = adbutils_device(adb_sim)
    port = device.forward_port(7912)
    assert [(f.serial, f.local, f.remote) for f in device.forward_list()] == [("sim-0", f"tcp:{port}", "tcp:7912")]
    with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
        assert conn.recv(10) == b""  # nothing listens on the phone's port: closed at once
    device.forward_remove(f"tcp:{port}")
    assert device.forward_list() == []
    device.reverse("tcp:12345", "tcp:4000")
    assert [(r.remote, r.local) for r in device.reverse_list()] == [("tcp:12345", "tcp:4000")]
    device.reverse_remove_all()
    assert device.reverse_list() == []


def test_framebuffer_service(adb_sim: SimAdbServer) -> None:
    image = adbutils_device(adb_sim).framebuffer()
    assert image.size == (1080, 2400) and image.mode == "RGBA"


def test_drop_typed_loses_every_nth_character(no_real_adb: None) -> None:
    with serve_sim([SimPhone(drop_typed=3)]) as server:
        phone = server["sim-0"].phone
        focus_note_field(phone)
        adbutils_device(server).shell(["input", "text", "abcdefg"])
        assert phone.fields["note_text"] == "abdeg"
        assert "typing lost 2 of 7 characters" in phone.events


def test_lose_next_input_is_one_shot(adb_sim: SimAdbServer) -> None:
    phone = adb_sim["sim-0"].phone
    focus_note_field(phone)
    phone.lose_next_input(2)
    adbutils_device(adb_sim).shell(["input", "text", "hello"])
    adbutils_device(adb_sim).shell(["input", "text", "!"])
    assert phone.fields["note_text"] == "llo!"
    assert SimPhone().drop_typed == 0  # default: nothing is lost


def test_sim_serve_drop_typed_flag(no_real_adb: None) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = "from vlagent.cli import main; main()"
    server = subprocess.Popen(
        [sys.executable, "-c", code, "sim", "serve", "--port", str(port), "--drop-typed", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        client = adbutils.AdbClient(port=port)
        deadline = time.monotonic() + 20
        while True:
            try:
                device = client.device("sim-0")
                device.shell("echo ready")
                break
            except adbutils.AdbError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        device.shell("monkey -p com.vlagent.notes -c android.intent.category.LAUNCHER 1")
        for label in ("New note", "Note text"):
            node = next(n for n in _dump(device) if n.text == label or n.content_desc == label)
            device.click(*node.center)
        device.shell(["input", "text", "abcd"])
        field = next(n for n in _dump(device) if n.focused)
        assert field.text == "ac"
    finally:
        server.terminate()
        server.wait(timeout=10)


def _dump(device: adbutils.AdbDevice) -> list:  # type: ignore[type-arg]
    from vlagent.tasks.uitree import parse_hierarchy

    return list(parse_hierarchy(device.shell("uiautomator dump /dev/tty")).nodes)


def test_log_and_logcat_dump(adb_sim: SimAdbServer) -> None:
    device = adbutils_device(adb_sim)
    device.shell(["log", "-p", "w", "-t", "MyApp", "careful"])
    device.shell(["log", "-t", "Other", "hello there"])
    assert device.shell("logcat -d -v tag") == "W/MyApp: careful\nI/Other: hello there"
    assert device.shell("logcat -d -v brief -s MyApp") == "W/MyApp( 4321): careful"
    assert device.shell("logcat -d -v raw MyApp:E *:W") == ""
    assert device.shell("logcat -d -v raw '*:W'") == "careful"
    threadtime = device.shell("logcat -d -t 1")
    assert threadtime.endswith(" 4321  4321 I Other   : hello there")
    device.shell("logcat -c")
    assert device.shell("logcat -d") == ""
    assert device.shell2("logcat -v nonsense -d").returncode != 0


def test_adbutils_follows_logcat_until_stopped(adb_sim: SimAdbServer, tmp_path: Path) -> None:
    device = adbutils_device(adb_sim)
    out = tmp_path / "logcat.txt"
    reader = device.logcat(out, clear=True, command="logcat -v time", re_filter="I/TAG")
    device.shell(["log", "-p", "i", "-t", "TAG", "hello"])
    time.sleep(0.1)
    reader.stop(timeout=5)  # the sim's log keeps moving (once a second), so the reader sees the stop
    assert "I/TAG( 4321): hello" in out.read_text()
