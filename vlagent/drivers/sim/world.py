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

Each state is laid out as a flat list of ``Element`` boxes (``screens``; the apps, rows and
element types are in ``catalog``); the same list drives
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
from typing import Any, Literal

from PIL import Image

from vlagent.drivers.sim import screens
from vlagent.drivers.sim.catalog import (
    APPBAR_H,
    APPS,
    DEFAULT_CONTACTS,
    DEFAULT_NOTES,
    DEFAULT_TOGGLES,
    EDGE_BACK_MIN_TRAVEL,
    EDGE_BACK_ZONE,
    HOME_COLS,
    HOME_PACKAGE,
    HOME_ROWS,
    KEY_H,
    LOCK_LABELS,
    LONG_PRESS_TIMEOUT,
    NAV_H,
    PIN_PROMPT,
    ROW_H,
    SCREEN_PACKAGE,
    SETTINGS_BLOCKS,
    SETTINGS_ROWS,
    STATUS_H,
    SYSTEMUI_PACKAGE,
    UNLOCK_HINT,
    UNLOCK_SWIPE_MIN_TRAVEL,
    UNLOCK_SWIPE_START,
    App,
    Box,
    Contact,
    Element,
    Popup,
    ScreenLock,
    SettingsRow,
)
from vlagent.drivers.sim.render import copy_on_write, paint, paint_transition

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
        if not (transition_delay >= 0 and math.isfinite(transition_delay)):  # NaN fails the first test
            raise ValueError(f"transition_delay must be a finite number of seconds >= 0, got {transition_delay!r}")
        if screen_lock not in LOCK_LABELS:
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
        cells = list(range(len(APPS))) if seed == 0 else rng.sample(range(HOME_COLS * HOME_ROWS), len(APPS))
        self._home_cells = dict(zip((app.package for app in APPS), cells, strict=True))
        rows = list(SETTINGS_ROWS)
        if seed != 0:
            for start, stop in SETTINGS_BLOCKS:
                block = rows[start:stop]
                rng.shuffle(block)
                rows[start:stop] = block
        self._settings_rows = tuple(rows)
        self._toggles = dict(DEFAULT_TOGGLES)
        self._notes = list(DEFAULT_NOTES)
        self._contacts = list(DEFAULT_CONTACTS)
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
        """Recent inputs and what they did, for debugging (not part of ``snapshot``); each at most ~500 characters."""
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
            return SCREEN_PACKAGE[self._stack[-1]]

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
        """The current frame (RGB, width x height), safe to edit: a copy-on-write view of the cached
        screen, so frames of an episode share pixels with the phone's cache until someone draws on
        them (drawing, pasting or ``putpixel`` copies first; writes through ``load()`` are refused,
        as for any read-only Pillow image). ``copy=False`` returns the cached image itself: the
        caller must not modify it."""

        with self._lock:
            if not self._awake:  # screencap of a phone whose screen is off: every pixel black
                if self._black is None:
                    self._black = Image.new("RGB", (self.width, self.height))
                return copy_on_write(self._black) if copy else self._black
            transition = self.in_transition
            key = (self._version, transition)
            image = self._frame_cache.get(key)
            if image is None:
                if transition:
                    image = paint_transition(self.width, self.height, self._u, screens.status_element(self), self.dark)
                else:
                    image = paint(self.width, self.height, self._u, self._layout(), self.dark)
                self._frame_cache = {k: v for k, v in self._frame_cache.items() if k[0] == self._version}
                self._frame_cache[key] = image
            return copy_on_write(image) if copy else image

    # ---- state machinery ----------------------------------------------------------------

    def forget_frames(self) -> None:
        """Drop the rendered screens kept for reuse (megabytes each); the next render draws afresh."""
        self._frame_cache = {}

    def _event(self, text: str) -> None:
        self.events.append(text if len(text) <= 500 else f"{text[:500]}... [{len(text) - 500} more characters]")
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
        return self._px(STATUS_H + APPBAR_H), self.height - self._px(NAV_H)

    def _content_height(self, screen: str) -> int:
        rows = {
            "settings": len(self._settings_rows),
            "notes": len(self._notes) + 1,
            "contacts": len(self._contacts) + 1,
        }
        return self._px(ROW_H * rows.get(screen, 0))

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
            self._layout_cache = (self._version, screens.layout(self))
        return self._layout_cache[1]

    def _keyboard_top(self) -> int:
        return self.height - self._px(NAV_H + 24 + KEY_H * 5)
