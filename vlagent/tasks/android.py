"""What Android's shell commands print about device state, parsed into typed values.

Each function takes the text a real phone prints (formats from AOSP's
``settings``, ``cmd uimode``, ``dumpsys activity``/``window``, ``content`` and ``uiautomator``
commands, Android 5-15) and returns a value, None when the output says "not set / not
there", or raises :class:`ShellOutputError` when the output is not what that command prints.
Parsing is lenient where versions differ (``\\r\\n`` line ends, extra lines, older spellings).

This module must not talk to devices: the adb state reader (``vlagent.drivers.android_state``)
runs the commands and calls these.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Collection, Sequence
from typing import Literal

from vlagent.tasks.settings import NIGHT_MODE_RE
from vlagent.tasks.state import Foreground

__all__ = [
    "AmbiguousRowError",
    "DumpProblem",
    "ShellOutputError",
    "content_rows",
    "dump_problem",
    "focused_window",
    "night_mode",
    "provider_missing",
    "resumed_activity",
    "setting_value",
]


class ShellOutputError(ValueError):
    """A command printed something other than what it prints on any Android version seen."""


class AmbiguousRowError(ShellOutputError):
    """A ``content query`` row whose values contain ``", column="`` so its columns cannot be told apart;
    query one column at a time instead."""


def _lines(output: str) -> list[str]:
    return [line.rstrip("\r") for line in output.replace("\r\n", "\n").split("\n")]


def setting_value(output: str) -> str | None:
    """The value ``settings get NAMESPACE KEY`` printed; None for ``null`` (the key is not set).

    The value is the last non-empty line (a few ROMs print a warning first); surrounding
    whitespace and ``\\r`` are dropped. Empty output is not a ``settings get`` answer.
    """
    lines = [line.strip() for line in _lines(output) if line.strip()]
    if not lines:
        raise ShellOutputError("'settings get' printed nothing (expected a value or 'null')")
    value = lines[-1]
    return None if value == "null" else value


def night_mode(output: str) -> str | None:
    """The mode ``cmd uimode night`` printed: ``yes``, ``no``, ``auto``, ``custom``, ``custom_schedule``,
    ``custom_bedtime``; None when the output has no ``Night mode:`` line (no uimode command on old builds)."""
    match = re.search(NIGHT_MODE_RE, output)
    return match.group(1).lower() if match else None


# An activity record: "ActivityRecord{8782c44 u0 com.android.settings/.Settings t12}" (some builds omit
# "u0" or the task, or print "ActivityRecord{8782c44 token=... com.x/.Main}"); a window names the same
# component: "Window{b27cd4c u0 com.android.settings/com.android.settings.Settings}".
_COMPONENT = r"([A-Za-z][\w]*(?:\.[\w]+)+)/([\w.$]+)"
_RESUMED_PATTERNS = (
    re.compile(r"\btopResumedActivity=\s*ActivityRecord\{[^}]*?" + _COMPONENT),  # Android 10+
    re.compile(r"(?m)^\s*ResumedActivity:\s*ActivityRecord\{[^}]*?" + _COMPONENT),  # Android 10+
    re.compile(r"\bmResumedActivity:\s*ActivityRecord\{[^}]*?" + _COMPONENT),  # up to 9 (and per task after)
    re.compile(r"(?m)^\s*Resumed:\s*ActivityRecord\{[^}]*?" + _COMPONENT),  # "Resumed activities in task display areas"
    re.compile(r"\bmFocusedActivity:\s*ActivityRecord\{[^}]*?" + _COMPONENT),  # up to Android 8
)
_FOCUS_PATTERNS = (
    re.compile(r"\bmCurrentFocus=\s*Window\{[^}]*?" + _COMPONENT),
    re.compile(r"\bmFocusedApp=\s*(?:AppWindowToken\{[^\n]*?)?ActivityRecord\{[^}]*?" + _COMPONENT),
)


def _foreground(match: re.Match[str]) -> Foreground:
    package, activity = match.group(1), match.group(2)
    return Foreground(package, activity)


def resumed_activity(dumpsys_activity: str) -> Foreground | None:
    """The resumed (foreground) activity in ``dumpsys activity activities`` output; None when none is resumed.

    Looks for ``topResumedActivity=`` (Android 10+), then ``ResumedActivity:`` (the focused
    display's), then ``mResumedActivity:`` (Android 9 and before), then ``Resumed:``.
    """
    for pattern in _RESUMED_PATTERNS:
        match = pattern.search(dumpsys_activity)
        if match is not None:
            return _foreground(match)
    return None


def focused_window(dumpsys_window: str) -> Foreground | None:
    """The app of the focused window in ``dumpsys window`` output (``mCurrentFocus=``, else ``mFocusedApp=``).

    None when neither names an app component (``mCurrentFocus=null``, or a system window such as
    ``Window{... u0 NotificationShade}`` with no app behind it).
    """
    for pattern in _FOCUS_PATTERNS:
        match = pattern.search(dumpsys_window)
        if match is not None:
            return _foreground(match)
    return None


_ROW_RE = re.compile(r"(?m)^Row: (\d+) ")
#: What ``content`` prints when the provider is not on this phone (AOSP Content.java and
#: ActivityThread, across versions); some builds exit 0 with it on stderr.
_MISSING_PROVIDER = (
    "Could not find provider",
    "Unknown authority",
    "Unknown URI",
    "Error while accessing provider",
    "Failed to find provider info",
)


def provider_missing(output: str) -> bool:
    """Whether ``content query|insert|delete`` output says the content provider is not there."""
    return any(marker in output for marker in _MISSING_PROVIDER)


def content_rows(
    output: str, columns: Sequence[str], *, numeric: Collection[str] = ("_id",)
) -> list[dict[str, str | None]]:
    """Rows of ``content query --projection a:b:...`` output, as {column: value}; ``NULL`` becomes None.

    ``Row: 0 a=x, b=y`` per row, columns in projection order (AOSP Content.java); ``No result
    found.`` means no rows. A value may hold commas and newlines: columns are split at
    ``", NAME="`` of the next expected column only, and a line not starting with ``Row: N`` continues
    the value before it. After a ``numeric`` column (an id: digits only) the first such separator is
    the one; after a text column a second one makes the row ambiguous: :class:`AmbiguousRowError`
    (query one column at a time, or put the free-text column last). Anything else unexpected
    raises :class:`ShellOutputError`.
    """
    if not columns:
        raise ValueError("content_rows needs the projection's columns")
    text = output.replace("\r\n", "\n")
    if text.strip() == "No result found.":
        return []
    starts = list(_ROW_RE.finditer(text))
    if not starts or text[: starts[0].start()].strip():
        head = text.strip().splitlines()[0][:200] if text.strip() else "nothing"
        raise ShellOutputError(f"not 'content query' output: {head!r}")
    rows: list[dict[str, str | None]] = []
    for number, (match, after) in enumerate(zip(starts, [*starts[1:], None], strict=True)):
        if int(match.group(1)) != number:
            raise ShellOutputError(f"'content query' rows out of order: Row: {match.group(1)} where {number} was due")
        body = text[match.end() : after.start() if after is not None else len(text)]
        body = body[:-1] if body.endswith("\n") else body  # println's line end, not part of the last value
        rows.append(_row(body, columns, numeric))
    return rows


def _row(body: str, columns: Sequence[str], numeric: Collection[str]) -> dict[str, str | None]:
    first = f"{columns[0]}="
    if not body.startswith(first):
        raise ShellOutputError(f"'content query' row {body[:80]!r} does not start with {first!r}")
    values: list[str] = []
    rest = body[len(first) :]
    for column, following in itertools.pairwise(columns):
        separator = f", {following}="
        if separator not in rest:
            raise ShellOutputError(f"'content query' row {body[:80]!r} has no column {following!r}")
        if column not in numeric and rest.count(separator) > 1:
            raise AmbiguousRowError(f"a value in row {body[:80]!r} contains {separator!r}")
        value, rest = rest.split(separator, 1)
        if column in numeric and not (value.lstrip("-").isdigit() or value == "NULL"):
            raise ShellOutputError(f"'content query' column {column!r} is not a number: {value[:40]!r}")
        values.append(value)
    values.append(rest)
    return {column: None if value == "NULL" else value for column, value in zip(columns, values, strict=True)}


DumpProblem = Literal["idle", "null root", "taken", "no xml"]


def dump_problem(output: str) -> DumpProblem | None:
    """What went wrong in ``uiautomator dump`` output that holds no hierarchy, or None when it holds one.

    ``idle``: ``ERROR: could not get idle state.`` (the screen kept animating; ``--compressed``
    sometimes succeeds); ``null root``: ``ERROR: null root node returned by UiTestAutomationBridge.``
    (an app was switching: try again); ``taken``: ``UiAutomationService ... already registered!``
    (another automation tool, e.g. uiautomator2 or Appium, holds the accessibility bridge: trying
    again will not help); ``no xml``: no ``<hierarchy`` at all (e.g. this build cannot write to
    ``/dev/tty``: dump to a file instead).
    """
    if "<hierarchy" in output:
        return None
    if "could not get idle state" in output:
        return "idle"
    if "null root node" in output:
        return "null root"
    if "already registered" in output:
        return "taken"
    return "no xml"
