"""Port forwards of the simulated adb server: ``adb forward`` (host -> phone) and ``adb reverse`` (phone -> host).

A forward really listens on a loopback port, as adb does; since nothing listens on the
simulated phone, each connection to it is accepted and closed at once (what adb does when the
device refuses). Nothing on the simulated phone ever connects to a reversed port, so a reverse
is only recorded and listed. Errors carry adb's wording. Each forward holds a listening socket
and a thread, so at most :data:`MAX_FORWARDS` are kept (and :data:`MAX_REVERSES` reverses per
phone): a client that forwards ``tcp:0`` in a loop gets adb's "cannot bind listener" instead of
exhausting the host's file descriptors. This module must not listen beyond loopback, and knows
nothing of the adb wire format.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass

__all__ = ["MAX_FORWARDS", "MAX_REVERSES", "ForwardError", "Forwards"]

#: Forwards the server keeps at once, over all phones.
MAX_FORWARDS = 256
#: Reverses each phone keeps.
MAX_REVERSES = 256


class ForwardError(Exception):
    """A forward or reverse request adb would refuse; the message is adb's."""


class _RefusingListener:
    """A forward's loopback listener: it accepts, then closes at once (nothing listens on the phone)."""

    def __init__(self, port: int) -> None:
        self._sock = socket.create_server(("127.0.0.1", port))
        self.port: int = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._loop, name=f"adb-sim-forward-{self.port}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with contextlib.suppress(OSError):
                conn.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._sock.close()


@dataclass
class _Forward:
    serial: str
    remote: str
    listener: _RefusingListener


class Forwards:
    """The server's forwards and each phone's reverses. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._forwards: dict[str, _Forward] = {}
        self._reverses: dict[str, dict[str, str]] = {}

    # --- adb forward ------------------------------------------------------------------------

    def add(self, serial: str, local: str, remote: str, *, norebind: bool = False) -> int | None:
        """Listen on ``local`` (``tcp:PORT``; ``tcp:0`` picks a port, which is returned)."""
        if not local.startswith("tcp:") or not remote:
            raise ForwardError(f"cannot bind listener: only tcp:PORT forwards are simulated, got '{local}'")
        with self._lock:
            if local in self._forwards and norebind:
                raise ForwardError(f"cannot rebind existing socket '{local}'")
            if local not in self._forwards and len(self._forwards) >= MAX_FORWARDS:
                raise ForwardError(f"cannot bind listener: too many forwards ({MAX_FORWARDS}); remove some first")
            old = self._forwards.pop(local, None)
        if old is not None:
            old.listener.close()
        try:
            listener = _RefusingListener(int(local[len("tcp:") :]))
        except (OSError, ValueError) as exc:
            raise ForwardError(f"cannot bind listener: {exc}") from None
        picked = local == "tcp:0"
        with self._lock:
            self._forwards[f"tcp:{listener.port}" if picked else local] = _Forward(serial, remote, listener)
        return listener.port if picked else None

    def remove(self, local: str) -> None:
        with self._lock:
            entry = self._forwards.pop(local, None)
        if entry is None:
            raise ForwardError(f"listener '{local}' not found")
        entry.listener.close()

    def remove_all(self, serial: str | None = None) -> None:
        """Every forward (of one phone, or of all)."""
        with self._lock:
            gone = [local for local, f in self._forwards.items() if serial is None or f.serial == serial]
            entries = [self._forwards.pop(local) for local in gone]
        for entry in entries:
            entry.listener.close()

    def listing(self, serial: str | None = None) -> str:
        """``list-forward``'s text: ``SERIAL LOCAL REMOTE`` lines."""
        with self._lock:
            return "".join(
                f"{f.serial} {local} {f.remote}\n"
                for local, f in self._forwards.items()
                if serial is None or f.serial == serial
            )

    # --- adb reverse ------------------------------------------------------------------------

    def reverse(self, serial: str, remote: str, local: str, *, norebind: bool = False) -> None:
        with self._lock:
            table = self._reverses.setdefault(serial, {})
            if norebind and remote in table:
                raise ForwardError(f"cannot rebind existing socket '{remote}'")
            if remote not in table and len(table) >= MAX_REVERSES:
                raise ForwardError(f"cannot bind listener: too many reverses ({MAX_REVERSES}); remove some first")
            table[remote] = local

    def unreverse(self, serial: str, remote: str | None) -> None:
        """Remove one reverse (``remote``) or, with None, all of the phone's."""
        with self._lock:
            table = self._reverses.setdefault(serial, {})
            if remote is None:
                table.clear()
            elif table.pop(remote, None) is None:
                raise ForwardError(f"listener '{remote}' not found")

    def reverse_listing(self, serial: str, transport: str) -> str:
        """The phone's ``reverse:list-forward`` text: ``TRANSPORT REMOTE LOCAL`` lines."""
        with self._lock:
            return "".join(
                f"{transport} {remote} {local}\n" for remote, local in self._reverses.get(serial, {}).items()
            )
