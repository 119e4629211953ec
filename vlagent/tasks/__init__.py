"""Tasks and checks: what a task asks for, and how success is judged from a device's own state.

- :mod:`~vlagent.tasks.checks`: the :data:`Check` union (toggle, setting, app, screen, text,
  element, field, contact, note, state, window) and :func:`judge`;
- :mod:`~vlagent.tasks.state`: the read-only :class:`DeviceState` every device implements
  (the simulated phone from its objects, any adb phone from ``uiautomator dump``,
  ``settings``, ``dumpsys`` and content providers, the desktop from the app's state file and
  the window title), and :class:`StartState`, where a task begins;
- :mod:`~vlagent.tasks.uitree`: the view hierarchy as typed nodes (parse and write
  ``uiautomator dump`` XML);
- :mod:`~vlagent.tasks.settings`: where Android keeps each toggle;
- :mod:`~vlagent.tasks.builtin`: the built-in tasks of the simulated phone.

This room sits just above the core types: drivers implement its protocols, and nothing
here imports a driver, a policy or a model.
"""

from vlagent.tasks.builtin import BUILTIN_TASKS, Task, get_task
from vlagent.tasks.checks import (
    CHECK_KINDS,
    AppCheck,
    Check,
    CheckResult,
    ContactCheck,
    ElementCheck,
    FieldCheck,
    NoteCheck,
    ScreenCheck,
    SettingCheck,
    StateCheck,
    TextCheck,
    ToggleCheck,
    WindowCheck,
    check_data,
    judge,
    parse_check,
)
from vlagent.tasks.settings import TOGGLES, ToggleSetting, toggle_setting
from vlagent.tasks.state import (
    ContactEntry,
    ContactSpec,
    DeviceState,
    Foreground,
    Reading,
    StartState,
    StatePreparer,
    StateReader,
    StateUnavailable,
)
from vlagent.tasks.uitree import UiDumpError, UiNode, UiTree, parse_hierarchy, to_hierarchy_xml

__all__ = [
    "BUILTIN_TASKS",
    "CHECK_KINDS",
    "TOGGLES",
    "AppCheck",
    "Check",
    "CheckResult",
    "ContactCheck",
    "ContactEntry",
    "ContactSpec",
    "DeviceState",
    "ElementCheck",
    "FieldCheck",
    "Foreground",
    "NoteCheck",
    "Reading",
    "ScreenCheck",
    "SettingCheck",
    "StartState",
    "StateCheck",
    "StatePreparer",
    "StateReader",
    "StateUnavailable",
    "Task",
    "TextCheck",
    "ToggleCheck",
    "ToggleSetting",
    "UiDumpError",
    "UiNode",
    "UiTree",
    "WindowCheck",
    "check_data",
    "get_task",
    "judge",
    "parse_check",
    "parse_hierarchy",
    "to_hierarchy_xml",
    "toggle_setting",
]
