"""The built-in tasks of the simulated phone: an instruction, where it starts, and its checks.

``vlagent run wifi`` and the tests use these. Each is judged from the device's own state by
its checks, so the same task is judged the same way on the in-process simulated phone and
on a phone over adb (the simulated one served by ``vlagent sim serve``, or a real phone for
the toggle tasks). The scripts that solve them for the scripted policy live with the test
oracles (``vlagent.policies.task_scripts``), not here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from vlagent.errors import ConfigError
from vlagent.tasks.checks import Check, CheckResult, ContactCheck, NoteCheck, ToggleCheck, judge
from vlagent.tasks.state import DeviceState, StartState

__all__ = ["BUILTIN_TASKS", "CONTACT_NAME", "CONTACT_PHONE", "DOOMED_NOTE", "NOTE_TEXT", "Task", "get_task"]

NOTE_TEXT = "买牛奶 🥛 café"
CONTACT_NAME = "Ada Lovelace"
CONTACT_PHONE = "+44 20 7946 0958"
DOOMED_NOTE = "Buy milk"
#: The notes the delete_note task starts with: the one to delete among others (a near miss included).
_DELETE_NOTE_START = ("Call the dentist on Tuesday", "Water the plants", DOOMED_NOTE, "Buy milk chocolate for Sam")


@dataclass(frozen=True)
class Task:
    """A task: what to ask, where it starts, and the checks that say it succeeded."""

    name: str
    instruction: str
    success: tuple[Check, ...]
    start: StartState = field(default_factory=StartState)

    def judge(self, state: DeviceState) -> list[CheckResult]:
        return judge(self.success, state)

    def passed(self, state: DeviceState) -> bool:
        """True when every check passed on ``state``."""
        return all(r.passed for r in self.judge(state))


def _toggle_task(name: str, instruction: str, toggle: str, on: bool) -> Task:
    # The start state sets the toggle to the opposite, so the task is never done before it starts.
    return Task(name, instruction, (ToggleCheck(toggle=toggle, value=on),), StartState(toggles={toggle: not on}))


def _tasks(tasks: Sequence[Task]) -> dict[str, Task]:
    return {t.name: t for t in tasks}


BUILTIN_TASKS: dict[str, Task] = _tasks(
    (
        _toggle_task("wifi", "Turn on Wi-Fi.", "wifi", True),
        _toggle_task("dark_mode", "Open Settings and turn on Dark mode.", "dark_mode", True),
        _toggle_task("airplane_mode", "Turn on airplane mode.", "airplane_mode", True),
        _toggle_task("location_off", "Turn off Location.", "location", False),
        Task(
            "note",
            f'Write a new note that says "{NOTE_TEXT}" and save it.',
            (NoteCheck(note=NOTE_TEXT),),
        ),
        Task(
            "add_contact",
            f"Add a contact named {CONTACT_NAME} with phone number {CONTACT_PHONE}.",
            (ContactCheck(contact=CONTACT_NAME, phone=CONTACT_PHONE),),
        ),
        Task(
            "delete_note",
            f'In Notes, delete the note that says "{DOOMED_NOTE}" and keep the others.',
            (
                NoteCheck(note=DOOMED_NOTE, value=False),
                *(NoteCheck(note=n) for n in _DELETE_NOTE_START if n != DOOMED_NOTE),
            ),
            StartState(notes=list(_DELETE_NOTE_START)),
        ),
    )
)


def get_task(name: str) -> Task:
    """The built-in task called ``name``; ConfigError lists the known ones otherwise."""
    try:
        return BUILTIN_TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown task '{name}'; known: {', '.join(sorted(BUILTIN_TASKS))}") from None
