"""Checks: the one definition of "the task succeeded", judged from device state.

A check is a frozen pydantic model; the union :data:`Check` is told apart by the one key
that names its kind, so scenario files stay short (``{toggle: wifi}``, ``{text: Saved,
value: false}``, ``{element: Wi-Fi, checked: true}``). Each check judges itself against a
:class:`~vlagent.tasks.state.DeviceState` and returns a :class:`CheckResult` that says what
it saw and where (``source``). A fact the device cannot give makes the result ``unknown``
(not passed, and reported as such), never a guess.

Built-in tasks, scenario ``success:`` lists, the test oracles' statements and the
scenario generator all use these classes. This module must not import drivers.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, model_validator

from vlagent.tasks.state import DeviceState, JsonValue, Source, StateUnavailable
from vlagent.tasks.uitree import UiDumpError, UiNode, UiTree

__all__ = [
    "CHECK_KINDS",
    "AppCheck",
    "Check",
    "CheckResult",
    "ContactCheck",
    "ElementCheck",
    "FieldCheck",
    "NoteCheck",
    "ScreenCheck",
    "SettingCheck",
    "StateCheck",
    "TextCheck",
    "ToggleCheck",
    "WindowCheck",
    "check_data",
    "judge",
    "parse_check",
]

Status = Literal["passed", "failed", "unknown"]


@dataclass(frozen=True)
class CheckResult:
    """The verdict on one check: ``status``, what was seen (``detail``) and where (``source``)."""

    check: Check
    status: Status
    detail: str = ""
    source: Source | None = None

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def describe(self) -> str:
        where = f" [{self.source}]" if self.source else ""
        return f"{self.status.upper()}: {self.check.describe()} -- {self.detail}{where}"


class _Check(BaseModel, ABC):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @property
    @abstractmethod
    def check_kind(self) -> str: ...

    @abstractmethod
    def describe(self) -> str:
        """The condition in words ("toggle wifi is on")."""

    @abstractmethod
    def _evaluate(self, state: DeviceState) -> tuple[bool, str, Source]: ...

    def evaluate(self, state: DeviceState) -> CheckResult:
        """Judge this check on ``state``; a fact the device cannot give makes the result ``unknown``."""
        try:
            ok, detail, source = self._evaluate(state)
        except (StateUnavailable, UiDumpError) as exc:
            return CheckResult(self, "unknown", f"cannot be judged on this {state.kind} device: {exc}")  # type: ignore[arg-type]  # every subclass is in the Check union
        return CheckResult(self, "passed" if ok else "failed", detail, source)  # type: ignore[arg-type]


def _expect(value: bool) -> str:
    return "" if value else "not "


class ToggleCheck(_Check):
    """A switch of the phone (``wifi``, ``bluetooth``, ``dark_mode``...; see ``vlagent.tasks.settings``)."""

    toggle: str = Field(min_length=1)
    value: bool = True

    @property
    def check_kind(self) -> str:
        return "toggle"

    def describe(self) -> str:
        return f"toggle {self.toggle} is {'on' if self.value else 'off'}"

    def _evaluate(self, state: DeviceState) -> tuple[bool, str, Source]:
        seen = state.toggle(self.toggle)
        detail = f"is {'on' if seen.value else 'off'}" + (f" ({seen.detail})" if seen.detail else "")
        return seen.value == self.value, detail, seen.source


class SettingCheck(_Check):
    """A raw Android setting: ``setting: "global wifi_on"`` and the expected ``value`` (None: not set)."""

    setting: str = Field(pattern=r"^(global|secure|system)[ /][A-Za-z0-9_.]+$")
    value: str | None

    @property
    def check_kind(self) -> str:
        return "setting"

    @property
    def namespace_key(self) -> tuple[str, str]:
        namespace, key = re.split(r"[ /]", self.setting, maxsplit=1)
        return namespace, key

    def describe(self) -> str:
        return f"setting {self.setting} is {self.value if self.value is not None else 'unset'}"

    def _evaluate(self, state: DeviceState) -> tuple[bool, str, Source]:
        seen = state.setting(*self.namespace_key)
        return seen.value == self.value, f"is {seen.value if seen.value is not None else 'null'}", seen.source


class AppCheck(_Check):
    """The app in front, by package (or a part of it) or label."""

    app: str = Field(min_length=1)

    @property
    def check_kind(self) -> str:
        return "app"

    def describe(self) -> str:
        return f"app {self.app} is in front"

    def _evaluate(self, state: DeviceState) -> tuple[bool, str, Source]:
        seen = state.foreground()
        front = seen.value
        wanted = self.app.casefold()
        names = {front.package.casefold(), front.label.casefold(), front.package.rsplit(".", 1)[-1].casefold()}
        ok = wanted in names or (("." in wanted) and wanted == front.package.casefold())
        shown = front.package + (f"/{front.activity}" if front.activity else "")
        return ok, f"in front: {shown}", seen.source


class ScreenCheck(_Check):
    """The simulated phone's screen (home, settings, notes, note_editor...)."""

    screen: str = Field(min_length=1)

    @property
    def check_kind(self) -> str:
        return "screen"

    def describe(self) -> str:
        return f"screen is {self.screen}"

    def _evaluate(self, state: DeviceState) -> tuple[bool, str, Source]:
        seen = state.screen()
        return seen.value == self.screen, f"screen: {seen.value}", seen.source


class TextCheck(_Check):
    """TEXT is (``value: true``) or is not (``value: false``) visible: part of a text or description on screen."""

    text: str = Field(min_length=1)
    value: bool = True

    @property
    def check_kind(self) -> str:
        return "text"

    def describe(self) -> str:
        return f"{self.text!r} is {_expect(self.value)}on screen"

    def _evaluate(self, state: DeviceState) -> tuple[bool, str, Source]:
        seen = state.ui_tree()
        hits = [t for t in seen.value.texts() if self.text in t]
        detail = f"seen in {hits[0]!r}" if hits else f"not among {len(seen.value.texts())} texts on screen"
        return bool(hits) == self.value, detail, seen.source


_ElementProp = Literal["checked", "selected", "enabled", "focused"]


class ElementCheck(_Check):
    """A UI element found by resource-id, text or content-desc, and its state.

    ``value: false`` asks that no such element is on screen. ``checked`` is read from the
    element itself or, for a label, from the switch of its row.
    """

    element: str = Field(min_length=1)
    value: bool = True
    checked: bool | None = None
    selected: bool | None = None
    enabled: bool | None = None
    focused: bool | None = None

    @model_validator(mode="after")
    def _absent_has_no_state(self) -> ElementCheck:
        if not self.value and self._wanted():
            raise ValueError("an element check with value: false (absent) takes no checked/selected/enabled/focused")
        return self

    def _wanted(self) -> dict[_ElementProp, bool]:
        props: tuple[_ElementProp, ...] = ("checked", "selected", "enabled", "focused")
        return {p: v for p in props if (v := getattr(self, p)) is not None}

    @property
    def check_kind(self) -> str:
        return "element"

    def describe(self) -> str:
        if not self.value:
            return f"element {self.element!r} is not on screen"
        props = ", ".join(f"{k}={str(v).lower()}" for k, v in self._wanted().items())
        return f"element {self.element!r} is on screen" + (f" with {props}" if props else "")

    def _evaluate(self, state: DeviceState) -> tuple[bool, str, Source]:
        seen = state.ui_tree()
        tree = seen.value
        nodes = tree.find(self.element)
        if not nodes:
            return not self.value, f"no element {self.element!r} on screen", seen.source
        if not self.value:
            return False, f"found {nodes[0].describe()}", seen.source
        wanted = self._wanted()
        for node in nodes:
            carrier = tree.switch_for(node) if "checked" in wanted else node
            values = {p: getattr(carrier if p == "checked" else node, p) for p in wanted}
            if values == wanted:
                return True, _node_state(carrier, values), seen.source
        first = nodes[0]
        carrier = tree.switch_for(first) if "checked" in wanted else first
        values = {p: getattr(carrier if p == "checked" else first, p) for p in wanted}
        return False, _node_state(carrier, values), seen.source


def _node_state(node: UiNode, values: Mapping[_ElementProp, bool]) -> str:
    props = ", ".join(f"{k}={str(v).lower()}" for k, v in values.items())
    return f"{node.describe()}" + (f": {props}" if props else "")


class FieldCheck(_Check):
    """A text field's content: ``field`` is its resource-id, hint, text or ``focused`` (the field with focus)."""

    field: str = Field(min_length=1)
    equals: str | None = None
    contains: str | None = None

    @model_validator(mode="after")
    def _one_condition(self) -> FieldCheck:
        if (self.equals is None) == (self.contains is None):
            raise ValueError("a field check needs exactly one of equals, contains")
        return self

    @property
    def check_kind(self) -> str:
        return "field"

    def describe(self) -> str:
        cond = f"is {self.equals!r}" if self.equals is not None else f"contains {self.contains!r}"
        return f"field {self.field} {cond}"

    def _evaluate(self, state: DeviceState) -> tuple[bool, str, Source]:
        seen = state.ui_tree()
        node = _find_field(seen.value, self.field)
        if node is None:
            return False, f"no text field {self.field!r} on screen", seen.source
        text = node.field_text()
        ok = text == self.equals if self.equals is not None else (self.contains or "") in text
        shown = "(a password field)" if node.password and text and set(text) <= {"•", "*", "●"} else repr(text)
        return ok, f"{node.describe()} holds {shown}", seen.source


def _find_field(tree: UiTree, selector: str) -> UiNode | None:
    if selector == "focused":
        return tree.focused()
    fields = [n for n in tree.nodes if n.is_text_field]
    for node in fields:
        if node.matches(selector) or (node.hint and node.hint == selector):
            return node
    return None


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


class ContactCheck(_Check):
    """A saved contact named ``contact`` (with ``phone``, compared by digits); ``value: false``: none."""

    contact: str = Field(min_length=1)
    phone: str | None = None
    value: bool = True

    @property
    def check_kind(self) -> str:
        return "contact"

    def describe(self) -> str:
        with_phone = f" with phone {self.phone!r}" if self.phone else ""
        return f"contact {self.contact!r}{with_phone} {'exists' if self.value else 'does not exist'}"

    def _evaluate(self, state: DeviceState) -> tuple[bool, str, Source]:
        seen = state.contacts()
        found = any(
            c.name == self.contact and (self.phone is None or _digits(c.phone) == _digits(self.phone))
            for c in seen.value
        )
        names = ", ".join(c.name for c in seen.value[:8]) or "none"
        return found == self.value, f"{len(seen.value)} contacts: {names}", seen.source


class NoteCheck(_Check):
    """A saved note whose text is exactly ``note`` (the sim Notes app); ``partial: true``: a note
    holding ``note`` somewhere in its text; ``value: false``: no such note."""

    note: str = Field(min_length=1)
    value: bool = True
    partial: bool = False

    @property
    def check_kind(self) -> str:
        return "note"

    def describe(self) -> str:
        containing = "containing " if self.partial else ""
        return f"note {containing}{self.note!r} {'exists' if self.value else 'does not exist'}"

    def _evaluate(self, state: DeviceState) -> tuple[bool, str, Source]:
        seen = state.notes()
        found = any(self.note in n for n in seen.value) if self.partial else self.note in seen.value
        return found == self.value, f"{len(seen.value)} notes", seen.source


class StateCheck(_Check):
    """A key of the desktop app's state file (dotted path) equal to ``value`` or containing ``contains``."""

    state: str = Field(min_length=1)
    value: JsonValue = True
    contains: str | None = None

    @property
    def check_kind(self) -> str:
        return "state"

    def describe(self) -> str:
        cond = f"contains {self.contains!r}" if self.contains is not None else f"== {self.value!r}"
        return f"state {self.state} {cond}"

    def _evaluate(self, state: DeviceState) -> tuple[bool, str, Source]:
        seen = state.app_state()
        present, value = _dotted(seen.value, self.state)
        if not present:
            return False, f"no key {self.state!r} in the app state", seen.source
        if self.contains is not None:
            return self.contains in str(value), f"value {value!r}", seen.source
        return value == self.value, f"value {value!r}", seen.source


def _dotted(data: object, key: str) -> tuple[bool, object]:
    for part in key.split("."):
        if isinstance(data, Mapping) and part in data:
            data = data[part]
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return False, None
    return True, data


class WindowCheck(_Check):
    """The focused window's title contains ``window`` (``exact: true``: equals it)."""

    window: str = Field(min_length=1)
    exact: bool = False

    @property
    def check_kind(self) -> str:
        return "window"

    def describe(self) -> str:
        return f"the focused window's title {'is' if self.exact else 'contains'} {self.window!r}"

    def _evaluate(self, state: DeviceState) -> tuple[bool, str, Source]:
        seen = state.window_title()
        ok = seen.value == self.window if self.exact else self.window in seen.value
        return ok, f"title {seen.value!r}", seen.source


_CLASSES: dict[str, type[_Check]] = {
    "toggle": ToggleCheck,
    "setting": SettingCheck,
    "app": AppCheck,
    "screen": ScreenCheck,
    "text": TextCheck,
    "element": ElementCheck,
    "field": FieldCheck,
    "contact": ContactCheck,
    "note": NoteCheck,
    "state": StateCheck,
    "window": WindowCheck,
}
#: The key that names each kind of check, in the order they are looked for.
CHECK_KINDS: tuple[str, ...] = tuple(_CLASSES)


def _kind_of(data: object) -> str | None:
    if isinstance(data, _Check):
        return data.check_kind
    if isinstance(data, Mapping):
        kinds = [k for k in CHECK_KINDS if k in data]
        return kinds[0] if len(kinds) == 1 else None
    return None


Check = Annotated[
    Annotated[ToggleCheck, Tag("toggle")]
    | Annotated[SettingCheck, Tag("setting")]
    | Annotated[AppCheck, Tag("app")]
    | Annotated[ScreenCheck, Tag("screen")]
    | Annotated[TextCheck, Tag("text")]
    | Annotated[ElementCheck, Tag("element")]
    | Annotated[FieldCheck, Tag("field")]
    | Annotated[ContactCheck, Tag("contact")]
    | Annotated[NoteCheck, Tag("note")]
    | Annotated[StateCheck, Tag("state")]
    | Annotated[WindowCheck, Tag("window")],
    Discriminator(
        _kind_of,
        custom_error_type="check_kind",
        custom_error_message="a check needs exactly one of the keys " + ", ".join(CHECK_KINDS),
    ),
]
"""One success condition (a discriminated union: the key naming the kind tells them apart)."""

_ADAPTER: TypeAdapter[Check] = TypeAdapter(Check)


def parse_check(data: Mapping[str, object] | Check) -> Check:
    """A check from its mapping form (``{"toggle": "wifi"}``); pydantic's ValidationError when invalid."""
    return _ADAPTER.validate_python(data)


def check_data(check: Check) -> dict[str, JsonValue]:
    """The short mapping form of ``check`` (defaults left out, the kind key first), for YAML and JSON."""
    data: dict[str, JsonValue] = check.model_dump(mode="json", exclude_defaults=True)
    kind = check.check_kind
    ordered: dict[str, JsonValue] = {kind: data.pop(kind, getattr(check, kind))}
    if isinstance(check, ToggleCheck) or (isinstance(check, StateCheck) and check.contains is None):
        ordered["value"] = data.pop("value", check.value)  # spelled out: "value: true" reads better than nothing
    if isinstance(check, SettingCheck):
        ordered["value"] = check.value
        data.pop("value", None)
    ordered.update(data)
    return ordered


def judge(checks: Sequence[Check], state: DeviceState) -> list[CheckResult]:
    """Every check judged on one look at the device (``state`` caches what it read)."""
    return [check.evaluate(state) for check in checks]
