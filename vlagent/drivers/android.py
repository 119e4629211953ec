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

A dead phone is reported, not waited on: every device call (screenshot, input, shell, dump) is
retried here, with back-off and a new connection, until ``attempts`` tries or ``call_deadline``
seconds (20 by default), and every socket wait is cut to the time left; the loop does not retry
on top (``retries_device_errors``). After a call gave up, the next one looks once (``echo``, two
seconds at most) and fails at once while the phone stays silent. No adb server is started where
the user named one (options or environment): an absent one is reported as such.

The driver's parts live beside it: ``android_config`` (AdbConfig), ``android_conn`` (reaching the
adb server), ``android_power`` (wake and lock screen), ``android_typing`` (typing read back),
``android_state`` (DeviceState over adb), ``android_keys`` (key codes).

What this module must not do: let the device shell interpret any text it sends. Every
argument is quoted (argv lists joined with ``shlex.quote``) and ``input text`` gets its own
``%s`` encoding for spaces. It also must not import adbutils at import time, type or guess a
lock-screen credential, or change the phone's settings to keep its screen on.
"""

from __future__ import annotations

import io
import logging
import re
import shlex
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from PIL import Image, UnidentifiedImageError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
)

from vlagent.actions import Action, Click, Done, Key, LongPress, OpenApp, Scroll, Swipe, Type, Wait
from vlagent.drivers.android_config import AdbConfig, split_spec
from vlagent.drivers.android_conn import AdbServer, NothingListens, ServerLink
from vlagent.drivers.android_keys import ADB_KEYBOARD_IME, ANDROID_KEYCODES
from vlagent.drivers.android_power import (
    KEYCODE_WAKEUP,
    ScreenGuard,
    is_black,
    parse_keyguard_showing,
    parse_wakefulness,
)
from vlagent.drivers.android_state import AdbState, CommandFailed, ShellResult
from vlagent.drivers.android_typing import Typist, input_text_chunks
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
from vlagent.outcome import ActionOutcome
from vlagent.tasks.state import StartState

if TYPE_CHECKING:
    from adbutils import AdbClient

__all__ = [
    "ADB_KEYBOARD_IME",
    "ANDROID_KEYCODES",
    "KEYCODE_WAKEUP",
    "AdbConfig",
    "AdbDriver",
    "DeviceLockedError",
    "connect_network",
    "create_driver",
    "decode_raw_screencap",
    "input_text_chunks",
    "list_serials",
    "parse_keyguard_showing",
    "parse_wakefulness",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Longest look (one ``echo``) at whether a phone that stopped answering answers again; a fifth of
#: ``call_deadline`` when that is shorter.
_RECHECK_S = 2.0

#: What the shell prints after each command's output, followed by its exit status (as adbutils marks it).
_EXIT_MARK = "X4EXIT:"
#: Fraction of the screen kept free at each end of a scroll swipe: Android's back-gesture
#: inset is 24 dp by default (66 px, 6% of a 1080-px-wide 2.75x screen).
SCROLL_EDGE_MARGIN = 0.08
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


def create_driver(arg: str | None, **options: Any) -> AdbDriver:
    """Registry factory: ``arg`` is ``SERIAL``, ``SERIAL?option=value&...`` or ``?option=value`` (None or an
    empty serial: the only connected device). Keyword options win over those in ``arg``."""
    serial, from_spec = split_spec(arg)
    options = {**from_spec, **options}
    names = {f.name for f in fields(AdbConfig)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise ConfigError(f"unknown adb option(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    return AdbDriver(serial, AdbConfig(**options))


def list_serials(config: AdbConfig | None = None) -> list[str]:
    """Serials of the devices the adb server reports as ready; DeviceNotFoundError if it is unreachable
    (no server is started where the user named one, see :mod:`vlagent.drivers.android_conn`)."""
    config = config or AdbConfig()
    return _ask_server(config, lambda client: [info.serial for info in client.list() if info.state == "device"])


def connect_network(address: str, config: AdbConfig | None = None) -> str:
    """``adb connect ADDRESS`` (a phone with wireless debugging joins the adb server); the server's
    answer: ``connected to HOST:PORT``, ``already connected to ...``, ``failed to connect to ...``.
    DeviceNotFoundError if the server is unreachable."""
    config = config or AdbConfig()
    return _ask_server(config, lambda client: str(client.connect(address, timeout=config.call_deadline)))


def _ask_server(config: AdbConfig, ask: Callable[[Any], T]) -> T:
    """``ask(client)`` of the adb server within ``call_deadline``; DeviceNotFoundError when unreachable."""
    try:
        import adbutils  # noqa: F401 - only to say which extra is missing
    except ImportError as exc:
        raise MissingExtraError("android", "adbutils", "Talking to the adb server") from exc
    server = config.adb_server
    end = time.monotonic() + config.call_deadline
    link = ServerLink(server, timeout=min(config.timeout, 3.0), time_left=lambda: end - time.monotonic())
    try:
        link.check()
        return ask(link.client())
    except Exception as exc:
        if _is_adb_error(exc, timeout=True) or isinstance(exc, OSError):
            raise DeviceNotFoundError(_unreachable(server, exc)) from exc
        raise


def _unreachable(server: AdbServer, exc: BaseException) -> str:
    """One line: no adb server answers at ``server``, and what to do."""
    why = "nothing listens there" if isinstance(exc, NothingListens) else _one_line(str(exc)) or type(exc).__name__
    named = (
        " (vlagent does not start a server on a host or port you named)"
        if server.named and isinstance(exc, NothingListens)
        else ""
    )
    return (
        f"cannot reach the adb server at {server}: {why}{named}. Install Android platform-tools and start it with "
        f"'{server.how_to_start()}', or point vlagent at another server with the host/port options "
        "(ANDROID_ADB_SERVER_HOST / ANDROID_ADB_SERVER_PORT)."
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())


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


class AdbDriver(BaseDriver):
    """An Android device reached through an adb server.

    Every device call is retried here (lost connection, device missing or offline, a try timing out)
    within ``AdbConfig.call_deadline``, so callers must not retry on top: ``retries_device_errors``.
    """

    _capabilities: Capabilities = PHONE_CAPABILITIES
    retries_device_errors: bool = True

    def __init__(self, serial: str | None = None, config: AdbConfig | None = None) -> None:
        self.config = config or AdbConfig()
        try:
            import adbutils  # noqa: F401 - only to say which extra is missing
        except ImportError as exc:
            raise MissingExtraError("android", "adbutils", "Driving an Android phone") from exc
        self._server = self.config.adb_server
        self._where = str(self._server)
        self._calls = _CallState()  # per thread: when the current call must end
        self._lost: tuple[float, str] | None = None  # since when, and why, the phone has not answered
        self._link = ServerLink(self._server, timeout=self.config.timeout, time_left=self._time_left)
        self._client: AdbClient = self._link.client()
        self._tport: bool | None = None  # whether the adb server knows host:tport (asked once per server)
        self._check_server()
        self.serial = self._call("finding the device", lambda: self._pick_serial(serial))
        self.name = f"adb:{self.serial}"
        self._natural: tuple[int, int] | None = None
        self._rotation: int = 0
        self._density: int | None = None
        self._packages: set[str] | None = None
        self._typist = Typist(self)
        self._raw_ok = self.config.screencap != "png"
        self._closed = False
        self._guard = ScreenGuard(self)
        log.info("opened %s via adb server %s", self.name, self._where)
        if self.config.wake:
            self._guard.wake_at_open()

    # --- device selection -------------------------------------------------------------

    def _check_server(self) -> None:
        """At open, that something listens where the adb server should be (not retried: a server that is
        not there is the setup's, not a blip). Only the default server is started, once, when absent."""
        self._calls.deadline = time.monotonic() + self.config.call_deadline
        try:
            self._link.check()
        except NothingListens as exc:
            raise DeviceNotFoundError(_unreachable(self._server, exc)) from exc
        except OSError:
            pass  # a hang or another failure: finding the device retries it and reports it
        finally:
            self._calls.deadline = None

    def _pick_serial(self, wanted: str | None) -> str:
        try:
            infos = self._client.list()
        except Exception as exc:
            if _is_adb_error(exc, timeout=False) or (isinstance(exc, OSError) and not isinstance(exc, TimeoutError)):
                raise DeviceNotFoundError(_unreachable(self._server, exc)) from exc
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
        if self.config.wake and (self._guard.credential_lock or is_black(image)):
            image, how = self._guard.recover(image, how)
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
            return self._typist.type(action.text, action.submit)
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
            raise CommandFailed(f"unexpected 'wm size' output: {output.strip()[:200]!r}")
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
                    raise CommandFailed(f"raw screencap unusable: {exc}") from exc
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
        wait = self._link.cap(timeout)  # the whole command, handshake to last byte, within this
        end = time.monotonic() + wait

        def left() -> float:
            remaining = end - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no answer within {wait:.1f} s")
            return remaining

        if self._tport is None:
            self._tport = self._client.server_version() >= 41  # host:tport needs adb 1.0.41 (platform-tools 28)
        conn = self._client.make_connection(timeout=left())
        sock = conn.conn
        try:
            if self._tport:
                conn.send_command(f"host:tport:serial:{self.serial}")
                conn.check_okay()
                conn.read(8)  # the transport id
            else:
                conn.send_command(f"host:transport:{self.serial}")
                conn.check_okay()
            sock.settimeout(left())
            conn.send_command(service)
            conn.check_okay()
            buffer = bytearray()
            while True:
                sock.settimeout(left())
                chunk = sock.recv(1 << 20)
                if not chunk:
                    return bytes(buffer)
                buffer += chunk
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
                raise CommandFailed(f"{what} failed on {self.serial} (exit {result.status}): {result.output[:300]}")
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
        """Call ``fn``, translating adbutils/socket errors and retrying what a new try may fix (a lost
        connection, a missing or offline device, a timeout) with back-off and a new connection each
        time, until ``attempts`` tries or ``call_deadline`` seconds, whichever comes first; every socket
        wait is cut to the time left. After a call gave up, the next one first looks (``echo``, a few
        seconds at most) whether the phone answers again, and fails at once when it does not."""
        if self._calls.deadline is not None:  # inside another call: that one retries, within its deadline
            return self._once(what, fn)
        started = time.monotonic()
        self._calls.deadline = started + self.config.call_deadline
        tries = 0

        def counted() -> T:
            nonlocal tries
            tries += 1
            return self._once(what, fn)

        try:
            if self._lost is not None:
                self._recheck(what)
            result = self._retrying(what, counted)
        except DeviceError as exc:
            if tries and _retryable(exc):
                said = str(exc).rstrip(".")
                exc.args = (f"{said}. Gave up after {tries} tries in {time.monotonic() - started:.1f} s.",)
                if hasattr(self, "serial"):
                    self._lost = (time.monotonic(), str(exc))
            raise
        finally:
            self._calls.deadline = None
        if self._lost is not None:
            log.info("%s answers again", self.serial)
            self._lost = None
        return result

    def _retrying(self, what: str, fn: Callable[[], T]) -> T:
        backoff = wait_exponential(multiplier=self.config.retry_wait, max=2.0)
        limits = stop_after_attempt(self.config.attempts) | stop_after_delay(self.config.call_deadline)

        def stop(state: RetryCallState) -> bool:  # the limits, or no time left for the wait and a try
            return limits(state) or (self._time_left() or 0.0) - backoff(state) < 0.05

        retrying = Retrying(
            stop=stop,
            wait=backoff,
            retry=retry_if_exception(_retryable),
            before_sleep=lambda state: log.warning(
                "%s on %s failed (try %d), trying again: %s",
                what,
                self._where_device(),
                state.attempt_number,
                state.outcome.exception() if state.outcome else None,
            ),
            reraise=True,
        )
        return retrying(fn)

    def _once(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except (DeviceError, ConfigError):
            raise
        except Exception as exc:
            if isinstance(exc, (OSError, EOFError)):
                self._tport = None  # a new server may answer the next try: ask its version again
            translated = self._translate(what, exc)
            if translated is None:
                raise
            raise translated from exc

    def _recheck(self, what: str) -> None:
        """One quick look (``echo``) at a phone that stopped answering: DeviceError at once when it still does not."""
        assert self._lost is not None
        since, first = self._lost
        self._calls.deadline = time.monotonic() + min(_RECHECK_S, self.config.call_deadline / 5)
        try:
            self._shell_once("echo", _RECHECK_S)
        except Exception as exc:
            now = exc if isinstance(exc, DeviceError) else self._translate("looking whether it answers", exc)
            error = type(now) if isinstance(now, DeviceError) else DeviceError
            raise error(
                f"{what} on {self.serial} not tried: the phone has not answered for {time.monotonic() - since:.0f} s "
                f"and still does not ({_one_line(str(now or exc))}); first: {first}"
            ) from exc
        finally:
            self._calls.deadline = time.monotonic() + self.config.call_deadline

    def _time_left(self) -> float | None:
        return None if self._calls.deadline is None else self._calls.deadline - time.monotonic()

    def _where_device(self) -> str:
        return getattr(self, "serial", None) or self._where

    def _translate(self, what: str, exc: Exception) -> DeviceError | None:
        """The DeviceError for an adbutils or socket error, in one line naming the device and the step."""
        from adbutils.errors import AdbConnectionError, AdbError, AdbTimeout

        where = self._where_device()
        text = _one_line(str(exc)) or type(exc).__name__
        if isinstance(exc, (AdbTimeout, socket.timeout, TimeoutError)):
            return DeviceTimeoutError(f"{what} on {where} timed out: {text}")
        if isinstance(exc, (AdbConnectionError, OSError, EOFError)):
            return DeviceError(
                f"lost the connection to the adb server at {self._where} while {what} on {where}: {text}. "
                "Check that the adb server runs and 'adb devices' lists the phone."
            )
        if isinstance(exc, AdbError):
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


class _CallState(threading.local):
    """The current device call of one thread: ``deadline``, a time.monotonic() by which it must end (None: no call)."""

    deadline: float | None = None


def _retryable(exc: BaseException) -> bool:
    """Whether a new try may succeed: a lost connection, a missing or offline device, a timeout; not a
    command that ran and failed, an action the device cannot do or a locked phone."""
    return isinstance(exc, DeviceError) and not isinstance(
        exc, (ActionNotSupportedError, CommandFailed, DeviceLockedError)
    )


def _is_adb_error(exc: BaseException, *, timeout: bool) -> bool:
    from adbutils.errors import AdbError, AdbTimeout

    return isinstance(exc, AdbError) and (timeout or not isinstance(exc, AdbTimeout))
