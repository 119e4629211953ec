"""Simulated Android programs that read and change the phone's state: ``settings``, ``cmd``, ``svc``,
``dumpsys`` and ``pm clear`` (``content`` is :mod:`.content`).

Each prints what AOSP prints (AOSP sources): ``settings get`` the value or
``null``; ``dumpsys activity activities`` the resumed activity in the format of
the Android version the device plays. Toggle keys (``global wifi_on``...) are read from and
written to the phone's own toggles through :data:`vlagent.tasks.settings.TOGGLES`, so a switch
flipped in the UI reads back over adb. This module must not know the adb protocol.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vlagent.drivers.sim.catalog import BATTERY_PERCENT
from vlagent.drivers.sim.content import CONTACTS_PACKAGE, NOTES_PACKAGE, content
from vlagent.drivers.sim.shell import ProgramError, Result
from vlagent.tasks.settings import TOGGLES, ToggleSetting

if TYPE_CHECKING:
    from vlagent.drivers.sim.device import SimDevice

__all__ = ["ACTIVITIES", "STATE_PROGRAMS", "SettingsTable", "clear_package", "pm_path"]

_NAMESPACES = ("global", "secure", "system")
_BY_KEY: dict[tuple[str, str], ToggleSetting] = {
    (t.namespace, t.key): t for t in TOGGLES.values() if t.namespace is not None and t.key is not None
}
#: The activity each sim screen shows, as ``dumpsys`` names it (package/.Class).
ACTIVITIES = {
    "home": "com.android.launcher3/.uioverrides.QuickstepLauncher",
    "recents": "com.android.systemui/.recents.RecentsActivity",
    "settings": "com.android.settings/.Settings",
    "notes": "com.vlagent.notes/.MainActivity",
    "note_editor": "com.vlagent.notes/.EditorActivity",
    "contacts": "com.android.contacts/.activities.PeopleActivity",
    "contact_editor": "com.android.contacts/.activities.ContactEditorActivity",
    "camera": "com.android.camera2/com.android.camera.CameraLauncher",
    "clock": "com.android.deskclock/.DeskClock",
    "browser": "com.android.browser/.BrowserActivity",
    "gallery": "com.android.gallery3d/.app.GalleryActivity",
}


def _ok(text: str = "") -> Result:
    return Result(stdout=text.encode("utf-8"))


# --- settings --------------------------------------------------------------------------------------


@dataclass
class SettingsTable:
    """Settings rows that are not phone toggles, per namespace, plus values ``put`` into toggle keys.

    ``settings put global wifi_on 1`` on a real phone changes the stored row but not the radio
    (``svc wifi enable`` does that): such a value is kept as written until the toggle itself
    changes, then the toggle's own value shows again.
    """

    rows: dict[str, dict[str, str]] = field(
        default_factory=lambda: {
            "global": {"adb_enabled": "1", "device_provisioned": "1", "stay_on_while_plugged_in": "0"},
            "secure": {"user_setup_complete": "1"},
            "system": {"screen_brightness": "102", "screen_brightness_mode": "0", "screen_off_timeout": "60000"},
        }
    )
    written: dict[tuple[str, str], tuple[str | None, bool]] = field(default_factory=dict)
    """(namespace, key) of a toggle -> (value put, the toggle's state when it was put)."""


def _toggle_value(dev: SimDevice, toggle: ToggleSetting) -> str | None:
    row = (toggle.namespace or "", toggle.key or "")
    written = dev.settings.written.get(row)
    on = dev.phone.toggles.get(toggle.toggle, False)
    if written is not None:
        if written[1] == on:
            return written[0]
        del dev.settings.written[row]  # the switch moved since: its own value shows again
    if toggle.toggle == "wifi" and on and dev.phone.toggles.get("airplane_mode"):
        return "2"  # on while airplane mode is on (Settings.Global.WIFI_ON)
    return toggle.write_on if on else toggle.write_off


def _setting(dev: SimDevice, namespace: str, key: str) -> str | None:
    toggle = _BY_KEY.get((namespace, key))
    if toggle is not None:
        return _toggle_value(dev, toggle)
    if (namespace, key) == ("secure", "default_input_method"):
        return dev.current_ime
    if (namespace, key) == ("secure", "enabled_input_methods"):
        return ":".join(dev.enabled_imes)
    return dev.settings.rows[namespace].get(key)


#: Bytes of rows one package may keep per namespace. ``system``: Android's
#: ``SettingsState.MAX_BYTES_PER_APP_PACKAGE_LIMITED`` (20,000); ``global`` and ``secure`` are
#: unlimited on a phone, bounded here so a loop of ``settings put`` cannot grow without end.
SETTINGS_BYTES = {"system": 20_000, "global": 1_000_000, "secure": 1_000_000}


def _check_settings_room(dev: SimDevice, namespace: str, key: str, value: str) -> None:
    rows = dev.settings.rows[namespace]
    size = sum(len(k) + len(v) for k, v in rows.items()) - (len(key) + len(rows[key]) if key in rows else 0)
    if size + len(key) + len(value) > SETTINGS_BYTES[namespace]:
        raise ProgramError(
            f"Exception occurred while executing 'put':\njava.lang.IllegalStateException: You are adding too many "
            f"{namespace} settings. You should stop using {namespace} settings for app specific data package: "
            "com.android.shell",
            255,
        )


def _put_setting(dev: SimDevice, namespace: str, key: str, value: str | None) -> None:
    toggle = _BY_KEY.get((namespace, key))
    if toggle is None:
        if value is None:
            dev.settings.rows[namespace].pop(key, None)
        else:
            _check_settings_room(dev, namespace, key, value)
            dev.settings.rows[namespace][key] = value
    elif toggle.command_on or value is None:  # a service owns it: the row changes, the switch does not
        dev.settings.written[(namespace, key)] = (value, dev.phone.toggles.get(toggle.toggle, False))
    else:  # read by the system as it changes (location, rotation...): the switch follows the row
        dev.settings.written.pop((namespace, key), None)
        dev.phone.set_toggle(toggle.toggle, toggle.is_on(value))


def _settings(dev: SimDevice, args: list[str]) -> Result:
    while args[:1] == ["--user"] and len(args) > 1:
        args = args[2:]
    if len(args) < 2 or args[0] not in ("get", "put", "delete", "list", "reset"):
        raise ProgramError("usage: settings [--user <USER_ID>] get|put|delete|list NAMESPACE [KEY [VALUE]]", 255)
    verb, namespace, rest = args[0], args[1], args[2:]
    if namespace not in _NAMESPACES:
        raise ProgramError(f"Invalid namespace '{namespace}'", 255)
    if verb == "get" and len(rest) == 1:
        value = _setting(dev, namespace, rest[0])
        return _ok(f"{'null' if value is None else value}\n")
    if verb == "put" and len(rest) >= 2:
        _put_setting(dev, namespace, rest[0], rest[1])
        return _ok()
    if verb == "delete" and len(rest) == 1:
        existed = _setting(dev, namespace, rest[0]) is not None
        _put_setting(dev, namespace, rest[0], None)
        return _ok(f"Deleted {int(existed)} rows\n")
    if verb == "list" and not rest:
        keys = set(dev.settings.rows[namespace]) | {k for ns, k in _BY_KEY if ns == namespace}
        if namespace == "secure":
            keys |= {"default_input_method", "enabled_input_methods"}
        values = {k: _setting(dev, namespace, k) for k in keys}
        return _ok("".join(f"{k}={v if v is not None else 'null'}\n" for k, v in sorted(values.items())))
    raise ProgramError(f"bad arguments for 'settings {verb}'", 255)


# --- cmd and svc ------------------------------------------------------------------------------------


def _switch(dev: SimDevice, toggle: str, on: bool) -> None:
    """What the toggle's service does: switch it, and write its settings row."""
    dev.phone.set_toggle(toggle, on)
    setting = TOGGLES[toggle]
    dev.settings.written.pop((setting.namespace or "", setting.key or ""), None)


def _cmd(dev: SimDevice, args: list[str]) -> Result:
    if not args or args[0] in ("-l", "-h"):
        return _ok("Currently running services:\n  activity\n  clipboard\n  connectivity\n  notification\n  uimode\n")
    service, rest = args[0], args[1:]
    if service == "uimode" and rest[:1] == ["night"]:
        if len(rest) == 2:
            if rest[1] not in ("yes", "no"):
                raise ProgramError(f"Error: mode must be 'yes', 'no' or 'auto' (got {rest[1]!r})", 255)
            _switch(dev, "dark_mode", rest[1] == "yes")
        return _ok(f"Night mode: {'yes' if dev.phone.toggles['dark_mode'] else 'no'}\n")
    if service == "connectivity" and rest[:1] == ["airplane-mode"]:
        if len(rest) == 1:
            return _ok(f"{'enabled' if dev.phone.toggles['airplane_mode'] else 'disabled'}\n")
        if rest[1] in ("enable", "disable"):
            _switch(dev, "airplane_mode", rest[1] == "enable")
            return _ok()
    dnd_modes = ("on", "off", "all", "none", "priority", "alarms")
    if service == "notification" and rest[:1] == ["set_dnd"] and len(rest) == 2 and rest[1] in dnd_modes:
        _switch(dev, "do_not_disturb", rest[1] not in ("off", "all"))
        return _ok()
    if service == "package" and rest[:1] == ["resolve-activity"] and "android.intent.category.HOME" in rest:
        # What `--brief` prints: the match line, then the component on the last line.
        return _ok(
            f"priority=0 preferredOrder=0 match=0x108000 specificIndex=-1 isDefault=true\n{ACTIVITIES['home']}\n"
        )
    if service == "clipboard":
        return _ok("No shell command implementation.\n")  # AOSP has no `cmd clipboard` service
    if service not in ("activity", "connectivity", "notification", "uimode", "package", "settings", "statusbar"):
        return Result(stderr=f"cmd: Can't find service: {service}\n".encode(), status=20)
    raise ProgramError(f"'cmd {' '.join(args)}' is not simulated", 255)


def _svc(dev: SimDevice, args: list[str]) -> Result:
    toggles = {"wifi": "wifi", "data": "mobile_data", "bluetooth": "bluetooth", "nfc": "nfc"}
    if len(args) == 2 and args[0] in toggles and args[1] in ("enable", "disable"):
        _switch(dev, toggles[args[0]], args[1] == "enable")
        return _ok()
    raise ProgramError(f"'svc {' '.join(args)}' is not simulated (svc wifi|data|bluetooth|nfc enable|disable)")


# --- dumpsys ------------------------------------------------------------------------------------------


def _record_id(text: str) -> str:
    return f"{zlib.crc32(text.encode()):08x}"[1:]


def _activity(dev: SimDevice) -> str:
    return ACTIVITIES.get(dev.phone.screen, f"{dev.phone.current_app}/.MainActivity")


def _activity_record(dev: SimDevice) -> str:
    activity = _activity(dev)
    task = 10 + list(ACTIVITIES).index(dev.phone.screen) if dev.phone.screen in ACTIVITIES else 1
    return f"ActivityRecord{{{_record_id(activity)} u0 {activity} t{task}}}"


def dumpsys_power(dev: SimDevice) -> str:
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
        "  mHoldingWakeLockSuspendBlocker=false\n"
        f"  mHoldingDisplaySuspendBlocker={str(awake).lower()}\n"
        f"Display Power: state={'ON' if awake else 'OFF'}\n"
    )


def dumpsys_window_policy(dev: SimDevice) -> str:
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


def _dumpsys_activity(dev: SimDevice, args: list[str]) -> str:
    record = _activity_record(dev)
    if args[:1] == ["top"]:
        activity = _activity(dev)
        package = activity.split("/", 1)[0]
        pid = 2000 + zlib.crc32(package.encode()) % 20000
        return f"TASK 10 id=1 userId=0\n  ACTIVITY {activity} {_record_id(activity)} pid={pid}\n    Local Activity\n"
    if dev.activity_format == "resumed":
        body = f"    mResumedActivity: {record}\n    mFocusedActivity: {record}\n"
    else:
        body = f"    topResumedActivity={record}\n  ResumedActivity: {record}\n"
    title = "ACTIVITY MANAGER ACTIVITIES (dumpsys activity activities)"
    return f"{title}\nDisplay #0 (activities from top to bottom):\n{body}"


def _dumpsys_window(dev: SimDevice, args: list[str]) -> str:
    phone = dev.phone
    parts = []
    if args in ([], ["displays"]):
        parts.append(f"  mCurrentRotation=ROTATION_{dev.rotation}\n  cur={phone.width}x{phone.height}\n")
    if args in ([], ["windows"]):
        if not phone.awake:
            focus = "null"
        elif phone.keyguard_shown:
            focus = f"Window{{{_record_id('shade')} u0 NotificationShade}}"
        else:
            package, _, cls = _activity(dev).partition("/")
            cls = package + cls if cls.startswith(".") else cls
            focus = f"Window{{{_record_id(package + cls)} u0 {package}/{cls}}}"
        parts.append(f"  mCurrentFocus={focus}\n  mFocusedApp={_activity_record(dev)}\n")
    if args in ([], ["policy"]):
        parts.append(dumpsys_window_policy(dev))
    return "".join(parts)


def _dumpsys_battery(dev: SimDevice) -> str:
    return (
        "Current Battery Service state:\n"
        "  AC powered: false\n"
        "  USB powered: true\n"
        "  Wireless powered: false\n"
        "  Dock powered: false\n"
        "  Max charging current: 500000\n"
        "  Max charging voltage: 5000000\n"
        "  Charge counter: 2890000\n"
        "  status: 2\n"
        "  health: 2\n"
        "  present: true\n"
        f"  level: {BATTERY_PERCENT}\n"
        "  scale: 100\n"
        "  voltage: 4123\n"
        "  temperature: 250\n"
        "  technology: Li-ion\n"
    )


def _dumpsys_package(dev: SimDevice, package: str) -> str:
    if package not in dev.packages():
        return f"Unable to find package: {package}\n"
    third = dev.third_party(package)
    flags = "[ HAS_CODE ALLOW_CLEAR_USER_DATA ]" if third else "[ SYSTEM HAS_CODE ALLOW_CLEAR_USER_DATA ]"
    when = "2024-01-01 12:00:00" if third else "2009-01-01 08:00:00"
    return (
        "Packages:\n"
        f"  Package [{package}] ({_record_id(package)}):\n"
        f"    userId={10100 if third else 1000}\n"
        f"    codePath={_apk_path(package).rsplit('/', 1)[0]}\n"
        f"    versionCode={1 if third else 34} minSdk=26 targetSdk=34\n"
        f"    versionName={'1.0' if third else '14'}\n"
        f"    flags={flags}\n"
        f"    timeStamp={when}\n"
        f"    firstInstallTime={when}\n"
        f"    lastUpdateTime={when}\n"
        f"    signatures=PackageSignatures{{{_record_id(package + 'sig')} version:3, signatures:[{_record_id('key')}],"
        " past signatures:[]}\n"
        f"    pkgFlags={flags}\n"
    )


def _apk_path(package: str) -> str:
    if package in (NOTES_PACKAGE, "com.android.adbkeyboard"):
        return f"/data/app/~~{_record_id(package)}==/{package}-1/base.apk"
    name = package.rsplit(".", 1)[-1].capitalize()
    return f"/system/priv-app/{name}/{name}.apk"


def _dumpsys(dev: SimDevice, args: list[str]) -> Result:
    service, rest = (args[0], args[1:]) if args else ("", [])
    if service == "input":
        return _ok(
            f"INPUT MANAGER (dumpsys input)\n  Viewport INTERNAL:\n    SurfaceOrientation: {dev.rotation // 90}\n"
        )
    if service == "power":
        return _ok(dumpsys_power(dev))
    if service == "window":
        return _ok(_dumpsys_window(dev, rest))
    if service == "activity" and rest[:1] in ([], ["activities"], ["a"], ["top"]):
        return _ok(_dumpsys_activity(dev, rest))
    if service == "battery":
        return _ok(_dumpsys_battery(dev))
    if service == "package" and len(rest) == 1:
        return _ok(_dumpsys_package(dev, rest[0]))
    if service == "display":
        phone = dev.phone
        return _ok(
            "DISPLAY MANAGER (dumpsys display)\n"
            "  mViewports=[DisplayViewport{type=INTERNAL, valid=true, isActive=true, displayId=0, "
            f"uniqueId='local:4619827259835644672', physicalPort=0, orientation={dev.rotation // 90}, "
            f"logicalFrame=Rect(0, 0 - {phone.width}, {phone.height}), deviceWidth={phone.width}, "
            f"deviceHeight={phone.height}}}]\n"
        )
    if not service:
        raise ProgramError("dumping every service is not simulated; name one (dumpsys window, activity, ...)")
    raise ProgramError(f"'dumpsys {' '.join(args)}' is not simulated")


def pm_path(dev: SimDevice, package: str) -> str | None:
    """What ``pm path PACKAGE`` prints (None: not installed)."""
    return f"package:{_apk_path(package)}\n" if package in dev.packages() else None


def clear_package(dev: SimDevice, package: str) -> bool:
    """``pm clear``: an app's data is gone (notes, contacts); False when there is no such package."""
    if package not in dev.packages():
        return False
    phone = dev.phone
    if package == NOTES_PACKAGE:
        phone.replace_notes([])
    elif package == CONTACTS_PACKAGE:
        phone.replace_contacts([])
        dev.content.pending.clear()
    if phone.current_app == package:
        phone.go_home()  # clearing data kills the app
    return True


STATE_PROGRAMS: dict[str, Callable[[SimDevice, list[str]], Result]] = {
    "cmd": _cmd,
    "content": content,
    "dumpsys": _dumpsys,
    "settings": _settings,
    "svc": _svc,
}
