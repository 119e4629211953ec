"""Android phones over ADB: ``open_driver("adb")``, ``open_driver("adb:SERIAL")`` or, with options in the
spec (as on the command line), ``"adb:SERIAL?wake=0&timeout=5"``; keyword options fill the same AdbConfig.

The driver talks the adb host protocol through adbutils to an adb server (default
127.0.0.1:5037, or ``ANDROID_ADB_SERVER_HOST`` / ``ANDROID_ADB_SERVER_PORT``), which forwards
to the phone. Screens are captured with raw ``screencap`` (pixels encoded on the host,
about 3x faster than ``screencap -p`` on real phones) and PNG as a fallback; input goes
through ``input tap|swipe|text|keyevent``, ``monkey`` and, for non-ASCII text, the
ADBKeyboard IME broadcast.

Phones whose screen is off or locked: with ``wake`` on (the default; ``adb:SERIAL?wake=0``
turns it off) the driver wakes a sleeping phone at open (KEYCODE_WAKEUP) and dismisses a
non-secure lock screen (``wm dismiss-keyguard``, then a swipe up). During a run it looks
only when a frame comes back (nearly) black: then one ``dumpsys power`` tells a phone that
fell asleep (woken, unlocked, captured again, with a warning) from an app that is simply
black (nothing else is done). A PIN, pattern or password lock raises
:class:`DeviceLockedError`: vlagent never guesses credentials. No user setting is changed
(no ``svc power stayon``).

Typed text is read back (``verify_typing``, on by default; ``adb:SERIAL?verify_typing=0`` turns it
off): the focused field is read from ``uiautomator dump`` before and after typing and, when it
does not hold what was meant, the typed part is deleted and typed again by another input path
(ADBKeyboard, ``input text`` in short chunks, the Clipper app's clipboard). ``execute`` returns
the :class:`~vlagent.outcome.ActionOutcome` (verified, retried and how, failed, or unverifiable
and why). ``state()`` is one look at the phone for checks (:class:`AdbState`) and ``prepare``
brings it to a task's start.

What this module must not do: let the device shell interpret any text it sends. Every
argument is quoted (argv lists joined with ``shlex.quote``) and ``input text`` gets its own
``%s`` encoding for spaces. It also must not import adbutils at import time, type or guess a
lock-screen credential, or change the phone's settings to keep its screen on.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import re
import shlex
import socket
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, get_args, get_origin, get_type_hints

from PIL import Image, UnidentifiedImageError
from tenacity import (
    Retrying,
    retry_if_exception_type,
    retry_if_not_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from vlagent.actions import Action, Click, Done, Key, LongPress, OpenApp, Scroll, Swipe, Type, Wait
from vlagent.drivers.android_state import AdbState, ShellResult
from vlagent.drivers.base import PHONE_CAPABILITIES, BaseDriver, Capabilities
from vlagent.errors import (
    ActionNotSupportedError,
    ConfigError,
    DeviceError,
    DeviceLockedError,
    DeviceNotFoundError,
    DeviceTimeoutError,
    MissingExtraError,
)
from vlagent.frames import Frame
from vlagent.outcome import ActionOutcome, TypingStatus
from vlagent.tasks.state import StartState
from vlagent.tasks.uitree import UiDumpError, UiNode

if TYPE_CHECKING:
    from adbutils import AdbClient

__all__ = [
    "ADB_KEYBOARD_IME",
    "ANDROID_KEYCODES",
    "KEYCODE_WAKEUP",
    "AdbConfig",
    "AdbDriver",
    "DeviceLockedError",
    "create_driver",
    "decode_raw_screencap",
    "input_text_chunks",
    "parse_keyguard_showing",
    "parse_wakefulness",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The ADBKeyboard input method (https://github.com/senzhk/ADBKeyBoard), needed for non-ASCII text.
ADB_KEYBOARD_IME = "com.android.adbkeyboard/.AdbIME"
ADB_KEYBOARD_PACKAGE = "com.android.adbkeyboard"
#: The Clipper app (https://github.com/majido/clipper): ``am broadcast -a clipper.set -e text TEXT`` fills the
#: clipboard, which Android has no shell command for; a fallback path for typing (android_world uses it).
CLIPPER_PACKAGE = "ca.zgrs.clipper"
#: android.view.KeyEvent.KEYCODE_PASTE (API 24+).
KEYCODE_PASTE = 279
#: What the shell prints after each command's output, followed by its exit status (as adbutils marks it).
_EXIT_MARK = "X4EXIT:"
#: Characters per command on the "short chunks" typing paths.
_SHORT_CHUNK = 8
#: The ways text can be put into the focused field, in the words the step outcome records.
TypingPath = Literal["input text", "input text, short chunks", "ADBKeyboard", "ADBKeyboard, short chunks", "clipboard"]
#: Fraction of the screen kept free at each end of a scroll swipe: Android's back-gesture
#: inset is 24 dp by default (66 px, 6% of a 1080-px-wide 2.75x screen).
SCROLL_EDGE_MARGIN = 0.08
#: android.view.KeyEvent.KEYCODE_WAKEUP (API 20+): turns the screen on, and does nothing when it is on
#: (unlike KEYCODE_POWER, which would turn an awake screen off).
KEYCODE_WAKEUP = 224
#: A frame counts as black when fewer than this fraction of its pixels are brighter than _BLACK_LEVEL:
#: screen-off captures are all zeros; dark-mode backgrounds (#121212 = 18) stay well above the level.
_BLACK_FRACTION = 0.005
_BLACK_LEVEL = 8
# PowerManagerInternal WAKEFULNESS_* values, for builds that print the number.
_WAKEFULNESS_CODES = {"0": "Asleep", "1": "Awake", "2": "Dreaming", "3": "Dozing"}
# Keyguard lines of `dumpsys window [policy]` across Android versions (AOSP PhoneWindowManager,
# KeyguardServiceDelegate and KeyguardStateMonitor dumps; appium-adb's lockmgmt reads the same).
_KEYGUARD_PATTERNS = (
    re.compile(r"KeyguardServiceDelegate\b[^\n]*\n(?:[ \t]+\S[^\n]*\n)*?[ \t]+showing=(true|false)"),  # Android 5+
    re.compile(r"\bisStatusBarKeyguard=(true|false)"),  # Android 8-9
    re.compile(r"\bmShowingLockscreen=(true|false)"),  # up to Android 7
    re.compile(r"KeyguardStateMonitor\b[^\n]*\n(?:[ \t]+\S[^\n]*\n)*?[ \t]+mIsShowing=(true|false)"),
    re.compile(r"\bmDreamingLockscreen=(true)"),  # a screen saver over the lock screen
)

#: vlagent key names -> Android KeyEvent codes (android.view.KeyEvent).
ANDROID_KEYCODES: Mapping[str, int] = MappingProxyType(
    {
        "home": 3,
        "back": 4,
        "up": 19,
        "down": 20,
        "left": 21,
        "right": 22,
        "volume_up": 24,
        "volume_down": 25,
        "power": 26,
        "tab": 61,
        "space": 62,
        "enter": 66,
        "backspace": 67,  # KEYCODE_DEL deletes backwards
        "menu": 82,
        "page_up": 92,
        "page_down": 93,
        "escape": 111,
        "delete": 112,  # KEYCODE_FORWARD_DEL
        "line_start": 122,
        "line_end": 123,
        "app_switch": 187,
        **{f"f{i}": 130 + i for i in range(1, 13)},
        **{chr(ord("a") + i): 29 + i for i in range(26)},
        **{str(i): 7 + i for i in range(10)},
    }
)

# Android PixelFormat constants -> (bytes per pixel, Pillow raw mode producing RGB).
_PIXEL_FORMATS: Mapping[int, tuple[int, str]] = MappingProxyType(
    {1: (4, "RGBX"), 2: (4, "RGBX"), 3: (3, "RGB"), 4: (2, "BGR;16"), 5: (4, "BGRX")}
)

# Labels whose package name does not contain the label (stock Google / AOSP apps).
_APP_ALIASES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "Play Store": ("com.android.vending",),
        "Gmail": ("com.google.android.gm",),
        "Maps": ("com.google.android.apps.maps",),
        "Messages": ("com.google.android.apps.messaging", "com.android.messaging", "com.android.mms"),
        "Phone": ("com.google.android.dialer", "com.android.dialer"),
        "Camera": ("com.android.camera2", "com.android.camera", "com.google.android.GoogleCamera"),
        "Clock": ("com.google.android.deskclock", "com.android.deskclock"),
        "Photos": ("com.google.android.apps.photos",),
        "Gallery": ("com.android.gallery3d",),
        "Files": ("com.google.android.documentsui", "com.android.documentsui"),
        "Contacts": ("com.google.android.contacts", "com.android.contacts"),
        "Calendar": ("com.google.android.calendar", "com.android.calendar"),
        "Browser": ("com.android.chrome", "com.android.browser"),
    }
)
_ALIAS_KEYS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {re.sub(r"[^0-9a-z]", "", label.casefold()): packages for label, packages in _APP_ALIASES.items()}
)


@dataclass(frozen=True)
class AdbConfig:
    """Settings of an :class:`AdbDriver`; every field can be passed to ``open_driver("adb", ...)`` and every
    field but ``apps`` in the device spec: ``adb:SERIAL?wake=0&screencap=png``."""

    host: str | None = None
    """adb server host; None: ``ANDROID_ADB_SERVER_HOST`` or 127.0.0.1 (as adbutils)."""
    port: int | None = None
    """adb server port; None: ``ANDROID_ADB_SERVER_PORT`` or 5037."""
    timeout: float = 10.0
    """Seconds any single device command may take (input, wm, pm...)."""
    capture_timeout: float = 20.0
    """Seconds a screenshot may take."""
    attempts: int = 3
    """Tries per device call when the connection is lost or times out."""
    retry_wait: float = 0.2
    """First back-off between tries, doubled each time (max 2 s)."""
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
    dump_timeout: float = 30.0
    """Seconds one ``uiautomator dump`` may take (it waits up to ~10 s for an idle screen)."""

    def __post_init__(self) -> None:
        if self.timeout <= 0 or self.capture_timeout <= 0:
            raise ConfigError("adb timeouts must be positive")
        if self.attempts < 1:
            raise ConfigError("adb attempts must be at least 1")
        if self.screencap not in ("auto", "raw", "png"):
            raise ConfigError(f"adb screencap must be auto, raw or png, got {self.screencap!r}")
        if not 0.01 <= self.scroll_fraction <= 0.9:
            raise ConfigError("adb scroll_fraction must be within 0.01..0.9")
        if self.wake_timeout < 0:
            raise ConfigError("adb wake_timeout must be >= 0")
        if self.typing_retries < 0 or self.dump_attempts < 1 or self.dump_timeout <= 0:
            raise ConfigError("adb typing_retries must be >= 0, dump_attempts >= 1 and dump_timeout > 0")

    @property
    def server(self) -> tuple[str, int]:
        host = self.host or os.environ.get("ANDROID_ADB_SERVER_HOST") or "127.0.0.1"
        port = self.port or int(os.environ.get("ANDROID_ADB_SERVER_PORT") or 5037)
        return host, port


class _CommandFailed(DeviceError):
    """A device command ran and reported failure: retrying the same call will not help."""


def create_driver(arg: str | None, **options: Any) -> AdbDriver:
    """Registry factory: ``arg`` is ``SERIAL``, ``SERIAL?option=value&...`` or ``?option=value`` (None or an
    empty serial: the only connected device). Keyword options win over those in ``arg``."""
    serial, from_spec = _split_spec(arg)
    options = {**from_spec, **options}
    names = {f.name for f in fields(AdbConfig)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise ConfigError(f"unknown adb option(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    return AdbDriver(serial, AdbConfig(**options))


def _split_spec(arg: str | None) -> tuple[str | None, dict[str, object]]:
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


def list_serials(config: AdbConfig | None = None) -> list[str]:
    """Serials of the devices the adb server reports as ready; DeviceNotFoundError if it is unreachable."""
    config = config or AdbConfig()
    try:
        import adbutils
    except ImportError as exc:
        raise MissingExtraError("android", "adbutils", "Listing Android phones") from exc
    host, port = config.server
    client = adbutils.AdbClient(host=host, port=port, socket_timeout=min(config.timeout, 3.0))
    try:
        return [info.serial for info in client.list() if info.state == "device"]
    except Exception as exc:
        if _is_adb_error(exc, timeout=True) or isinstance(exc, OSError):
            raise DeviceNotFoundError(
                f"no adb server at {host}:{port} ({exc}); start one with 'adb start-server'"
            ) from exc
        raise


def decode_raw_screencap(data: bytes) -> Image.Image:
    """Decode the output of ``screencap`` (no ``-p``) into an RGB image.

    The output is a little-endian header of width, height, pixel format (12 bytes; Android 12+
    adds a colour space word, 16 bytes) followed by the pixels. Raises ValueError when the
    data does not fit that layout.
    """
    if len(data) < 12:
        raise ValueError(f"raw screencap too short ({len(data)} bytes)")
    width, height, fmt = struct.unpack_from("<III", data)
    if fmt not in _PIXEL_FORMATS:
        raise ValueError(f"unknown raw screencap pixel format {fmt}")
    bpp, raw_mode = _PIXEL_FORMATS[fmt]
    if not (0 < width <= 16384 and 0 < height <= 16384):
        raise ValueError(f"implausible raw screencap size {width}x{height}")
    header = len(data) - width * height * bpp
    if header not in (12, 16):
        raise ValueError(f"raw screencap of {len(data)} bytes does not hold {width}x{height} format {fmt} pixels")
    return Image.frombytes("RGB", (width, height), data[header:], "raw", raw_mode)


def parse_wakefulness(dumpsys_power: str) -> str | None:
    """The power state in ``dumpsys power`` output: "Awake", "Asleep", "Dozing" or "Dreaming"; None if absent.

    Read from ``mWakefulness=`` (Android 4.2+; some builds print ``getWakefulnessLocked()=`` or a number),
    else ``Display Power: state=ON|OFF|DOZE``, else the pre-4.2 ``mScreenOn=``.
    """
    match = re.search(r"(?:mWakefulness|getWakefulnessLocked\(\))=(\w+)", dumpsys_power)
    if match is not None:
        value = match.group(1)
        return _WAKEFULNESS_CODES.get(value, value.capitalize())
    match = re.search(r"Display Power: state=(\w+)", dumpsys_power)
    if match is not None:
        display = match.group(1).upper()
        return "Awake" if display == "ON" else "Dozing" if display.startswith("DOZE") else "Asleep"
    match = re.search(r"\bmScreenOn=(true|false)", dumpsys_power)
    if match is not None:
        return "Awake" if match.group(1) == "true" else "Asleep"
    return None


def parse_keyguard_showing(dumpsys_window: str) -> bool | None:
    """Whether ``dumpsys window [policy]`` output says the lock screen shows; None when it has no keyguard lines.

    Understands ``KeyguardServiceDelegate`` ... ``showing=`` (Android 5+), ``isStatusBarKeyguard=`` (8-9),
    ``mShowingLockscreen=`` (up to 7), ``KeyguardStateMonitor`` ... ``mIsShowing=`` and ``mDreamingLockscreen=``.
    """
    found = [match.group(1) == "true" for p in _KEYGUARD_PATTERNS if (match := p.search(dumpsys_window))]
    return any(found) if found else None


def _is_black(image: Image.Image) -> bool:
    """True when (nearly) every pixel is black, as in a capture of a phone whose screen is off."""
    histogram = image.convert("L").histogram()
    return sum(histogram[_BLACK_LEVEL + 1 :]) <= _BLACK_FRACTION * image.width * image.height


def input_text_chunks(text: str) -> list[str]:
    """Arguments for successive ``input text`` calls that type ``text`` (printable ASCII) exactly.

    ``input text`` turns ``%s`` into a space and has no escape for a literal ``%s``, so the
    text is split between every ``%`` and a following ``s``; spaces become ``%s``.
    """
    pieces = re.split(r"(?<=%)(?=s)", text)
    return [piece.replace(" ", "%s") for piece in pieces if piece]


def _input_text_commands(text: str) -> list[list[str]]:
    """``input text`` / ``input keyevent`` argv lists that type ASCII ``text`` (newlines as Enter, tabs as Tab)."""
    commands: list[list[str]] = []
    for part in re.split(r"(\r\n|\n|\t)", text):
        if part in ("\n", "\r\n"):
            commands.append(["input", "keyevent", str(ANDROID_KEYCODES["enter"])])
        elif part == "\t":
            commands.append(["input", "keyevent", str(ANDROID_KEYCODES["tab"])])
        elif part:
            bad = sorted({c for c in part if not c.isprintable()})
            if bad:
                raise ActionNotSupportedError(f"cannot type control characters {bad!r} on an Android device")
            commands.extend(["input", "text", chunk] for chunk in input_text_chunks(part))
    return commands


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _arrived(held: str, seen: str, text: str) -> bool:
    """Whether a field that held ``held`` shows ``text`` typed in: appended, or inserted where the cursor was,
    or alone (an empty field whose hint was reported as its text, on builds without the ``hint`` attribute)."""
    return seen in (held + text, text) or (len(seen) == len(held) + len(text) and text in seen)


def _same_field(a: UiNode, b: UiNode) -> bool:
    if (a.resource_id, a.class_name) != (b.resource_id, b.class_name):
        return False
    return bool(a.resource_id) or a.bounds[:2] == b.bounds[:2]  # a field grows downwards as it fills


class AdbDriver(BaseDriver):
    """An Android device reached through an adb server."""

    _capabilities: Capabilities = PHONE_CAPABILITIES

    def __init__(self, serial: str | None = None, config: AdbConfig | None = None) -> None:
        self.config = config or AdbConfig()
        try:
            import adbutils
        except ImportError as exc:
            raise MissingExtraError("android", "adbutils", "Driving an Android phone") from exc
        host, port = self.config.server
        self._where = f"{host}:{port}"
        self._client: AdbClient = adbutils.AdbClient(host=host, port=port, socket_timeout=self.config.timeout)
        self.serial = self._call("finding the device", lambda: self._pick_serial(serial))
        self.name = f"adb:{self.serial}"
        self._natural: tuple[int, int] | None = None
        self._rotation: int = 0
        self._density: int | None = None
        self._packages: set[str] | None = None
        self._ime_ready = False
        self._raw_ok = self.config.screencap != "png"
        self._closed = False
        self._credential_lock = False  # set once a PIN/pattern lock was met: every capture checks it is gone
        self._tport: bool | None = None  # whether the adb server knows host:tport (asked once)
        log.info("opened %s via adb server %s", self.name, self._where)
        if self.config.wake:
            self._wake_at_open()

    # --- device selection -------------------------------------------------------------

    def _pick_serial(self, wanted: str | None) -> str:
        try:
            infos = self._client.list()
        except Exception as exc:
            if _is_adb_error(exc, timeout=False) or (isinstance(exc, OSError) and not isinstance(exc, TimeoutError)):
                raise DeviceNotFoundError(
                    f"cannot reach the adb server at {self._where} ({exc}). Install Android platform-tools and "
                    "start it with 'adb start-server', or point vlagent at another server with the host/port options "
                    "(ANDROID_ADB_SERVER_HOST / ANDROID_ADB_SERVER_PORT)."
                ) from exc
            raise
        states = {info.serial: info.state for info in infos}
        ready = [s for s, state in states.items() if state == "device"]
        hint = (
            "Enable Developer options and USB debugging on the phone, connect it, accept the "
            "'Allow USB debugging' prompt, and check that 'adb devices' lists it as 'device'."
        )
        if wanted is None:
            if not ready:
                others = ", ".join(f"{s} ({state})" for s, state in states.items())
                raise DeviceNotFoundError(
                    f"no Android device is ready on the adb server at {self._where}"
                    + (f"; seen: {others}" if others else "")
                    + f". {hint}"
                )
            if len(ready) > 1:
                raise ConfigError(f"several Android devices are connected ({', '.join(ready)}); choose one: adb:SERIAL")
            return ready[0]
        if wanted not in states:
            known = ", ".join(states) or "none"
            raise DeviceNotFoundError(
                f"no device '{wanted}' on the adb server at {self._where} (connected: {known}). {hint}"
            )
        if states[wanted] != "device":
            raise DeviceNotFoundError(f"device '{wanted}' is '{states[wanted]}', not ready. {hint}")
        return wanted

    # --- the Driver protocol -------------------------------------------------------------

    def screen_size(self) -> tuple[int, int]:
        if self._natural is None:
            self._refresh_geometry()
        assert self._natural is not None
        width, height = self._natural
        return (height, width) if self._rotation in (90, 270) else (width, height)

    def screenshot(self) -> Frame:
        image, how = self._call("taking a screenshot", self._capture)
        if self.config.wake and (self._credential_lock or _is_black(image)):
            image, how = self._recover_screen(image, how)
        width, height = self.screen_size()
        if (image.width > image.height) != (width > height) and image.width != image.height:
            self._refresh_geometry()  # the phone was rotated since the last look
            width, height = self.screen_size()
        meta = {
            "serial": self.serial,
            "density": str(self._density_dpi()),
            "rotation": str(self._rotation),
            "capture": how,
            "physical_size": f"{image.width}x{image.height}",
        }
        return Frame(image=image, width=width, height=height, device=MappingProxyType(meta))

    def execute(self, action: Action) -> ActionOutcome | None:
        """Perform ``action``; for ``type`` with ``verify_typing`` on, how the text fared (else None)."""
        self._check_open()
        self.ensure_supported(action)
        if isinstance(action, Click):
            tap = ["input", "tap", str(action.x), str(action.y)]
            self._run("tap", [tap] * action.clicks)
        elif isinstance(action, LongPress):
            ms = str(round(action.duration * 1000))
            point = [str(action.x), str(action.y)]
            self._run("long press", [["input", "swipe", *point, *point, ms]])
        elif isinstance(action, Swipe):
            coords = [str(v) for v in (action.x1, action.y1, action.x2, action.y2)]
            self._run("swipe", [["input", "swipe", *coords, str(round(action.duration * 1000))]])
        elif isinstance(action, Scroll):
            x1, y1, x2, y2 = self._scroll_points(action)
            coords = [str(v) for v in (x1, y1, x2, y2)]
            self._run("scroll", [["input", "swipe", *coords, str(self.config.scroll_ms)]])
        elif isinstance(action, Key):
            self._run("key", [["input", "keyevent", str(ANDROID_KEYCODES[action.key])]])
        elif isinstance(action, Type):
            return self._type(action.text, action.submit)
        elif isinstance(action, OpenApp):
            self._open_app(action.name)
        elif isinstance(action, Wait):
            time.sleep(action.seconds)
        elif isinstance(action, Done):
            return None
        else:  # pragma: no cover - the union is closed
            raise ActionNotSupportedError(f"unknown action {action!r}")
        return None

    def state(self) -> AdbState:
        """One look at the phone's state, for checks (see ``vlagent.tasks``): each fact read once, on demand."""
        self._check_open()
        labels = {package: label for label, packages in _APP_ALIASES.items() for package in packages}
        labels.update({package: label for label, package in self.config.apps.items()})
        return AdbState(
            self._shell,
            serial=self.serial,
            dump_attempts=self.config.dump_attempts,
            dump_timeout=self.config.dump_timeout,
            labels=labels,
        )

    def prepare(self, start: StartState) -> None:
        """Bring the phone to ``start``: toggles by their commands, notes and contacts replaced, Home."""
        self.state().prepare(start)

    def close(self) -> None:
        # adbutils opens one connection per call: there is nothing long-lived to release.
        self._closed = True

    # --- power and lock screen ---------------------------------------------------------------

    def _wake_at_open(self) -> None:
        state = self._wakefulness()
        if state is not None and state != "Awake":
            self._wake_up()
            log.info("%s was %s (screen off): woke it with KEYCODE_WAKEUP", self.serial, state.lower())
        self._unlock()

    def _recover_screen(self, image: Image.Image, how: str) -> tuple[Image.Image, str]:
        """A black frame (or a phone met with a PIN lock): wake and unlock if it is asleep, then capture again."""
        if self._credential_lock:
            self._unlock()  # raises while the PIN/pattern lock is still up
            return self._call("taking a screenshot", self._capture)
        state = self._wakefulness()
        if state is None or state == "Awake":
            log.debug("%s: black frame from an awake phone (%s); kept as it is", self.serial, state or "state unknown")
            return image, how
        self._wake_up()
        log.warning(
            "%s: the screenshot was black because the phone was %s (screen off): woke it with KEYCODE_WAKEUP",
            self.serial,
            state.lower(),
        )
        self._unlock()
        deadline = time.monotonic() + self.config.wake_timeout
        image, how = self._call("taking a screenshot", self._capture)
        while _is_black(image) and time.monotonic() < deadline:  # the display takes a moment to light up
            time.sleep(0.1)
            image, how = self._call("taking a screenshot", self._capture)
        return image, how

    def _wakefulness(self) -> str | None:
        try:
            output = self._run("reading the power state", [["dumpsys", "power"]])
        except _CommandFailed as exc:
            log.debug("%s: power state unknown: %s", self.serial, exc)
            return None
        return parse_wakefulness(output)

    def _keyguard_showing(self) -> bool:
        try:
            output = self._run("reading the lock screen state", [["dumpsys", "window", "policy"]])
        except _CommandFailed as exc:
            log.debug("%s: lock screen state unknown: %s", self.serial, exc)
            return False
        return bool(parse_keyguard_showing(output))

    def _wake_up(self) -> None:
        self._run("waking the phone", [["input", "keyevent", str(KEYCODE_WAKEUP)]])
        deadline = time.monotonic() + self.config.wake_timeout
        while self._wakefulness() not in (None, "Awake") and time.monotonic() < deadline:
            time.sleep(0.1)

    def _unlock(self) -> None:
        """Dismiss a lock screen without a credential; DeviceLockedError when one is needed."""
        if not self._keyguard_showing():
            if self._credential_lock:
                log.info("%s: the lock screen is gone (unlocked by hand); going on", self.serial)
                self._credential_lock = False
            return
        if not self._credential_lock:  # a known PIN lock is not poked again on every capture
            try:
                self._run("dismissing the lock screen", [["wm", "dismiss-keyguard"]])  # Android 6+
                dismissed = self._keyguard_gone()
            except _CommandFailed as exc:  # older Android: no such command, go straight to the swipe
                log.debug("%s: wm dismiss-keyguard failed: %s", self.serial, exc)
                dismissed = False
            if dismissed:
                log.info("%s: dismissed the lock screen (wm dismiss-keyguard)", self.serial)
                return
            width, height = self.screen_size()
            swipe = [str(v) for v in (width // 2, height * 4 // 5, width // 2, height // 5, 300)]
            self._run("swiping the lock screen up", [["input", "swipe", *swipe]])
            if self._keyguard_gone():
                log.info("%s: dismissed the lock screen with a swipe up", self.serial)
                return
            self._credential_lock = True
        raise DeviceLockedError(
            f"{self.serial} is locked with a PIN, pattern or password: the lock screen stayed after "
            "'wm dismiss-keyguard' and a swipe up, and vlagent will not guess a credential. Unlock the phone "
            "by hand and run again; for unattended runs set its screen lock to None or Swipe "
            "(Settings > Security > Screen lock) or keep it awake (Developer options > Stay awake)."
        )

    def _keyguard_gone(self) -> bool:
        deadline = time.monotonic() + self.config.wake_timeout
        while self._keyguard_showing():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True

    # --- actions -----------------------------------------------------------------------------

    def _scroll_points(self, action: Scroll) -> tuple[int, int, int, int]:
        width, height = self.screen_size()
        x = width // 2 if action.x is None else min(action.x, width - 1)
        y = height // 2 if action.y is None else min(action.y, height - 1)
        vertical = action.direction in ("up", "down")
        side = height if vertical else width
        # Both ends stay out of the outer strips, where gesture navigation reads a swipe as
        # Back (left/right edges) or Home (bottom edge) instead of a scroll.
        margin = side * SCROLL_EDGE_MARGIN
        half = min(side * self.config.scroll_fraction * action.amount / 2, side / 2 - margin)
        centre: float = y if vertical else x
        centre = min(max(centre, margin + half), side - margin - half)
        # Content to reveal is "down": the finger moves up (from larger to smaller y).
        start, end = (round(centre + half), round(centre - half))
        if action.direction in ("up", "left"):
            start, end = end, start
        return (x, start, x, end) if vertical else (start, y, end, y)

    # --- typing ------------------------------------------------------------------------------

    def _type(self, text: str, submit: bool) -> ActionOutcome | None:
        """Type ``text`` and, with ``verify_typing``, read the focused field back and retry when it differs."""
        first: TypingPath = "input text" if text.isascii() else "ADBKeyboard"
        if not self.config.verify_typing:
            self._send_text(text, first)
            self._submit(submit)
            return None
        if any(c in text for c in "\r\n\t"):
            self._send_text(text, first)
            self._submit(submit)
            why = "the text holds line breaks or tabs, which may submit the field or move the focus"
            return ActionOutcome("unverifiable", why, (first,))
        before = self._focused_field("before typing")
        if isinstance(before, str):
            self._send_text(text, first)
            self._submit(submit)
            return ActionOutcome("unverifiable", before, (first,))
        outcome = self._type_verified(text, before, first)
        self._submit(submit)  # after the read-back: Enter may submit and clear the field
        return outcome

    def _type_verified(self, text: str, before: UiNode, first: TypingPath) -> ActionOutcome:
        held = before.field_text()
        methods: list[TypingPath] = [first]
        self._send_text(text, first)
        while True:
            after = self._focused_field("after typing")
            if isinstance(after, str):
                return ActionOutcome("unverifiable", after, tuple(methods))
            if not _same_field(before, after):
                return ActionOutcome("unverifiable", f"the focus moved to {after.describe()}", tuple(methods))
            seen = after.field_text()
            if _arrived(held, seen, text):
                status: TypingStatus = "verified" if len(methods) == 1 else "retried"
                return ActionOutcome(status, f"the field holds {seen!r}", tuple(methods), seen)
            if before.password or after.password:
                why = "a password field: it shows dots, not the text"
                return ActionOutcome("unverifiable", why, tuple(methods), seen)
            path = self._next_typing_path(text, methods) if len(methods) <= self.config.typing_retries else None
            if path is None:
                why = f"the field holds {seen!r}, not {held + text!r}, after {', '.join(methods)}"
                log.warning("%s: typed text did not arrive: %s", self.serial, why)
                return ActionOutcome("failed", why, tuple(methods), seen)
            log.warning("%s: the field holds %r after typing %r by %s; typing again by %s", self.serial, seen, text,
                        methods[-1], path)  # fmt: skip
            retype = self._undo_typing(held, seen)
            methods.append(path)
            try:
                self._send_text(retype + text, path)
            except _CommandFailed as exc:  # this path is out; the read-back shows what the field holds now
                log.warning("%s: typing by %s failed: %s", self.serial, path, exc)

    def _focused_field(self, when: str) -> UiNode | str:
        """The focused text field, or why it cannot be read (a DeviceError still propagates)."""
        try:
            tree = self.state().ui_tree().value
        except UiDumpError as exc:
            return f"the screen could not be read {when}: {exc}"
        node = tree.focused()
        if node is None:
            return f"no field has focus {when}"
        if not node.is_text_field:
            return f"the focused element is not a text field {when} ({node.describe()})"
        return node

    def _next_typing_path(self, text: str, used: Sequence[TypingPath]) -> TypingPath | None:
        candidates: tuple[TypingPath, ...] = (
            ("ADBKeyboard", "input text, short chunks", "clipboard")
            if text.isascii()
            else ("clipboard", "ADBKeyboard, short chunks")
        )
        for path in candidates:
            if path in used:
                continue
            if path.startswith("ADBKeyboard") and not self._adb_keyboard_usable(text):
                continue
            if path == "clipboard" and CLIPPER_PACKAGE not in self._installed_packages():
                continue
            return path
        return None

    def _adb_keyboard_usable(self, text: str) -> bool:
        try:
            self._ensure_adb_keyboard(text)
        except ActionNotSupportedError:
            return False
        return True

    def _undo_typing(self, held: str, seen: str) -> str:
        """Delete what the failed try left in the field; return the part of the old content to type again."""
        keep = seen.startswith(held)
        extra = len(seen) - len(held) if keep else len(seen)
        if extra > 0:
            keys = [str(ANDROID_KEYCODES["line_end"]), *[str(ANDROID_KEYCODES["backspace"])] * extra]
            self._run("deleting mistyped text", [["input", "keyevent", *keys]])
        return "" if keep else held

    def _submit(self, submit: bool) -> None:
        if submit:
            self._run("typing text", [["input", "keyevent", str(ANDROID_KEYCODES["enter"])]])

    def _send_text(self, text: str, path: TypingPath) -> None:
        """Type ``text`` into the focused field by one input path (no read-back)."""
        if path == "input text":
            self._run("typing text", _input_text_commands(text))
        elif path == "input text, short chunks":  # slow phones drop key events from long bursts
            for piece in _pieces(text, _SHORT_CHUNK):
                self._run("typing text", _input_text_commands(piece))
        elif path in ("ADBKeyboard", "ADBKeyboard, short chunks"):
            self._ensure_adb_keyboard(text)
            for piece in [text] if path == "ADBKeyboard" else _pieces(text, _SHORT_CHUNK):
                encoded = base64.b64encode(piece.encode("utf-8")).decode("ascii")
                output = self._run("typing text", [["am", "broadcast", "-a", "ADB_INPUT_B64", "--es", "msg", encoded]])
                if "Broadcast completed" not in output:
                    raise _CommandFailed(f"ADBKeyboard did not take the text: {output.strip()[:200]!r}")
        else:  # the Clipper app holds the text, KEYCODE_PASTE puts it in the field
            output = self._run("copying text", [["am", "broadcast", "-a", "clipper.set", "-e", "text", text]])
            if "Broadcast completed" not in output:
                raise _CommandFailed(f"Clipper did not take the text: {output.strip()[:200]!r}")
            self._run("pasting text", [["input", "keyevent", str(KEYCODE_PASTE)]])

    def _ensure_adb_keyboard(self, text: str) -> None:
        if self._ime_ready:
            return
        how_to = (
            f"Typing non-ASCII text ({text[:20]!r}) on an Android device needs the ADBKeyboard input method: "
            "install it (https://github.com/senzhk/ADBKeyBoard, 'adb install ADBKeyboard.apk'), then run "
            f"'adb shell ime enable {ADB_KEYBOARD_IME}' and 'adb shell ime set {ADB_KEYBOARD_IME}'."
        )
        enabled = self._run("listing keyboards", [["ime", "list", "-s"]]).split()
        if ADB_KEYBOARD_IME not in enabled:
            if ADB_KEYBOARD_PACKAGE not in self._installed_packages():
                raise ActionNotSupportedError(how_to)
            if not self.config.switch_ime:
                raise ActionNotSupportedError(how_to)
            self._run("enabling ADBKeyboard", [["ime", "enable", ADB_KEYBOARD_IME]])
        current = self._run("reading the keyboard", [["settings", "get", "secure", "default_input_method"]]).strip()
        if current != ADB_KEYBOARD_IME:
            if not self.config.switch_ime:
                raise ActionNotSupportedError(how_to)
            log.info("switching %s keyboard from %s to ADBKeyboard for non-ASCII text", self.serial, current)
            self._run("selecting ADBKeyboard", [["ime", "set", ADB_KEYBOARD_IME]])
        self._ime_ready = True

    def _open_app(self, name: str) -> None:
        package = self._resolve_package(name)
        if package is None:
            # Like the simulated phone: nothing opens, the model sees an unchanged screen and can recover.
            log.warning("%s: no installed app matches %r; nothing opened", self.serial, name)
            return
        output = self._run(
            f"opening {package}", [["monkey", "-p", package, "-c", "android.intent.category.LAUNCHER", "1"]]
        )
        if "monkey aborted" in output or "No activities found" in output:
            raise ActionNotSupportedError(f"cannot open '{name}': package {package} has no launcher activity")

    def _resolve_package(self, name: str) -> str | None:
        """Package for ``name``: a package name, a configured label, or a label matched against package names.

        Android has no shell command that lists app labels, so a label is matched against the
        segments of installed package names ("Settings" -> com.android.settings), with a few
        aliases for stock apps whose package differs from the label ("Play Store" -> com.android.vending).
        None when nothing matches: pass a package name or add the label to ``AdbConfig.apps``.
        """
        for label, package in self.config.apps.items():
            if label.casefold() == name.strip().casefold():
                return package
        packages = self._installed_packages()
        if name.strip() in packages:
            return name.strip()
        key = re.sub(r"[^0-9a-z]", "", name.casefold())
        if key:
            for candidate in _ALIAS_KEYS.get(key, ()):
                if candidate in packages:
                    return candidate
            best = max(packages, key=lambda pkg: (_label_score(key, pkg), -len(pkg)), default=None)
            if best is not None and _label_score(key, best) > 0:
                return best
        return None

    def _installed_packages(self) -> set[str]:
        if self._packages is None:
            output = self._run("listing packages", [["pm", "list", "packages"]])
            self._packages = {line[8:].strip() for line in output.splitlines() if line.startswith("package:")}
        return self._packages

    # --- geometry ----------------------------------------------------------------------------

    def _refresh_geometry(self) -> None:
        output = self._run("reading the screen size", [["wm", "size"]])
        sizes = dict(re.findall(r"(Physical|Override) size:\s*(\d+x\d+)", output))
        size = sizes.get("Override") or sizes.get("Physical")
        if size is None:
            raise _CommandFailed(f"unexpected 'wm size' output: {output.strip()[:200]!r}")
        width, height = (int(v) for v in size.split("x"))
        self._natural = (width, height)
        self._rotation = self._query_rotation()

    def _query_rotation(self) -> int:
        output = self._run("reading the rotation", [["dumpsys", "input"]])
        match = re.search(r"SurfaceOrientation:\s*(\d)", output)
        if match is None:
            output = self._run("reading the rotation", [["dumpsys", "window", "displays"]])
            match = re.search(r"mCurrentRotation=(?:ROTATION_)?(\d+)", output)
        if match is None:
            log.debug("rotation of %s unknown, assuming 0", self.serial)
            return 0
        value = int(match.group(1))
        return value * 90 if value < 4 else value

    def _density_dpi(self) -> int:
        if self._density is None:
            output = self._run("reading the density", [["wm", "density"]])
            found = dict(re.findall(r"(Physical|Override) density:\s*(\d+)", output))
            self._density = int(found.get("Override") or found.get("Physical") or 0)
        return self._density

    # --- capture -----------------------------------------------------------------------------

    def _capture(self) -> tuple[Image.Image, str]:
        self._check_open()
        if self._raw_ok:
            data = self._exec_out("screencap")
            try:
                return decode_raw_screencap(data), "raw"
            except ValueError as exc:
                if self.config.screencap == "raw":
                    raise _CommandFailed(f"raw screencap unusable: {exc}") from exc
                log.warning("raw screencap unusable on %s (%s); using screencap -p from now on", self.serial, exc)
                self._raw_ok = False
        data = self._exec_out("screencap -p")
        try:
            with Image.open(io.BytesIO(data)) as png:
                return png.convert("RGB"), "png"
        except (UnidentifiedImageError, OSError) as exc:
            raise DeviceError(f"screencap -p returned {len(data)} bytes that are not an image") from exc

    def _exec_out(self, command: str) -> bytes:
        """Run ``exec:COMMAND`` (no terminal, binary-safe) and read all of its output in large chunks."""
        return self._service("exec:" + command, self.config.capture_timeout)

    def _service(self, service: str, timeout: float) -> bytes:
        """Open one connection to the device, run ``service`` (``shell:CMD``, ``exec:CMD``) and read it to the end.

        One connection per command, closed without a pause once the device has closed its side:
        adbutils' shell opens a second one (``host:version``) and sleeps 10 ms closing each, ~20 ms a
        command, which is more than a command takes over loopback and a tenth of it on a phone.
        """
        if self._tport is None:
            self._tport = self._client.server_version() >= 41  # host:tport needs adb 1.0.41 (platform-tools 28)
        conn = self._client.make_connection(timeout=timeout)
        sock = conn.conn
        try:
            if self._tport:
                conn.send_command(f"host:tport:serial:{self.serial}")
                conn.check_okay()
                conn.read(8)  # the transport id
            else:
                conn.send_command(f"host:transport:{self.serial}")
                conn.check_okay()
            conn.send_command(service)
            conn.check_okay()
            buffer = bytearray()
            while chunk := sock.recv(1 << 20):
                buffer += chunk
            return bytes(buffer)
        finally:
            sock.close()

    def _shell_once(self, line: str, timeout: float) -> ShellResult:
        """``line`` in a v1 device shell with its exit status appended, as adbutils does (``; echo X4EXIT:$?``)."""
        data = self._service(f"shell:{line}; echo {_EXIT_MARK}$?", timeout)
        mark = data.rfind(_EXIT_MARK.encode())
        if mark < 0:
            raise DeviceError(f"the shell on {self.serial} ended without its exit status: {data[-200:]!r}")
        try:
            status = int(data[mark + len(_EXIT_MARK) :].strip())
        except ValueError:
            raise DeviceError(f"unreadable exit status from the shell on {self.serial}: {data[mark:][:40]!r}") from None
        return ShellResult(status, data[:mark].decode("utf-8", "replace").rstrip())

    # --- plumbing ----------------------------------------------------------------------------

    def _run(self, what: str, commands: Sequence[Sequence[str]]) -> str:
        """Run argv lists in one device shell (joined by ``&&``), each argument quoted; return the output."""
        self._check_open()
        line = " && ".join(shlex.join(argv) for argv in commands)

        def once() -> str:
            result = self._shell_once(line, self.config.timeout)
            if result.status != 0:
                raise _CommandFailed(f"{what} failed on {self.serial} (exit {result.status}): {result.output[:300]}")
            return result.output

        log.debug("%s: adb shell %s", self.serial, line)
        return self._call(what, once)

    def _shell(self, what: str, argv: Sequence[str], *, timeout: float | None = None) -> ShellResult:
        """One argv in the device shell, every argument quoted; the exit status is returned, not raised
        (the AdbShell that AdbState reads through). Lost connections are retried, then a DeviceError."""
        self._check_open()
        line = shlex.join(argv)
        log.debug("%s: adb shell %s", self.serial, line)
        return self._call(what, lambda: self._shell_once(line, timeout or self.config.timeout))

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Call ``fn`` translating adbutils/socket errors and retrying lost connections."""
        retrying = Retrying(
            stop=stop_after_attempt(self.config.attempts),
            wait=wait_exponential(multiplier=self.config.retry_wait, max=2.0),
            retry=retry_if_exception_type(DeviceError)
            & retry_if_not_exception_type((ActionNotSupportedError, _CommandFailed)),
            before_sleep=lambda state: log.warning(
                "%s failed (attempt %d), retrying: %s",
                what,
                state.attempt_number,
                state.outcome.exception() if state.outcome else None,
            ),
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                try:
                    return fn()
                except (DeviceError, ConfigError):
                    raise
                except Exception as exc:
                    translated = self._translate(what, exc)
                    if translated is None:
                        raise
                    raise translated from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _translate(self, what: str, exc: Exception) -> DeviceError | None:
        from adbutils.errors import AdbConnectionError, AdbError, AdbTimeout

        where = getattr(self, "serial", None) or self._where
        if isinstance(exc, (AdbTimeout, socket.timeout, TimeoutError)):
            return DeviceTimeoutError(f"{what} on {where} timed out: {exc}")
        if isinstance(exc, (AdbConnectionError, OSError, EOFError)):
            return DeviceError(
                f"lost the connection to the adb server at {self._where} while {what} on {where}: {exc}. "
                "Check that the adb server runs and 'adb devices' lists the phone."
            )
        if isinstance(exc, AdbError):
            text = str(exc)
            if "not found" in text or "offline" in text or "unauthorized" in text:
                return DeviceNotFoundError(f"{where} is not available while {what}: {text}. Check 'adb devices'.")
            return DeviceError(f"{what} on {where} failed: {text}")
        return None

    def _check_open(self) -> None:
        if self._closed:
            raise DeviceError(f"{self.name} is closed")


def _label_score(key: str, package: str) -> int:
    parts = [re.sub(r"[^0-9a-z]", "", p) for p in package.casefold().split(".")]
    if parts and parts[-1] == key:
        return 4
    if key in parts:
        return 3
    if parts and key in parts[-1]:
        return 2
    return 1 if key in "".join(parts) else 0


def _is_adb_error(exc: BaseException, *, timeout: bool) -> bool:
    from adbutils.errors import AdbError, AdbTimeout

    return isinstance(exc, AdbError) and (timeout or not isinstance(exc, AdbTimeout))
