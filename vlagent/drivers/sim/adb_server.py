"""The simulated phone served over the real adb host protocol.

``serve_sim`` starts a loopback server that answers what an adb server answers (the
``host:*`` services, transports, ``shell:``, ``shell,v2:``, ``exec:``), so adbutils,
:class:`vlagent.drivers.android.AdbDriver` and the ``adb`` command-line client drive
:class:`~vlagent.drivers.sim.world.SimPhone` instances exactly as they drive a phone.

Shell command lines are read the way a POSIX shell reads them (quotes, escapes, ``;``
``&&`` ``||`` ``|``, ``$(...)``, backticks, ``$?``), and every command the "device" ran is
kept in :attr:`SimDevice.log`: tests use it to prove that text sent by a driver ran as
one command and nothing else. Unknown programs are logged too, then fail with 127.

The power state and lock screen of each phone are reported the way real phones report
them: ``dumpsys power`` prints ``mWakefulness=Awake|Asleep`` and ``Display Power:
state=ON|OFF``; ``dumpsys window [policy]`` prints the keyguard lines of the Android version
chosen by :attr:`SimDevice.keyguard_format` (``KeyguardServiceDelegate`` / ``showing=`` on
Android 10+, ``isStatusBarKeyguard=`` on 8-9, ``mShowingLockscreen=`` up to 7; the lines
follow AOSP's PhoneWindowManager / KeyguardServiceDelegate dumps, and the same lines are
what Appium's appium-adb ``lockmgmt`` reads). ``input keyevent`` WAKEUP (224), SLEEP (223)
and POWER (26) and ``wm dismiss-keyguard`` act on the phone as on a real one.

What this module must not do: run anything on the host, listen beyond loopback, or die
on malformed input (a bad request closes that connection only).
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
import re
import socket
import socketserver
import struct
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from vlagent.drivers.android import ADB_KEYBOARD_IME, ADB_KEYBOARD_PACKAGE, ANDROID_KEYCODES

if TYPE_CHECKING:
    from PIL import Image

    from vlagent.drivers.sim.world import SimPhone

__all__ = [
    "ADB_SERVER_VERSION",
    "DEVICE_FEATURES",
    "KeyguardFormat",
    "ShellSyntaxError",
    "SimAdbServer",
    "SimDevice",
    "serve_forever",
    "serve_sim",
    "split_shell",
]

log = logging.getLogger(__name__)

#: Protocol version reported by ``host:version`` (41 = adb 1.0.41, what Debian's adb expects).
ADB_SERVER_VERSION = 41
#: Features the simulated devices advertise (``shell_v2`` makes the adb CLI use framed output).
DEVICE_FEATURES = "shell_v2,cmd,stat_v2,ls_v2,fixed_push_mkdir,apex,abb,abb_exec"
_MAX_REQUEST = 64 * 1024
_MAX_LOG = 20_000
_LATIN_IME = "com.google.android.inputmethod.latin/com.android.inputmethod.latin.LatinIME"
_KEYCODE_NAMES = {code: name for name, code in ANDROID_KEYCODES.items()}
_SYMBOLIC_KEYS = {
    "KEYCODE_DEL": "backspace",
    "KEYCODE_FORWARD_DEL": "delete",
    "KEYCODE_DPAD_UP": "up",
    "KEYCODE_DPAD_DOWN": "down",
    "KEYCODE_DPAD_LEFT": "left",
    "KEYCODE_DPAD_RIGHT": "right",
    "KEYCODE_MOVE_HOME": "line_start",
    "KEYCODE_MOVE_END": "line_end",
    "KEYCODE_SLEEP": "sleep",
    "KEYCODE_WAKEUP": "wakeup",
}
#: Power keys a phone knows but vlagent's Key action does not offer (android.view.KeyEvent).
_POWER_KEYCODES = {223: "sleep", 224: "wakeup"}
KeyguardFormat = Literal["delegate", "status_bar", "lockscreen"]


# --- a POSIX-shell reader ---------------------------------------------------------------------


class ShellSyntaxError(ValueError):
    """The command line is not valid shell (e.g. an unterminated quote): nothing runs."""


# A word is a list of (kind, text, quoted) segments: kind "lit", "var" ($NAME) or "cmd" ($(...)).
_Segment = tuple[str, str, bool]
_Word = list[_Segment]
_OPERATORS = ("&&", "||", ";;", ">>", ";", "&", "|", "(", ")", "<", ">")


def _lex(line: str) -> list[_Word | str]:
    """Split a command line into words and operator strings, as ``sh`` would before expanding."""
    out: list[_Word | str] = []
    word: _Word = []
    started = False
    i, n = 0, len(line)

    def flush() -> None:
        nonlocal word, started
        if started:
            out.append(word)
        word, started = [], False

    def lit(text: str, quoted: bool) -> None:
        nonlocal started
        word.append(("lit", text, quoted))
        started = True

    while i < n:
        c = line[i]
        if c in " \t":
            flush()
            i += 1
        elif c == "\n":
            flush()
            out.append(";")
            i += 1
        elif c == "#" and not started:
            while i < n and line[i] != "\n":
                i += 1
        elif c == "\\":
            if i + 1 < n and line[i + 1] != "\n":
                lit(line[i + 1], True)
            i += 2
        elif c == "'":
            end = line.find("'", i + 1)
            if end < 0:
                raise ShellSyntaxError("unterminated quoted string")
            lit(line[i + 1 : end], True)
            i = end + 1
        elif c == '"':
            i = _lex_double(line, i + 1, word)
            started = True
        elif c in "$`":
            i = _lex_dollar(line, i, word, quoted=False)
            started = True
        elif any(line.startswith(op, i) for op in _OPERATORS):
            flush()
            op = next(op for op in _OPERATORS if line.startswith(op, i))
            out.append(op)
            i += len(op)
        else:
            lit(c, False)
            i += 1
    flush()
    return out


def _lex_double(line: str, i: int, word: _Word) -> int:
    n = len(line)
    while i < n:
        c = line[i]
        if c == '"':
            word.append(("lit", "", True))  # keeps "" an (empty) word
            return i + 1
        if c == "\\" and i + 1 < n and line[i + 1] in '$`"\\\n':
            if line[i + 1] != "\n":
                word.append(("lit", line[i + 1], True))
            i += 2
        elif c in "$`":
            i = _lex_dollar(line, i, word, quoted=True)
        else:
            word.append(("lit", c, True))
            i += 1
    raise ShellSyntaxError("unterminated double-quoted string")


def _lex_dollar(line: str, i: int, word: _Word, *, quoted: bool) -> int:
    """Read ``$(...)``, backticks, ``${NAME}``, ``$NAME`` or ``$?`` starting at ``line[i]``."""
    n = len(line)
    if line[i] == "`":
        end = i + 1
        while end < n and line[end] != "`":
            end += 2 if line[end] == "\\" else 1
        if end >= n:
            raise ShellSyntaxError("unterminated backquote")
        word.append(("cmd", line[i + 1 : end], quoted))
        return end + 1
    if line.startswith("$(", i):
        depth, j, in_quote = 1, i + 2, ""
        while j < n and depth:
            ch = line[j]
            if in_quote:
                if ch == in_quote:
                    in_quote = ""
            elif ch in "'\"":
                in_quote = ch
            elif ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            j += 1
        if depth:
            raise ShellSyntaxError("unterminated $(")
        word.append(("cmd", line[i + 2 : j - 1], quoted))
        return j
    if line.startswith("${", i):
        end = line.find("}", i)
        if end < 0:
            raise ShellSyntaxError("bad substitution")
        word.append(("var", line[i + 2 : end], quoted))
        return end + 1
    match = re.compile(r"[?#$!@*0-9]|[A-Za-z_][A-Za-z0-9_]*").match(line, i + 1)
    if match is None:
        word.append(("lit", "$", quoted))
        return i + 1
    word.append(("var", match.group(0), quoted))
    return match.end()


def split_shell(line: str) -> list[list[str]]:
    """The simple commands in ``line`` with quotes removed and no expansion (for inspection)."""
    commands: list[list[str]] = [[]]
    for item in _lex(line):
        if isinstance(item, str):
            commands.append([])
        else:
            commands[-1].append("".join(text if kind == "lit" else f"${kind}" for kind, text, _ in item))
    return [c for c in commands if c]


# --- the simulated device -----------------------------------------------------------------------


@dataclass
class _Result:
    stdout: bytes = b""
    stderr: bytes = b""
    status: int = 0
    merged: bytes | None = None
    """stdout and stderr in the order they were written (what a v1 shell's single stream carries)."""

    @property
    def combined(self) -> bytes:
        return self.stdout + self.stderr if self.merged is None else self.merged


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
    log: list[list[str]] = field(default_factory=list)
    """argv of every command the shell ran or tried to run, in order."""
    lines: list[str] = field(default_factory=list)
    """Every command line received by ``shell:`` / ``exec:`` services."""
    enabled_imes: list[str] = field(default_factory=lambda: [_LATIN_IME])
    current_ime: str = _LATIN_IME
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _raw_cache: tuple[Image.Image, bytes] | None = field(default=None, repr=False)

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
            self.log.clear()
            self.lines.clear()

    def packages(self) -> list[str]:
        found = {"com.android.launcher3", "com.android.systemui", "com.google.android.inputmethod.latin"}
        found.update(self.phone.packages())
        if self.adbkeyboard:
            found.add(ADB_KEYBOARD_PACKAGE)
        return sorted(found)

    # --- running command lines --------------------------------------------------------------

    def run_line(self, line: str) -> _Result:
        """Run a shell command line; syntax errors run nothing (status 2), like ``sh -c``."""
        with self._lock:
            self.lines.append(line)
            if len(self.lines) > _MAX_LOG:
                del self.lines[: _MAX_LOG // 2]
            try:
                items = _lex(line)
            except ShellSyntaxError as exc:
                return _Result(stderr=f"/system/bin/sh: syntax error: {exc}\n".encode(), status=2)
            return self._run_items(items)

    def _run_items(self, items: list[_Word | str]) -> _Result:
        out = _Result(merged=b"")
        status, run_next, redirect = 0, True, False
        argv_words: list[_Word] = []
        for item in [*items, ";"]:
            if not isinstance(item, str):
                if redirect:
                    redirect = False  # the file name of > or <: nothing is written on this phone
                else:
                    argv_words.append(item)
                continue
            if item in ("<", ">", ">>"):
                redirect = True
                continue
            if item in ("(", ")"):
                continue
            if argv_words and run_next:
                argv = self._expand(argv_words, status, out)
                if argv:
                    result = self._run_argv(argv)
                    out.stdout += result.stdout
                    out.stderr += result.stderr
                    out.merged = (out.merged or b"") + result.combined
                    status = result.status
            argv_words = []
            run_next = {"&&": status == 0, "||": status != 0}.get(item, True)
        out.status = status
        return out

    def _expand(self, words: list[_Word], status: int, out: _Result) -> list[str]:
        argv: list[str] = []
        for word in words:
            fields: list[str] = [""]
            keep = False
            for kind, text, quoted in word:
                if kind == "lit":
                    fields[-1] += text
                    keep = keep or quoted or bool(text)
                    continue
                if kind == "var":
                    value = str(status) if text == "?" else ""
                else:  # command substitution: the inner line really runs (and is logged)
                    inner = self._run_items(_lex(text))
                    out.stderr += inner.stderr
                    out.merged = (out.merged or b"") + inner.stderr
                    value = inner.stdout.decode("utf-8", "replace").rstrip("\n")
                if quoted:
                    fields[-1] += value
                    keep = True
                else:
                    parts = value.split()
                    if parts:
                        fields[-1] += parts[0]
                        fields.extend(parts[1:])
                        keep = True
            if keep:
                argv.extend(fields)
        return argv

    def _run_argv(self, argv: list[str]) -> _Result:
        self.log.append(list(argv))
        if len(self.log) > _MAX_LOG:  # a long `vlagent sim serve` session must not grow without bound
            del self.log[: _MAX_LOG // 2]
        program = argv[0].rsplit("/", 1)[-1]
        handler = _PROGRAMS.get(program)
        if handler is None:
            return _Result(stderr=f"/system/bin/sh: {argv[0]}: inaccessible or not found\n".encode(), status=127)
        try:
            return handler(self, argv[1:])
        except _Usage as exc:
            return _Result(stderr=f"{program}: {exc}\n".encode(), status=exc.status)
        except Exception as exc:  # a bug in the simulated phone must not kill the server
            log.exception("simulated %s failed on %r", program, argv)
            return _Result(stderr=f"{program}: {exc}\n".encode(), status=1)

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


class _Usage(Exception):
    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def _ok(text: str = "") -> _Result:
    return _Result(stdout=text.encode("utf-8"))


def _coord(value: str) -> int:
    try:
        return round(float(value))
    except ValueError:
        raise _Usage(f"Error: Invalid arguments for command: {value!r} is not a number") from None


def _decode_input_text(text: str) -> str:
    """What Android's ``input text`` types for ``text`` (a port of Input.sendText: ``%s`` -> space)."""
    buff = list(text)
    escape = False
    i = 0
    while i < len(buff):
        if escape:
            escape = False
            if buff[i] == "s":
                buff[i] = " "
                i -= 1
                del buff[i]
        if buff[i] == "%":
            escape = True
        i += 1
    return "".join(buff)


def _input(dev: SimDevice, args: list[str]) -> _Result:
    sources = {"touchscreen", "touchpad", "keyboard", "mouse", "dpad", "gamepad", "stylus", "trackball", "joystick"}
    while args and (args[0] in sources or args[0] == "-d"):
        args = args[2:] if args[0] == "-d" else args[1:]
    if not args:
        raise _Usage("Usage: input [<source>] <command> [<arg>...]")
    command, rest = args[0], args[1:]
    phone = dev.phone
    if command == "tap" and len(rest) == 2:
        phone.tap(_coord(rest[0]), _coord(rest[1]))
    elif command in ("swipe", "draganddrop") and len(rest) in (4, 5):
        x1, y1, x2, y2 = (_coord(v) for v in rest[:4])
        ms = _coord(rest[4]) if len(rest) == 5 else 300
        # The phone reads the gesture as Android does: a swipe that stays put is a tap, or a long
        # press when held LONG_PRESS_TIMEOUT (how adb clients long-press: `input swipe x y x y 800`).
        phone.swipe(x1, y1, x2, y2, duration=ms / 1000)
    elif command == "text" and len(rest) == 1:
        text = _decode_input_text(rest[0])
        if not text.isascii():
            raise _Usage("input text can only type ASCII characters")
        phone.type_text(text)
    elif command == "keyevent" and rest:
        for code in (a for a in rest if not a.startswith("--")):
            name = _key_name(code)
            if name is None:
                raise _Usage(f"Error: unknown keycode {code!r}")
            phone.press_key(name)
    else:
        raise _Usage(f"Error: Invalid arguments for command: {command}")
    return _ok()


def _key_name(code: str) -> str | None:
    if code.isdigit():
        return _KEYCODE_NAMES.get(int(code)) or _POWER_KEYCODES.get(int(code))
    upper = code.upper()
    if upper in _SYMBOLIC_KEYS:
        return _SYMBOLIC_KEYS[upper]
    name = upper.removeprefix("KEYCODE_").lower()
    return name if name in ANDROID_KEYCODES else None


def _echo(dev: SimDevice, args: list[str]) -> _Result:
    newline = "\n"
    if args[:1] == ["-n"]:
        args, newline = args[1:], ""
    return _ok(" ".join(args) + newline)


def _wm(dev: SimDevice, args: list[str]) -> _Result:
    if args == ["size"]:
        width, height = dev.phone.width, dev.phone.height
        if dev.rotation in (90, 270):
            width, height = height, width
        return _ok(f"Physical size: {width}x{height}\n")
    if args == ["density"]:
        return _ok(f"Physical density: {dev.phone.density}\n")
    if args == ["dismiss-keyguard"]:
        dev.phone.dismiss_keyguard()  # like Android: no output, even when a PIN pad shows instead
        return _ok()
    raise _Usage("only 'wm size', 'wm density' and 'wm dismiss-keyguard' are simulated")


def _props(dev: SimDevice) -> dict[str, str]:
    return {
        "ro.build.version.release": "14",
        "ro.build.version.sdk": "34",
        "ro.product.brand": "vlagent",
        "ro.product.device": "sim",
        "ro.product.manufacturer": "vlagent",
        "ro.product.model": "SimPhone",
        "ro.product.name": "sim",
        "ro.serialno": dev.serial,
        "ro.sf.lcd_density": str(dev.phone.density),
    }


def _getprop(dev: SimDevice, args: list[str]) -> _Result:
    props = _props(dev)
    if args:
        return _ok(props.get(args[0], args[1] if len(args) > 1 else "") + "\n")
    return _ok("".join(f"[{k}]: [{v}]\n" for k, v in props.items()))


def _pm(dev: SimDevice, args: list[str]) -> _Result:
    if args[:2] != ["list", "packages"]:
        raise _Usage("only 'pm list packages' is simulated")
    filters = [a for a in args[2:] if not a.startswith("-")]
    return _ok("".join(f"package:{p}\n" for p in dev.packages() if not filters or filters[0] in p))


def _monkey(dev: SimDevice, args: list[str]) -> _Result:
    package = args[args.index("-p") + 1] if "-p" in args[:-1] else None
    if package is None:
        raise _Usage("usage: monkey -p PACKAGE -c android.intent.category.LAUNCHER 1")
    if package not in dev.phone.packages() or not dev.phone.open_app(package):
        return _Result(stdout=b"** No activities found to run, monkey aborted.\n", status=252)
    return _ok("  bash arg: -p\n  bash arg: " + package + "\nEvents injected: 1\n")


def _am(dev: SimDevice, args: list[str]) -> _Result:
    if args[:1] == ["start"] and "-n" in args[:-1]:
        component = args[args.index("-n") + 1]
        if not dev.phone.open_app(component.split("/", 1)[0]):
            return _Result(stderr=f"Error: Activity class {{{component}}} does not exist.\n".encode(), status=1)
        return _ok(f"Starting: Intent {{ cmp={component} }}\n")
    if args[:1] == ["broadcast"] and "-a" in args[:-1]:
        action = args[args.index("-a") + 1]
        extras = {args[i + 1]: args[i + 2] for i in range(len(args) - 2) if args[i] == "--es"}
        if action in ("ADB_INPUT_B64", "ADB_INPUT_TEXT") and dev.current_ime == ADB_KEYBOARD_IME and "msg" in extras:
            msg = extras["msg"]
            text = base64.b64decode(msg).decode("utf-8") if action == "ADB_INPUT_B64" else msg
            dev.phone.type_text(text)
        return _ok(
            f"Broadcasting: Intent {{ act={action} flg=0x400000 (has extras) }}\nBroadcast completed: result=0\n"
        )
    raise _Usage("only 'am start -n' and 'am broadcast -a' are simulated")


def _ime(dev: SimDevice, args: list[str]) -> _Result:
    available = [_LATIN_IME, *([ADB_KEYBOARD_IME] if dev.adbkeyboard else [])]
    if args[:1] == ["list"]:
        shown = dev.enabled_imes if "-a" not in args else available
        return _ok("".join(f"{ime}\n" for ime in shown))
    if len(args) == 2 and args[0] in ("enable", "set"):
        ime = args[1]
        if ime not in available:
            return _Result(stderr=f"Unknown input method {ime} cannot be selected for user #0\n".encode(), status=255)
        if args[0] == "enable":
            new = ime not in dev.enabled_imes
            if new:
                dev.enabled_imes.append(ime)
            return _ok(f"Input method {ime}: {'now enabled' if new else 'already enabled'} for user #0\n")
        if ime not in dev.enabled_imes:
            return _Result(stderr=f"Input method {ime} is not enabled for user #0\n".encode(), status=255)
        dev.current_ime = ime
        return _ok(f"Input method {ime} selected for user #0\n")
    raise _Usage("only 'ime list|enable|set' are simulated")


def _settings(dev: SimDevice, args: list[str]) -> _Result:
    if args == ["get", "secure", "default_input_method"]:
        return _ok(dev.current_ime + "\n")
    if args[:1] == ["get"]:
        return _ok("null\n")
    raise _Usage("only 'settings get' is simulated")


def _dumpsys_power(dev: SimDevice) -> str:
    awake = dev.phone.awake
    return (
        "POWER MANAGER (dumpsys power)\n\n"
        "Power Manager State:\n"
        "  mDirty=0x0\n"
        f"  mWakefulness={dev.phone.wakefulness}\n"
        "  mWakefulnessChanging=false\n"
        "  mIsPowered=true\n"
        "  mPlugType=2\n"
        "  mStayOn=false\n"
        "  mBootCompleted=true\n"
        "  mSystemReady=true\n"
        f"  mInteractive={str(awake).lower()}\n"
        f"Display Power: state={'ON' if awake else 'OFF'}\n"
    )


def _dumpsys_window_policy(dev: SimDevice) -> str:
    phone = dev.phone
    awake, showing = phone.awake, phone.keyguard_shown

    def flag(value: bool) -> str:
        return str(value).lower()

    lines = [
        "WINDOW MANAGER POLICY STATE (dumpsys window policy)",
        "    mSafeMode=false mSystemReady=true mSystemBooted=true",
        f"    mScreenOnEarly={flag(awake)} mScreenOnFully={flag(awake)}",
        "    mKeyguardDrawComplete=true mWindowManagerDrawComplete=true",
    ]
    if dev.keyguard_format == "lockscreen":
        lines.append(f"    mShowingLockscreen={flag(showing)} mShowingDream=false mDreamingLockscreen=false")
    elif dev.keyguard_format == "status_bar":
        lines.append("    mShowingDream=false mDreamingLockscreen=false mDreamingSleepToken=null")
        lines.append(f"    mStatusBar=Window{{5b1d3a0 u0 StatusBar}} isStatusBarKeyguard={flag(showing)}")
    else:
        lines += [
            "    KeyguardServiceDelegate",
            f"      showing={flag(showing)}",
            f"      inputRestricted={flag(showing)}",
            "      occluded=false",
            "      trusted=false",
            "      simSecure=false",
            "      dreaming=false",
            "      systemIsReady=true",
            "      deviceHasKeyguard=true",
            "      enabled=true",
            f"      screenState=SCREEN_STATE_{'ON' if awake else 'OFF'}",
            f"      interactiveState=INTERACTIVE_STATE_{'AWAKE' if awake else 'SLEEP'}",
            "      KeyguardStateMonitor",
            f"        mIsShowing={flag(showing)}",
            "        mSimSecure=false",
            f"        mInputRestricted={flag(showing)}",
            "        mTrusted=false",
            "        mCurrentUserId=0",
        ]
    return "\n".join(lines) + "\n"


def _dumpsys(dev: SimDevice, args: list[str]) -> _Result:
    if args[:1] == ["input"]:
        orientation = dev.rotation // 90
        return _ok(f"INPUT MANAGER (dumpsys input)\n  Viewport INTERNAL:\n    SurfaceOrientation: {orientation}\n")
    if args[:1] == ["power"]:
        return _ok(_dumpsys_power(dev))
    if args[:1] == ["window"]:
        parts = []
        if args[1:] in ([], ["displays"]):
            parts.append(f"  mCurrentRotation=ROTATION_{dev.rotation}\n  cur={dev.phone.width}x{dev.phone.height}\n")
        if args[1:] in ([], ["policy"]):
            parts.append(_dumpsys_window_policy(dev))
        return _ok("".join(parts))
    if args[:1] == ["activity"]:
        return _ok(f"  mResumedActivity: ActivityRecord{{0 u0 {dev.phone.current_app}/.Main t1}}\n")
    return _ok()


def _screencap(dev: SimDevice, args: list[str]) -> _Result:
    files = [a for a in args if not a.startswith("-")]
    if files:
        raise _Usage("writing screenshots to a file is not simulated; use screencap [-p] with exec-out")
    return _Result(stdout=dev.screencap(png="-p" in args))


_PROGRAMS: dict[str, Callable[[SimDevice, list[str]], _Result]] = {
    "am": _am,
    "dumpsys": _dumpsys,
    "echo": _echo,
    "false": lambda dev, args: _Result(status=1),
    "getprop": _getprop,
    "ime": _ime,
    "input": _input,
    "monkey": _monkey,
    "pm": _pm,
    "screencap": _screencap,
    "settings": _settings,
    "true": lambda dev, args: _Result(),
    "wm": _wm,
}


# --- the adb host protocol ------------------------------------------------------------------------


class _BadRequest(Exception):
    pass


def _block(text: str | bytes) -> bytes:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return f"{len(data):04x}".encode() + data


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buffer = bytearray()
    while len(buffer) < n:
        chunk = sock.recv(n - len(buffer))
        if not chunk:
            return None
        buffer += chunk
    return bytes(buffer)


def _read_request(sock: socket.socket) -> str | None:
    """One 4-hex-length request, or None when the peer closed before sending one."""
    head = _recv_exact(sock, 4)
    if head is None:
        return None
    try:
        size = int(head.decode("ascii"), 16)
    except (UnicodeDecodeError, ValueError):
        raise _BadRequest(f"bad request length {head!r}") from None
    if not 0 < size <= _MAX_REQUEST:
        raise _BadRequest(f"bad request length {size}")
    payload = _recv_exact(sock, size)
    if payload is None:
        return None
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        raise _BadRequest("request is not UTF-8") from None


class _Handler(socketserver.BaseRequestHandler):
    server: _TCPServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.server.owner.idle_timeout)
        self.server.owner._track(sock, True)
        try:
            self._serve(sock)
        except _BadRequest as exc:
            log.info("adb sim: closing connection after a bad request: %s", exc)
            with contextlib.suppress(OSError):
                sock.sendall(b"FAIL" + _block(str(exc)))
        except (OSError, ConnectionError) as exc:
            log.debug("adb sim: connection ended: %s", exc)
        finally:
            self.server.owner._track(sock, False)
            _graceful_close(sock)

    def _serve(self, sock: socket.socket) -> None:
        owner = self.server.owner
        device: SimDevice | None = None
        while True:
            request = _read_request(sock)
            if request is None:
                return
            if device is not None:
                self._device_service(sock, device, request)
                return
            outcome = owner._host_service(request)
            if isinstance(outcome, _Transport):
                sock.sendall(outcome.reply)
                device = outcome.device
                continue
            reply, keep_open = outcome
            sock.sendall(reply)
            if request == "host:kill":
                threading.Thread(target=owner.stop, name="adb-sim-kill", daemon=True).start()
                return
            if not keep_open:
                return

    def _device_service(self, sock: socket.socket, dev: SimDevice, request: str) -> None:
        service, _, command = request.partition(":")
        options = service.split(",")
        if options[0] == "exec" and command:
            result = dev.run_line(command)
            sock.sendall(b"OKAY")
            sock.sendall(result.stdout)
        elif options[0] == "shell" and command:
            result = dev.run_line(command)
            sock.sendall(b"OKAY")
            if "v2" in options:
                for packet_id, data in ((1, result.stdout), (2, result.stderr)):
                    for start in range(0, len(data), 1 << 20):
                        chunk = data[start : start + (1 << 20)]
                        sock.sendall(struct.pack("<BI", packet_id, len(chunk)) + chunk)
                sock.sendall(struct.pack("<BIB", 3, 1, result.status & 0xFF))
            else:
                # One stream, in the order things were written: an error printed before a later
                # `echo` must come before it, as through a real terminal.
                sock.sendall(result.combined)
        elif options[0] == "shell":
            sock.sendall(b"FAIL" + _block("interactive shells are not simulated; give a command"))
        else:
            sock.sendall(b"FAIL" + _block(f"service '{service}' is not simulated"))


def _graceful_close(sock: socket.socket) -> None:
    """Half-close, drain what the client still sends, then close: avoids a reset that loses our output."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(1.0)
        while sock.recv(65536):
            pass
    with contextlib.suppress(OSError):
        sock.close()


@dataclass(frozen=True)
class _Transport:
    """A host service that switched the connection to ``device`` after sending ``reply``."""

    device: SimDevice
    reply: bytes


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: SimAdbServer


class SimAdbServer:
    """An adb server on loopback serving simulated devices; see :func:`serve_sim`."""

    def __init__(
        self,
        phones: Sequence[SimPhone],
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        adbkeyboard: bool = True,
        raw_header: int = 16,
        idle_timeout: float = 60.0,
    ) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the simulated adb server only listens on loopback")
        serials = [p.serial for p in phones]
        if len(set(serials)) != len(serials):
            raise ValueError(f"phone serials must be unique, got {serials}")
        self.devices: dict[str, SimDevice] = {
            phone.serial: SimDevice(phone, phone.serial, index + 1, adbkeyboard=adbkeyboard, raw_header=raw_header)
            for index, phone in enumerate(phones)
        }
        self.idle_timeout = idle_timeout
        self._server = _TCPServer((host, port), _Handler, bind_and_activate=True)
        self._server.owner = self
        self.host, self.port = self._server.server_address[:2]
        self._live: set[socket.socket] = set()
        self._live_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    def __getitem__(self, serial: str) -> SimDevice:
        return self.devices[serial]

    def start(self) -> SimAdbServer:
        # A short poll interval makes stop() quick, which tests that unplug a phone rely on.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="adb-sim", daemon=True
        )
        self._thread.start()
        log.info("simulated adb server on %s:%d serving %s", self.host, self.port, ", ".join(self.devices))
        return self

    def wait(self) -> None:
        """Block until the server is stopped (``host:kill`` or :meth:`stop`)."""
        self._stopped.wait()

    def stop(self) -> None:
        """Stop listening and cut every open connection, as when a phone is unplugged."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._server.shutdown()
        self._server.server_close()
        with self._live_lock:
            live = list(self._live)
        for sock in live:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _track(self, sock: socket.socket, alive: bool) -> None:
        with self._live_lock:
            (self._live.add if alive else self._live.discard)(sock)

    # --- host services -----------------------------------------------------------------------

    def _host_service(self, request: str) -> _Transport | tuple[bytes, bool]:
        def ok(text: str | None = None) -> tuple[bytes, bool]:
            return (b"OKAY" + (_block(text) if text is not None else b""), False)

        def fail(text: str) -> tuple[bytes, bool]:
            return (b"FAIL" + _block(text), False)

        if request == "host:version":
            return ok(f"{ADB_SERVER_VERSION:04x}")
        if request == "host:kill":
            return ok()
        if request in ("host:devices", "host:devices-l", "host:track-devices"):
            listing = "".join(
                f"{d.serial}\tdevice\n"
                if request != "host:devices-l"
                else f"{d.serial:<22} device product:sim model:SimPhone device:sim transport_id:{d.transport_id}\n"
                for d in self.devices.values()
            )
            reply, _ = ok(listing)
            return (reply, request == "host:track-devices")
        if request in ("host:features", "host:host-features"):
            return ok(DEVICE_FEATURES)
        if request == "host:list-forward":
            return ok("")
        for prefix in ("host:tport:", "host:transport"):
            if request.startswith(prefix):
                selector = request[len(prefix) :].lstrip(":-")
                device, error = self._select(selector)
                if device is None:
                    return fail(error)
                # tport replies carry the 8-byte transport id; plain transport replies do not.
                suffix = struct.pack("<Q", device.transport_id) if prefix == "host:tport:" else b""
                return _Transport(device, b"OKAY" + suffix)
        prefixed = self._split_prefixed(request)
        if prefixed is not None:
            device, error, command = prefixed
            if device is None:
                return fail(error)
            answers = {
                "features": DEVICE_FEATURES,
                "get-state": "device",
                "get-serialno": device.serial,
                "get-devpath": f"usb:{device.serial}",
            }
            if command in answers:
                return ok(answers[command])
            if command.startswith("wait-for-"):
                return (b"OKAYOKAY", False)
            if command in ("list-forward",):
                return ok("")
            return fail(f"unsupported host service '{command}'")
        if request.startswith("host:wait-for-"):
            return (b"OKAYOKAY", False) if self.devices else fail("no devices")
        if request in ("host:get-state", "host:get-serialno", "host:get-devpath"):
            device, error = self._select("any")
            if device is None:
                return fail(error)
            return ok({"host:get-state": "device", "host:get-serialno": device.serial}.get(request, "usb:sim"))
        return fail(f"unknown host service '{request[:100]}'")

    def _select(self, selector: str) -> tuple[SimDevice | None, str]:
        if selector in ("any", "usb", "local"):
            if len(self.devices) == 1:
                return next(iter(self.devices.values())), ""
            return None, "more than one device/emulator" if self.devices else "no devices/emulators found"
        if selector.startswith("serial:"):
            selector = selector[len("serial:") :]
        if selector.startswith(("id:", "-id:")):
            wanted = selector.split(":", 1)[1]
            found = next((d for d in self.devices.values() if str(d.transport_id) == wanted), None)
            return found, "" if found else f"no device with transport id '{wanted}'"
        found = self.devices.get(selector)
        return found, "" if found else f"device '{selector}' not found"

    def _split_prefixed(self, request: str) -> tuple[SimDevice | None, str, str] | None:
        for prefix in ("host-serial:", "host-transport-id:", "host-usb:", "host-local:", "host:"):
            if not request.startswith(prefix):
                continue
            rest = request[len(prefix) :]
            if prefix == "host-serial:":
                for serial, candidate in self.devices.items():
                    if rest.startswith(serial + ":"):
                        return candidate, "", rest[len(serial) + 1 :]
                serial = rest.rsplit(":", 1)[0]
                return None, f"device '{serial}' not found", ""
            if prefix == "host-transport-id:":
                wanted, _, command = rest.partition(":")
                device, error = self._select("id:" + wanted)
                return device, error, command
            if prefix == "host:" and not rest.startswith(("features", "get-", "wait-for-")):
                return None
            device, error = self._select("any")
            return device, error, rest
        return None


@contextlib.contextmanager
def serve_sim(
    phones: Sequence[SimPhone] | None = None,
    *,
    port: int = 0,
    adbkeyboard: bool = True,
    raw_header: int = 16,
) -> Iterator[SimAdbServer]:
    """Serve ``phones`` (default: one ``SimPhone()``) on 127.0.0.1:``port`` (0: a free port) while in the block.

    >>> with serve_sim(port=0) as server:
    ...     driver = open_driver("adb:sim-0", port=server.port)
    """
    if phones is None:
        from vlagent.drivers.sim.world import SimPhone

        phones = [SimPhone()]
    server = SimAdbServer(phones, port=port, adbkeyboard=adbkeyboard, raw_header=raw_header).start()
    try:
        yield server
    finally:
        server.stop()


def serve_forever(port: int, serials: list[str], seed: int, transition_delay: float) -> None:
    """Serve one simulated phone per serial on 127.0.0.1:``port`` until interrupted or ``adb kill-server``."""
    from vlagent.drivers.sim.world import SimPhone

    phones = [SimPhone(seed=seed, transition_delay=transition_delay, serial=s) for s in serials or ["sim-0"]]
    server = SimAdbServer(phones, port=port).start()
    try:
        server.wait()
    except KeyboardInterrupt:
        log.info("simulated adb server interrupted")
    finally:
        server.stop()
