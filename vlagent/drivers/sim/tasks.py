"""Built-in tasks for the simulated phone, each judged from phone state.

A SimTask pairs a natural-language instruction with ``check(phone)``, which reads the
world (never the model's claims), and ``oracle(phone)``, a script for ScriptedPolicy that
solves the task. Oracle items are callables that look elements up with ``phone.locate``
when they are played, so they work for every layout seed. Tasks start from a fresh phone
(``setup`` may adjust it); they must not reach into the phone's private state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vlagent.actions import Action, Click, Done, LongPress, Scroll, Type
from vlagent.drivers.sim.world import DEFAULT_NOTES, SimPhone
from vlagent.errors import ConfigError
from vlagent.policies.base import Observation
from vlagent.policies.scripted import ScriptItem

__all__ = ["SIM_TASKS", "SimTask", "get_task", "long_press_label", "tap_label"]

NOTE_TEXT = "买牛奶 🥛 café"
CONTACT_NAME = "Ada Lovelace"
CONTACT_PHONE = "+44 20 7946 0958"
DOOMED_NOTE = "Buy milk"
#: Notes the delete_note task adds around the one to delete (a near-miss included).
_EXTRA_NOTES = ("Water the plants", DOOMED_NOTE, "Buy milk chocolate for Sam")


@dataclass(frozen=True)
class SimTask:
    """A task on the simulated phone."""

    name: str
    instruction: str
    check: Callable[[SimPhone], bool]
    oracle: Callable[[SimPhone], list[ScriptItem]]
    setup: Callable[[SimPhone], None] | None = None

    def prepare(self, phone: SimPhone) -> SimPhone:
        """Apply ``setup`` (if any) to ``phone`` and return it."""
        if self.setup is not None:
            self.setup(phone)
        return phone


def tap_label(phone: SimPhone, label: str) -> Callable[[Observation], Action]:
    """A script item that taps wherever ``label`` is when it is played (done(failure) if absent)."""

    def item(obs: Observation) -> Action:
        point = phone.locate(label)
        if point is None:
            return Done(status="failure", answer=f"'{label}' is not on screen")
        return Click(x=point[0], y=point[1])

    return item


def long_press_label(phone: SimPhone, label: str, duration: float = 1.0) -> Callable[[Observation], Action]:
    """A script item that long-presses wherever ``label`` is when it is played (done(failure) if absent)."""

    def item(obs: Observation) -> Action:
        point = phone.locate(label)
        if point is None:
            return Done(status="failure", answer=f"'{label}' is not on screen")
        return LongPress(x=point[0], y=point[1], duration=duration)

    return item


def reveal(phone: SimPhone, label: str) -> Callable[[Observation], Action | None]:
    """A script item that scrolls down unless ``label`` is already visible (then it is skipped)."""

    def item(obs: Observation) -> Action | None:
        return None if phone.locate(label) is not None else Scroll(direction="down")

    return item


def _toggle_oracle(label: str) -> Callable[[SimPhone], list[ScriptItem]]:
    def oracle(phone: SimPhone) -> list[ScriptItem]:
        return [
            tap_label(phone, "Settings"),
            *(reveal(phone, label) for _ in range(3)),
            tap_label(phone, label),
            Done(),
        ]

    return oracle


def _note_oracle(phone: SimPhone) -> list[ScriptItem]:
    return [
        tap_label(phone, "Notes"),
        tap_label(phone, "New note"),
        tap_label(phone, "Note text"),
        Type(text=NOTE_TEXT),
        tap_label(phone, "Save"),
        Done(),
    ]


def _contact_oracle(phone: SimPhone) -> list[ScriptItem]:
    return [
        tap_label(phone, "Contacts"),
        tap_label(phone, "Add contact"),
        tap_label(phone, "Name"),
        Type(text=CONTACT_NAME),
        tap_label(phone, "Phone"),
        Type(text=CONTACT_PHONE, submit=True),
        Done(),
    ]


def _seed_notes(phone: SimPhone) -> None:
    for text in _EXTRA_NOTES:
        phone.add_note(text)


def _only_doomed_note_gone(phone: SimPhone) -> bool:
    expected = [n for n in (*DEFAULT_NOTES, *_EXTRA_NOTES) if n != DOOMED_NOTE]
    return sorted(phone.notes) == sorted(expected)


def _delete_note_oracle(phone: SimPhone) -> list[ScriptItem]:
    return [
        tap_label(phone, "Notes"),
        long_press_label(phone, DOOMED_NOTE),
        tap_label(phone, "Delete"),
        Done(),
    ]


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def _has_contact(phone: SimPhone) -> bool:
    return any(c.name == CONTACT_NAME and _digits(c.phone) == _digits(CONTACT_PHONE) for c in phone.contacts)


SIM_TASKS: dict[str, SimTask] = {
    task.name: task
    for task in (
        SimTask("wifi", "Turn on Wi-Fi.", lambda p: p.toggles["wifi"], _toggle_oracle("Wi-Fi")),
        SimTask(
            "dark_mode",
            "Open Settings and turn on Dark mode.",
            lambda p: p.toggles["dark_mode"],
            _toggle_oracle("Dark mode"),
        ),
        SimTask(
            "airplane_mode",
            "Turn on airplane mode.",
            lambda p: p.toggles["airplane_mode"],
            _toggle_oracle("Airplane mode"),
        ),
        SimTask("location_off", "Turn off Location.", lambda p: not p.toggles["location"], _toggle_oracle("Location")),
        SimTask(
            "note",
            f'Write a new note that says "{NOTE_TEXT}" and save it.',
            lambda p: NOTE_TEXT in p.notes,
            _note_oracle,
        ),
        SimTask(
            "add_contact",
            f"Add a contact named {CONTACT_NAME} with phone number {CONTACT_PHONE}.",
            _has_contact,
            _contact_oracle,
        ),
        SimTask(
            "delete_note",
            f'In Notes, delete the note that says "{DOOMED_NOTE}" and keep the others.',
            _only_doomed_note_gone,
            _delete_note_oracle,
            setup=_seed_notes,
        ),
    )
}


def get_task(name: str) -> SimTask:
    """The built-in task called ``name``; ConfigError lists the known ones otherwise."""
    try:
        return SIM_TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown sim task '{name}'; known: {', '.join(sorted(SIM_TASKS))}") from None
