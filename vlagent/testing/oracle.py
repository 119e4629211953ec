"""SimOracle: a scripted stand-in for the model on the simulated phone, for meaningful CI tests.

A random tiny model can prove the plumbing but not the meaning of a UI test. SimOracle
reads the SimPhone's state (never the pixels) and so gives the answers a perfect model
would, for a known set of sentences:

- as a Policy, it carries out "turn on/off <setting>", "enable/disable <setting>",
  "open <app>", "go home" and every built-in task instruction, reacting to the screen
  it is on (so it works from any starting screen and layout seed), and answers
  ``done(failure)`` naming what it cannot do;
- as a Querier, it judges statements such as "Wi-Fi is on", "the Settings screen is
  shown", "'Dark mode' is visible", "a note saying 'milk' exists", "a contact named Ada
  exists", "the keyboard is shown": each statement is parsed into a
  :data:`vlagent.tasks.Check` (toggle, screen, text, note, contact) and judged on the
  phone's :class:`~vlagent.drivers.sim.state.SimState`, the way scenario and built-in task
  checks are (the keyboard, which no check reads, from the phone itself); it answers
  ``query`` schemas by field name from the phone's facts (a toggle key such as ``wifi``,
  ``screen``, ``notes``, ``contacts``, ``text_on_screen``, ``battery_percent``...); it
  locates visible elements by label.

A sentence it does not know is an error for the test author (OracleCannotAnswer), never
a guess. This module must not change the phone except through the actions it returns.
What every oracle shares (the Policy and Querier plumbing, filling schemas by field
name, locating by label) lives in :mod:`vlagent.testing.state_oracle`.
"""

from __future__ import annotations

import logging
import re
import typing
from typing import Any

from vlagent.actions import Action, Click, Done, Key, Scroll
from vlagent.drivers.sim.catalog import APPS, BATTERY_PERCENT, SETTINGS_ROWS
from vlagent.drivers.sim.driver import SimDriver
from vlagent.drivers.sim.state import SimState
from vlagent.drivers.sim.world import SimPhone
from vlagent.policies.base import Observation
from vlagent.policies.scripted import ScriptedPolicy
from vlagent.policies.task_scripts import task_script
from vlagent.tasks import (
    BUILTIN_TASKS,
    Check,
    CheckResult,
    ContactCheck,
    NoteCheck,
    ScreenCheck,
    TextCheck,
    ToggleCheck,
)
from vlagent.testing.state_oracle import QUOTE as _Q
from vlagent.testing.state_oracle import OracleCannotAnswer, Rule, StateOracle
from vlagent.testing.state_oracle import norm as _norm

__all__ = ["OracleCannotAnswer", "SimOracle"]

log = logging.getLogger(__name__)

_STATEMENT_FORMS = (
    "'<setting> is on/off' (e.g. 'Wi-Fi is on')",
    "'the <app or screen> screen is shown'",
    "\"'<text>' is visible\"",
    "\"a note saying '<text>' exists\"",
    "'a contact named <name> exists'",
    "'the keyboard is shown/hidden'",
)
_INSTRUCTION_FORMS = ("'turn on/off <setting>'", "'enable/disable <setting>'", "'open <app>'", "'go home'")
_ON = {"on", "enabled", "active"}
_OFF = {"off", "disabled", "inactive"}
_SHOWN = {"shown", "visible", "open", "displayed", "opened"}
_HIDDEN = {"hidden", "closed", "gone"}


def _toggle_key(name: str) -> str | None:
    wanted = _norm(name).removeprefix("the ")
    for suffix in (" toggle", " switch", " setting", " option"):
        wanted = wanted.removesuffix(suffix)
    for row in SETTINGS_ROWS:
        if row.toggle and wanted in (row.label.casefold(), row.key.replace("_", " "), row.key):
            return row.key
    if wanted in ("wifi", "wi fi"):
        return "wifi"
    return None


def _label_of(key: str) -> str:
    return next(row.label for row in SETTINGS_ROWS if row.key == key)


def _screen_of(name: str) -> str | None:
    wanted = _norm(name).removeprefix("the ")
    for suffix in (" app", " screen", " page"):
        wanted = wanted.removesuffix(suffix)
    for app in APPS:
        if wanted in (app.label.casefold(), app.screen, app.package):
            return app.screen
    aliases = {"home": "home", "launcher": "home", "recents": "recents", "recent apps": "recents"}
    aliases |= {"note editor": "note_editor", "contact editor": "contact_editor"}
    return aliases.get(wanted)


class SimOracle(StateOracle):
    """Policy and Querier for a SimPhone that answers from the phone's state."""

    name = "sim-oracle"
    statement_forms = _STATEMENT_FORMS

    def __init__(self, phone: SimPhone | SimDriver) -> None:
        self.phone = phone.phone if isinstance(phone, SimDriver) else phone
        self._scripts: dict[str, ScriptedPolicy] = {}

    # ------------------------------------------------------------------ Policy

    def next_action(self, observation: Observation) -> Action:
        obs = observation
        task = _norm(obs.task)
        toggle = re.fullmatch(r"(?:open settings and )?(?:turn|switch) (on|off) (.+)", task)
        toggle = toggle or re.fullmatch(r"(?:open settings and )?(?:turn|switch) (.+?) (on|off)", task)
        if toggle is not None:
            state, name = (toggle[1], toggle[2]) if toggle[1] in ("on", "off") else (toggle[2], toggle[1])
            return self._toggle(name, state == "on", obs.task)
        able = re.fullmatch(r"(enable|disable) (.+)", task)
        if able is not None:
            return self._toggle(able[2], able[1] == "enable", obs.task)
        opened = re.fullmatch(r"(?:open|launch|start) (.+)", task)
        if opened is not None and _screen_of(opened[1]) is not None:
            return self._open(_screen_of(opened[1]) or "home")
        if re.fullmatch(r"(?:go|return|navigate) (?:back )?(?:to )?(?:the )?home(?: screen)?", task):
            return Done() if self.phone.screen == "home" else Key(key="home")
        return self._scripted(obs)

    def _scripted(self, obs: Observation) -> Action:
        task = next((t for t in BUILTIN_TASKS.values() if _norm(t.instruction) == _norm(obs.task)), None)
        if task is None:
            return Done(
                status="failure",
                answer=f"the sim oracle cannot do {obs.task!r}; it knows {', '.join(_INSTRUCTION_FORMS)} "
                "and the built-in task instructions",
            )
        if obs.step_index == 0:
            self._scripts.pop(task.name, None)
        if task.name not in self._scripts:
            if self.phone.screen != "home":  # the task scripts start from the home screen
                return Key(key="home")
            self._scripts[task.name] = ScriptedPolicy(task_script(task, self.phone.locate))
        return self._scripts[task.name].decide(obs).action

    def _toggle(self, name: str, on: bool, task: str) -> Action:
        key = _toggle_key(name)
        if key is None:
            return Done(status="failure", answer=f"there is no setting called {name!r} on this phone")
        phone = self.phone
        if phone.toggles[key] == on:
            return Done(answer=f"{_label_of(key)} is {'on' if on else 'off'}")
        if phone.screen != "settings":
            return self._open("settings")
        label = _label_of(key)
        point = phone.locate(label)
        if point is not None:
            return Click(x=point[0], y=point[1])
        order = [_label_of(k) for k in phone.settings_order()]
        visible = [order.index(t) for t in phone.text_on_screen() if t in order]
        up = bool(visible) and order.index(label) < min(visible)
        return Scroll(direction="up" if up else "down")

    def _open(self, screen: str) -> Action:
        phone = self.phone
        if phone.screen == screen:
            return Done()
        if screen == "home" or phone.screen != "home":
            return Key(key="home")
        label = next(app.label for app in APPS if app.screen == screen)
        point = phone.locate(label)
        return Click(x=point[0], y=point[1]) if point else Done(status="failure", answer=f"no {label} icon")

    # ------------------------------------------------------------------ Querier

    def rules(self) -> list[Rule]:
        return [
            self._toggle_rule,
            self._text_rule,
            self._screen_rule,
            self._note_rule,
            self._contact_rule,
            self._kb_rule,
        ]

    def _look(self, check: Check) -> tuple[CheckResult, SimState]:
        """``check`` judged on one look at the phone, and that look (for the reason's wording)."""
        state = SimState(self.phone)
        return check.evaluate(state), state

    def _toggle_rule(self, s: str, raw: str) -> tuple[bool, str] | None:
        m = re.fullmatch(r"(.+?) is (not )?(?:turned |switched )?(on|off|enabled|disabled|active|inactive)", s)
        key = _toggle_key(m[1]) if m else None
        if m is None or key is None:
            return None
        want_on = (m[3] in _ON) != bool(m[2])
        result, _ = self._look(ToggleCheck(toggle=key, value=want_on))
        return result.passed, f"{_label_of(key)} {result.detail}"

    def _screen_rule(self, s: str, raw: str) -> tuple[bool, str] | None:
        m = re.fullmatch(r"(.+?) is (not )?(?:shown|visible|open|opened|displayed|in the foreground)", s)
        screen = _screen_of(m[1]) if m else None
        if m is None or screen is None:
            return None
        result, state = self._look(ScreenCheck(screen=screen))
        current = state.screen().value
        return result.passed != bool(m[2]), f"the {current.replace('_', ' ')} screen is shown"

    def _text_rule(self, s: str, raw: str) -> tuple[bool, str] | None:
        m = re.fullmatch(
            rf"(?:the )?(?:text |words? |label )?{_Q}(.+){_Q} is (not )?(?:visible|shown|displayed|on (?:the )?screen)",
            raw.strip().rstrip(".!"),
            re.IGNORECASE,
        )
        m = m or re.fullmatch(
            rf"the screen (?:shows|contains|says) {_Q}(.+){_Q}()", raw.strip().rstrip(".!"), re.IGNORECASE
        )
        if m is None:
            return None
        result, state = self._look(TextCheck(text=m[1], value=not m[2]))
        seen = result.passed != bool(m[2])
        where = f"'{m[1]}' is {'' if seen else 'not '}on the {state.screen().value.replace('_', ' ')} screen"
        return result.passed, where

    def _note_rule(self, s: str, raw: str) -> tuple[bool, str] | None:
        m = re.fullmatch(
            rf"(?:there is )?a note (?:saying|that says|with the text|reading) {_Q}(.+){_Q}(?: exists)?",
            raw.strip().rstrip(".!"),
            re.IGNORECASE,
        )
        if m is None:
            return None
        result, state = self._look(NoteCheck(note=m[1], partial=True))
        count = len(state.notes().value)
        return result.passed, f"{count} note(s); {'one' if result.passed else 'none'} contains '{m[1]}'"

    def _contact_rule(self, s: str, raw: str) -> tuple[bool, str] | None:
        m = re.fullmatch(
            r"(?:there is )?a contact (?:named|called) [\"'“]?(.+?)[\"'”]?(?: exists)?",
            raw.strip().rstrip(".!"),
            re.IGNORECASE,
        )
        if m is None:
            return None
        result, state = self._look(ContactCheck(contact=m[1]))
        return result.passed, f"contacts: {', '.join(c.name for c in state.contacts().value)}"

    def _kb_rule(self, s: str, raw: str) -> tuple[bool, str] | None:
        m = re.fullmatch(r"the (?:on-screen )?keyboard is (not )?(shown|visible|open|displayed|hidden|closed|gone)", s)
        if m is None:
            return None
        want = (m[2] in _SHOWN) != bool(m[1])
        shown = self.phone.keyboard_shown
        return shown == want, f"the keyboard is {'shown' if shown else 'hidden'}"

    def find(self, label: str) -> tuple[int, int] | None:
        return self.phone.locate(label)

    def frame_size(self) -> tuple[int, int]:
        return self.phone.width, self.phone.height

    def facts(self) -> dict[str, object]:
        """What ``query`` schemas can ask for, by field name."""
        phone = self.phone
        snapshot = phone.snapshot()
        facts: dict[str, object] = dict(snapshot["toggles"])
        facts.update(
            screen=phone.screen,
            current_app=phone.current_app,
            app=next((a.label for a in APPS if a.package == phone.current_app), "Home"),
            notes=phone.notes,
            note_count=len(phone.notes),
            contacts=[{"name": c.name, "phone": c.phone} for c in phone.contacts],
            contact_names=[c.name for c in phone.contacts],
            contact_count=len(phone.contacts),
            text_on_screen=phone.text_on_screen(),
            texts=phone.text_on_screen(),
            keyboard_shown=phone.keyboard_shown,
            focused_field=phone.focused_field,
            battery_percent=BATTERY_PERCENT,
            battery=BATTERY_PERCENT,
        )
        return facts

    def adapt(self, key: str, value: object, annotation: object) -> object:
        if key == "contacts" and _wants_strings(annotation):
            return [c.name for c in self.phone.contacts]
        return value


def _wants_strings(annotation: Any) -> bool:
    args = typing.get_args(annotation)
    return bool(args) and args[0] is str
