"""What the simulated phone is made of: its apps, Settings rows, default content, on-screen elements.

Plain data shared by the phone (``world``), its screens (``screens``), the renderer and the
view-hierarchy writer. Sizes are design units for a 1080-px-wide screen, scaled by the
phone's width. This module must not import the phone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "APPBAR_H",
    "APPS",
    "BATTERY_PERCENT",
    "CLOCK_TEXT",
    "DATE_TEXT",
    "DEFAULT_CONTACTS",
    "DEFAULT_NOTES",
    "DEFAULT_TOGGLES",
    "EDGE_BACK_MIN_TRAVEL",
    "EDGE_BACK_ZONE",
    "HOME_CELL_H",
    "HOME_COLS",
    "HOME_PACKAGE",
    "HOME_ROWS",
    "HOME_TOP",
    "KEY_H",
    "KEY_ROWS",
    "LOCK_LABELS",
    "LONG_PRESS_TIMEOUT",
    "NAV_H",
    "PIN_PROMPT",
    "ROW_H",
    "SCREEN_PACKAGE",
    "SETTINGS_BLOCKS",
    "SETTINGS_ROWS",
    "STATUS_H",
    "SYSTEMUI_PACKAGE",
    "UNLOCK_HINT",
    "UNLOCK_SWIPE_MIN_TRAVEL",
    "UNLOCK_SWIPE_START",
    "App",
    "Box",
    "Contact",
    "Element",
    "ElementKind",
    "Popup",
    "ScreenLock",
    "SettingsRow",
    "avatar_color",
]

Box = tuple[int, int, int, int]
ElementKind = Literal[
    "panel", "status", "nav", "title", "text", "row", "icon", "button", "text_button", "field", "key", "card",
    "icon_button", "shutter", "photo", "wallpaper", "scrim", "popup", "padlock",
]  # fmt: skip
#: Android's Settings > Security > Screen lock choices that matter here (PIN stands for every secure lock).
ScreenLock = Literal["none", "swipe", "pin"]
LOCK_LABELS = {"none": "None", "swipe": "Swipe", "pin": "PIN"}

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
SCREEN_PACKAGE = {
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
SETTINGS_BLOCKS = ((0, 8), (12, 20))
DEFAULT_TOGGLES = {row.key: False for row in SETTINGS_ROWS if row.toggle} | {
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


DEFAULT_CONTACTS = (Contact("Alice Martin", "+1 555 0100"), Contact("Bob Chen", "+1 555 0199"))

# Design units: the layout is drawn for a 1080-px-wide screen and scaled by width / 1080.
STATUS_H, NAV_H, APPBAR_H, ROW_H = 84, 132, 176, 168
KEY_H, KEY_ROWS = 132, ("1234567890", "qwertyuiop", "asdfghjkl", "zxcvbnm")
HOME_COLS, HOME_ROWS, HOME_TOP, HOME_CELL_H = 4, 5, 700, 300


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


def avatar_color(name: str) -> tuple[int, int, int]:
    palette = ((229, 57, 53), (142, 36, 170), (57, 73, 171), (0, 137, 123), (124, 179, 66), (251, 140, 0))
    return palette[sum(map(ord, name)) % len(palette)]
