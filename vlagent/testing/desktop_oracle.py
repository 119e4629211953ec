"""SampleAppOracle: a scripted stand-in for the model on the sample desktop app, for CI UI tests.

The desktop twin of :class:`vlagent.testing.oracle.SimOracle`. It reads the sample Tk
app's state file (``python -m vlagent.apps.sample_desktop --state FILE``), never the
pixels, and so answers the way a perfect model would, for a known set of sentences:

- as a Policy, it carries out "sign in as USER with password PW", "turn on/off <setting>"
  (also enable/disable, check/uncheck), "type 'TEXT' into the note field", "search the
  shopping list for X" and "open item X", one action per step, by clicking the widget
  rectangles the app reports and typing; it reacts to the current state, so it works from
  any starting state, and answers ``done(failure)`` naming what it cannot do;
- as a Querier, it judges statements such as "the user is signed in", "Dark mode is on",
  "the note says 'X'", "'Milk' is visible in the list", "'Milk' is opened", "an error is
  shown"; a statement about the app's state (signed in, a setting, the volume, a field) is
  judged as :class:`vlagent.tasks.StateCheck` items on the state file, the way scenario
  checks are; it answers ``query`` schemas by field name from the app's state (``logged_in``,
  ``user``, ``dark_mode``, ``volume``, ``note``, ``visible_items``...); it locates a named
  widget ("the Log in button", "the Note field") or a visible list row by label.

Input reaches a Tk app asynchronously: after an action the app rewrites its state only
once it has handled the events. Before deciding the next step the oracle therefore waits
(up to ``settle_s``) for the effect its previous action should have had, so it never
clicks a checkbox twice because it read the state too early.

A sentence it does not know is an error for the test author (OracleCannotAnswer), never
a guess. This module must not change the app except through the actions it returns, and
must not import tkinter.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vlagent.actions import Action, Click, Done, Key, Scroll, Type
from vlagent.drivers.base import Driver
from vlagent.drivers.desktop_state import DesktopState
from vlagent.errors import DeviceError
from vlagent.policies.base import Observation
from vlagent.tasks import Check, StateCheck, judge
from vlagent.testing.state_oracle import QUOTE, OracleCannotAnswer, Rule, StateOracle, norm

__all__ = ["OracleCannotAnswer", "SampleAppOracle"]

log = logging.getLogger(__name__)

State = dict[str, Any]

# The app's fixed texts and widget names (vlagent.apps.sample_desktop); importing that
# module would import tkinter, so the few names the oracle needs are listed here.
_SETTINGS = {"dark_mode": "Dark mode", "notifications": "Notifications", "auto_save": "Auto-save"}
_FIELDS = {"username": "Username", "password": "Password", "note": "Note", "search": "Search"}
_WIDGET_LABELS = {
    "username": "username",
    "password": "password",
    "log in": "login_button",
    "login": "login_button",
    "sign in": "login_button",
    "status": "status",
    "dark mode": "dark_mode",
    "notifications": "notifications",
    "auto-save": "auto_save",
    "auto save": "auto_save",
    "autosave": "auto_save",
    "volume": "volume",
    "note": "note",
    "search": "search",
    "shopping list": "items",
    "list": "items",
    "items": "items",
}
_STATIC_TEXTS = (
    "Sign in",
    "Username",
    "Password",
    "Log in",
    "Settings",
    *_SETTINGS.values(),
    "Volume",
    "Note",
    "Shopping list",
    "Search",
)
_STATEMENT_FORMS = (
    "'the user is signed in' / 'ada is signed in' / 'signed in as ada' (also logged in, not)",
    "'a sign-in error is shown'",
    "'<setting> is on/off' (e.g. 'Dark mode is on'; also checked/unchecked)",
    "'the volume is <n>'",
    "\"the note says '<text>'\" (also the search box / username field; says/contains/is empty)",
    "\"'<item>' is visible in the list\"",
    "\"'<item>' is opened\" / \"'<item>' is selected\"",
    "\"'<text>' is visible\"",
)
_INSTRUCTION_FORMS = (
    "'sign in as USER with password PW'",
    "'turn on/off <setting>'",
    "'enable/disable <setting>'",
    "\"type 'TEXT' into the note field\"",
    "'search the shopping list for X'",
    "'open item X'",
)
_ON = {"on", "enabled", "checked", "ticked", "active"}
_VALUE = rf"{QUOTE}?(.+?){QUOTE}?"
_QUIET_S = 0.1


def _setting_key(name: str) -> str | None:
    wanted = norm(name).removeprefix("the ")
    for suffix in (" checkbox", " check box", " setting", " option", " toggle", " box"):
        wanted = wanted.removesuffix(suffix)
    wanted = wanted.replace("-", " ").replace("_", " ")
    for key, label in _SETTINGS.items():
        if wanted in (label.casefold().replace("-", " "), key.replace("_", " ")):
            return key
    return "auto_save" if wanted == "autosave" else None


def _field_of(name: str) -> str | None:
    wanted = norm(name).removeprefix("the ")
    for suffix in (" field", " box", " entry", " text"):
        wanted = wanted.removesuffix(suffix)
    return wanted if wanted in _FIELDS else None


def _centre(rect: list[int] | tuple[int, ...]) -> tuple[float, float]:
    x, y, w, h = rect[:4]
    return x + w / 2, y + h / 2


class SampleAppOracle(StateOracle):
    """Policy and Querier for the sample desktop app, answering from its state file.

    ``driver`` is the test's driver (its frame is the app's window or the whole screen);
    ``state_file`` is the app's ``--state`` file; ``settle_s`` bounds the wait for the
    effect of the previous action.
    """

    name = "sample-app-oracle"
    statement_forms = _STATEMENT_FORMS
    locate_suffixes = ("button", "field", "box", "checkbox", "entry", "item", "row", "slider", "label")

    def __init__(self, driver: Driver, state_file: Path | str, *, settle_s: float = 3.0) -> None:
        self.driver = driver
        self.state_file = Path(state_file)
        self.settle_s = settle_s
        self._expect: Callable[[State], bool] | None = None
        self._attempts_at_start = 0
        self._typed_password = False
        self._selected_all: str | None = None

    # ------------------------------------------------------------------ state

    def state(self) -> State:
        """The app's latest state; DeviceError when it has none (the app is not running)."""
        deadline = time.monotonic() + 1.0
        while True:
            try:
                return json.loads(self.state_file.read_text(encoding="utf-8"))  # type: ignore[no-any-return]
            except (OSError, ValueError) as exc:
                if time.monotonic() >= deadline:
                    raise DeviceError(
                        f"cannot read the sample app's state file {self.state_file} ({exc}); is the app running "
                        "with --state on that file?"
                    ) from exc
                time.sleep(0.02)

    def _settled(self) -> State:
        """The state once the previous action's effect is visible in it (or ``settle_s`` passed)."""
        expect, self._expect = self._expect, None
        state = self.state()
        if expect is None:
            return state
        deadline = time.monotonic() + self.settle_s
        while not expect(state) and time.monotonic() < deadline:
            time.sleep(0.02)
            state = self.state()
        # One action can be several events (a scroll is several wheel clicks, each saved): the
        # first state showing the effect may not be the last, so wait until the file is quiet.
        while time.monotonic() < deadline:
            time.sleep(_QUIET_S)
            later = self.state()
            if later["seq"] == state["seq"]:
                break
            state = later
        return state

    def _to_frame(self, x: float, y: float) -> tuple[int, int]:
        """A screen point as frame pixels of the driver (its region's origin and scale)."""
        width, height = self.driver.screen_size()
        left, top, region_w, region_h = getattr(self.driver, "region", (0, 0, width, height))
        fx = round((x - left) * width / region_w)
        fy = round((y - top) * height / region_h)
        return min(max(fx, 0), width - 1), min(max(fy, 0), height - 1)

    def _widget_point(self, state: State, widget: str) -> tuple[int, int]:
        return self._to_frame(*_centre(state["widgets"][widget]))

    def _row_point(self, state: State, item: str) -> tuple[int, int] | None:
        for name, x, y, w, h in state.get("rows", []):
            if name == item:
                return self._to_frame(*_centre((x, y, w, h)))
        return None

    def _click(self, state: State, widget: str, expect: Callable[[State], bool], clicks: int = 1) -> Action:
        self._expect = expect
        x, y = self._widget_point(state, widget)
        return Click(x=x, y=y, clicks=clicks)

    # ------------------------------------------------------------------ Policy

    def next_action(self, observation: Observation) -> Action:
        state = self._settled()
        if observation.step_index == 0:
            self._attempts_at_start = int(state.get("login_attempts", 0))
            self._typed_password = False
            self._selected_all = None
        raw = observation.task.strip().rstrip(".!")
        task = norm(raw)
        sign_in = re.fullmatch(
            rf"(?:sign|log) ?in as {_VALUE} (?:with|using) (?:the )?password {_VALUE}", raw, re.IGNORECASE
        )
        if sign_in is not None:
            return self._sign_in(state, sign_in[1], sign_in[2])
        toggle = re.fullmatch(r"(?:turn|switch) (on|off) (.+)", task) or re.fullmatch(
            r"(?:turn|switch) (.+?) (on|off)", task
        )
        if toggle is not None:
            on_off, name = (toggle[1], toggle[2]) if toggle[1] in ("on", "off") else (toggle[2], toggle[1])
            return self._toggle(state, name, on_off == "on")
        able = re.fullmatch(r"(enable|disable|check|uncheck|tick|untick) (.+)", task)
        if able is not None:
            return self._toggle(state, able[2], able[1] in ("enable", "check", "tick"))
        typed = re.fullmatch(
            rf"(?:type|enter|write) {QUOTE}(?P<text>.+){QUOTE} (?:into|in) the (?P<field>note|search|username)"
            r"(?: field| box)?",
            raw,
            re.IGNORECASE,
        ) or re.fullmatch(
            rf"set the (?P<field>note|search|username)(?: field| box)? to {QUOTE}(?P<text>.+){QUOTE}",
            raw,
            re.IGNORECASE,
        )
        if typed is not None:
            field, text = typed["field"].casefold(), typed["text"]
            return self._fill_field(state, field, text) or Done(answer=f"the {field} field says {text!r}")
        search = re.fullmatch(
            rf"search (?:the (?:shopping )?list )?for {_VALUE}(?: in the (?:shopping )?list)?", raw, re.IGNORECASE
        )
        if search is not None:
            return self._search(state, search[1])
        opened = re.fullmatch(
            rf"(?:open|double[- ]click) (?:the )?(?:item )?{_VALUE}(?: item)?(?: in the (?:shopping )?list)?",
            raw,
            re.IGNORECASE,
        )
        if opened is not None:
            return self._open_item(state, opened[1])
        return Done(
            status="failure",
            answer=f"the sample app oracle cannot do {observation.task!r}; it knows {', '.join(_INSTRUCTION_FORMS)}",
        )

    def _sign_in(self, state: State, user: str, password: str) -> Action:
        if state["logged_in"] and state["user"] == user:
            return Done(answer=f"signed in as {user}")
        if state["login_attempts"] > self._attempts_at_start:
            return Done(status="failure", answer=f"the app refused to sign in {user!r}: {state['status']}")
        step = self._fill_field(state, "username", user)
        if step is not None:
            return step
        if not (self._typed_password and state["password_length"] == len(password)):
            if state["password_length"]:  # someone else's text (or a slip): start afresh
                self._typed_password = False
                return self._clear(state, "password", lambda s: s["password_length"] == 0)
            if state["focus"] != "password":
                return self._click(state, "password", lambda s: s["focus"] == "password")
            self._typed_password = True
            self._expect = lambda s: s["password_length"] == len(password)
            return Type(text=password)
        attempts = state["login_attempts"]
        return self._click(state, "login_button", lambda s: s["login_attempts"] > attempts)

    def _fill_field(self, state: State, field: str, text: str) -> Action | None:
        """The next step to make ``field`` say ``text``; None when it does."""
        current: str = state[field]
        if current == text:
            return None
        if current and not text.startswith(current):
            return self._clear(state, field, lambda s: s[field] == "")
        if state["focus"] != field:
            return self._click(state, field, lambda s: s["focus"] == field)
        self._expect = lambda s: s[field] == text
        return Type(text=text[len(current) :])

    def _clear(self, state: State, field: str, cleared: Callable[[State], bool]) -> Action:
        # A triple click selects an entry's whole line in Tk; the next backspace deletes it.
        if self._selected_all != field:
            self._selected_all = field
            return self._click(state, field, lambda s: s["focus"] == field, clicks=3)
        self._selected_all = None
        self._expect = cleared
        return Key(key="backspace")

    def _toggle(self, state: State, name: str, on: bool) -> Action:
        key = _setting_key(name)
        if key is None:
            return Done(status="failure", answer=f"there is no setting called {name!r} in the sample app")
        if state["settings"][key] == on:
            return Done(answer=f"{_SETTINGS[key]} is {'on' if on else 'off'}")
        return self._click(state, key, lambda s: s["settings"][key] == on)

    def _search(self, state: State, text: str) -> Action:
        step = self._fill_field(state, "search", text)
        if step is not None:
            return step
        found = state["visible_items"]
        return Done(answer=f"the list shows {', '.join(found)}" if found else "the list is empty")

    def _open_item(self, state: State, name: str) -> Action:
        opened = state["opened"]
        if opened is not None and opened.casefold() == name.casefold():
            return Done(answer=f"{opened} is open")
        visible: list[str] = state["visible_items"]
        item = next((i for i in visible if i.casefold() == name.casefold()), None)
        if item is None:
            if state["search"]:  # the search may hide it: show the whole list and look again
                return self._clear(state, "search", lambda s: s["search"] == "")
            return Done(status="failure", answer=f"there is no item called {name!r} in the shopping list")
        point = self._row_point(state, item)
        if point is not None:
            self._expect = lambda s: s["opened"] == item
            return Click(x=point[0], y=point[1], clicks=2)
        top = state["list_top"]
        self._expect = lambda s: s["list_top"] != top
        x, y = self._widget_point(state, "items")
        return Scroll(direction="down" if visible.index(item) > top else "up", x=x, y=y)

    # ------------------------------------------------------------------ Querier

    def rules(self) -> list[Rule]:
        return [
            self._signed_in_rule,
            self._error_rule,
            self._setting_rule,
            self._volume_rule,
            self._field_rule,
            self._item_rule,
            self._text_rule,
        ]

    def _holds(self, *checks: Check) -> bool:
        """Whether every check passes on the app's state file (as scenario checks are judged)."""
        results = judge(checks, DesktopState(self.state_file))
        unknown = next((r for r in results if r.status == "unknown"), None)
        if unknown is not None:
            raise DeviceError(f"cannot judge {unknown.check.describe()}: {unknown.detail}")
        return all(r.passed for r in results)

    def _signed_in_rule(self, s: str, raw: str) -> tuple[bool, str] | None:
        pattern = (
            r"(?:(?:the user|someone|somebody|i|you|(.+?)) (?:is|am|are) )?(not )?(?:signed|logged) in(?: as (.+))?"
        )
        if re.fullmatch(pattern, s) is None:
            return None
        m = re.fullmatch(pattern, " ".join(raw.strip().rstrip(".!").split()), re.IGNORECASE)
        assert m is not None  # the same pattern, on the statement as written
        state = self.state()
        user = state["user"]
        wanted = m[3] or m[1]
        checks: list[Check] = [StateCheck(state="logged_in", value=True)]
        if wanted is not None:
            checks.append(StateCheck(state="user", value=wanted.strip("\"'“”‘’")))
        reason = f"signed in as {user!r}" if state["logged_in"] else f"not signed in; the app says {state['status']!r}"
        return self._holds(*checks) != bool(m[2]), reason

    def _error_rule(self, s: str, raw: str) -> tuple[bool, str] | None:
        m = re.fullmatch(
            r"(?:an? |the )?(?:sign[- ]in |log[- ]?in )?error(?: message)? is (not )?(?:shown|visible|displayed)", s
        )
        if m is None:
            return None
        no_error = self._holds(StateCheck(state="login_error", value=None))
        return no_error == bool(m[1]), f"the app says {self.state()['status']!r}"

    def _setting_rule(self, s: str, raw: str) -> tuple[bool, str] | None:
        m = re.fullmatch(
            r"(.+?) is (not )?(?:turned |switched )?(on|off|enabled|disabled|checked|unchecked|ticked|unticked)", s
        )
        key = _setting_key(m[1]) if m else None
        if m is None or key is None:
            return None
        want_on = (m[3] in _ON) != bool(m[2])
        verdict = self._holds(StateCheck(state=f"settings.{key}", value=want_on))
        is_on = bool(self.state()["settings"][key])
        return verdict, f"{_SETTINGS[key]} is {'on' if is_on else 'off'}"

    def _volume_rule(self, s: str, raw: str) -> tuple[bool, str] | None:
        m = re.fullmatch(r"the volume is (not )?(?:set to |at )?(\d+)(?: ?%| percent)?", s)
        if m is None:
            return None
        verdict = self._holds(StateCheck(state="settings.volume", value=int(m[2])))
        return verdict != bool(m[1]), f"the volume is {int(self.state()['settings']['volume'])}"

    def _field_rule(self, s: str, raw: str) -> tuple[bool, str] | None:
        m = re.fullmatch(
            rf"(the (?:note|search|username)(?: field| box)?) (says|reads|shows|contains|is) {QUOTE}(.*){QUOTE}",
            raw.strip().rstrip(".!"),
            re.IGNORECASE,
        )
        empty = re.fullmatch(r"(the (?:note|search|username)(?: field| box)?) is (not )?empty", s)
        if m is None and empty is None:
            return None
        field = _field_of((m or empty)[1])  # type: ignore[index]
        if field is None:
            return None
        reason = f"the {_FIELDS[field]} field says {self.state()[field]!r}"
        if empty is not None:
            return self._holds(StateCheck(state=field, value="")) != bool(empty[2]), reason
        assert m is not None
        if m[2].casefold() == "contains":
            return self._holds(StateCheck(state=field, contains=m[3])), reason
        return self._holds(StateCheck(state=field, value=m[3])), reason

    def _item_rule(self, s: str, raw: str) -> tuple[bool, str] | None:
        text = raw.strip().rstrip(".!")
        listed = re.fullmatch(
            rf"{QUOTE}(.+){QUOTE} is (not )?(?:visible |shown |listed )?in the (?:shopping )?list", text, re.IGNORECASE
        ) or re.fullmatch(rf"the (?:shopping )?list (?:shows|contains) {QUOTE}(.+){QUOTE}()", text, re.IGNORECASE)
        if listed is not None:
            rows = [row[0] for row in self.state().get("rows", [])]
            seen = any(listed[1].casefold() == row.casefold() for row in rows)
            return seen != bool(listed[2]), f"the list shows {', '.join(rows) if rows else 'nothing'}"
        marked = re.fullmatch(
            rf"(?:the item )?{QUOTE}?(.+?){QUOTE}? is (not )?(open|opened|selected)", text, re.IGNORECASE
        )
        if marked is None:
            return None
        state = self.state()
        which = "opened" if marked[3].casefold().startswith("open") else "selected"
        current = state[which]
        if current is None and not any(marked[1].casefold() == i.casefold() for i in state["visible_items"]):
            return None  # "Dark mode is selected" and the like are not about list items
        verdict = (current or "").casefold() == marked[1].casefold()
        return verdict != bool(marked[2]), f"{current!r} is {which}" if current else f"no item is {which}"

    def _text_rule(self, s: str, raw: str) -> tuple[bool, str] | None:
        m = re.fullmatch(
            rf"(?:the )?(?:text |words? |label )?{QUOTE}(.+){QUOTE} is (not )?"
            r"(?:visible|shown|displayed|on (?:the )?screen)",
            raw.strip().rstrip(".!"),
            re.IGNORECASE,
        ) or re.fullmatch(
            rf"the (?:screen|window) (?:shows|contains|says) {QUOTE}(.+){QUOTE}()",
            raw.strip().rstrip(".!"),
            re.IGNORECASE,
        )
        if m is None:
            return None
        seen = any(m[1].casefold() in t.casefold() for t in self._texts(self.state()))
        return seen != bool(m[2]), f"'{m[1]}' is {'' if seen else 'not '}in the window"

    @staticmethod
    def _texts(state: State) -> list[str]:
        """Every text the window shows (the password only as dots)."""
        rows = [row[0] for row in state.get("rows", [])]
        fields = [state[f] for f in ("username", "note", "search") if state[f]]
        return [*_STATIC_TEXTS, state["status"], *fields, *rows]

    def find(self, label: str) -> tuple[int, int] | None:
        state = self.state()
        wanted = norm(label)
        widget = _WIDGET_LABELS.get(wanted) or (
            wanted.replace(" ", "_") if wanted.replace(" ", "_") in state["widgets"] else None
        )
        if widget is not None and widget in state["widgets"]:
            return self._widget_point(state, widget)
        item = next((row[0] for row in state.get("rows", []) if row[0].casefold() == wanted), None)
        return self._row_point(state, item) if item is not None else None

    def frame_size(self) -> tuple[int, int]:
        return self.driver.screen_size()

    def facts(self) -> dict[str, object]:
        """What ``query`` schemas can ask for, by field name."""
        state = self.state()
        settings = dict(state["settings"])
        facts: dict[str, object] = dict(settings)
        rows = [row[0] for row in state.get("rows", [])]
        facts.update(
            settings=settings,
            logged_in=state["logged_in"],
            signed_in=state["logged_in"],
            user=state["user"],
            username=state["username"],
            login_error=state["login_error"],
            login_attempts=state["login_attempts"],
            status=state["status"],
            note=state["note"],
            search=state["search"],
            visible_items=state["visible_items"],
            items=state["visible_items"],
            item_count=len(state["visible_items"]),
            rows=rows,
            selected=state["selected"],
            opened=state["opened"],
            focus=state["focus"],
            text_on_screen=self._texts(state),
            texts=self._texts(state),
        )
        return facts
