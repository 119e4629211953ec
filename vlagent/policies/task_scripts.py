"""Scripts that solve the built-in tasks, for the scripted policy (``--policy oracle``) and tests.

A script is a list of :data:`~vlagent.policies.scripted.ScriptItem`; the items that aim at
an element look it up by label when they are played, through a :data:`Locate` callable, so
a script works for every layout seed and on every phone that can say where a label is:
:func:`ui_locator` finds it in the view hierarchy of a fresh look at the device (the
simulated phone in process, or any phone over adb), and ``SimPhone.locate`` is another.

The tasks themselves (instruction, start state, success checks) are data in
:mod:`vlagent.tasks.builtin`; success is judged by their checks, never by a script having
run to its end. This module must not change a device except through the actions it returns.
"""

from __future__ import annotations

from collections.abc import Callable

from vlagent.actions import Action, Click, Done, LongPress, Scroll, Type
from vlagent.errors import ConfigError
from vlagent.policies.base import Observation
from vlagent.policies.scripted import ScriptItem
from vlagent.tasks import StateReader, Task, ToggleCheck, UiNode, UiTree, toggle_setting
from vlagent.tasks.builtin import CONTACT_NAME, CONTACT_PHONE, DOOMED_NOTE, NOTE_TEXT

__all__ = [
    "Locate",
    "find_label",
    "long_press_label",
    "reveal",
    "tap_label",
    "task_script",
    "ui_locator",
]

#: Where the element called ``label`` is now, in device pixels (its centre), or None when it is not on screen.
Locate = Callable[[str], tuple[int, int] | None]


def _shown(node: UiNode) -> bool:
    x0, y0, x1, y1 = node.bounds
    return x1 > x0 and y1 > y0


def find_label(tree: UiTree, label: str) -> UiNode | None:
    """The visible node called ``label`` (its resource-id, text or description; then ignoring case)."""
    exact = [n for n in tree.find(label) if _shown(n)]
    if exact:
        return exact[0]
    folded = label.casefold()
    return next((n for n in tree.nodes if _shown(n) and folded in (n.text.casefold(), n.content_desc.casefold())), None)


def ui_locator(device: StateReader) -> Locate:
    """A :data:`Locate` that reads the view hierarchy of a fresh look at ``device`` (``device.state()``)."""

    def locate(label: str) -> tuple[int, int] | None:
        node = find_label(device.state().ui_tree().value, label)
        return node.center if node is not None else None

    return locate


def tap_label(locate: Locate, label: str) -> Callable[[Observation], Action]:
    """A script item that taps wherever ``label`` is when it is played (done(failure) if absent)."""

    def item(obs: Observation) -> Action:
        point = locate(label)
        if point is None:
            return Done(status="failure", answer=f"'{label}' is not on screen")
        return Click(x=point[0], y=point[1])

    return item


def long_press_label(locate: Locate, label: str, duration: float = 1.0) -> Callable[[Observation], Action]:
    """A script item that long-presses wherever ``label`` is when it is played (done(failure) if absent)."""

    def item(obs: Observation) -> Action:
        point = locate(label)
        if point is None:
            return Done(status="failure", answer=f"'{label}' is not on screen")
        return LongPress(x=point[0], y=point[1], duration=duration)

    return item


def reveal(locate: Locate, label: str) -> Callable[[Observation], Action | None]:
    """A script item that scrolls down unless ``label`` is already visible (then it is skipped)."""

    def item(obs: Observation) -> Action | None:
        return None if locate(label) is not None else Scroll(direction="down")

    return item


def _toggle_script(label: str, locate: Locate) -> list[ScriptItem]:
    return [tap_label(locate, "Settings"), *(reveal(locate, label) for _ in range(3)), tap_label(locate, label), Done()]


def _note_script(locate: Locate) -> list[ScriptItem]:
    return [
        tap_label(locate, "Notes"),
        tap_label(locate, "New note"),
        tap_label(locate, "Note text"),
        Type(text=NOTE_TEXT),
        tap_label(locate, "Save"),
        Done(),
    ]


def _contact_script(locate: Locate) -> list[ScriptItem]:
    return [
        tap_label(locate, "Contacts"),
        tap_label(locate, "Add contact"),
        tap_label(locate, "Name"),
        Type(text=CONTACT_NAME),
        tap_label(locate, "Phone"),
        Type(text=CONTACT_PHONE, submit=True),
        Done(),
    ]


def _delete_note_script(locate: Locate) -> list[ScriptItem]:
    return [tap_label(locate, "Notes"), long_press_label(locate, DOOMED_NOTE), tap_label(locate, "Delete"), Done()]


#: The built-in tasks that are not a single toggle, by name.
_SCRIPTS: dict[str, Callable[[Locate], list[ScriptItem]]] = {
    "note": _note_script,
    "add_contact": _contact_script,
    "delete_note": _delete_note_script,
}


def task_script(task: Task, locate: Locate) -> list[ScriptItem]:
    """The script that solves ``task`` from the home screen (a task of one toggle check: flip it in
    Settings); ConfigError for a task no script knows."""
    script = _SCRIPTS.get(task.name)
    if script is not None:
        return script(locate)
    checks = task.success
    if len(checks) == 1 and isinstance(checks[0], ToggleCheck):
        setting = toggle_setting(checks[0].toggle)
        if setting is not None:
            return _toggle_script(setting.label, locate)
    raise ConfigError(f"no script solves the task {task.name!r}; scripted tasks: the built-in ones")
