"""DesktopState: the desktop's facts as a DeviceState (an app's state file, the focused window's title).

A desktop has no toggles, notes or view hierarchy that a check could read; what it has is
the JSON state file an instrumented app writes (the sample desktop app,
``vlagent.apps.sample_desktop``; source "app state file") and the title of the focused
window (``xdotool getactivewindow getwindowname``; source "window"). Every other fact is
:class:`~vlagent.tasks.state.StateUnavailable`, so such a check is reported as not
judgeable on this device rather than failed.

One DesktopState is one look: each fact is read once, on first use. This module reads and
never acts; it must not import pyautogui, mss or tkinter.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from vlagent.tasks.state import ContactEntry, Foreground, JsonValue, Reading, StateUnavailable
from vlagent.tasks.uitree import UiTree

__all__ = ["DesktopState"]


class DesktopState:
    """DeviceState of a desktop session: ``state_path`` is the app's state file (None: no such app)."""

    kind = "desktop"

    def __init__(self, state_path: Path | str | None = None, *, env: Mapping[str, str] | None = None) -> None:
        self.state_path = Path(state_path) if state_path is not None else None
        self._env = dict(env) if env is not None else None
        self._app_state: Reading[Mapping[str, JsonValue]] | None = None
        self._title: Reading[str] | None = None

    def app_state(self) -> Reading[Mapping[str, JsonValue]]:
        if self._app_state is None:
            path = self.state_path
            if path is None:
                raise StateUnavailable("this desktop runs no app that writes a state file")
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                raise StateUnavailable(f"the app has not written its state file {path} yet") from None
            except (OSError, ValueError) as exc:  # ValueError: caught halfway through a rewrite
                raise StateUnavailable(f"cannot read the app state file {path}: {exc}") from exc
            if not isinstance(data, dict):
                raise StateUnavailable(f"the app state file {path} holds no mapping")
            self._app_state = Reading(data, "app state file", str(path))
        return self._app_state

    def window_title(self) -> Reading[str]:
        if self._title is None:
            xdotool = shutil.which("xdotool")
            if xdotool is None:
                raise StateUnavailable("reading the focused window's title needs xdotool (apt install xdotool)")
            command = [xdotool, "getactivewindow", "getwindowname"]
            try:
                done = subprocess.run(command, capture_output=True, timeout=5, env=self._env, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise StateUnavailable(f"xdotool could not read the focused window: {exc}") from exc
            if done.returncode != 0:
                why = done.stderr.decode("utf-8", "replace").strip() or f"exit status {done.returncode}"
                raise StateUnavailable(f"no focused window ({why})")
            title = done.stdout.decode("utf-8", "replace").rstrip("\n")
            self._title = Reading(title, "window", "xdotool getactivewindow getwindowname")
        return self._title

    def toggle(self, name: str) -> Reading[bool]:
        raise StateUnavailable(f"the desktop has no phone toggle {name!r} (check the app state file instead)")

    def setting(self, namespace: str, key: str) -> Reading[str | None]:
        raise StateUnavailable("the desktop has no Android settings")

    def foreground(self) -> Reading[Foreground]:
        raise StateUnavailable("the desktop has no app package in front (check the window title instead)")

    def ui_tree(self) -> Reading[UiTree]:
        raise StateUnavailable("the desktop has no view hierarchy")

    def contacts(self) -> Reading[list[ContactEntry]]:
        raise StateUnavailable("the desktop has no contacts")

    def notes(self) -> Reading[list[str]]:
        raise StateUnavailable("the desktop has no sim Notes app")

    def screen(self) -> Reading[str]:
        raise StateUnavailable("the desktop has no simulated phone screen")
