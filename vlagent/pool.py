"""Device pools: the phones one evaluation shares among its phone scenarios.

``--device`` given several times (``adb:A --device adb:B``), ``adb:*`` (every phone the adb
server lists as ready, read once at the start) or ``adb:HOST:PORT`` (a phone with wireless
debugging, joined with ``adb connect``) makes a :class:`DevicePool`. Each phone scenario takes a
free device, waiting while none is free, and gives it back after its episode; with ``-j N`` up
to N phones work at once.

A device whose scenario ended in an error is looked at before it goes back (an adb phone must
still be listed as ready by its adb server; a network phone that is not is joined again with
``adb connect`` once, since wireless debugging drops a connection that the phone itself
survives): one that dropped off leaves the pool, with a warning, and is named with the reason
in :meth:`DevicePool.report` (results.json's ``pool``).
When every device has left, :meth:`DevicePool.take` raises :class:`PoolEmptyError` at once,
also to the scenarios already waiting: the remaining phone scenarios end as errors, none waits
forever.

This module must not open drivers, run episodes or judge them: it hands out device specs.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vlagent.errors import ConfigError, DeviceError, PoolEmptyError, VlagentError
from vlagent.secrets import scrub

if TYPE_CHECKING:
    from vlagent.drivers.android_config import AdbConfig

__all__ = ["DevicePool", "Lease", "PoolEmptyError", "Probe", "adb_probe", "is_network_address", "resolve_devices"]

log = logging.getLogger(__name__)

Probe = Callable[[str], str | None]
"""Looks at a device after a failed scenario: None while it is still there, else why it is gone."""

#: How often a waiting scenario looks whether the evaluation was stopped (Ctrl-C).
_POLL_S = 0.1


def is_network_address(serial: str) -> bool:
    """True for ``HOST:PORT``, the serial adb gives a phone joined with ``adb connect`` (a USB serial
    has no port)."""
    from vlagent.drivers.android_config import network_serial

    return ":" in serial and network_serial(serial) == serial


def _adb_parts(spec: str) -> tuple[str, str, dict[str, object]] | None:
    """``adb:SERIAL?opts`` -> (serial, "?opts", options); None for a device that is not adb."""
    name, _, arg = spec.partition(":")
    if name != "adb":
        return None
    from vlagent.drivers.android_config import split_spec

    serial, options = split_spec(arg)
    query = arg[arg.index("?") :] if "?" in arg else ""
    return serial or "", query, options


def _adb_config(options: dict[str, object]) -> AdbConfig:
    """The adb server a spec names (its ``host``/``port`` options), asked with a short deadline."""
    from vlagent.drivers.android_config import AdbConfig

    host, port = options.get("host"), options.get("port")
    return AdbConfig(
        host=host if isinstance(host, str) else None, port=port if isinstance(port, int) else None, call_deadline=10.0
    )


def resolve_devices(specs: Sequence[str]) -> tuple[str, ...]:
    """The devices ``specs`` name, each once: ``adb:*`` becomes every phone the adb server lists as
    ready; ``adb:HOST:PORT`` joins that phone with ``adb connect`` first. Other specs stay as given.

    Raises ConfigError (one line) when ``adb:*`` finds no phone, the adb server cannot be reached,
    or a network phone does not answer ``adb connect``.
    """
    resolved: list[str] = []
    for spec in specs:
        parts = _adb_parts(spec)
        if parts is None:
            resolved.append(spec)
            continue
        serial, query, options = parts
        if serial == "*":
            resolved.extend(f"adb:{s}{query}" for s in _listed(spec, options))
        elif is_network_address(serial):
            _join(spec, serial, options)
            resolved.append(spec)
        else:
            resolved.append(spec)
    unique = tuple(dict.fromkeys(resolved))
    if len(unique) < len(resolved):
        log.info("the device pool names some devices more than once; each is used once")
    return unique


def _listed(spec: str, options: dict[str, object]) -> list[str]:
    from vlagent.drivers.android import list_serials

    config = _adb_config(options)
    try:
        serials = list_serials(config)
    except DeviceError as exc:
        raise ConfigError(f"--device {spec}: {exc}") from exc
    if not serials:
        raise ConfigError(
            f"--device {spec}: the adb server at {config.adb_server} lists no phone ready (see 'adb devices')"
        )
    return serials


def _join(spec: str, address: str, options: dict[str, object]) -> None:
    from vlagent.drivers.android import connect_network

    try:
        answer = connect_network(address, _adb_config(options))
    except DeviceError as exc:
        raise ConfigError(f"--device {spec}: {exc}") from exc
    if not answer.startswith(("connected to", "already connected to")):
        raise ConfigError(f"--device {spec}: adb connect {address}: {' '.join(answer.split()) or 'no answer'}")
    log.info("%s", answer)


def adb_probe(spec: str) -> str | None:
    """None while an adb phone is still listed as ready by its adb server; else why it is gone.
    Devices that are not adb phones are always there."""
    parts = _adb_parts(spec)
    if parts is None:
        return None
    from vlagent.drivers.android import list_serials

    serial, _, options = parts
    config = _adb_config(options)
    try:
        listed = list_serials(config)
        if (serial and serial in listed) or (not serial and listed):
            return None
        if serial and is_network_address(serial):
            return _rejoin(serial, config)
    except VlagentError as exc:  # unreachable server, or no adbutils: the phone cannot be used either way
        return str(exc)
    return f"the adb server no longer lists {serial or 'a phone'} as ready"


def _rejoin(address: str, config: AdbConfig) -> str | None:
    """``adb connect`` a network phone the adb server lost; None when it is back and ready."""
    from vlagent.drivers.android import connect_network, list_serials

    answer = " ".join(connect_network(address, config).split())
    if answer.startswith(("connected to", "already connected to")) and address in list_serials(config):
        log.warning("network phone %s was lost and joined again (%s)", address, answer)
        return None
    return f"the adb server lost {address} and adb connect failed ({answer or 'no answer'})"


@dataclass
class Lease:
    """One device taken from a pool; set ``failed`` when its scenario ended in an error."""

    device: str | None
    """The device spec; None when the evaluation was stopped before one was free."""
    failed: bool = False
    error: str = ""


class DevicePool:
    """Devices handed out one scenario at a time. Thread-safe."""

    def __init__(self, devices: Sequence[str], *, probe: Probe | None = None) -> None:
        if not devices:
            raise ConfigError("a device pool needs at least one device")
        self.devices = tuple(dict.fromkeys(devices))
        self._probe = probe if probe is not None else adb_probe
        self._free = list(self.devices)
        self._runs = dict.fromkeys(self.devices, 0)
        self._dropped: dict[str, str] = {}
        self._changed = threading.Condition()

    @classmethod
    def open(cls, specs: Sequence[str], *, probe: Probe | None = None) -> DevicePool:
        """A pool of the devices ``specs`` name (see :func:`resolve_devices`)."""
        return cls(resolve_devices(specs), probe=probe)

    @property
    def alive(self) -> tuple[str, ...]:
        """The devices still in the pool (taken or free)."""
        with self._changed:
            return tuple(self._alive())

    def take(self, stop: threading.Event | None = None) -> str | None:
        """A free device, waiting while none is; None once ``stop`` is set. PoolEmptyError when
        every device has dropped off."""
        with self._changed:
            while True:
                if len(self._dropped) == len(self.devices):
                    raise PoolEmptyError(self._empty_message())
                if stop is not None and stop.is_set():
                    return None
                if self._free:
                    device = self._free.pop(0)
                    self._runs[device] += 1
                    return device
                self._changed.wait(_POLL_S if stop is not None else None)

    def give_back(self, device: str, *, failed: bool = False, error: str = "") -> None:
        """Return ``device``; after a failure it is looked at first, and leaves the pool if it is gone."""
        try:
            gone = self._probe(device) if failed else None
        except Exception as exc:  # whatever the probe does, the device is accounted for: no taker waits forever
            gone = f"could not be looked at ({type(exc).__name__}: {exc})"
        with self._changed:
            if gone is None:
                self._free.append(device)
            else:
                why = scrub(f"{gone} (after: {error})" if error else gone)
                self._dropped[device] = why
                log.warning("device %s dropped off and leaves the pool: %s; %d left", device, why, len(self._alive()))
            self._changed.notify_all()

    @contextlib.contextmanager
    def lease(self, stop: threading.Event | None = None) -> Iterator[Lease]:
        """Take a device for the block and give it back after (see :class:`Lease`)."""
        lease = Lease(self.take(stop))
        try:
            yield lease
        except BaseException:
            lease.failed = True
            raise
        finally:
            if lease.device is not None:
                self.give_back(lease.device, failed=lease.failed, error=lease.error)

    def report(self) -> dict[str, object]:
        """What results.json says of the pool: each device, how many scenarios it took, which dropped off."""
        with self._changed:
            return {
                "devices": list(self.devices),
                "runs": dict(self._runs),
                "dropped": dict(self._dropped),
            }

    def _alive(self) -> list[str]:
        return [d for d in self.devices if d not in self._dropped]

    def _empty_message(self) -> str:
        reasons = "; ".join(f"{d}: {why}" for d, why in self._dropped.items())
        return f"every device of the pool dropped off ({reasons})"
