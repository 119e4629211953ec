"""DeviceState: what a check may read from a device, typed and read-only; StartState: where a task begins.

A check never reads a driver or a simulator object: it asks a :class:`DeviceState` for one
fact (a toggle, the app in front, the view hierarchy, the contacts, the focused window's
title...) and gets a :class:`Reading` that says where the fact came from (``source``) and
what was seen. A device that cannot know a fact raises :class:`StateUnavailable`, and the
check is reported as not judgeable, never guessed.

One DeviceState is one look at the device: implementations cache each fact on first use,
so a dozen checks cost one ``uiautomator dump`` (1-2 s on a real phone). Take a new one
(``device.state()``) to look again.

:class:`StartState` is the typed start of a task (toggles, notes, contacts, the home
screen), applied by a :class:`StatePreparer` of the device. This module must not import
drivers: they implement these protocols.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Generic, Literal, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from vlagent.errors import VlagentError
from vlagent.tasks.settings import TOGGLES
from vlagent.tasks.uitree import UiTree

__all__ = [
    "ContactEntry",
    "ContactSpec",
    "DeviceState",
    "Foreground",
    "JsonValue",
    "Reading",
    "Source",
    "StartState",
    "StatePreparer",
    "StateReader",
    "StateUnavailable",
    "capture_start",
    "changes_back",
]

T = TypeVar("T", covariant=True)

#: Where a fact was read: the simulator's objects, the view hierarchy, ``settings``, a content
#: provider, the activity manager, the desktop app's state file, the window manager.
Source = Literal["sim state", "ui tree", "settings", "content provider", "activity manager", "app state file", "window"]


class StateUnavailable(VlagentError):
    """This device cannot tell the fact a check needs (e.g. notes on a phone without the sim Notes app)."""


@dataclass(frozen=True)
class Reading(Generic[T]):
    """A fact and where it came from."""

    value: T
    source: Source
    detail: str = ""
    """What was asked, when it is worth showing (``settings get global wifi_on -> 1``)."""


@dataclass(frozen=True)
class Foreground:
    """The app in front: its package, activity (may be empty) and label where known."""

    package: str
    activity: str = ""
    label: str = ""


@dataclass(frozen=True)
class ContactEntry:
    name: str
    phone: str


@runtime_checkable
class DeviceState(Protocol):
    """Read-only facts of one device at one moment; each method raises StateUnavailable when unknown."""

    @property
    def kind(self) -> str:
        """ "sim", "adb" or "desktop": for messages."""
        ...

    def toggle(self, name: str) -> Reading[bool]:
        """A switch by its check name (``wifi``, ``dark_mode``...; see ``vlagent.tasks.settings``)."""
        ...

    def setting(self, namespace: str, key: str) -> Reading[str | None]:
        """A raw ``settings`` value (None: the key is not set)."""
        ...

    def foreground(self) -> Reading[Foreground]: ...

    def ui_tree(self) -> Reading[UiTree]: ...

    def contacts(self) -> Reading[list[ContactEntry]]: ...

    def notes(self) -> Reading[list[str]]: ...

    def app_state(self) -> Reading[Mapping[str, JsonValue]]: ...

    def window_title(self) -> Reading[str]: ...

    def screen(self) -> Reading[str]:
        """The simulated phone's screen name (home, settings, note_editor...)."""
        ...


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ContactSpec(_Model):
    name: str = Field(min_length=1)
    phone: str = Field(min_length=1)


class StartState(_Model):
    """Where a task starts: toggles set, the notes and contacts replaced by these lists (when
    given), on the home screen. Unset parts are left as the device has them."""

    toggles: dict[str, bool] = Field(default_factory=dict)
    notes: list[str] | None = None
    contacts: list[ContactSpec] | None = None
    home: bool = True

    def describe(self) -> str:
        parts = [f"{k}={'on' if v else 'off'}" for k, v in self.toggles.items()]
        if self.notes is not None:
            parts.append(f"{len(self.notes)} notes")
        if self.contacts is not None:
            parts.append(f"{len(self.contacts)} contacts")
        return ", ".join(parts) or "as it is"


@runtime_checkable
class StatePreparer(Protocol):
    """Brings a device to a :class:`StartState` (DeviceError or StateUnavailable when it cannot)."""

    def prepare(self, start: StartState) -> None: ...


@runtime_checkable
class StateReader(Protocol):
    """A device that can be looked at: ``state()`` is one fresh look (a driver that has it)."""

    def state(self) -> DeviceState: ...


def capture_start(state: DeviceState, *, notes: bool = False, contacts: bool = False) -> StartState:
    """What the device holds now, as a StartState: every toggle it can read, and its notes and
    contacts when asked. Preparing the device with it later undoes what a task changed."""
    toggles: dict[str, bool] = {}
    for name in TOGGLES:
        try:
            toggles[name] = state.toggle(name).value
        except StateUnavailable:
            continue
    return StartState(
        toggles=toggles,
        notes=list(state.notes().value) if notes else None,
        contacts=[ContactSpec(name=c.name, phone=c.phone) for c in state.contacts().value] if contacts else None,
    )


def changes_back(before: StartState, now: StartState) -> StartState:
    """The StartState that brings a device from ``now`` back to ``before`` (only what differs)."""
    return StartState(
        toggles={k: v for k, v in before.toggles.items() if now.toggles.get(k) != v},
        notes=before.notes if before.notes != now.notes else None,
        contacts=before.contacts if before.contacts != now.contacts else None,
    )
