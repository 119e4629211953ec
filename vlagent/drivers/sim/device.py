"""One served phone as an adb server sees it: the SimPhone, its shell, files, settings and options.

:class:`SimDevice` is the host of the simulated shell (:mod:`.shell`): it looks programs up
in :mod:`.programs`, keeps the recent commands it ran in :attr:`SimDevice.log` (tests use it to
prove that text sent by a driver ran as one command and nothing else; the newest
:data:`LOG_SIZE`, each cut to :data:`LOG_ENTRY_CHARS`, so a server that runs for days keeps
a few megabytes of them), and holds the state a
phone keeps outside the screen: its files (:class:`~.files.SimFiles`), the ``settings``
table, the input methods. Its options choose which Android version's output formats it
prints and inject the failures clients must survive (``uiautomator dump`` errors).

This module must not know the adb protocol (that is :mod:`.adb_server`).
"""

from __future__ import annotations

import io
import logging
import struct
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from vlagent.drivers.android_keys import ADB_KEYBOARD_PACKAGE
from vlagent.drivers.sim.content import ContentState
from vlagent.drivers.sim.files import FsError, SimFiles
from vlagent.drivers.sim.logcat import SimLog
from vlagent.drivers.sim.programs_state import SettingsTable
from vlagent.drivers.sim.shell import NESTING_ERROR, ProgramError, Result, run_script

if TYPE_CHECKING:
    from PIL import Image

    from vlagent.drivers.sim.world import SimPhone

__all__ = ["LOG_ENTRY_CHARS", "LOG_SIZE", "ActivityFormat", "KeyguardFormat", "SimDevice"]

log = logging.getLogger(__name__)

#: How many recent commands (and command lines) a served phone remembers.
LOG_SIZE = 1000
#: How many characters of one logged command (all its arguments together) or command line are kept.
LOG_ENTRY_CHARS = 4096
#: How many arguments of one logged command are kept (a short argument still costs an object).
_LOG_ARGS = 256
LATIN_IME = "com.google.android.inputmethod.latin/com.android.inputmethod.latin.LatinIME"
KeyguardFormat = Literal["delegate", "status_bar", "lockscreen"]
ActivityFormat = Literal["resumed", "top_resumed"]
#: The shell user's environment on a phone (``adb shell echo $EXTERNAL_STORAGE`` prints /sdcard).
_ENVIRONMENT = {
    "ANDROID_DATA": "/data",
    "ANDROID_ROOT": "/system",
    "ANDROID_STORAGE": "/storage",
    "EXTERNAL_STORAGE": "/sdcard",
    "HOME": "/",
    "PATH": "/product/bin:/apex/com.android.runtime/bin:/system/bin:/system/xbin:/odm/bin:/vendor/bin",
    "SHELL": "/bin/sh",
    "TMPDIR": "/data/local/tmp",
    "USER": "shell",
}
#: Packages on every simulated phone besides its apps (system services, the launcher, the keyboard).
SYSTEM_PACKAGES = (
    "android",
    "com.android.launcher3",
    "com.android.providers.contacts",
    "com.android.providers.settings",
    "com.android.systemui",
    "com.google.android.inputmethod.latin",
)
#: Packages a user installed (``pm list packages -3``); the rest ship with the phone.
THIRD_PARTY_PACKAGES = frozenset({"com.vlagent.notes", ADB_KEYBOARD_PACKAGE})


@dataclass
class SimDevice:
    """One served phone: the SimPhone, its shell, and a log of the commands that ran."""

    phone: SimPhone
    serial: str
    transport_id: int
    adbkeyboard: bool = True
    """Whether the ADBKeyboard app is installed (it starts disabled, as after ``adb install``)."""
    raw_header: int = 16
    """Raw screencap header size: 16 on Android 12+, 12 before."""
    rotation: int = 0
    """Reported display rotation in degrees. With 90 or 270, ``wm size`` reports the natural
    (swapped) size as a real phone does; build the SimPhone in landscape for such a device."""
    keyguard_format: KeyguardFormat = "delegate"
    """Which Android version's keyguard lines ``dumpsys window`` prints: "delegate" (10+,
    ``KeyguardServiceDelegate`` ... ``showing=``), "status_bar" (8-9, ``isStatusBarKeyguard=``)
    or "lockscreen" (up to 7, ``mShowingLockscreen=``)."""
    activity_format: ActivityFormat = "top_resumed"
    """How ``dumpsys activity activities`` names the resumed activity: "resumed" (Android 9-10,
    ``mResumedActivity: ActivityRecord{...}``) or "top_resumed" (11-15, ``topResumedActivity=``
    and ``ResumedActivity:``)."""
    dump_failures: int = 0
    """The next N ``uiautomator dump`` runs fail with ``ERROR: could not get idle state.`` (an
    animating screen), as real phones do; each failing run counts one down."""
    truncated_dumps: int = 0
    """The next N ``uiautomator dump`` runs write (or print) only the first half of the XML."""
    _log: deque[list[str]] = field(default_factory=lambda: deque(maxlen=LOG_SIZE), repr=False)
    _lines: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_SIZE), repr=False)
    enabled_imes: list[str] = field(default_factory=lambda: [LATIN_IME])
    current_ime: str = LATIN_IME
    files: SimFiles = field(default_factory=SimFiles)
    """The phone's files (``/sdcard``, ``/data/local/tmp``), shared by the shell and the sync service."""
    settings: SettingsTable = field(default_factory=SettingsTable)
    """The ``settings`` keys that are not phone toggles (toggles are read from the phone itself)."""
    logcat: SimLog = field(default_factory=SimLog)
    """The system log ``log`` writes and ``logcat`` reads."""
    content: ContentState = field(default_factory=ContentState)
    """Row ids of the notes and contacts providers (``content query`` shows ``_id``)."""
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _raw_cache: tuple[Image.Image, bytes] | None = field(default=None, repr=False)

    @property
    def log(self) -> list[list[str]]:
        """argv of the recent commands the shell ran or tried to run, oldest first (a copy).

        The newest :data:`LOG_SIZE`; a longer command keeps its first :data:`LOG_ENTRY_CHARS`
        characters, then ``... [N more characters]``.
        """
        with self._lock:
            return [list(argv) for argv in self._log]

    @property
    def lines(self) -> list[str]:
        """The recent command lines received by ``shell:`` / ``exec:`` services, oldest first, cut as :attr:`log`."""
        with self._lock:
            return list(self._lines)

    def commands(self, program: str | None = None) -> list[list[str]]:
        """Logged commands, optionally only those of one program; ``echo X4EXIT`` markers left out."""
        with self._lock:
            return [
                argv
                for argv in self.log
                if not (argv[:1] == ["echo"] and any(a.startswith("X4EXIT:") for a in argv))
                and (program is None or argv[:1] == [program])
            ]

    def clear(self) -> None:
        with self._lock:
            self._log.clear()
            self._lines.clear()

    def packages(self) -> list[str]:
        found = set(SYSTEM_PACKAGES)
        found.update(self.phone.packages())
        if self.adbkeyboard:
            found.add(ADB_KEYBOARD_PACKAGE)
        return sorted(found)

    def third_party(self, package: str) -> bool:
        return package in THIRD_PARTY_PACKAGES

    # --- the shell's host -------------------------------------------------------------------

    def run_line(self, line: str) -> Result:
        """Run a shell command line; syntax errors run nothing (status 2), like ``sh -c``.

        Never raises: a failure of the simulated shell itself is that line's error (stderr,
        status 2 for nesting too deep, else 1), logged with one warning line.
        """
        with self._lock:
            self._lines.append(_clip(line))
        try:
            return run_script(self, line)
        except RecursionError:
            log.warning("simulated shell on %s: nesting too deep in a %d-character line", self.serial, len(line))
            return Result(stderr=NESTING_ERROR, status=2)
        except Exception as exc:  # a bug in the simulated shell must answer this line, not kill its connection
            log.warning("simulated shell on %s failed: %s: %s", self.serial, type(exc).__name__, exc)
            log.debug("simulated shell failure on %r", line[:200], exc_info=True)
            return Result(stderr=f"/system/bin/sh: internal error: {type(exc).__name__}\n".encode(), status=1)

    def run_program(self, argv: list[str], stdin: bytes) -> Result:
        from vlagent.drivers.sim.programs import LOCK_FREE, PROGRAMS, STDIN_PROGRAMS  # programs import this module

        program = argv[0].rsplit("/", 1)[-1]
        with self._lock:
            self._log.append(_clip_argv(argv))  # a bounded deque: a long `vlagent sim serve` session stays small
        reader = STDIN_PROGRAMS.get(program)
        handler = PROGRAMS.get(program)

        def run() -> Result:
            if reader is not None:
                return reader(self, argv[1:], stdin)
            assert handler is not None
            return handler(self, argv[1:])

        if reader is None and handler is None:
            return Result(stderr=f"/system/bin/sh: {argv[0]}: inaccessible or not found\n".encode(), status=127)
        try:
            if program in LOCK_FREE:  # waiting must not hold up the phone's other connections
                return run()
            with self._lock:
                return run()
        except ProgramError as exc:
            return Result(stderr=f"{program}: {exc}\n".encode(), status=exc.status)
        except FsError as exc:
            return Result(stderr=f"{program}: {exc}\n".encode(), status=1)
        except Exception as exc:  # a bug in the simulated phone must not kill the server
            log.warning("simulated %s failed: %s: %s", program, type(exc).__name__, exc)
            log.debug("simulated %s failed on %r", program, _clip_argv(argv), exc_info=True)
            return Result(stderr=f"{program}: {exc}\n".encode(), status=1)

    def variable(self, name: str) -> str:
        return _ENVIRONMENT.get(name, "")

    def read_file(self, path: str) -> bytes:
        try:
            return self.files.read(path)
        except FsError as exc:
            raise ProgramError(str(exc)) from None

    def write_file(self, path: str, data: bytes, append: bool) -> None:
        try:
            self.files.write(path, data, append=append)
        except FsError as exc:
            raise ProgramError(str(exc)) from None

    # --- screencap ------------------------------------------------------------------------------

    def screencap(self, png: bool) -> bytes:
        image = self.phone.render(copy=False)
        if png:
            buffer = io.BytesIO()
            image.save(buffer, format="PNG", compress_level=1)
            return buffer.getvalue()
        cached = self._raw_cache
        if cached is not None and cached[0] is image:  # the phone re-uses its frame while nothing changes
            return cached[1]
        header = struct.pack("<III", image.width, image.height, 1)
        if self.raw_header == 16:
            header += struct.pack("<I", 0)  # colour space: unknown/sRGB
        data = header + image.convert("RGBA").tobytes()
        self._raw_cache = (image, data)
        return data

    def framebuffer(self) -> bytes:
        """The ``framebuffer:`` service's answer: a version-2 header (AOSP framebuffer_service) and RGBA pixels."""
        image = self.phone.render(copy=False)
        pixels = image.convert("RGBA").tobytes()
        # version, bpp, colour space (1 = sRGB), size, width, height, then offset/length of R, B, G, A.
        header = struct.pack("<14I", 2, 32, 1, len(pixels), image.width, image.height, 0, 8, 16, 8, 8, 8, 24, 8)
        return header + pixels


def _clip(text: str, limit: int = LOG_ENTRY_CHARS) -> str:
    """``text``, or its first ``limit`` characters and how many more there were."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit} more characters]"


def _clip_argv(argv: list[str]) -> list[str]:
    """A copy of ``argv`` for the log: at most :data:`LOG_ENTRY_CHARS` characters in all and
    :data:`_LOG_ARGS` arguments; the last argument kept says how much was left out."""
    if len(argv) <= _LOG_ARGS and sum(map(len, argv)) <= LOG_ENTRY_CHARS:
        return list(argv)
    kept: list[str] = []
    budget = LOG_ENTRY_CHARS
    for arg in argv[:_LOG_ARGS]:
        if len(arg) > budget:
            kept.append(arg[:budget])
            budget = 0
            break
        kept.append(arg)
        budget -= len(arg)
    left_out = sum(map(len, argv)) - sum(map(len, kept))
    args_left_out = len(argv) - len(kept)
    more = f"{left_out} more characters" + (f" in {args_left_out} more arguments" if args_left_out else "")
    if kept:
        kept[-1] = f"{kept[-1]}... [{more}]"
    return kept
