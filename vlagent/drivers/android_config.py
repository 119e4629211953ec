"""The adb driver's settings: :class:`AdbConfig`, from keyword options or the device spec
(``adb:SERIAL?wake=0&call_deadline=10``), every duration a finite number of seconds."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args, get_origin, get_type_hints

from vlagent.drivers.android_conn import AdbServer
from vlagent.errors import ConfigError

__all__ = ["ADB_NETWORK_PORT", "AdbConfig", "network_serial", "split_spec"]

#: The port ``adb connect HOST`` uses when none is given (adb's DEFAULT_ADB_LOCAL_TRANSPORT_PORT).
ADB_NETWORK_PORT = 5555
_NET_ADDRESS = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9._-]+))(?::(?P<port>[0-9]{1,5}))?$")


def network_serial(address: str) -> str | None:
    """``HOST[:PORT]`` -> the serial adb gives the phone joined there with ``adb connect``
    (``HOST:PORT``, port 5555 when none is given); None when it is no such address."""
    match = _NET_ADDRESS.match(address)
    if match is None:
        return None
    port = int(match.group("port") or ADB_NETWORK_PORT)
    if not 0 < port <= 65535:
        return None
    host = f"[{match.group('v6')}]" if match.group("v6") else match.group("host")
    return f"{host}:{port}"


@dataclass(frozen=True)
class AdbConfig:
    """Settings of an :class:`AdbDriver`; every field can be passed to ``open_driver("adb", ...)`` and every
    field but ``apps`` in the device spec: ``adb:SERIAL?wake=0&screencap=png``."""

    host: str | None = None
    """adb server host; None: ``ANDROID_ADB_SERVER_HOST`` or 127.0.0.1 (as adbutils)."""
    port: int | None = None
    """adb server port; None: ``ANDROID_ADB_SERVER_PORT`` or 5037."""
    timeout: float = 10.0
    """Seconds any single device command may take (input, wm, pm...); never more than ``call_deadline``."""
    capture_timeout: float = 20.0
    """Seconds a screenshot may take; never more than ``call_deadline``."""
    attempts: int = 5
    """Tries per device call when the connection is lost, the device is missing or offline, or a try times out."""
    retry_wait: float = 0.2
    """First back-off between tries, doubled each time (max 2 s): 5 tries span about 3 s of waiting."""
    call_deadline: float = 20.0
    """Seconds one device call (a screenshot, a shell command, a view-hierarchy dump) may take with all its
    tries, waits and reconnections: each try's socket waits are cut to the time left. A dead phone (gone,
    its adb server gone or hung) is thus reported within this time, and the loop does not retry on top
    (``AdbDriver.retries_device_errors``)."""
    screencap: Literal["auto", "raw", "png"] = "auto"
    """``auto`` uses raw pixels and falls back to PNG when the device's raw format is unknown."""
    switch_ime: bool = True
    """When non-ASCII text must be typed and ADBKeyboard is installed, make it the current keyboard."""
    scroll_fraction: float = 0.3
    """How far one scroll unit moves the finger, as a fraction of the screen side."""
    scroll_ms: int = 300
    apps: Mapping[str, str] = field(default_factory=dict)
    """Extra app label -> package name entries for ``open_app``."""
    wake: bool = True
    """Keep the screen usable: at open, wake a sleeping phone and dismiss a swipe lock screen; during a
    run, do the same when a frame comes back black because the phone fell asleep. A PIN/pattern/password
    lock raises DeviceLockedError. False: never look at or change the power state."""
    wake_timeout: float = 2.0
    """Seconds to wait for the screen to come on and the lock screen to go after waking / unlocking."""
    verify_typing: bool = True
    """After typing, read the focused field back from the view hierarchy (two ``uiautomator dump``: before
    and after) and, when it differs from what was meant, retry by another input path; the step records
    the outcome. False (``adb:SERIAL?verify_typing=0``): type once and record nothing."""
    typing_retries: int = 2
    """Other input paths tried when the read-back differs (ADBKeyboard, short ``input text`` chunks, clipboard)."""
    dump_attempts: int = 3
    """Tries per ``uiautomator dump`` when the screen is animating or the output is cut short."""
    dump_timeout: float = 20.0
    """Seconds one ``uiautomator dump`` may take (it waits up to ~10 s for an idle screen); never more than
    ``call_deadline``."""

    def __post_init__(self) -> None:
        for name in ("timeout", "capture_timeout", "call_deadline", "dump_timeout", "retry_wait", "wake_timeout"):
            value = getattr(self, name)
            may_be_zero = name in ("retry_wait", "wake_timeout")
            seconds = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not seconds or value < 0 or (value == 0 and not may_be_zero):
                limit = ">= 0" if may_be_zero else "> 0"
                raise ConfigError(f"adb {name} must be a finite number of seconds {limit}, got {value!r}")
        if self.attempts < 1:
            raise ConfigError("adb attempts must be at least 1")
        if self.screencap not in ("auto", "raw", "png"):
            raise ConfigError(f"adb screencap must be auto, raw or png, got {self.screencap!r}")
        if not 0.01 <= self.scroll_fraction <= 0.9:
            raise ConfigError("adb scroll_fraction must be within 0.01..0.9")
        if self.typing_retries < 0 or self.dump_attempts < 1:
            raise ConfigError("adb typing_retries must be >= 0 and dump_attempts >= 1")

    @property
    def server(self) -> tuple[str, int]:
        where = self.adb_server
        return where.host, where.port

    @property
    def adb_server(self) -> AdbServer:
        """The adb server, and whether the user named it (options or environment): vlagent never starts one there."""
        return AdbServer.resolve(self.host, self.port)


def split_spec(arg: str | None) -> tuple[str | None, dict[str, object]]:
    """``"SERIAL?wake=0&timeout=5"`` -> ("SERIAL", {"wake": False, "timeout": 5.0}), typed by AdbConfig."""
    serial, _, query = (arg or "").partition("?")
    hints = get_type_hints(AdbConfig)
    options: dict[str, object] = {}
    for item in filter(None, query.split("&")):
        name, eq, text = item.partition("=")
        if not eq:
            raise ConfigError(f"adb option '{name}' needs a value, e.g. adb:SERIAL?{name}=VALUE")
        kinds = set(get_args(hints[name])) - {type(None)} if name in hints else set()
        kind = hints.get(name, str)
        try:
            if bool in (kind, *kinds):
                if text.lower() not in _BOOLEANS:
                    raise ValueError(f"expected one of {', '.join(_BOOLEANS)}")
                options[name] = _BOOLEANS[text.lower()]
            elif int in (kind, *kinds):
                options[name] = int(text)
            elif float in (kind, *kinds):
                options[name] = float(text)
            elif get_origin(kind) is Mapping:
                raise ValueError("give it as a keyword option, not in the device spec")
            else:
                options[name] = text
        except ValueError as exc:
            raise ConfigError(f"bad adb option {name}={text!r}: {exc}") from None
    return serial or None, options


_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}
