"""SimPhone: a small, deterministic Android-like world, vlagent's built-in default device.

The phone has a home screen with app icons, a Settings app with a list of toggles longer
than the screen, a Notes app and a Contacts app with editors, an on-screen keyboard that
appears when a text field has focus, a recents screen and decorative apps (Camera, Clock,
Browser, Gallery). Touch input follows Android: a press held for ``LONG_PRESS_TIMEOUT`` is
a long press (a note row opens a Delete/Cancel popup, a home icon an "App info" popup;
elsewhere it acts as a tap), and a horizontal swipe inward from a screen edge is Back
(gesture navigation).

The phone has a power state, as a real one does: ``sleep()`` (or the POWER / SLEEP keys)
turns the screen off, so frames are all black and every input but the wake keys is lost;
``wake()`` (WAKEUP, POWER) turns it on again, showing the lock screen when ``screen_lock``
is "swipe" (the default, as on a new Android phone) or "pin". A swipe up from the lower
half or ``dismiss_keyguard()`` removes a swipe lock; a PIN lock only shows its PIN pad,
because the phone is never unlocked for anyone who does not know the PIN.

Everything a task checker needs is queryable state (``toggles``, ``notes``, ``contacts``,
``screen``, ``awake``, ``keyguard_shown``, ``snapshot()``...), so success is judged from
the world, never from what a model claims.

Each state is laid out as a flat list of ``Element`` boxes; the same list drives
rendering, hit-testing, ``text_on_screen()`` and ``locate()``, so what is drawn is exactly
what can be tapped. Frames are cached per state version: screenshots of an unchanged
phone cost a copy. One re-entrant lock guards every state change and render, because the
simulated adb server serves concurrent connections.

This module must not block (no time.sleep), touch the network or depend on wall-clock time (the status
bar clock is fixed; transitions use the injected ``clock``).
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from PIL import Image

__all__ = [
    "APPS",
    "DEFAULT_NOTES",
    "EDGE_BACK_MIN_TRAVEL",
    "EDGE_BACK_ZONE",
    "HOME_PACKAGE",
    "LONG_PRESS_TIMEOUT",
    "PIN_PROMPT",
    "SETTINGS_ROWS",
    "SYSTEMUI_PACKAGE",
    "UNLOCK_HINT",
    "UNLOCK_SWIPE_MIN_TRAVEL",
    "UNLOCK_SWIPE_START",
    "App",
    "Contact",
    "Element",
    "Popup",
    "ScreenLock",
    "SettingsRow",
    "SimPhone",
]

log = logging.getLogger(__name__)

Box = tuple[int, int, int, int]
ElementKind = Literal[
    "panel", "status", "nav", "title", "text", "row", "icon", "button", "text_button", "field", "key", "card",
    "icon_button", "shutter", "photo", "wallpaper", "scrim", "popup", "padlock",
]  # fmt: skip
#: Android's Settings > Security > Screen lock choices that matter here (PIN stands for every secure lock).
ScreenLock = Literal["none", "swipe", "pin"]
_LOCK_LABELS = {"none": "None", "swipe": "Swipe", "pin": "PIN"}

HOME_PACKAGE = "com.android.launcher3"
SYSTEMUI_PACKAGE = "com.android.systemui"
#: The fixed status-bar time and date: frames must not depend on when they are taken.
CLOCK_TEXT = "12:00"
DATE_TEXT = "Monday, 1 January"
BATTERY_PERCENT = 85
#: Seconds a press must be held to count as a long press (Android's ViewConfiguration uses 400-500 ms).
LONG_PRESS_TIMEOUT = 0.5
#: A back gesture starts within this fraction of the screen width from the left or right edge...
EDGE_BACK_ZONE = 0.05
#: ...and travels inward at least this fraction of the width (Android gesture navigation).
EDGE_BACK_MIN_TRAVEL = 0.10
#: The lock screen is swiped away by a swipe up that starts below this fraction of the height...
UNLOCK_SWIPE_START = 0.5
#: ...and travels up at least this fraction of the height.
UNLOCK_SWIPE_MIN_TRAVEL = 0.15
UNLOCK_HINT = "Swipe up to unlock"
PIN_PROMPT = "Enter PIN"


@dataclass(frozen=True)
class App:
    """A launchable app: package name, visible label, icon colour and its main screen."""

    package: str
    label: str
    color: tuple[int, int, int]
    screen: str


APPS: tuple[App, ...] = (
    App("com.android.settings", "Settings", (84, 110, 122), "settings"),
    App("com.vlagent.notes", "Notes", (249, 168, 37), "notes"),
    App("com.android.contacts", "Contacts", (30, 136, 229), "contacts"),
    App("com.android.camera2", "Camera", (67, 160, 71), "camera"),
    App("com.android.deskclock", "Clock", (94, 53, 177), "clock"),
    App("com.android.browser", "Browser", (229, 57, 53), "browser"),
    App("com.android.gallery3d", "Gallery", (0, 137, 123), "gallery"),
)
_SCREEN_PACKAGE = {
    "home": HOME_PACKAGE,
    "recents": SYSTEMUI_PACKAGE,
    "note_editor": "com.vlagent.notes",
    "contact_editor": "com.android.contacts",
    **{app.screen: app.package for app in APPS},
}


@dataclass(frozen=True)
class SettingsRow:
    """One row of Settings: a toggle (``toggle=True``, state under ``key``) or an info row."""

    key: str
    label: str
    toggle: bool = True
    subtitle: str = ""


SETTINGS_ROWS: tuple[SettingsRow, ...] = (
    SettingsRow("wifi", "Wi-Fi"),
    SettingsRow("bluetooth", "Bluetooth"),
    SettingsRow("airplane_mode", "Airplane mode"),
    SettingsRow("mobile_data", "Mobile data"),
    SettingsRow("hotspot", "Hotspot"),
    SettingsRow("nfc", "NFC"),
    SettingsRow("location", "Location"),
    SettingsRow("do_not_disturb", "Do not disturb"),
    SettingsRow("sound", "Sound", False, "Ring volume at 70%"),
    SettingsRow("notifications", "Notifications", False, "7 apps can send notifications"),
    SettingsRow("storage", "Storage", False, "23.4 GB used of 64 GB"),
    SettingsRow("battery", "Battery", False, f"{BATTERY_PERCENT}% - about 1 day left"),
    SettingsRow("battery_saver", "Battery saver"),
    SettingsRow("dark_mode", "Dark mode"),
    SettingsRow("auto_rotate", "Auto-rotate screen"),
    SettingsRow("vibrate_on_touch", "Vibrate on touch"),
    SettingsRow("display_size", "Display size", False, "Default"),
    SettingsRow("accessibility", "Accessibility", False, "Screen readers, display, interaction"),
    SettingsRow("security", "Security", False, "Screen lock"),  # the lock type is filled in per phone
    SettingsRow("about_phone", "About phone", False, "vlagent-sim"),
)
# Layout seeds shuffle rows inside these blocks only: the second block always starts below
# the first screen, so "Dark mode" needs a scroll whatever the seed.
_SETTINGS_BLOCKS = ((0, 8), (12, 20))
_DEFAULT_TOGGLES = {row.key: False for row in SETTINGS_ROWS if row.toggle} | {
    "mobile_data": True,
    "location": True,
    "auto_rotate": True,
    "vibrate_on_touch": True,
}
DEFAULT_NOTES = ("Call the dentist on Tuesday", "Ideas for the weekend\nHike, museum, pancakes")


@dataclass(frozen=True)
class Contact:
    """A saved contact."""

    name: str
    phone: str


@dataclass(frozen=True)
class Popup:
    """A popup shown over the current screen after a long press.

    ``kind`` "note": actions for the note at index ``target`` of ``notes`` (Delete, Cancel);
    ``kind`` "app_info": facts about the app whose package is ``target`` (Close).
    """

    kind: Literal["note", "app_info"]
    title: str
    target: int | str


_DEFAULT_CONTACTS = (Contact("Alice Martin", "+1 555 0100"), Contact("Bob Chen", "+1 555 0199"))

# Design units: the layout is drawn for a 1080-px-wide screen and scaled by width / 1080.
_STATUS_H, _NAV_H, _APPBAR_H, _ROW_H = 84, 132, 176, 168
_KEY_H, _KEY_ROWS = 132, ("1234567890", "qwertyuiop", "asdfghjkl", "zxcvbnm")
_HOME_COLS, _HOME_ROWS, _HOME_TOP, _HOME_CELL_H = 4, 5, 700, 300


@dataclass(frozen=True, eq=False)
class Element:
    """A box on screen: what is drawn there, what it says, and what tapping it does."""

    kind: ElementKind
    label: str
    box: Box
    texts: tuple[str, ...] = ()
    """The words visibly written by this element (feeds ``text_on_screen``)."""
    on_tap: Callable[[], None] | None = None
    clip: Box | None = None
    """The visible part of ``box`` when a list scrolls it under the chrome."""
    visible: bool = True
    """False: drawn (partly) but too hidden to read or tap."""
    opaque: bool = False
    """True: swallows taps even without ``on_tap`` (app bars, keyboard background)."""
    text: str = ""
    subtitle: str = ""
    value: bool | None = None
    role: str = "text"
    size: int = 44
    color: tuple[int, int, int] | None = None
    focused: bool = False
    on_long_press: Callable[[], None] | None = None
    """What holding a press here for ``LONG_PRESS_TIMEOUT`` does (None: the same as a tap)."""

    @property
    def hit_box(self) -> Box:
        return self.clip or self.box

    @property
    def center(self) -> tuple[int, int]:
        x0, y0, x1, y1 = self.hit_box
        return (x0 + x1) // 2, (y0 + y1) // 2


class SimPhone:
    """The simulated phone. Thread-safe; every public method takes the phone's lock."""

    def __init__(
        self,
        seed: int = 0,
        transition_delay: float = 0.0,
        width: int = 1080,
        height: int = 2400,
        clock: Callable[[], float] = time.monotonic,
        serial: str = "sim-0",
        density: int = 420,
        screen_lock: ScreenLock = "swipe",
        drop_typed: int = 0,
    ) -> None:
        if drop_typed < 0:
            raise ValueError("drop_typed must be >= 0")
        if width < 320 or height < 480:
            raise ValueError(f"screen too small for the simulated phone: {width}x{height}")
        if transition_delay < 0:
            raise ValueError("transition_delay must be >= 0")
        if screen_lock not in _LOCK_LABELS:
            raise ValueError(f"screen_lock must be none, swipe or pin, got {screen_lock!r}")
        self.screen_lock: ScreenLock = screen_lock
        self.seed = seed
        self.transition_delay = float(transition_delay)
        self.width, self.height = width, height
        self.density = density
        self.serial = serial
        self._clock = clock
        self._u = width / 1080
        self._lock = threading.RLock()
        rng = random.Random(seed)
        cells = list(range(len(APPS))) if seed == 0 else rng.sample(range(_HOME_COLS * _HOME_ROWS), len(APPS))
        self._home_cells = dict(zip((app.package for app in APPS), cells, strict=True))
        rows = list(SETTINGS_ROWS)
        if seed != 0:
            for start, stop in _SETTINGS_BLOCKS:
                block = rows[start:stop]
                rng.shuffle(block)
                rows[start:stop] = block
        self._settings_rows = tuple(rows)
        self._toggles = dict(_DEFAULT_TOGGLES)
        self._notes = list(DEFAULT_NOTES)
        self._contacts = list(_DEFAULT_CONTACTS)
        self._stack = ["home"]
        self._scroll: dict[str, int] = {}
        self._fields: dict[str, str] = {}
        self._focused: str | None = None
        self._editing_note: int | None = None
        self._popup: Popup | None = None
        self._form_error = ""
        self._recents: list[str] = []
        self._photos = 0
        self._version = 0
        self._transition_until = -math.inf
        self._layout_cache: tuple[int, list[Element]] | None = None
        self._frame_cache: dict[tuple[int, bool], Image.Image] = {}
        # A new phone starts awake and unlocked, as after the user unlocked it to plug it in.
        self._awake = True
        self._keyguard = False
        self._bouncer = False
        self._black: Image.Image | None = None
        self.events: deque[str] = deque(maxlen=200)
        """Recent inputs and what they did, for debugging (not part of ``snapshot``)."""
        self.drop_typed = drop_typed
        """Lose every Nth typed character (0: none), as a phone that drops key events under load does;
        clients test their read-back of typed text with it."""
        self._typed = 0
        self._lose_next = 0

    def __repr__(self) -> str:
        return f"SimPhone(serial={self.serial!r}, seed={self.seed}, screen={self._stack[-1]!r})"

    # ---- queries ----------------------------------------------------------------------

    @property
    def screen(self) -> str:
        """Name of the screen shown: home, recents, settings, notes, note_editor, contacts, contact_editor,
        camera, clock, browser, gallery."""
        with self._lock:
            return self._stack[-1]

    @property
    def current_app(self) -> str:
        """Package of the foreground app (the launcher on the home screen)."""
        with self._lock:
            return _SCREEN_PACKAGE[self._stack[-1]]

    @property
    def toggles(self) -> dict[str, bool]:
        """Settings switches by key (wifi, bluetooth, airplane_mode, dark_mode, location...)."""
        with self._lock:
            return dict(self._toggles)

    @property
    def notes(self) -> list[str]:
        with self._lock:
            return list(self._notes)

    @property
    def contacts(self) -> list[Contact]:
        with self._lock:
            return list(self._contacts)

    @property
    def focused_field(self) -> str | None:
        """note_text, contact_name, contact_phone, or None."""
        with self._lock:
            return self._focused

    @property
    def fields(self) -> dict[str, str]:
        """Unsaved text of the open editor's fields."""
        with self._lock:
            return dict(self._fields)

    @property
    def popup(self) -> Popup | None:
        """The long-press popup shown over the screen, or None."""
        with self._lock:
            return self._popup

    @property
    def keyboard_shown(self) -> bool:
        with self._lock:
            return self._focused is not None

    @property
    def dark(self) -> bool:
        with self._lock:
            return self._toggles["dark_mode"]

    @property
    def awake(self) -> bool:
        """False while the screen is off (asleep)."""
        with self._lock:
            return self._awake

    @property
    def wakefulness(self) -> Literal["Awake", "Asleep"]:
        """The power state as ``dumpsys power`` names it (``mWakefulness=``)."""
        with self._lock:
            return "Awake" if self._awake else "Asleep"

    @property
    def keyguard_shown(self) -> bool:
        """True while the lock screen is up (also while the screen is off over it)."""
        with self._lock:
            return self._keyguard

    @property
    def keyguard_secure(self) -> bool:
        """True when unlocking needs a credential (``screen_lock`` "pin")."""
        return self.screen_lock == "pin"

    @property
    def version(self) -> int:
        """Increases on every state change (frames are cached per version)."""
        with self._lock:
            return self._version

    @property
    def in_transition(self) -> bool:
        """True while the transition frame is shown after a screen change."""
        with self._lock:
            return self._clock() < self._transition_until

    def settings_order(self) -> list[str]:
        """Settings row keys in the order this layout seed shows them."""
        return [row.key for row in self._settings_rows]

    def packages(self) -> dict[str, str]:
        """Launchable apps: package -> label."""
        return {app.package: app.label for app in APPS}

    def elements(self) -> list[Element]:
        """Every readable or tappable element of the current screen, in drawing order."""
        with self._lock:
            return [e for e in self._layout() if e.visible]

    def text_on_screen(self) -> list[str]:
        """Words visible on the current screen (once any transition ends), top to bottom."""
        with self._lock:
            return [t for e in self._layout() if e.visible for t in e.texts]

    def locate(self, label: str) -> tuple[int, int] | None:
        """Centre of the visible element called ``label`` (exact, then case-insensitive), or None."""
        with self._lock:
            visible = [e for e in self._layout() if e.visible]
            for match in (
                lambda e: e.label == label,
                lambda e: e.label.casefold() == label.casefold(),
                lambda e: label in e.texts,
            ):
                found = next((e for e in visible if match(e)), None)
                if found is not None:
                    return found.center
            return None

    def snapshot(self) -> dict[str, Any]:
        """All state as JSON-serialisable data."""
        with self._lock:
            return {
                "serial": self.serial,
                "seed": self.seed,
                "screen": self.screen,
                "current_app": self.current_app,
                "stack": list(self._stack),
                "toggles": dict(self._toggles),
                "notes": list(self._notes),
                "contacts": [{"name": c.name, "phone": c.phone} for c in self._contacts],
                "focused_field": self._focused,
                "fields": dict(self._fields),
                "popup": None
                if self._popup is None
                else {"kind": self._popup.kind, "title": self._popup.title, "target": self._popup.target},
                "scroll": {self.screen: self._scroll.get(self.screen, 0)},
                "recents": list(self._recents),
                "photos": self._photos,
                "in_transition": self.in_transition,
                "power": self.wakefulness,
                "keyguard": self._keyguard,
                "text_on_screen": self.text_on_screen(),
                "version": self._version,
            }

    # ---- direct state setters (task set-up, tests) -------------------------------------

    def set_toggle(self, key: str, value: bool) -> None:
        with self._lock:
            if key not in self._toggles:
                raise KeyError(f"no toggle {key!r}; known: {sorted(self._toggles)}")
            self._toggles[key] = value
            self._changed()

    def add_note(self, text: str) -> None:
        with self._lock:
            self._notes.append(text)
            self._changed()

    def add_contact(self, name: str, phone: str) -> None:
        with self._lock:
            self._contacts.append(Contact(name, phone))
            self._changed()

    def replace_notes(self, notes: list[str]) -> None:
        """Make ``notes`` the saved notes (what clearing the app's data and adding them would do)."""
        with self._lock:
            self._notes = list(notes)
            self._editing_note = None
            self._changed()

    def delete_notes(self, text: str | None = None) -> int:
        """Delete the notes equal to ``text`` (all notes when None); how many were deleted."""
        with self._lock:
            kept = [] if text is None else [n for n in self._notes if n != text]
            deleted = len(self._notes) - len(kept)
            self._notes = kept
            self._editing_note = None
            self._changed()
            return deleted

    def replace_contacts(self, contacts: list[Contact]) -> None:
        """Make ``contacts`` the saved contacts."""
        with self._lock:
            self._contacts = list(contacts)
            self._changed()

    def go_home(self) -> None:
        """Leave whatever is open (popup, keyboard, apps) for the home screen, as the Home key does."""
        with self._lock:
            self._popup = None
            self._focused = None
            self._go(["home"])

    # ---- power and lock screen ----------------------------------------------------------

    def sleep(self) -> None:
        """Turn the screen off (the screen timed out, or the power key); locks unless ``screen_lock`` is none."""
        with self._lock:
            if not self._awake:
                return
            self._awake = False
            if self.screen_lock != "none":
                self._keyguard, self._bouncer = True, False
            self._event(f"sleep (keyguard {'on' if self._keyguard else 'off'})")
            self._changed()

    def wake(self) -> None:
        """Turn the screen on; the lock screen shows if the phone locked when it slept."""
        with self._lock:
            if self._awake:
                return
            self._awake = True
            self._event("wake")
            self._changed()

    def dismiss_keyguard(self) -> bool:
        """What ``wm dismiss-keyguard`` does: remove a swipe lock screen; a PIN lock shows its PIN pad
        instead. True when no lock screen is left."""
        with self._lock:
            if not self._keyguard:
                return True
            if self.keyguard_secure:
                self._event("dismiss keyguard: PIN required")
                if not self._bouncer:
                    self._bouncer = True
                    self._changed()
                return False
            self._keyguard = self._bouncer = False
            self._event("keyguard dismissed")
            self._changed()
            return True

    def _input_lost(self, what: str) -> bool:
        """True (and logged) when ``what`` cannot reach the screen: it is off, or the lock screen covers it."""
        if not self._awake:
            self._event(f"{what} ignored: screen off")
            return True
        if self._keyguard:
            self._event(f"{what} ignored: lock screen")
            return True
        return False

    # ---- input --------------------------------------------------------------------------

    def tap(self, x: int, y: int) -> None:
        with self._lock:
            if self._input_lost(f"tap {x},{y}"):
                return
            target = self._hit(x, y)
            self._event(f"tap {x},{y} -> {target.label if target else 'nothing'}")
            if target is not None and target.on_tap is not None:
                target.on_tap()

    def long_press(self, x: int, y: int, duration: float = 1.0) -> None:
        """Hold a press at (x, y) for ``duration`` seconds.

        Held for ``LONG_PRESS_TIMEOUT`` or longer it runs the element's long-press action (a note
        row's popup, a home icon's "App info"); where there is none, or when released sooner,
        it is a tap, as on Android when no long-click listener is set.
        """
        with self._lock:
            if self._input_lost(f"long press {x},{y}"):
                return
            if duration < LONG_PRESS_TIMEOUT:
                self._event(f"press {x},{y} held {duration:g}s < {LONG_PRESS_TIMEOUT:g}s: tap")
                self.tap(x, y)
                return
            target = self._hit(x, y)
            if target is not None and target.on_long_press is not None:
                self._event(f"long press {x},{y} -> {target.label}")
                target.on_long_press()
                return
            self._event(f"long press {x},{y} -> {target.label if target else 'nothing'}: no long-press action, tap")
            self.tap(x, y)

    def swipe(self, x1: int, y1: int, x2: int, y2: int, duration: float = 0.3) -> None:
        """A finger moving from (x1, y1) to (x2, y2) in ``duration`` seconds, read like Android reads it.

        Within the touch slop it is a tap, or a long press when held ``LONG_PRESS_TIMEOUT``; a
        vertical one drags the list with the finger; a horizontal one from a screen edge
        inward is Back (see ``EDGE_BACK_ZONE``); other horizontal swipes are ignored.
        """
        with self._lock:
            dx, dy = x2 - x1, y2 - y1
            if self._awake and self._keyguard and self._is_unlock_swipe(x1, y1, dx, dy):
                self._event(f"swipe {x1},{y1} -> {x2},{y2}: unlock")
                self.dismiss_keyguard()
                return
            if self._input_lost(f"swipe {x1},{y1} -> {x2},{y2}"):
                return
            if math.hypot(dx, dy) <= 24 * self._u:
                if duration >= LONG_PRESS_TIMEOUT:
                    self.long_press(x1, y1, duration)
                else:
                    self.tap(x1, y1)
            elif abs(dy) >= abs(dx):
                self._scroll_by(y1 - y2)
            elif self._is_edge_back(x1, dx):
                self._event(f"edge swipe {x1},{y1} -> {x2},{y2}: back")
                self._back()
            else:
                self._event(f"horizontal swipe {x1},{y1} -> {x2},{y2} ignored")

    def _is_unlock_swipe(self, x1: int, y1: int, dx: int, dy: int) -> bool:
        upward = -dy >= self.height * UNLOCK_SWIPE_MIN_TRAVEL and abs(dy) >= abs(dx)
        return upward and y1 >= self.height * UNLOCK_SWIPE_START

    def _is_edge_back(self, x1: int, dx: int) -> bool:
        zone, travel = self.width * EDGE_BACK_ZONE, self.width * EDGE_BACK_MIN_TRAVEL
        from_left = x1 < zone and dx >= travel
        from_right = x1 >= self.width - zone and -dx >= travel
        return from_left or from_right

    def scroll(self, direction: str, x: int | None = None, y: int | None = None, amount: int = 1) -> None:
        """Reveal content in ``direction``: "down" shows lower rows."""
        with self._lock:
            if self._input_lost(f"scroll {direction}"):
                return
            top, bottom = self._list_viewport()
            step = int((bottom - top) * 0.6)
            if direction in ("down", "up"):
                self._scroll_by(step * amount * (1 if direction == "down" else -1))
            else:
                self._event(f"scroll {direction} ignored: nothing scrolls sideways")

    def press_key(self, name: str) -> None:
        with self._lock:
            self._event(f"key {name}")
            if name in ("power", "sleep", "wakeup"):
                if name == "wakeup" or (name == "power" and not self._awake):
                    self.wake()
                else:
                    self.sleep()
                return
            if self._input_lost(f"key {name}"):
                return
            if name == "home":
                self._go(["home"])
            elif name in ("back", "escape"):
                self._back()
            elif name == "app_switch":
                if self.screen == "recents":
                    self._back()
                else:
                    self._push("recents")
            elif name == "enter":
                self._enter()
            elif name in ("backspace", "delete"):
                if self._focused is not None:
                    self._fields[self._focused] = self._fields[self._focused][:-1]
                    self._changed()
            elif name == "space":
                self.type_text(" ")
            elif name == "tab":
                self._focus_next()
            elif len(name) == 1 and name.isalnum():
                self.type_text(name)
            # menu and volume keys: nothing to do on this phone

    def type_text(self, text: str) -> None:
        """Append ``text`` verbatim to the focused field; without focus it is dropped and logged."""
        with self._lock:
            if self._input_lost(f"type {text!r}"):
                return
            if self._focused is None:
                self._event(f"type {text!r} ignored: no text field has focus")
                log.info("sim phone: typed text ignored, no text field has focus")
                return
            self._fields[self._focused] += self._arriving(text)
            self._form_error = ""
            self._changed()

    def lose_next_input(self, chars: int = 1) -> None:
        """The next ``chars`` typed characters never arrive (a one-shot input loss)."""
        with self._lock:
            self._lose_next += max(chars, 0)

    def _arriving(self, text: str) -> str:
        """The part of ``text`` that reaches the field once ``drop_typed`` and ``lose_next_input`` took theirs."""
        kept = []
        for char in text:
            self._typed += 1
            if self._lose_next > 0:
                self._lose_next -= 1
            elif not (self.drop_typed and self._typed % self.drop_typed == 0):
                kept.append(char)
        if len(kept) != len(text):
            self._event(f"typing lost {len(text) - len(kept)} of {len(text)} characters")
        return "".join(kept)

    def open_app(self, name_or_package: str) -> bool:
        """Start an app by label (case-insensitive) or package; False if there is none."""
        key = name_or_package.strip().casefold()
        app = next((a for a in APPS if key in (a.package.casefold(), a.label.casefold())), None)
        with self._lock:
            if app is None:
                self._event(f"open_app {name_or_package!r}: no such app")
                return False
            self._launch(app)
            return True

    # ---- rendering ----------------------------------------------------------------------

    def render(self, copy: bool = True) -> Image.Image:
        """The current frame (RGB, width x height). ``copy=False`` returns the cached image:
        faster, but the caller must not modify it."""
        from vlagent.drivers.sim.render import paint, paint_transition

        with self._lock:
            if not self._awake:  # screencap of a phone whose screen is off: every pixel black
                if self._black is None:
                    self._black = Image.new("RGB", (self.width, self.height))
                return self._black.copy() if copy else self._black
            transition = self.in_transition
            key = (self._version, transition)
            image = self._frame_cache.get(key)
            if image is None:
                if transition:
                    image = paint_transition(self.width, self.height, self._u, self._status_element(), self.dark)
                else:
                    image = paint(self.width, self.height, self._u, self._layout(), self.dark)
                self._frame_cache = {k: v for k, v in self._frame_cache.items() if k[0] == self._version}
                self._frame_cache[key] = image
            return image.copy() if copy else image

    # ---- state machinery ----------------------------------------------------------------

    def _event(self, text: str) -> None:
        self.events.append(text)
        log.debug("sim %s: %s", self.serial, text)

    def _changed(self) -> None:
        self._version += 1
        self._layout_cache = None

    def _go(self, stack: list[str]) -> None:
        if stack[-1] != self._stack[-1] and self.transition_delay > 0:
            self._transition_until = self._clock() + self.transition_delay
        if stack[-1] != self._stack[-1]:
            self._scroll.pop(stack[-1], None)
        self._stack = stack
        self._focused = None
        self._popup = None
        self._changed()

    def _push(self, screen: str) -> None:
        self._go([*self._stack, screen])

    def _back(self) -> None:
        if self._popup is not None:  # like Android: back first dismisses a popup...
            self._close_popup()
        elif self._focused is not None:  # ...or hides the keyboard
            self._focused = None
            self._changed()
        elif len(self._stack) > 1:
            self._go(self._stack[:-1])

    def _launch(self, app: App) -> None:
        self._recents = [app.package, *(p for p in self._recents if p != app.package)][:6]
        self._go(["home", app.screen])

    def _toggle(self, key: str) -> None:
        self._toggles[key] = not self._toggles[key]
        self._changed()

    def _focus(self, name: str) -> None:
        if self._focused != name:
            self._focused = name
            self._changed()

    def _focus_next(self) -> None:
        order = [f for f in ("contact_name", "contact_phone") if f in self._fields]
        if self._focused in order and order.index(self._focused) + 1 < len(order):
            self._focus(order[order.index(self._focused) + 1])

    def _enter(self) -> None:
        if self.screen == "note_editor" and self._focused is not None:
            self._save_note()
        elif self.screen == "contact_editor" and self._focused == "contact_name":
            self._focus_next()
        elif self.screen == "contact_editor" and self._focused == "contact_phone":
            self._save_contact()

    def _open_note(self, index: int | None) -> None:
        self._editing_note = index
        self._fields = {"note_text": "" if index is None else self._notes[index]}
        self._push("note_editor")

    def _save_note(self) -> None:
        text = self._fields.get("note_text", "")
        if self._editing_note is None:
            if text.strip():
                self._notes.append(text)
        elif text.strip():
            self._notes[self._editing_note] = text
        else:
            del self._notes[self._editing_note]
        self._event(f"note saved: {text!r}")
        self._go(self._stack[:-1])

    def _open_popup(self, popup: Popup) -> None:
        self._popup = popup
        self._event(f"popup {popup.kind} {popup.title!r}")
        self._changed()

    def _close_popup(self) -> None:
        self._popup = None
        self._event("popup closed")
        self._changed()

    def _delete_note(self, index: int) -> None:
        text = self._notes.pop(index)
        self._popup = None
        self._event(f"note deleted: {text!r}")
        self._changed()
        self._scroll_by(0)  # the list got shorter: keep the offset inside it

    def _open_contact_form(self) -> None:
        self._fields = {"contact_name": "", "contact_phone": ""}
        self._form_error = ""
        self._push("contact_editor")

    def _save_contact(self) -> None:
        name, number = self._fields["contact_name"].strip(), self._fields["contact_phone"].strip()
        if not name:
            self._form_error = "Name is required"
            self._changed()
            return
        self._contacts.append(Contact(name, number))
        self._event(f"contact saved: {name!r} {number!r}")
        self._go(self._stack[:-1])

    def _shutter(self) -> None:
        self._photos += 1
        self._changed()

    def _clear_recents(self) -> None:
        self._recents = []
        self._go(["home"])

    def _list_viewport(self) -> tuple[int, int]:
        return self._px(_STATUS_H + _APPBAR_H), self.height - self._px(_NAV_H)

    def _content_height(self, screen: str) -> int:
        rows = {
            "settings": len(self._settings_rows),
            "notes": len(self._notes) + 1,
            "contacts": len(self._contacts) + 1,
        }
        return self._px(_ROW_H * rows.get(screen, 0))

    def _scroll_by(self, delta: int) -> None:
        screen = self.screen
        if self._popup is not None:  # a popup is modal: the list under it does not move
            self._event(f"scroll {screen} by {delta} ignored: a popup is open")
            return
        top, bottom = self._list_viewport()
        limit = max(0, self._content_height(screen) - (bottom - top))
        offset = min(limit, max(0, self._scroll.get(screen, 0) + delta))
        self._event(f"scroll {screen} by {delta} -> offset {offset}")
        if offset != self._scroll.get(screen, 0):
            self._scroll[screen] = offset
            self._changed()

    def _hit(self, x: int, y: int) -> Element | None:
        for element in reversed(self._layout()):
            x0, y0, x1, y1 = element.hit_box
            if element.visible and x0 <= x < x1 and y0 <= y < y1 and (element.on_tap or element.opaque):
                return element
        return None

    # ---- layout -------------------------------------------------------------------------

    def _px(self, value: float) -> int:
        return round(value * self._u)

    def _box(self, x0: float, y0: float, x1: float, y1: float) -> Box:
        return self._px(x0), self._px(y0), self._px(x1), self._px(y1)

    def _layout(self) -> list[Element]:
        if self._layout_cache is None or self._layout_cache[0] != self._version:
            out: list[Element] = []
            if not self._awake:  # nothing is visible or tappable on a dark screen
                self._layout_cache = (self._version, out)
                return out
            if self._keyguard:
                self._layout_keyguard(out)
                self._layout_cache = (self._version, out)
                return out
            screen = self.screen
            builder = getattr(self, f"_layout_{screen}", None)
            if builder is not None:
                builder(out)
            else:
                self._layout_info(out, screen)
            if self._focused is not None:
                self._layout_keyboard(out)
            if self._popup is not None:
                self._layout_popup(out, self._popup)
            out.append(self._status_element())
            self._layout_nav(out)
            self._layout_cache = (self._version, out)
        return self._layout_cache[1]

    def _status_element(self) -> Element:
        """The status bar; ``subtitle`` lists its icons right to left."""
        on = self._toggles
        icons = (
            ["airplane"]
            if on["airplane_mode"]
            else [w for w, k in (("wifi", "wifi"), ("signal", "mobile_data")) if on[k]]
        )
        icons += [w for w, k in (("bluetooth", "bluetooth"), ("dnd", "do_not_disturb")) if on[k]]
        box = (0, 0, self.width, self._px(_STATUS_H))
        return Element("status", "Status bar", box, (CLOCK_TEXT, f"{BATTERY_PERCENT}%"), subtitle=" ".join(icons))

    def _layout_nav(self, out: list[Element]) -> None:
        top = self.height - self._px(_NAV_H)
        out.append(Element("panel", "Navigation bar", (0, top, self.width, self.height), opaque=True, role="nav"))
        third = self.width // 3
        actions = (
            ("Back", self._back),
            ("Home", lambda: self._go(["home"])),
            ("Recents", lambda: self._push("recents")),
        )
        for i, (label, fn) in enumerate(actions):
            if label == "Recents" and self.screen == "recents":
                fn = self._back
            out.append(Element("nav", label, (i * third, top, (i + 1) * third, self.height), on_tap=fn))

    def _appbar(self, out: list[Element], title: str, action: tuple[str, Callable[[], None]] | None = None) -> None:
        top, bottom = self._px(_STATUS_H), self._px(_STATUS_H + _APPBAR_H)
        out.append(Element("panel", "App bar", (0, top, self.width, bottom), opaque=True, role="appbar"))
        out.append(
            Element(
                "icon_button", "Navigate up", self._box(0, _STATUS_H, 150, _STATUS_H + _APPBAR_H), on_tap=self._back
            )
        )
        out.append(Element("title", title, self._box(150, _STATUS_H, 800, _STATUS_H + _APPBAR_H), (title,), size=60))
        if action is not None:
            label, fn = action
            box = self._box(820, _STATUS_H + 28, 1040, _STATUS_H + _APPBAR_H - 28)
            out.append(Element("text_button", label, box, (label,), on_tap=fn, size=46))

    def _list_rows(self, out: list[Element], rows: list[Element], screen: str) -> None:
        """Place full-width rows (built at y=0 upward) in the scrolled viewport."""
        top, bottom = self._list_viewport()
        if self._focused is not None:
            bottom = self._keyboard_top()
        offset = self._scroll.get(screen, 0)
        y = top - offset
        for row in rows:
            height = row.box[3] - row.box[1]
            box = (row.box[0], y, row.box[2], y + height)
            y += height
            if box[3] <= top or box[1] >= bottom:
                continue
            clip = (box[0], max(box[1], top), box[2], min(box[3], bottom))
            visible = top <= (box[1] + box[3]) // 2 < bottom
            out.append(
                Element(
                    row.kind,
                    row.label,
                    box,
                    row.texts,
                    row.on_tap,
                    clip,
                    visible,
                    text=row.text,
                    subtitle=row.subtitle,
                    value=row.value,
                    color=row.color,
                    size=row.size,
                    on_long_press=row.on_long_press,
                )
            )

    def _layout_home(self, out: list[Element]) -> None:
        out.append(Element("wallpaper", "Wallpaper", (0, 0, self.width, self.height)))
        out.append(
            Element("text", CLOCK_TEXT, self._box(0, 250, 1080, 480), (CLOCK_TEXT,), size=190, role="on_wallpaper")
        )
        out.append(Element("text", DATE_TEXT, self._box(0, 480, 1080, 560), (DATE_TEXT,), size=46, role="on_wallpaper"))
        cell_w = 1080 / _HOME_COLS
        for app in APPS:
            cell = self._home_cells[app.package]
            col, row = cell % _HOME_COLS, cell // _HOME_COLS
            x0, y0 = col * cell_w, _HOME_TOP + row * _HOME_CELL_H
            box = self._box(x0 + 10, y0, x0 + cell_w - 10, y0 + _HOME_CELL_H - 20)
            info = Popup("app_info", app.label, app.package)
            out.append(
                Element(
                    "icon",
                    app.label,
                    box,
                    (app.label,),
                    on_tap=partial(self._launch, app),
                    color=app.color,
                    on_long_press=partial(self._open_popup, info),
                )
            )

    def _layout_keyguard(self, out: list[Element]) -> None:
        """The lock screen, drawn over everything: wallpaper, clock, date, and how to unlock."""
        out.append(Element("wallpaper", "Lock screen", (0, 0, self.width, self.height), opaque=True))
        out.append(self._status_element())
        out.append(Element("padlock", "Locked", self._box(490, 180, 590, 290)))
        out.append(
            Element("text", CLOCK_TEXT, self._box(0, 420, 1080, 700), (CLOCK_TEXT,), size=230, role="on_wallpaper")
        )
        out.append(Element("text", DATE_TEXT, self._box(0, 700, 1080, 790), (DATE_TEXT,), size=50, role="on_wallpaper"))
        if self._bouncer:
            out.append(
                Element("text", PIN_PROMPT, self._box(0, 1100, 1080, 1220), (PIN_PROMPT,), size=64, role="on_wallpaper")
            )
        else:
            hint = self._box(0, 2080, 1080, 2180)
            out.append(Element("text", UNLOCK_HINT, hint, (UNLOCK_HINT,), size=44, role="on_wallpaper"))

    def _layout_recents(self, out: list[Element]) -> None:
        out.append(Element("panel", "Recents", (0, 0, self.width, self.height), role="recents"))
        labels = {app.package: app for app in APPS}
        if not self._recents:
            out.append(
                Element("text", "No recent items", self._box(0, 1000, 1080, 1100), ("No recent items",), role="muted")
            )
            return
        for i, package in enumerate(self._recents[:4]):
            app = labels[package]
            y0 = 200 + i * 420
            box = self._box(90, y0, 990, y0 + 380)
            out.append(
                Element("card", app.label, box, (app.label,), on_tap=partial(self._launch, app), color=app.color)
            )
        out.append(
            Element("button", "Clear all", self._box(390, 1960, 690, 2080), ("Clear all",), on_tap=self._clear_recents)
        )

    def _layout_settings(self, out: list[Element]) -> None:
        rows = []
        for row in self._settings_rows:
            if row.toggle:
                on = self._toggles[row.key]
                sub = "On" if on else "Off"
                tap = partial(self._toggle, row.key)
                box = (0, 0, self.width, self._px(_ROW_H))
                rows.append(Element("row", row.label, box, (row.label, sub), tap, subtitle=sub, value=on))
            else:
                subtitle = f"Screen lock: {_LOCK_LABELS[self.screen_lock]}" if row.key == "security" else row.subtitle
                texts = (row.label, subtitle)
                rows.append(Element("row", row.label, (0, 0, self.width, self._px(_ROW_H)), texts, subtitle=subtitle))
        self._list_rows(out, rows, "settings")
        self._appbar(out, "Settings")

    def _layout_notes(self, out: list[Element]) -> None:
        rows = []
        for i, note in enumerate(self._notes):
            first, _, rest = note.partition("\n")
            texts = (first, rest.split("\n")[0]) if rest else (first,)
            tap = partial(self._open_note, i)
            hold = partial(self._open_popup, Popup("note", first, i))
            box = (0, 0, self.width, self._px(_ROW_H))
            sub = texts[-1] if rest else ""
            rows.append(Element("row", first, box, texts, tap, subtitle=sub, on_long_press=hold))
        self._list_rows(out, rows, "notes")
        if not self._notes:
            out.append(Element("text", "No notes yet", self._box(0, 1000, 1080, 1100), ("No notes yet",), role="muted"))
        self._appbar(out, "Notes")
        self._fab(out, "New note", lambda: self._open_note(None))

    def _fab(self, out: list[Element], label: str, fn: Callable[[], None]) -> None:
        bottom = self.height - self._px(_NAV_H + 48)
        box = (self._px(560), bottom - self._px(150), self._px(1032), bottom)
        out.append(Element("button", label, box, (label,), on_tap=fn, text="+  " + label, size=46))

    def _layout_note_editor(self, out: list[Element]) -> None:
        self._appbar(out, "Edit note" if self._editing_note is not None else "New note", ("Save", self._save_note))
        bottom = (self._keyboard_top() if self._focused else self.height - self._px(_NAV_H)) - self._px(48)
        self._field(
            out, "note_text", "Note text", "Write your note here", (self._px(48), self._px(360), self._px(1032), bottom)
        )

    def _field(self, out: list[Element], name: str, label: str, placeholder: str, box: Box) -> None:
        value = self._fields.get(name, "")
        texts = (label, value) if value else (label, placeholder)
        out.append(
            Element(
                "field",
                label,
                box,
                texts,
                on_tap=partial(self._focus, name),
                text=value,
                subtitle=placeholder,
                focused=self._focused == name,
            )
        )

    def _layout_contacts(self, out: list[Element]) -> None:
        rows = []
        for contact in sorted(self._contacts, key=lambda c: c.name.casefold()):
            texts = (contact.name, contact.phone)
            box = (0, 0, self.width, self._px(_ROW_H))
            color = _avatar_color(contact.name)
            rows.append(Element("row", contact.name, box, texts, subtitle=contact.phone, color=color))
        self._list_rows(out, rows, "contacts")
        self._appbar(out, "Contacts")
        self._fab(out, "Add contact", self._open_contact_form)

    def _layout_contact_editor(self, out: list[Element]) -> None:
        self._appbar(out, "New contact", ("Save", self._save_contact))
        self._field(out, "contact_name", "Name", "First and last name", self._box(48, 380, 1032, 530))
        self._field(out, "contact_phone", "Phone", "Phone number", self._box(48, 660, 1032, 810))
        if self._form_error:
            out.append(
                Element(
                    "text", self._form_error, self._box(48, 850, 1032, 920), (self._form_error,), role="error", size=40
                )
            )

    def _layout_info(self, out: list[Element], screen: str) -> None:
        app = next(a for a in APPS if a.screen == screen)
        if screen == "camera":
            out.append(Element("panel", "Viewfinder", (0, 0, self.width, self.height), role="camera"))
            box = self._box(430, 1880, 650, 2100)
            out.append(Element("shutter", "Shutter", box, on_tap=self._shutter))
            return
        self._appbar(out, app.label)
        lines: list[tuple[str, int, str]]
        if screen == "clock":
            lines = [(CLOCK_TEXT, 190, "text"), (DATE_TEXT, 46, "muted"), ("Alarm 7:00 AM", 46, "text")]
        elif screen == "browser":
            online = not self._toggles["airplane_mode"] and (self._toggles["wifi"] or self._toggles["mobile_data"])
            lines = [("https://start.vlagent.test", 40, "muted")]
            lines += (
                [("Welcome to the start page", 50, "text")] if online else [("No internet connection", 50, "error")]
            )
        else:
            lines = [(f"{self._photos} photos" if self._photos else "No photos yet", 50, "muted")]
            for i in range(min(self._photos, 12)):
                x0, y0 = 48 + (i % 3) * 336, 560 + (i // 3) * 336
                out.append(Element("photo", f"Photo {i + 1}", self._box(x0, y0, x0 + 312, y0 + 312), color=app.color))
        y = 420.0
        for text, size, role in lines:
            height = size * 1.6
            out.append(Element("text", text, self._box(0, y, 1080, y + height), (text,), size=size, role=role))
            y += height + 20

    def _layout_popup(self, out: list[Element], popup: Popup) -> None:
        """A dimmed screen (a tap on it dismisses, as on Android) under a centred card."""
        out.append(Element("scrim", "Dismiss popup", (0, 0, self.width, self.height), on_tap=self._close_popup))
        if popup.kind == "note":
            label, lines = "Note actions", ["Note actions"]
            buttons: list[tuple[str, Callable[[], None]]] = [
                ("Cancel", self._close_popup),
                ("Delete", partial(self._delete_note, int(popup.target))),
            ]
        else:
            label, lines = "App info", ["App info", str(popup.target)]
            buttons = [("Close", self._close_popup)]
        height = 150 + 70 * len(lines) + 170
        top = (self.height / self._u - height) / 2
        texts = (popup.title, *lines)
        card = self._box(90, top, 990, top + height)
        out.append(Element("popup", label, card, texts, opaque=True, text=popup.title, subtitle="\n".join(lines)))
        x = 960.0 - 260 * len(buttons) + 20  # buttons sit at the bottom right, as in Material dialogs
        for text, fn in buttons:
            box = self._box(x, top + height - 150, x + 240, top + height - 30)
            out.append(Element("text_button", text, box, (text,), on_tap=fn, size=46))
            x += 260

    def _keyboard_top(self) -> int:
        return self.height - self._px(_NAV_H + 24 + _KEY_H * 5)

    def _layout_keyboard(self, out: list[Element]) -> None:
        top = self._keyboard_top()
        out.append(
            Element(
                "panel", "Keyboard", (0, top, self.width, self.height - self._px(_NAV_H)), opaque=True, role="keyboard"
            )
        )
        y = 12
        for keys in _KEY_ROWS:
            x = (1080 - 108 * len(keys)) / 2
            for ch in keys:
                self._key(out, ch, ch, partial(self.type_text, ch), x, y, 108)
                x += 108
            y += _KEY_H
        self._key(out, "backspace", "⌫", lambda: self.press_key("backspace"), 1080 - 162, y - _KEY_H, 150)
        self._key(out, ",", ",", lambda: self.type_text(","), 12, y, 150)
        self._key(out, "space", "space", lambda: self.type_text(" "), 174, y, 600)
        self._key(out, ".", ".", lambda: self.type_text("."), 786, y, 120)
        self._key(out, "enter", "⏎", self._enter, 918, y, 150)

    def _key(
        self, out: list[Element], label: str, text: str, fn: Callable[[], None], x: float, y: float, w: float
    ) -> None:
        top = self._keyboard_top()
        x0, y0 = self._px(x + 6), top + self._px(y + 8)
        out.append(
            Element("key", label, (x0, y0, x0 + self._px(w - 12), y0 + self._px(_KEY_H - 16)), on_tap=fn, text=text)
        )


def _avatar_color(name: str) -> tuple[int, int, int]:
    palette = ((229, 57, 53), (142, 36, 170), (57, 73, 171), (0, 137, 123), (124, 179, 66), (251, 140, 0))
    return palette[sum(map(ord, name)) % len(palette)]
