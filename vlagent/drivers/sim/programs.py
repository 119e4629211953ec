"""Simulated Android programs that drive the phone: ``input``, ``am``, ``pm``, ``monkey``, ``ime``,
``wm``, ``getprop``, ``screencap``, ``uiautomator``, ``ifconfig``/``ip``, ``which``, and the table
of every program the simulated shell knows (:data:`PROGRAMS`, gathered from the other program rooms).

Each answers in the real program's output format and exit status (from AOSP's commands):
``uiautomator dump`` writes uiautomator's one-line XML of the screen
(:func:`~vlagent.drivers.sim.uitree.phone_ui_tree`) to a file of the simulated file system or
to ``/dev/tty`` with the "UI hierchary dumped to" message glued after it; ``pm clear`` prints
``Success`` or ``Failed``; ``am force-stop`` closes the app in front. A program or option the
sim does not simulate fails with a message and a non-zero status, never silently.
This module must not know the adb protocol.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import TYPE_CHECKING

from vlagent.drivers.android_keys import ADB_KEYBOARD_IME, ANDROID_KEYCODES
from vlagent.drivers.sim import uitree as sim_uitree
from vlagent.drivers.sim.device import LATIN_IME
from vlagent.drivers.sim.files import FsError
from vlagent.drivers.sim.logcat import LOG_PROGRAMS
from vlagent.drivers.sim.programs_files import FILE_PROGRAMS, STDIN_PROGRAMS
from vlagent.drivers.sim.programs_state import STATE_PROGRAMS, clear_package, pm_path
from vlagent.drivers.sim.shell import ProgramError, Result
from vlagent.tasks.uitree import to_hierarchy_xml

if TYPE_CHECKING:
    from vlagent.drivers.sim.device import SimDevice

__all__ = ["LOCK_FREE", "PROGRAMS", "STDIN_PROGRAMS", "Program", "decode_input_text"]

Program = Callable[["SimDevice", list[str]], Result]
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
#: Keys a phone knows but vlagent's Key action does not offer (android.view.KeyEvent); the
#: simulated phone acts on the power ones and ignores the rest, as a phone without media does.
_OTHER_KEYCODES = {
    223: "sleep",
    224: "wakeup",
    164: "volume_mute",
    91: "mute",
    27: "camera",
    84: "search",
    85: "media_play_pause",
    220: "brightness_down",
    221: "brightness_up",
}
#: Broadcasts only the system may send: from the shell they fail (Android 7+).
_PROTECTED_BROADCASTS = frozenset(
    {
        "android.intent.action.AIRPLANE_MODE",
        "android.intent.action.BATTERY_CHANGED",
        "android.intent.action.BOOT_COMPLETED",
        "android.intent.action.SCREEN_OFF",
        "android.intent.action.SCREEN_ON",
    }
)
DUMP_DEFAULT = "/sdcard/window_dump.xml"


def _ok(text: str = "") -> Result:
    return Result(stdout=text.encode("utf-8"))


def _coord(value: str) -> int:
    try:
        return round(float(value))
    except ValueError:
        raise ProgramError(f"Error: Invalid arguments for command: {value!r} is not a number") from None


def decode_input_text(text: str) -> str:
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


def _input(dev: SimDevice, args: list[str]) -> Result:
    sources = {"touchscreen", "touchpad", "keyboard", "mouse", "dpad", "gamepad", "stylus", "trackball", "joystick"}
    while args and (args[0] in sources or args[0] == "-d"):
        args = args[2:] if args[0] == "-d" else args[1:]
    if not args:
        raise ProgramError("Usage: input [<source>] <command> [<arg>...]")
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
        text = decode_input_text(rest[0])
        if not text.isascii():
            raise ProgramError("input text can only type ASCII characters")
        phone.type_text(text)
    elif command == "keyevent" and rest:
        for code in (a for a in rest if not a.startswith("--")):
            name = _key_name(code)
            if name is None:
                raise ProgramError(f"Error: unknown keycode {code!r}")
            phone.press_key(name)
    else:
        raise ProgramError(f"Error: Invalid arguments for command: {command}")
    return _ok()


def _key_name(code: str) -> str | None:
    if code.isdigit():
        return _KEYCODE_NAMES.get(int(code)) or _OTHER_KEYCODES.get(int(code))
    upper = code.upper()
    if upper in _SYMBOLIC_KEYS:
        return _SYMBOLIC_KEYS[upper]
    name = upper.removeprefix("KEYCODE_").lower()
    return name if name in ANDROID_KEYCODES or name in _OTHER_KEYCODES.values() else None


def _wm(dev: SimDevice, args: list[str]) -> Result:
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
    raise ProgramError("only 'wm size', 'wm density' and 'wm dismiss-keyguard' are simulated")


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


def _getprop(dev: SimDevice, args: list[str]) -> Result:
    props = _props(dev)
    if args:
        return _ok(props.get(args[0], args[1] if len(args) > 1 else "") + "\n")
    return _ok("".join(f"[{k}]: [{v}]\n" for k, v in props.items()))


def _pm(dev: SimDevice, args: list[str]) -> Result:
    if args[:2] == ["list", "packages"]:
        flags = {a for a in args[2:] if a.startswith("-")}
        unknown = flags - {"-3", "-s", "-e", "-f", "-i", "-u"}
        if unknown:
            raise ProgramError(f"Error: Unknown option: {sorted(unknown)[0]}", 255)
        filters = [a for a in args[2:] if not a.startswith("-")]
        shown = [
            p
            for p in dev.packages()
            if (not filters or filters[0] in p)
            and ("-3" not in flags or dev.third_party(p))
            and ("-s" not in flags or not dev.third_party(p))
        ]
        if "-f" in flags:
            return _ok("".join(f"package:{(pm_path(dev, p) or '').strip()[8:]}={p}\n" for p in shown))
        return _ok("".join(f"package:{p}\n" for p in shown))
    if args[:1] == ["path"] and len(args) == 2:
        path = pm_path(dev, args[1])
        return _ok(path) if path is not None else Result(status=1)
    if args[:1] == ["clear"] and len(args) >= 2:
        if clear_package(dev, args[-1]):
            return _ok("Success\n")
        return Result(stderr=b"Failed\n", status=1)
    raise ProgramError(f"'pm {' '.join(args[:1])}' is not simulated (pm list packages, path, clear)")


def _monkey(dev: SimDevice, args: list[str]) -> Result:
    package = args[args.index("-p") + 1] if "-p" in args[:-1] else None
    if package is None:
        raise ProgramError("usage: monkey -p PACKAGE -c android.intent.category.LAUNCHER 1")
    if package not in dev.phone.packages() or not dev.phone.open_app(package):
        return Result(stdout=b"** No activities found to run, monkey aborted.\n", status=252)
    return _ok("  bash arg: -p\n  bash arg: " + package + "\nEvents injected: 1\n")


def _am(dev: SimDevice, args: list[str]) -> Result:
    options = {args[i]: args[i + 1] for i in range(1, len(args) - 1) if args[i].startswith("-")}
    if args[:1] == ["start"] and "-n" in options:
        component = options["-n"]
        if not dev.phone.open_app(component.split("/", 1)[0]):
            return Result(stderr=f"Error: Activity class {{{component}}} does not exist.\n".encode(), status=1)
        return _ok(f"Starting: Intent {{ cmp={component} }}\n")
    if args[:1] == ["start"] and options.get("-a") == "android.intent.action.VIEW" and "-d" in options:
        url = options["-d"]
        if url.startswith(("http://", "https://")) and dev.phone.open_app("com.android.browser"):
            return _ok(f"Starting: Intent {{ act=android.intent.action.VIEW dat={url} }}\n")
        message = (
            f"Error: Activity not started, unable to resolve Intent {{ act=android.intent.action.VIEW dat={url} }}"
        )
        return Result(stderr=f"{message}\n".encode(), status=1)
    if args[:1] == ["force-stop"] and len(args) >= 2:
        if dev.phone.current_app == args[-1]:
            dev.phone.go_home()
        return _ok()
    if args[:1] == ["broadcast"] and "-a" in options:
        action = options["-a"]
        sent = f"Broadcasting: Intent {{ act={action} flg=0x400000{' (has extras)' if len(options) > 1 else ''} }}\n"
        if action in _PROTECTED_BROADCASTS:
            denial = (
                "Exception occurred while executing 'broadcast':\njava.lang.SecurityException: Permission Denial: "
                f"not allowed to send broadcast {action} from pid=4321, uid=2000\n"
            )
            return Result(stdout=sent.encode(), stderr=denial.encode(), status=255)
        extras = {args[i + 1]: args[i + 2] for i in range(len(args) - 2) if args[i] == "--es"}
        if action in ("ADB_INPUT_B64", "ADB_INPUT_TEXT") and dev.current_ime == ADB_KEYBOARD_IME and "msg" in extras:
            msg = extras["msg"]
            text = base64.b64decode(msg).decode("utf-8") if action == "ADB_INPUT_B64" else msg
            dev.phone.type_text(text)
        return _ok(sent + "Broadcast completed: result=0\n")
    raise ProgramError("only 'am start -n|-a VIEW -d', 'am force-stop' and 'am broadcast -a' are simulated")


def _ime(dev: SimDevice, args: list[str]) -> Result:
    available = [LATIN_IME, *([ADB_KEYBOARD_IME] if dev.adbkeyboard else [])]
    if args[:1] == ["list"]:
        shown = dev.enabled_imes if "-a" not in args else available
        return _ok("".join(f"{ime}\n" for ime in shown))
    if len(args) == 2 and args[0] in ("enable", "set"):
        ime = args[1]
        if ime not in available:
            return Result(stderr=f"Unknown input method {ime} cannot be selected for user #0\n".encode(), status=255)
        if args[0] == "enable":
            new = ime not in dev.enabled_imes
            if new:
                dev.enabled_imes.append(ime)
            return _ok(f"Input method {ime}: {'now enabled' if new else 'already enabled'} for user #0\n")
        if ime not in dev.enabled_imes:
            return Result(stderr=f"Input method {ime} is not enabled for user #0\n".encode(), status=255)
        dev.current_ime = ime
        return _ok(f"Input method {ime} selected for user #0\n")
    raise ProgramError("only 'ime list|enable|set' are simulated")


def _screencap(dev: SimDevice, args: list[str]) -> Result:
    files = [a for a in args if not a.startswith("-")]
    png = "-p" in args or any(f.endswith(".png") for f in files)
    data = dev.screencap(png=png)
    if files:
        dev.files.write(files[0], data)
        return Result()
    return Result(stdout=data)


def _uiautomator(dev: SimDevice, args: list[str]) -> Result:
    """``uiautomator dump [--compressed] [FILE|/dev/tty]`` as AOSP's DumpCommand answers it."""
    if args[:1] != ["dump"]:
        raise ProgramError("only 'uiautomator dump [--compressed] [FILE]' is simulated")
    files = [a for a in args[1:] if not a.startswith("--")]
    target = files[0] if files else DUMP_DEFAULT
    # Errors go to stderr and the program still exits 0, as DumpCommand does.
    if dev.dump_failures > 0:
        dev.dump_failures -= 1
        return Result(stderr=b"ERROR: could not get idle state.\n")
    tree = sim_uitree.phone_ui_tree(dev.phone)  # looked up at call time: tests swap in other screens
    if not tree.nodes:
        return Result(stderr=b"ERROR: null root node returned by UiTestAutomationBridge.\n")
    xml = to_hierarchy_xml(tree.nodes, rotation=dev.rotation // 90).encode("utf-8")
    if dev.truncated_dumps > 0:
        dev.truncated_dumps -= 1
        xml = xml[: len(xml) // 2]
    message = f"UI hierchary dumped to: {target}\n".encode()
    if target in ("/dev/tty", "/dev/stdout"):
        return Result(stdout=xml + message)  # no newline after the XML: the message is glued on
    try:
        dev.files.write(target, xml)
    except FsError as exc:
        return Result(stderr=f"java.io.FileNotFoundException: {exc}\n".encode(), status=1)
    return Result(stdout=message)


def _ifconfig(dev: SimDevice, args: list[str]) -> Result:
    name = args[0] if args else "wlan0"
    if name != "wlan0":
        return Result(stderr=f"ifconfig: {name}: No such device\n".encode(), status=1)
    up = dev.phone.toggles.get("wifi", False) and not dev.phone.toggles.get("airplane_mode", False)
    inet = "          inet addr:192.168.1.23  Bcast:192.168.1.255  Mask:255.255.255.0 \n" if up else ""
    return _ok(
        "wlan0     Link encap:UNSPEC    Driver icnss\n"
        + inet
        + f"          {'UP BROADCAST RUNNING MULTICAST' if up else 'BROADCAST MULTICAST'}  MTU:1500  Metric:1\n"
    )


def _ip(dev: SimDevice, args: list[str]) -> Result:
    words = [a for a in args if a not in ("-4", "-6", "dev")]
    if words[:2] not in (["addr", "show"], ["address", "show"], ["a", "show"]) or words[2:] not in ([], ["wlan0"]):
        raise ProgramError(f"'ip {' '.join(args)}' is not simulated (ip addr show dev wlan0)", 255)
    up = dev.phone.toggles.get("wifi", False) and not dev.phone.toggles.get("airplane_mode", False)
    state = "UP" if up else "DOWN"
    inet = "    inet 192.168.1.23/24 brd 192.168.1.255 scope global wlan0\n" if up else ""
    return _ok(
        f"30: wlan0: <BROADCAST,MULTICAST,{state}> mtu 1500 qdisc mq state {state} group default qlen 3000\n{inet}"
    )


def _which(dev: SimDevice, args: list[str]) -> Result:
    found = [name for name in args if name in PROGRAMS or name in STDIN_PROGRAMS]
    return Result(
        stdout="".join(f"/system/bin/{name}\n" for name in found).encode(),
        status=0 if found and len(found) == len(args) else 1,
    )


PROGRAMS: dict[str, Program] = {
    **FILE_PROGRAMS,
    **STATE_PROGRAMS,
    **LOG_PROGRAMS,
    "am": _am,
    "getprop": _getprop,
    "ifconfig": _ifconfig,
    "ime": _ime,
    "input": _input,
    "ip": _ip,
    "monkey": _monkey,
    "pm": _pm,
    "screencap": _screencap,
    "uiautomator": _uiautomator,
    "which": _which,
    "wm": _wm,
}
"""Every program the simulated shell runs (besides :data:`STDIN_PROGRAMS`), by name."""
#: Programs that only wait: they run without the device's lock, so other connections carry on.
LOCK_FREE = frozenset({"sleep"})
