"""SimState: the simulated phone's facts as a DeviceState, and its StartState preparer.

Facts come straight from the SimPhone objects (source "sim state"); the view hierarchy is
the one the simulated adb server dumps, so a check reads the same thing in process and over
adb. This module reads the phone, and changes it only in ``prepare``.
"""

from __future__ import annotations

from collections.abc import Mapping

from vlagent.drivers.sim.catalog import HOME_PACKAGE, Contact
from vlagent.drivers.sim.uitree import phone_ui_tree
from vlagent.drivers.sim.world import SimPhone
from vlagent.tasks.settings import TOGGLES
from vlagent.tasks.state import ContactEntry, Foreground, JsonValue, Reading, StartState, StateUnavailable
from vlagent.tasks.uitree import UiTree

__all__ = ["SimState"]


class SimState:
    """DeviceState and StatePreparer of one SimPhone."""

    kind = "sim"

    def __init__(self, phone: SimPhone) -> None:
        self.phone = phone
        self._tree: UiTree | None = None

    def toggle(self, name: str) -> Reading[bool]:
        toggles = self.phone.toggles
        key = name if name in toggles else name.strip().casefold().replace("-", "_").replace(" ", "_")
        if key not in toggles:
            raise StateUnavailable(f"the simulated phone has no toggle {name!r}; known: {', '.join(sorted(toggles))}")
        return Reading(toggles[key], "sim state")

    def setting(self, namespace: str, key: str) -> Reading[str | None]:
        for toggle in TOGGLES.values():
            if (toggle.namespace, toggle.key) == (namespace, key):
                on = self.phone.toggles.get(toggle.toggle, False)
                return Reading(toggle.write_on if on else toggle.write_off, "sim state")
        raise StateUnavailable(f"the simulated phone keeps no setting {namespace} {key}")

    def foreground(self) -> Reading[Foreground]:
        package = self.phone.current_app
        label = "Home" if package == HOME_PACKAGE else self.phone.packages().get(package, "")
        return Reading(Foreground(package, label=label), "sim state")

    def ui_tree(self) -> Reading[UiTree]:
        if self._tree is None:
            self._tree = phone_ui_tree(self.phone)
        return Reading(self._tree, "sim state")

    def contacts(self) -> Reading[list[ContactEntry]]:
        return Reading([ContactEntry(c.name, c.phone) for c in self.phone.contacts], "sim state")

    def notes(self) -> Reading[list[str]]:
        return Reading(self.phone.notes, "sim state")

    def app_state(self) -> Reading[Mapping[str, JsonValue]]:
        raise StateUnavailable("a phone has no desktop app state file")

    def window_title(self) -> Reading[str]:
        raise StateUnavailable("a phone has no desktop windows")

    def screen(self) -> Reading[str]:
        return Reading(self.phone.screen, "sim state")

    def prepare(self, start: StartState) -> None:
        phone = self.phone
        for key, value in start.toggles.items():
            try:
                phone.set_toggle(key, value)
            except KeyError as exc:
                raise StateUnavailable(str(exc.args[0])) from None
        if start.notes is not None:
            phone.replace_notes(list(start.notes))
        if start.contacts is not None:
            phone.replace_contacts([Contact(c.name, c.phone) for c in start.contacts])
        if start.home:
            phone.go_home()
        self._tree = None
