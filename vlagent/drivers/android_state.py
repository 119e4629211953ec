"""AdbState: any adb phone's facts as a DeviceState, and its StartState preparer.

Facts are read with the phone's own shell commands: the view hierarchy with ``uiautomator
dump``, toggles and settings with ``settings get`` (dark mode with ``cmd uimode night``), the
app in front with ``dumpsys activity activities`` (``dumpsys window`` as a fallback), contacts
from the contacts provider and notes from the vlagent sim Notes provider with ``content
query``. Outputs are parsed by :mod:`vlagent.tasks.android`. One AdbState is one look: every
fact is read once and cached, so a dozen checks cost one dump.

This module runs commands through the :class:`AdbShell` it is given (the driver quotes every
argument, so no text is interpreted by the device shell). It changes the phone only in
``prepare``, and never guesses: a fact this phone cannot give raises StateUnavailable.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from vlagent.errors import DeviceError
from vlagent.tasks.android import (
    AmbiguousRowError,
    ShellOutputError,
    content_rows,
    dump_problem,
    focused_window,
    night_mode,
    provider_missing,
    resumed_activity,
    setting_value,
)
from vlagent.tasks.settings import TOGGLES, toggle_setting
from vlagent.tasks.state import ContactEntry, Foreground, JsonValue, Reading, StartState, StateUnavailable
from vlagent.tasks.uitree import UiDumpError, UiTree, parse_hierarchy

__all__ = [
    "CONTACTS_PACKAGE",
    "CONTACTS_URI",
    "NOTES_PACKAGE",
    "NOTES_URI",
    "AdbShell",
    "AdbState",
    "CommandFailed",
    "ShellResult",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Phone numbers with their contact's name (ContactsContract.CommonDataKinds.Phone.CONTENT_URI).
CONTACTS_URI = "content://com.android.contacts/data/phones"
CONTACTS_PACKAGE = "com.android.providers.contacts"
#: The vlagent sim Notes app's provider (columns ``_id``, ``text``).
NOTES_URI = "content://com.vlagent.notes/notes"
NOTES_PACKAGE = "com.vlagent.notes"
#: Where ``uiautomator dump`` writes when ``/dev/tty`` gives nothing (the shell user can write there).
DUMP_FILE = "/data/local/tmp/vlagent_window_dump.xml"
_NOTES_NEEDED = (
    "the notes check needs the vlagent sim Notes app (provider content://com.vlagent.notes/notes), "
    "which this phone does not have; judge notes with text/element checks instead"
)


class CommandFailed(DeviceError):
    """A device command ran and reported failure: retrying the same call will not help."""


@dataclass(frozen=True)
class ShellResult:
    """What one device shell command printed (stdout and stderr together) and its exit status."""

    status: int
    output: str


class AdbShell(Protocol):
    """Runs one argv on the device (each argument quoted) and returns what it printed.

    Raises DeviceError when the device cannot be reached; a command that fails on the device is
    a non-zero ``status``, not an exception. ``what`` names the step for messages.
    """

    def __call__(self, what: str, argv: Sequence[str], *, timeout: float | None = None) -> ShellResult: ...


class AdbState:
    """DeviceState and StatePreparer of one adb device, read through ``shell``."""

    kind = "adb"

    def __init__(
        self,
        shell: AdbShell,
        *,
        serial: str = "device",
        dump_attempts: int = 3,
        dump_timeout: float | None = None,
        retry_pause: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        labels: Mapping[str, str] | None = None,
        toggle_settle: float = 3.0,
    ) -> None:
        """``labels``: app labels by package, for the app in front (no shell command prints labels);
        ``toggle_settle``: seconds ``prepare`` waits for a switched toggle to read back as set."""
        self._shell = shell
        self._toggle_settle = toggle_settle
        self._labels = dict(labels or {})
        self.serial = serial
        self._dump_attempts = max(1, dump_attempts)
        self._dump_timeout = dump_timeout
        self._retry_pause = retry_pause
        self._sleep = sleep
        self._cache: dict[tuple[str, ...], object] = {}

    # --- DeviceState ---------------------------------------------------------------------------

    def toggle(self, name: str) -> Reading[bool]:
        toggle = TOGGLES.get(name) or toggle_setting(name)
        if toggle is None:
            raise StateUnavailable(f"no toggle {name!r}; known: {', '.join(sorted(TOGGLES))}")
        if toggle.reader == "uimode":
            result = self._cached(("uimode",), lambda: self._shell("reading night mode", ["cmd", "uimode", "night"]))
            mode = night_mode(result.output) if result.status == 0 else None
            if mode is not None:
                return Reading(mode == "yes", "settings", f"cmd uimode night -> Night mode: {mode}")
            log.debug("%s: no night mode from cmd uimode (%s); reading the setting", self.serial, _head(result.output))
        if toggle.namespace is None or toggle.key is None:
            raise StateUnavailable(f"toggle {toggle.toggle} has no setting to read on an adb phone")
        value = self.setting(toggle.namespace, toggle.key)
        shown = value.value if value.value is not None else "null"
        return Reading(toggle.is_on(value.value), "settings", f"{value.detail} -> {shown}")

    def setting(self, namespace: str, key: str) -> Reading[str | None]:
        if namespace not in ("global", "secure", "system"):
            raise StateUnavailable(f"no settings namespace {namespace!r} (global, secure or system)")

        def read() -> str | None:
            result = self._shell(f"reading setting {namespace} {key}", ["settings", "get", namespace, key])
            if result.status != 0:
                raise StateUnavailable(f"'settings get {namespace} {key}' failed: {_head(result.output)}")
            try:
                return setting_value(result.output)
            except ShellOutputError as exc:
                raise StateUnavailable(str(exc)) from None

        return Reading(self._cached(("setting", namespace, key), read), "settings", f"settings get {namespace} {key}")

    def foreground(self) -> Reading[Foreground]:
        def read() -> tuple[Foreground, str]:
            activities = self._output("reading the resumed activity", ["dumpsys", "activity", "activities"])
            found = resumed_activity(activities)
            if found is not None:
                return found, "dumpsys activity activities"
            windows = self._output("reading the focused window", ["dumpsys", "window"])
            found = focused_window(windows)
            if found is not None:
                return found, "dumpsys window (mCurrentFocus)"
            raise StateUnavailable("neither 'dumpsys activity activities' nor 'dumpsys window' names an app in front")

        found, detail = self._cached(("foreground",), read)
        label = "Home" if found.package == self._home_package() else self._labels.get(found.package, "")
        return Reading(dataclasses.replace(found, label=label) if label else found, "activity manager", detail)

    def _home_package(self) -> str | None:
        """The launcher's package (the app that answers the HOME intent), or None when the phone will not say."""

        def read() -> str | None:
            argv = ["cmd", "package", "resolve-activity", "--brief", "-c", "android.intent.category.HOME"]
            result = self._shell("asking which app is the home screen", argv)
            last = result.output.strip().splitlines()[-1:] if result.status == 0 else []
            return last[0].split("/", 1)[0].strip() if last and "/" in last[0] else None

        return self._cached(("home",), read)

    def ui_tree(self) -> Reading[UiTree]:
        tree, detail = self._cached(("ui tree",), self._dump)
        return Reading(tree, "ui tree", detail)

    def contacts(self) -> Reading[list[ContactEntry]]:
        def read() -> list[ContactEntry]:
            columns = ("display_name", "data1")
            try:
                rows = self._query(CONTACTS_URI, columns, "the contacts provider")
            except AmbiguousRowError:  # a name holds ", data1=": one column per query, rows matched by number
                names, numbers = (self._query(CONTACTS_URI, (column,), "the contacts provider") for column in columns)
                if len(names) != len(numbers):
                    raise StateUnavailable("the contacts changed between two queries; look again") from None
                rows = [{**a, **b} for a, b in zip(names, numbers, strict=True)]
            return [ContactEntry(row["display_name"] or "", row["data1"] or "") for row in rows]

        return Reading(
            list(self._cached(("contacts",), read)), "content provider", f"content query --uri {CONTACTS_URI}"
        )

    def notes(self) -> Reading[list[str]]:
        def read() -> list[str]:
            rows = self._query(NOTES_URI, ("_id", "text"), "the sim Notes app")  # free text last: never ambiguous
            ordered = sorted(rows, key=lambda row: int(row["_id"] or 0) if (row["_id"] or "").isdigit() else 0)
            return [row["text"] or "" for row in ordered]

        return Reading(list(self._cached(("notes",), read)), "content provider", f"content query --uri {NOTES_URI}")

    def app_state(self) -> Reading[Mapping[str, JsonValue]]:
        raise StateUnavailable("a phone has no desktop app state file")

    def window_title(self) -> Reading[str]:
        raise StateUnavailable("a phone has no desktop windows")

    def screen(self) -> Reading[str]:
        raise StateUnavailable(
            "screen names (home, settings, note_editor...) exist only on the simulated phone; "
            "on an adb phone check the app in front (app:) or what is on screen (text:, element:)"
        )

    # --- StatePreparer -------------------------------------------------------------------------

    def prepare(self, start: StartState) -> None:
        """Set the toggles (each read back: a task must not start from a state it only seems to have),
        replace the notes and contacts when given, then press Home."""
        self._cache.clear()
        commands: dict[str, tuple[bool, list[str]]] = {}
        for name, on in start.toggles.items():
            toggle = TOGGLES.get(name) or toggle_setting(name)
            if toggle is None:
                raise StateUnavailable(f"no toggle {name!r}; known: {', '.join(sorted(TOGGLES))}")
            try:
                argv = toggle.command(on)
            except ValueError as exc:
                raise StateUnavailable(str(exc)) from None
            self._check(f"turning {toggle.toggle} {'on' if on else 'off'}", argv)
            commands[toggle.toggle] = (on, argv)
        self._await_toggles(commands)
        if start.notes is not None:
            self._clear_app(NOTES_PACKAGE, _NOTES_NEEDED)
            for note in start.notes:
                self._insert(NOTES_URI, [("text", "s", note)], "adding a note")
        if start.contacts is not None:
            self._clear_app(CONTACTS_PACKAGE, "this phone's contacts provider cannot be cleared")
            for contact in start.contacts:
                self._add_contact(contact.name, contact.phone)
        if start.home:
            self._check("pressing Home", ["input", "keyevent", "3"])
        self._cache.clear()

    def _await_toggles(self, wanted: Mapping[str, tuple[bool, list[str]]]) -> None:
        """Read the toggles back until each is as set (radios take a moment) or ``toggle_settle`` passes."""
        deadline = time.monotonic() + self._toggle_settle
        while True:
            self._cache.clear()
            wrong = {name: (on, argv) for name, (on, argv) in wanted.items() if self.toggle(name).value != on}
            if not wrong:
                return
            if time.monotonic() >= deadline:
                name, (on, argv) = next(iter(wrong.items()))
                raise StateUnavailable(
                    f"{name} stayed {'off' if on else 'on'} on {self.serial} after '{' '.join(argv)}' "
                    f"({self.toggle(name).detail}): this phone cannot be set up for the task"
                )
            self._sleep(0.2)

    def _clear_app(self, package: str, missing: str) -> None:
        result = self._shell(f"clearing {package}", ["pm", "clear", package])
        if result.status != 0 or "Success" not in result.output:
            raise StateUnavailable(f"{missing} ('pm clear {package}': {_head(result.output)})")

    def _add_contact(self, name: str, phone: str) -> None:
        # A raw contact first (local, no account), then its name and number as data rows, as android_world does.
        raw = "content://com.android.contacts/raw_contacts"
        self._insert(raw, [("account_type", "n", ""), ("account_name", "n", "")], f"adding contact {name!r}")
        ids = [row["_id"] for row in self._query(raw, ("_id",), "the contacts provider")]
        numbers = [int(i) for i in ids if i is not None and i.isdigit()]
        if not numbers:
            raise DeviceError(f"adding contact {name!r} on {self.serial}: no raw contact id after the insert")
        raw_id = str(max(numbers))
        data = "content://com.android.contacts/data"
        for mimetype, value, extra in (("name", name, []), ("phone_v2", phone, [("data2", "i", "2")])):
            binds = [
                ("raw_contact_id", "i", raw_id),
                ("mimetype", "s", f"vnd.android.cursor.item/{mimetype}"),
                ("data1", "s", value),
                *extra,
            ]
            self._insert(data, binds, f"adding contact {name!r}")

    def _insert(self, uri: str, binds: Sequence[tuple[str, str, str]], what: str) -> None:
        argv = ["content", "insert", "--uri", uri]
        for column, kind, value in binds:
            argv += ["--bind", f"{column}:{kind}:{value}"]  # Content.java splits at the first two colons only
        result = self._shell(what, argv)
        if result.status != 0 or provider_missing(result.output) or "Exception" in result.output:
            if uri == NOTES_URI:
                raise StateUnavailable(_NOTES_NEEDED)
            raise DeviceError(f"{what} on {self.serial} failed: {_head(result.output)}")

    # --- reading -------------------------------------------------------------------------------

    def _cached(self, key: tuple[str, ...], read: Callable[[], T]) -> T:
        if key not in self._cache:
            self._cache[key] = read()
        return self._cache[key]  # type: ignore[return-value]  # each key is only ever stored by its reader

    def _output(self, what: str, argv: Sequence[str]) -> str:
        result = self._shell(what, argv)
        if result.status != 0:
            raise StateUnavailable(f"'{' '.join(argv)}' failed on {self.serial}: {_head(result.output)}")
        return result.output

    def _check(self, what: str, argv: Sequence[str]) -> None:
        result = self._shell(what, argv)
        if result.status != 0:
            raise DeviceError(f"{what} on {self.serial} failed (exit {result.status}): {_head(result.output)}")

    def _query(self, uri: str, columns: Sequence[str], provider: str) -> list[dict[str, str | None]]:
        argv = ["content", "query", "--uri", uri, "--projection", ":".join(columns)]
        result = self._shell(f"querying {provider}", argv)
        if provider_missing(result.output) or result.status != 0:
            if uri == NOTES_URI:
                raise StateUnavailable(_NOTES_NEEDED)
            raise StateUnavailable(f"cannot query {provider} ({uri}): {_head(result.output)}")
        try:
            return content_rows(result.output, columns)
        except AmbiguousRowError:
            raise
        except ShellOutputError as exc:
            raise StateUnavailable(f"cannot read {provider}: {exc}") from None

    def _dump(self) -> tuple[UiTree, str]:
        """``uiautomator dump`` to /dev/tty (a file + cat when that prints no XML), retried a bounded number
        of times on the errors a busy screen gives; UiDumpError naming the last problem when all fail."""
        compressed = False
        to_file = False
        problems: list[str] = []
        for attempt in range(1, self._dump_attempts + 1):
            flags = ["--compressed"] if compressed else []
            result = self._shell(
                "dumping the view hierarchy",
                ["uiautomator", "dump", *flags, DUMP_FILE if to_file else "/dev/tty"],
                timeout=self._dump_timeout,
            )
            how = " ".join(["uiautomator dump", *flags, DUMP_FILE if to_file else "/dev/tty"])
            if to_file and result.status == 0 and dump_problem(result.output) == "no xml":
                result = self._shell("reading the view hierarchy", ["cat", DUMP_FILE], timeout=self._dump_timeout)
                how += " + cat"
            problem = dump_problem(result.output)
            if problem is None:
                try:
                    return parse_hierarchy(result.output), how
                except UiDumpError as exc:  # cut short or garbled on the way: a new dump usually is whole
                    problems.append(str(exc))
            elif problem == "idle":
                problems.append("ERROR: could not get idle state (the screen kept animating)")
                compressed = True
            elif problem == "null root":
                problems.append("ERROR: null root node (an app was switching)")
            elif problem == "taken":
                raise UiDumpError(
                    f"uiautomator dump cannot run on {self.serial}: another UI automation tool (uiautomator2/ATX, "
                    "Appium, a monkey run) holds the phone's UiAutomation service; stop it and look again"
                )
            elif result.status == 127 or "not found" in result.output:
                raise UiDumpError(f"this device has no uiautomator command: {_head(result.output)}")
            else:
                problems.append(f"no hierarchy in the output ({_head(result.output)})")
                to_file = True  # some builds cannot write to /dev/tty
            log.info(
                "%s: view hierarchy dump %d/%d failed: %s", self.serial, attempt, self._dump_attempts, problems[-1]
            )
            if attempt < self._dump_attempts:
                self._sleep(self._retry_pause)
        raise UiDumpError(
            f"could not read the screen of {self.serial} with uiautomator dump after {len(problems)} tries "
            f"(last: {problems[-1]}); checks that need the view hierarchy cannot be judged now"
        )


def _head(output: str) -> str:
    text = " ".join(output.split())
    return repr(text[:200]) if text else "no output"
