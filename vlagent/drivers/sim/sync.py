"""The adb ``sync:`` service of a simulated phone: what ``adb push``/``pull`` and adbutils' ``sync`` speak.

Requests are an id and a little-endian length, then a path (AOSP ``file_sync_protocol.h``):
``STAT``/``LSTA`` (v1: mode, size, mtime; all zero when missing), ``STA2``/``LST2`` (v2: errno,
dev, ino, mode, nlink, uid, gid, size, atime, mtime, ctime), ``LIST``/``LIS2`` (one ``DENT``/
``DNT2`` per entry, then ``DONE``), ``RECV`` (``DATA`` chunks of at most 64 KiB, then ``DONE``, or
``FAIL`` with a message), ``SEND`` (``path,mode``, then ``DATA`` chunks and ``DONE`` with the
mtime; missing parent directories are created, as adbd does), ``QUIT``. Files live in the
device's :class:`~vlagent.drivers.sim.files.SimFiles`. This module must not touch host files.
"""

from __future__ import annotations

import errno
import socket
import struct
from typing import TYPE_CHECKING

from vlagent.drivers.sim.files import FileEntry, FsError

if TYPE_CHECKING:
    from vlagent.drivers.sim.device import SimDevice

__all__ = ["SyncProtocolError", "serve_sync"]

_MAX_DATA = 64 * 1024
_MAX_PATH = 1024
_MAX_FILE = 256 * 1024 * 1024


class SyncProtocolError(Exception):
    """The client broke the sync protocol: the connection is closed."""


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buffer = bytearray()
    while len(buffer) < n:
        chunk = sock.recv(min(n - len(buffer), 1 << 20))
        if not chunk:
            raise SyncProtocolError("connection closed inside a sync request")
        buffer += chunk
    return bytes(buffer)


def _fail(sock: socket.socket, message: str) -> None:
    data = message.encode("utf-8", "surrogateescape")  # paths that were not UTF-8 go back as they came
    sock.sendall(b"FAIL" + struct.pack("<I", len(data)) + data)


def _stat_v2(entry: FileEntry | None, code: int = 0) -> bytes:
    if entry is None:
        return struct.pack("<IQQIIIIQqqq", code, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    nlink = 2 if entry.is_dir else 1
    return struct.pack(
        "<IQQIIIIQqqq", 0, 0xFD00, abs(hash(entry.name)) % (1 << 31), entry.mode, nlink, 2000, 2000,
        entry.size, entry.mtime, entry.mtime, entry.mtime,
    )  # fmt: skip


def serve_sync(sock: socket.socket, dev: SimDevice) -> None:
    """Answer sync requests on ``sock`` until ``QUIT`` or the client hangs up."""
    while True:
        try:
            head = sock.recv(8)
        except OSError:
            return
        if not head:
            return
        if len(head) < 8:
            head += _recv_exact(sock, 8 - len(head))
        request, length = head[:4], struct.unpack("<I", head[4:])[0]
        if request == b"QUIT":
            return
        if length > _MAX_PATH:
            raise SyncProtocolError(f"sync path too long ({length} bytes)")
        path = _recv_exact(sock, length).decode("utf-8", "surrogateescape")
        handler = _HANDLERS.get(request)
        if handler is None:
            _fail(sock, f"unknown sync command {request!r}")
            return
        handler(sock, dev, path)


def _stat(sock: socket.socket, dev: SimDevice, path: str) -> None:
    try:
        entry = dev.files.stat(path)
        sock.sendall(b"STAT" + struct.pack("<III", entry.mode, entry.size, entry.mtime))
    except FsError:
        sock.sendall(b"STAT" + struct.pack("<III", 0, 0, 0))


def _stat2(sock: socket.socket, dev: SimDevice, path: str, reply: bytes) -> None:
    try:
        sock.sendall(reply + _stat_v2(dev.files.stat(path)))
    except FsError as exc:
        sock.sendall(reply + _stat_v2(None, exc.errno))


def _list(sock: socket.socket, dev: SimDevice, path: str) -> None:
    try:
        entries = dev.files.list(path)
    except FsError:
        entries = []  # adbd sends an empty listing for what it cannot open
    for entry in entries:
        name = entry.name.encode("utf-8", "surrogateescape")
        sock.sendall(b"DENT" + struct.pack("<IIII", entry.mode, entry.size, entry.mtime, len(name)) + name)
    sock.sendall(b"DONE" + bytes(16))


def _list2(sock: socket.socket, dev: SimDevice, path: str) -> None:
    try:
        entries = dev.files.list(path)
    except FsError:
        entries = []
    for entry in entries:
        name = entry.name.encode("utf-8", "surrogateescape")
        sock.sendall(b"DNT2" + _stat_v2(entry) + struct.pack("<I", len(name)) + name)
    sock.sendall(b"DONE" + bytes(len(_stat_v2(None)) + 4))


def _recv(sock: socket.socket, dev: SimDevice, path: str) -> None:
    try:
        data = dev.files.read(path)
    except FsError as exc:
        _fail(sock, f"open failed: {exc.args[0].split(': ', 1)[-1]}" if exc.errno != errno.EISDIR else str(exc))
        return
    for start in range(0, len(data), _MAX_DATA):
        chunk = data[start : start + _MAX_DATA]
        sock.sendall(b"DATA" + struct.pack("<I", len(chunk)) + chunk)
    sock.sendall(b"DONE" + bytes(4))


def _send(sock: socket.socket, dev: SimDevice, spec: str) -> None:
    path, _, mode_text = spec.rpartition(",")
    if not path:
        path, mode_text = spec, "33188"
    try:
        mode = int(mode_text)
    except ValueError:
        mode = 0o100644
    data = bytearray()
    while True:
        request, length = struct.unpack("<4sI", _recv_exact(sock, 8))
        if request == b"DATA":
            if length > _MAX_DATA:
                raise SyncProtocolError(f"sync DATA chunk too large ({length} bytes)")
            data += _recv_exact(sock, length)
            if len(data) > _MAX_FILE:
                raise SyncProtocolError("file too large for the simulated phone")
        elif request == b"DONE":
            break
        else:
            raise SyncProtocolError(f"unexpected {request!r} while receiving a file")
    try:
        dev.files.write(path, bytes(data), mode=mode & 0o7777, mkdirs=True)
    except FsError as exc:
        _fail(sock, f"couldn't create file: {exc.args[0].split(': ', 1)[-1]}")
        return
    sock.sendall(b"OKAY" + bytes(4))


_HANDLERS = {
    b"STAT": _stat,
    b"LSTA": _stat,
    b"STA2": lambda sock, dev, path: _stat2(sock, dev, path, b"STA2"),
    b"LST2": lambda sock, dev, path: _stat2(sock, dev, path, b"LST2"),
    b"LIST": _list,
    b"LIS2": _list2,
    b"RECV": _recv,
    b"SEND": _send,
}
