"""Phone toggles by name, and where Android keeps each one.

A toggle check names a switch the way a user does (``wifi``, ``dark_mode``); this table says
which ``settings`` key holds it on a real phone, how to read its value, and which command
changes it there (``settings put`` alone does not switch Wi-Fi on a real phone; ``svc wifi
enable`` does). The simulated phone's adb server answers the same keys from its toggles,
so one table serves the judge, the setup of a scenario and the simulator.

Values follow AOSP (sources: ``Settings.Global``/``Secure``/``System`` docs, android_world's
``adb_utils``): ``wifi_on`` 2 means on while airplane mode is on and 3 off because of it;
``location_mode`` 1-3 are on; ``zen_mode`` 1-3 are on. This module must not talk to devices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["NIGHT_MODE_RE", "TOGGLES", "Namespace", "ToggleSetting", "toggle_setting"]

Namespace = Literal["global", "secure", "system"]
#: ``cmd uimode night`` output: ``Night mode: yes`` (values yes, no, auto, custom, custom_schedule, custom_bedtime).
NIGHT_MODE_RE = r"Night mode:\s*(\w+)"


@dataclass(frozen=True)
class ToggleSetting:
    """Where one toggle lives on Android and how to read and change it."""

    toggle: str
    """The name checks use, and the simulated phone's toggle key."""
    label: str
    namespace: Namespace | None
    key: str | None
    """The settings key (None: no settings key; read through ``reader``)."""
    on_values: tuple[str, ...] = ("1",)
    """Values of the key that mean on (anything else, ``null`` included, is off)."""
    write_on: str = "1"
    write_off: str = "0"
    command_on: tuple[str, ...] = ()
    """Command that switches it on on a real phone (empty: ``settings put`` suffices)."""
    command_off: tuple[str, ...] = ()
    reader: Literal["settings", "uimode"] = "settings"

    def is_on(self, value: str | None) -> bool:
        """The toggle's state from the raw value ``settings get`` printed (``null`` -> None)."""
        return value is not None and value.strip() in self.on_values

    def command(self, on: bool) -> list[str]:
        """argv that sets the toggle on a phone."""
        chosen = self.command_on if on else self.command_off
        if chosen:
            return list(chosen)
        if self.namespace is None or self.key is None:
            raise ValueError(f"no way to set {self.toggle} over adb")
        return ["settings", "put", self.namespace, self.key, self.write_on if on else self.write_off]


TOGGLES: dict[str, ToggleSetting] = {
    t.toggle: t
    for t in (
        ToggleSetting(
            "wifi",
            "Wi-Fi",
            "global",
            "wifi_on",
            on_values=("1", "2"),
            command_on=("svc", "wifi", "enable"),
            command_off=("svc", "wifi", "disable"),
        ),
        ToggleSetting(
            "bluetooth",
            "Bluetooth",
            "global",
            "bluetooth_on",
            on_values=("1", "2"),
            command_on=("svc", "bluetooth", "enable"),
            command_off=("svc", "bluetooth", "disable"),
        ),
        ToggleSetting(
            "airplane_mode",
            "Airplane mode",
            "global",
            "airplane_mode_on",
            command_on=("cmd", "connectivity", "airplane-mode", "enable"),
            command_off=("cmd", "connectivity", "airplane-mode", "disable"),
        ),
        ToggleSetting(
            "mobile_data",
            "Mobile data",
            "global",
            "mobile_data",
            command_on=("svc", "data", "enable"),
            command_off=("svc", "data", "disable"),
        ),
        ToggleSetting(
            "location", "Location", "secure", "location_mode", on_values=("1", "2", "3"), write_on="3", write_off="0"
        ),
        ToggleSetting(
            "do_not_disturb",
            "Do not disturb",
            "global",
            "zen_mode",
            on_values=("1", "2", "3"),
            command_on=("cmd", "notification", "set_dnd", "on"),
            command_off=("cmd", "notification", "set_dnd", "off"),
        ),
        ToggleSetting("battery_saver", "Battery saver", "global", "low_power"),
        ToggleSetting(
            "dark_mode",
            "Dark mode",
            "secure",
            "ui_night_mode",
            on_values=("2",),
            write_on="2",
            write_off="1",
            command_on=("cmd", "uimode", "night", "yes"),
            command_off=("cmd", "uimode", "night", "no"),
            reader="uimode",
        ),
        ToggleSetting("auto_rotate", "Auto-rotate screen", "system", "accelerometer_rotation"),
        ToggleSetting("vibrate_on_touch", "Vibrate on touch", "system", "haptic_feedback_enabled"),
        ToggleSetting(
            "nfc",
            "NFC",
            "global",
            "nfc_on",
            command_on=("svc", "nfc", "enable"),
            command_off=("svc", "nfc", "disable"),
        ),
    )
}


def toggle_setting(name: str) -> ToggleSetting | None:
    """The toggle called ``name`` (its key, label or an obvious spelling: "Wi-Fi", "wi fi", "dark mode")."""
    wanted = name.strip().casefold().replace("-", " ").replace("_", " ")
    wanted = " ".join(wanted.split())
    for toggle in TOGGLES.values():
        spellings = {toggle.toggle.replace("_", " "), toggle.label.casefold().replace("-", " ")}
        if wanted in spellings or wanted.replace(" ", "") in {s.replace(" ", "") for s in spellings}:
            return toggle
    return None
