"""Phones on the network, for the simulated adb server: ``adb connect HOST[:PORT]`` attaches a new
simulated phone with serial ``HOST:PORT``, as a phone with wireless debugging joins a real adb
server, and ``adb disconnect`` takes it away again, cutting its open connections. The answers are
adb's own words (``connected to``, ``already connected to``, ``failed to connect to``,
``no such device``, ``disconnected``).

This module must not read or write the wire: :mod:`.adb_server` does, and mixes this class in.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from vlagent.drivers.android_config import network_serial
from vlagent.drivers.sim.device import SimDevice

if TYPE_CHECKING:
    from vlagent.drivers.sim.world import SimPhone

__all__ = ["NetworkPhones"]

log = logging.getLogger(__name__)


class NetworkPhones:
    """The ``adb connect``/``adb disconnect`` half of the simulated adb server (a mixin: the server
    owns ``devices``, the open connections in ``_live`` and the phones' options)."""

    devices: dict[str, SimDevice]
    _live: dict[socket.socket, str | None]
    _live_lock: threading.Lock
    _adbkeyboard: bool
    _raw_header: int

    def _init_network(self, reachable: Collection[str] | None, network_phone: Callable[[str], SimPhone] | None) -> None:
        self.reachable = None if reachable is None else frozenset(network_serial(a) or a for a in reachable)
        """Where ``adb connect`` finds a phone (None: at any address)."""
        self._network_phone = network_phone
        self._network: set[str] = set()  # serials of the phones joined with ``adb connect``
        self._devices_lock = threading.Lock()
        self._next_transport = len(self.devices) + 1

    def connect(self, address: str) -> str:
        """``adb connect ADDRESS``: attach a simulated phone with serial ``HOST:PORT``; adb's answer."""
        if not address:
            return "empty address"
        serial = network_serial(address)
        if serial is None:
            return f"failed to connect to '{address}': bad address"
        with self._devices_lock:
            if serial in self.devices:
                return f"already connected to {serial}"
            if self.reachable is not None and serial not in self.reachable:
                return f"failed to connect to '{serial}': Connection refused"
            phone = self._make_network_phone(serial)
            device = SimDevice(
                phone, serial, self._next_transport, adbkeyboard=self._adbkeyboard, raw_header=self._raw_header
            )
            self._next_transport += 1
            self._network.add(serial)
            # a new mapping, never a changed one: handlers read ``devices`` without the lock
            self.devices = {**self.devices, serial: device}
        log.info("adb sim: %s joined (adb connect)", serial)
        return f"connected to {serial}"

    def disconnect(self, address: str) -> tuple[bool, str]:
        """``adb disconnect [ADDRESS]``: (done, adb's answer); the phone's open connections are cut.
        Without an address every phone on the network leaves; a USB phone never does."""
        serial = network_serial(address) if address else ""
        if serial is None:
            return False, f"couldn't parse '{address}': bad address"
        with self._devices_lock:
            gone = {serial} & self._network if serial else set(self._network)
            if serial and not gone:
                return False, f"no such device '{serial}'"
            self._network -= gone
            self.devices = {s: d for s, d in self.devices.items() if s not in gone}
        with self._live_lock:
            cut = [sock for sock, on in self._live.items() if on in gone]
        for sock in cut:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        log.info("adb sim: %s left (adb disconnect)", ", ".join(sorted(gone)) or "nothing")
        return True, "disconnected everything" if not address else f"disconnected {address}"

    def _make_network_phone(self, serial: str) -> SimPhone:
        if self._network_phone is not None:
            return self._network_phone(serial)
        from vlagent.drivers.sim.world import SimPhone

        return SimPhone(serial=serial)
