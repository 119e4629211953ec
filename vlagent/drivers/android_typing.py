"""Typing for the adb driver, read back: text goes in by one input path (``input text``,
ADBKeyboard, the Clipper clipboard), the focused field is read from the view hierarchy, and
when it does not hold what was meant the typed part is deleted and typed again another way.

:class:`Typist` returns the :class:`~vlagent.outcome.ActionOutcome` (verified, retried and
how, failed, or unverifiable and why). Every argument reaches the device shell quoted by the
driver; ``input text`` gets its own ``%s`` encoding for spaces.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from vlagent.drivers.android_keys import ADB_KEYBOARD_IME, ADB_KEYBOARD_PACKAGE, ANDROID_KEYCODES
from vlagent.drivers.android_state import CommandFailed
from vlagent.errors import ActionNotSupportedError
from vlagent.outcome import ActionOutcome, TypingStatus
from vlagent.tasks.uitree import UiDumpError, UiNode

if TYPE_CHECKING:
    from vlagent.drivers.android import AdbDriver

__all__ = ["CLIPPER_PACKAGE", "KEYCODE_PASTE", "TypingPath", "Typist", "input_text_chunks", "input_text_commands"]

log = logging.getLogger("vlagent.drivers.android")  # part of the adb driver: one logger for it

#: The Clipper app (https://github.com/majido/clipper): ``am broadcast -a clipper.set -e text TEXT`` fills the
#: clipboard, which Android has no shell command for; a fallback path for typing (android_world uses it).
CLIPPER_PACKAGE = "ca.zgrs.clipper"
#: android.view.KeyEvent.KEYCODE_PASTE (API 24+).
KEYCODE_PASTE = 279
#: Characters per command on the "short chunks" typing paths.
_SHORT_CHUNK = 8
#: The ways text can be put into the focused field, in the words the step outcome records.
TypingPath = Literal["input text", "input text, short chunks", "ADBKeyboard", "ADBKeyboard, short chunks", "clipboard"]


def input_text_chunks(text: str) -> list[str]:
    """Arguments for successive ``input text`` calls that type ``text`` (printable ASCII) exactly.

    ``input text`` turns ``%s`` into a space and has no escape for a literal ``%s``, so the
    text is split between every ``%`` and a following ``s``; spaces become ``%s``.
    """
    pieces = re.split(r"(?<=%)(?=s)", text)
    return [piece.replace(" ", "%s") for piece in pieces if piece]


def input_text_commands(text: str) -> list[list[str]]:
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


class Typist:
    """Types into the focused field of its driver's phone and says how it went."""

    def __init__(self, driver: AdbDriver) -> None:
        self.driver = driver
        self._ime_ready = False

    def type(self, text: str, submit: bool) -> ActionOutcome | None:
        """Type ``text`` and, with ``verify_typing``, read the focused field back and retry when it differs."""
        first: TypingPath = "input text" if text.isascii() else "ADBKeyboard"
        if not self.driver.config.verify_typing:
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
            path = self._next_typing_path(text, methods) if len(methods) <= self.driver.config.typing_retries else None
            if path is None:
                why = f"the field holds {seen!r}, not {held + text!r}, after {', '.join(methods)}"
                log.warning("%s: typed text did not arrive: %s", self.driver.serial, why)
                return ActionOutcome("failed", why, tuple(methods), seen)
            serial = self.driver.serial
            log.warning("%s: the field holds %r after typing %r by %s; typing again by %s", serial, seen, text,
                        methods[-1], path)  # fmt: skip
            retype = self._undo_typing(held, seen)
            methods.append(path)
            try:
                self._send_text(retype + text, path)
            except CommandFailed as exc:  # this path is out; the read-back shows what the field holds now
                log.warning("%s: typing by %s failed: %s", self.driver.serial, path, exc)

    def _focused_field(self, when: str) -> UiNode | str:
        """The focused text field, or why it cannot be read (a DeviceError still propagates)."""
        try:
            tree = self.driver.state().ui_tree().value
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
            if path == "clipboard" and CLIPPER_PACKAGE not in self.driver._installed_packages():
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
            self.driver._run("deleting mistyped text", [["input", "keyevent", *keys]])
        return "" if keep else held

    def _submit(self, submit: bool) -> None:
        if submit:
            self.driver._run("typing text", [["input", "keyevent", str(ANDROID_KEYCODES["enter"])]])

    def _send_text(self, text: str, path: TypingPath) -> None:
        """Type ``text`` into the focused field by one input path (no read-back)."""
        if path == "input text":
            self.driver._run("typing text", input_text_commands(text))
        elif path == "input text, short chunks":  # slow phones drop key events from long bursts
            for piece in _pieces(text, _SHORT_CHUNK):
                self.driver._run("typing text", input_text_commands(piece))
        elif path in ("ADBKeyboard", "ADBKeyboard, short chunks"):
            self._ensure_adb_keyboard(text)
            for piece in [text] if path == "ADBKeyboard" else _pieces(text, _SHORT_CHUNK):
                encoded = base64.b64encode(piece.encode("utf-8")).decode("ascii")
                output = self.driver._run(
                    "typing text", [["am", "broadcast", "-a", "ADB_INPUT_B64", "--es", "msg", encoded]]
                )
                if "Broadcast completed" not in output:
                    raise CommandFailed(f"ADBKeyboard did not take the text: {output.strip()[:200]!r}")
        else:  # the Clipper app holds the text, KEYCODE_PASTE puts it in the field
            output = self.driver._run("copying text", [["am", "broadcast", "-a", "clipper.set", "-e", "text", text]])
            if "Broadcast completed" not in output:
                raise CommandFailed(f"Clipper did not take the text: {output.strip()[:200]!r}")
            self.driver._run("pasting text", [["input", "keyevent", str(KEYCODE_PASTE)]])

    def _ensure_adb_keyboard(self, text: str) -> None:
        if self._ime_ready:
            return
        how_to = (
            f"Typing non-ASCII text ({text[:20]!r}) on an Android device needs the ADBKeyboard input method: "
            "install it (https://github.com/senzhk/ADBKeyBoard, 'adb install ADBKeyboard.apk'), then run "
            f"'adb shell ime enable {ADB_KEYBOARD_IME}' and 'adb shell ime set {ADB_KEYBOARD_IME}'."
        )
        enabled = self.driver._run("listing keyboards", [["ime", "list", "-s"]]).split()
        if ADB_KEYBOARD_IME not in enabled:
            if ADB_KEYBOARD_PACKAGE not in self.driver._installed_packages():
                raise ActionNotSupportedError(how_to)
            if not self.driver.config.switch_ime:
                raise ActionNotSupportedError(how_to)
            self.driver._run("enabling ADBKeyboard", [["ime", "enable", ADB_KEYBOARD_IME]])
        current = self.driver._run(
            "reading the keyboard", [["settings", "get", "secure", "default_input_method"]]
        ).strip()
        if current != ADB_KEYBOARD_IME:
            if not self.driver.config.switch_ime:
                raise ActionNotSupportedError(how_to)
            log.info("switching %s keyboard from %s to ADBKeyboard for non-ASCII text", self.driver.serial, current)
            self.driver._run("selecting ADBKeyboard", [["ime", "set", ADB_KEYBOARD_IME]])
        self._ime_ready = True
