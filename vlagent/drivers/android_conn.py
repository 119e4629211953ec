"""How the adb driver reaches its adb server: within the time left to a call, and never by starting a
server where the user named one.

adbutils' own connection waits up to 3 s to connect and, when nothing answers, runs ``adb start-server``
(up to 20 s more) with the port of the environment rather than the one it was asked for: a stray adb
server left behind on a port the user chose, and a dead server reported only after 23 s. Here a
connection is one ``connect`` bounded by the time left to the call (:class:`ServerLink`); an adb server
is started only where nobody named one (the default 127.0.0.1:5037, as the ``adb`` command does), at
most once per driver, within the time left. Where the user named the server (the ``host``/``port``
options, ``ANDROID_ADB_SERVER_HOST`` / ``ANDROID_ADB_SERVER_PORT``) and nothing listens there, the
error says so.

What this module must not do: import adbutils at import time, or start an adb server on a host or port
the user named.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from adbutils import AdbClient

__all__ = ["DEFAULT_PORT", "AdbServer", "NothingListens", "ServerLink"]

log = logging.getLogger(__name__)

DEFAULT_PORT = 5037
#: Longest wait for ``adb start-server`` (a cold start takes 1-3 s; adbutils allows 20).
START_SERVER_S = 10.0


class NothingListens(ConnectionRefusedError):
    """Nothing accepts connections where the adb server should be (no server runs there)."""


@dataclass(frozen=True)
class AdbServer:
    """Where the adb server is, and whether the user named it (then vlagent never starts one there)."""

    host: str
    port: int
    named: bool

    @classmethod
    def resolve(cls, host: str | None, port: int | None) -> AdbServer:
        """The server of the ``host``/``port`` options, else of ``ANDROID_ADB_SERVER_HOST`` /
        ``ANDROID_ADB_SERVER_PORT``, else 127.0.0.1:5037 (as adbutils and the adb command)."""
        env_host = os.environ.get("ANDROID_ADB_SERVER_HOST")
        env_port = os.environ.get("ANDROID_ADB_SERVER_PORT")
        named = bool(host or port or env_host or env_port)
        return cls(host or env_host or "127.0.0.1", port or int(env_port or DEFAULT_PORT), named)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    def how_to_start(self) -> str:
        """The command that starts a server here, for messages."""
        return (
            "adb start-server" if self.port == DEFAULT_PORT else f"ANDROID_ADB_SERVER_PORT={self.port} adb start-server"
        )


class ServerLink:
    """Connections to one adb server, each bounded by ``timeout`` and by the time left to the current
    call (``time_left``: seconds, None when no call is under way).

    ``client()`` is an adbutils ``AdbClient`` whose connections come from here, so that adbutils'
    own calls (``list``, ``server_version``) neither wait longer than the call may nor start a server.
    """

    def __init__(self, server: AdbServer, *, timeout: float, time_left: Callable[[], float | None]) -> None:
        self.server = server
        self.timeout = timeout
        self._time_left = time_left
        self._start_tried = False

    def cap(self, timeout: float) -> float:
        """``timeout`` cut to the time left to the call; TimeoutError when none is left."""
        left = self._time_left()
        if left is None:
            return timeout
        if left <= 0:
            raise TimeoutError("the call's deadline has passed")
        return min(timeout, left)

    def connect(self, timeout: float | None = None) -> socket.socket:
        """A socket connected to the server (its timeout set); NothingListens when no server runs there
        and none may be started, TimeoutError or OSError otherwise."""
        try:
            return self._connect(timeout)
        except NothingListens:
            if self.server.named or self._start_tried:
                raise
            self._start_tried = True
            self._start_server()
            return self._connect(timeout)

    def check(self) -> None:
        """Connect once and hang up: NothingListens when no server runs there (after starting the
        default server once, where allowed)."""
        self.connect().close()

    def client(self) -> AdbClient:
        client_class = _client_class()
        client: AdbClient = client_class(self)
        return client

    def _connect(self, timeout: float | None) -> socket.socket:
        wait = self.cap(timeout or self.timeout)
        try:
            sock = socket.create_connection((self.server.host, self.server.port), timeout=wait)
        except ConnectionRefusedError as exc:
            raise NothingListens(f"nothing listens at {self.server} (connection refused)") from exc
        except TimeoutError as exc:
            raise TimeoutError(f"connecting to the adb server at {self.server} took over {wait:.1f} s") from exc
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.settimeout(wait)
        return sock

    def _start_server(self) -> None:
        """``adb start-server`` on the default port, as the adb command does when no server runs."""
        from adbutils import adb_path
        from adbutils.errors import AdbError

        try:
            exe = adb_path()
        except AdbError as exc:
            log.info("no adb server at %s and no adb program to start one: %s", self.server, exc)
            return
        wait = self.cap(START_SERVER_S)
        log.warning("no adb server at %s: starting one (%s start-server), as the adb command does", self.server, exe)
        started = time.monotonic()
        try:
            done = subprocess.run(
                [exe, "-P", str(self.server.port), "start-server"],
                capture_output=True,
                timeout=wait,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("'adb start-server' failed: %s", exc)
            return
        if done.returncode != 0:
            text = " ".join((done.stderr or done.stdout).decode("utf-8", "replace").split())[:200]
            log.warning("'adb start-server' exited with %d: %s", done.returncode, text)
        else:
            log.info("adb server started at %s in %.1f s", self.server, time.monotonic() - started)


@functools.cache
def _client_class() -> type[Any]:
    """adbutils' AdbClient and AdbConnection, connecting through a ServerLink (built on first use:
    adbutils is imported only when an adb device is opened)."""
    import adbutils

    class _Connection(adbutils.AdbConnection):  # type: ignore[misc]
        def __init__(self, link: ServerLink, timeout: float | None) -> None:
            self._link = link
            self._timeout = timeout
            super().__init__(link.server.host, link.server.port)

        def _safe_connect(self) -> socket.socket:  # adbutils' hook: here it never starts a server
            return self._link.connect(self._timeout)

    class _Client(adbutils.AdbClient):  # type: ignore[misc]
        def __init__(self, link: ServerLink) -> None:
            super().__init__(host=link.server.host, port=link.server.port, socket_timeout=link.timeout)
            self._link = link

        def make_connection(self, timeout: float | None = None) -> adbutils.AdbConnection:
            return _Connection(self._link, timeout)

    return _Client
