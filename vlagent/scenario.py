"""Scenario files: a task, the device it runs on, how success is judged, and optional gold steps.

A scenario is a YAML file (see ``scenarios/`` for examples)::

    name: wifi-on
    task: Turn on Wi-Fi.
    device: {kind: sim, options: {seed: 0}}
    max_steps: 8
    success:
      - {toggle: wifi, value: true}
    gold:
      - action: {action: click, x: 135, y: 840}
        target: Settings
        box: [10, 700, 260, 980]
        fingerprint: 3c3c...

Success is judged on device state after the episode (never on the model's ``done``): the
simulated phone's queries (toggles, notes, contacts, foreground app, screen, text on
screen) or keys of the sample desktop app's state file. Gold steps give step-level scores
and let ``replay`` re-execute the scenario. Validation errors name the file, line and field.

This module parses, validates and judges; it must not run episodes (see ``evaluate``) and
must not import the simulated phone or the desktop stack until a device is opened.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from vlagent.actions import Action
from vlagent.apps.launcher import SAMPLE_DESKTOP
from vlagent.drivers.base import Driver
from vlagent.errors import ConfigError

__all__ = [
    "Check",
    "CheckResult",
    "DeviceSpec",
    "GoldStep",
    "Scenario",
    "ScenarioDevice",
    "ScenarioError",
    "judge",
    "load_scenario",
    "load_scenarios",
    "open_scenario_device",
    "scenario_to_yaml",
]

log = logging.getLogger(__name__)


class ScenarioError(ConfigError):
    """A scenario file is invalid; the message names the file, line and field."""

    def __init__(self, path: Path | str, line: int | None, field: str, message: str) -> None:
        self.path, self.line, self.field = Path(path), line, field
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {field}: {message}" if field else f"{where}: {message}")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DeviceSpec(_Model):
    """Where the scenario runs: ``sim`` (options go to SimPhone), ``sample_desktop``, or any driver spec."""

    kind: str = "sim"
    options: dict[str, Any] = Field(default_factory=dict)
    state: dict[str, Any] = Field(default_factory=dict)
    """Initial state of the simulated phone: ``toggles``, ``notes``, ``contacts`` ({name, phone})."""


CheckKind = Literal["toggle", "note", "contact", "app", "screen", "text", "state"]
_CHECK_KINDS: tuple[CheckKind, ...] = ("toggle", "note", "contact", "app", "screen", "text", "state")


class Check(_Model):
    """One success condition; exactly one of the kind fields is set.

    - ``toggle: KEY`` + ``value`` (default true): a Settings switch of the simulated phone.
    - ``note: TEXT``: a saved note equal to TEXT.  ``contact: NAME`` (+ ``phone``): a saved contact.
    - ``app: PACKAGE_OR_LABEL``: the app in front.  ``screen: NAME``: the phone's screen.
    - ``text: TEXT``: TEXT is visible on screen (part of a visible string).
    - ``state: dotted.key`` + ``value`` or ``contains``: a key of the desktop app's state file.

    ``value: false`` on a ``note``, ``contact`` or ``text`` check asks for the opposite: no
    such note, no such contact, TEXT not on screen (e.g. after deleting something).
    """

    toggle: str | None = None
    note: str | None = None
    contact: str | None = None
    phone: str | None = None
    app: str | None = None
    screen: str | None = None
    text: str | None = None
    state: str | None = None
    value: Any = True
    contains: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Check:
        kinds = [k for k in _CHECK_KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"a check needs exactly one of {', '.join(_CHECK_KINDS)}; got {kinds or 'none'}")
        if kinds[0] in ("note", "contact", "text") and not isinstance(self.value, bool):
            raise ValueError(f"value of a {kinds[0]} check is true (present) or false (absent), got {self.value!r}")
        if kinds[0] in ("app", "screen") and self.value is not True:
            raise ValueError(f"{kinds[0]!r} checks take no value")
        return self

    @property
    def kind(self) -> CheckKind:
        return next(k for k in _CHECK_KINDS if getattr(self, k) is not None)

    def describe(self) -> str:
        kind = self.kind
        subject = getattr(self, kind)
        if kind == "toggle":
            return f"toggle {subject} is {'on' if self.value else 'off'}"
        if kind == "contact":
            exists = "exists" if self.value is not False else "does not exist"
            return f"contact {subject!r}" + (f" with phone {self.phone!r}" if self.phone else "") + f" {exists}"
        if self.value is False and kind in ("note", "text"):
            return {"note": "no note {!r}", "text": "{!r} is not on screen"}[kind].format(subject)
        if kind == "state":
            return f"state {subject} " + (
                f"contains {self.contains!r}" if self.contains is not None else f"== {self.value!r}"
            )
        return {
            "note": "note {!r} exists",
            "app": "app {} is in front",
            "screen": "screen is {}",
            "text": "{!r} is on screen",
        }[kind].format(subject)


class GoldStep(_Model):
    """A reference step: the action (device pixels) and what it aims at."""

    action: Action
    thought: str | None = None
    target: str | None = None
    """Label of the element acted on (used for healing and in reports)."""
    box: tuple[int, int, int, int] | None = None
    """Pixel box ``(x0, y0, x1, y1)`` of the target element, for box-based scoring."""
    fingerprint: str | None = None
    """Hash of the screen around the target when the step was recorded (see ``vlagent.replay``)."""


class Scenario(_Model):
    """A validated scenario file."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    task: str = Field(min_length=1)
    device: DeviceSpec = Field(default_factory=DeviceSpec)
    setup: list[Action] = Field(default_factory=list)
    max_steps: int = Field(default=20, ge=1, le=500)
    success: list[Check] = Field(min_length=1)
    gold: list[GoldStep] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    frames: str | None = None
    """Directory (relative to the file) holding the recorded frames of the gold steps."""
    source: str | None = Field(default=None, exclude=True)
    """The file this scenario was read from (set by the loader)."""

    @property
    def frames_dir(self) -> Path | None:
        if self.frames is None or self.source is None:
            return None
        return Path(self.source).parent / self.frames


# --- loading with line numbers -----------------------------------------------------------


def _construct(node: yaml.Node, path: tuple[str | int, ...], lines: dict[tuple[str | int, ...], int]) -> Any:
    """Plain data from a YAML node, remembering the line of every path on the way."""
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = yaml.safe_load(yaml.serialize(key_node))
            out[key] = _construct(value_node, (*path, key), lines)
            lines[(*path, key)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, (*path, i), lines) for i, item in enumerate(node.value)]
    return yaml.safe_load(yaml.serialize(node))


def _line_for(loc: Sequence[str | int], lines: dict[tuple[str | int, ...], int]) -> int | None:
    # pydantic inserts union tags (e.g. 'click') into the location; skip parts that are no key.
    path: tuple[str | int, ...] = ()
    best = lines.get(())
    for part in loc:
        candidate = (*path, part)
        if candidate in lines:
            path = candidate
            best = lines[path]
    return best


def _parse(text: str, path: Path) -> Scenario:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ScenarioError(path, mark.line + 1 if mark else None, "", f"not valid YAML: {exc}") from exc
    if root is None:
        raise ScenarioError(path, None, "", "the file is empty")
    lines: dict[tuple[str | int, ...], int] = {}
    data = _construct(root, (), lines)
    if not isinstance(data, dict):
        raise ScenarioError(path, lines.get(()), "", "a scenario is a mapping (task:, device:, success:, ...)")
    data.setdefault("name", path.stem)
    data["source"] = str(path)
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [p for p in first["loc"] if isinstance(p, (str, int))]
        field_name = ".".join(str(p) for p in loc)
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ScenarioError(path, _line_for(loc, lines), field_name, first["msg"] + more) from exc


def load_scenario(path: Path | str) -> Scenario:
    """Read and validate one scenario file; ScenarioError names the file, line and field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(path, None, "", f"cannot read: {exc.strerror}") from exc
    return _parse(text, path)


def load_scenarios(paths: Iterable[Path | str]) -> list[Scenario]:
    """Scenario files and directories (their ``*.yaml``/``*.yml``, sorted) -> scenarios; names must be unique."""
    found: list[Scenario] = []
    for item in paths:
        item = Path(item)
        if item.is_dir():
            files = sorted(p for p in item.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
            if not files:
                raise ConfigError(f"{item}: no scenario files (*.yaml) in this directory")
            found.extend(load_scenario(p) for p in files)
        else:
            found.append(load_scenario(item))
    seen: dict[str, str | None] = {}
    for scenario in found:
        if scenario.name in seen:
            raise ConfigError(f"two scenarios are named {scenario.name!r}: {seen[scenario.name]} and {scenario.source}")
        seen[scenario.name] = scenario.source
    return found


def _action_data(action: Action) -> dict[str, Any]:
    data = action.model_dump(mode="json", exclude_defaults=True)
    return {"action": action.action, **data}


def _check_data(check: Check) -> dict[str, Any]:
    data = check.model_dump(mode="json", exclude_none=True)
    if (check.kind not in ("toggle", "state") and check.value is True) or check.contains is not None:
        data.pop("value", None)
    return data


def scenario_to_yaml(scenario: Scenario) -> str:
    """YAML text of ``scenario``: defaults left out, actions and boxes on one line each."""
    data: dict[str, Any] = {"name": scenario.name, "task": scenario.task}
    device = scenario.device.model_dump(mode="json", exclude_defaults=True)
    data["device"] = {"kind": scenario.device.kind, **device}
    if scenario.setup:
        data["setup"] = [_action_data(a) for a in scenario.setup]
    data["max_steps"] = scenario.max_steps
    data["success"] = [_check_data(c) for c in scenario.success]
    if scenario.gold:
        data["gold"] = [
            {"action": _action_data(g.action), **g.model_dump(mode="json", exclude_none=True, exclude={"action"})}
            for g in scenario.gold
        ]
    if scenario.tags:
        data["tags"] = list(scenario.tags)
    if scenario.frames:
        data["frames"] = scenario.frames
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120, default_flow_style=None)


# --- judging -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckResult:
    check: Check
    passed: bool
    detail: str = ""


def _dotted(data: Any, key: str) -> tuple[bool, Any]:
    for part in key.split("."):
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return False, None
    return True, data


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def _judge_one(check: Check, phone: Any | None, app_state: dict[str, Any] | None) -> CheckResult:
    kind = check.kind
    if kind == "state":
        if app_state is None:
            return CheckResult(check, False, "this device has no app state file")
        assert check.state is not None
        present, value = _dotted(app_state, check.state)
        if not present:
            return CheckResult(check, False, f"no key {check.state!r} in the app state")
        if check.contains is not None:
            return CheckResult(check, check.contains in str(value), f"value {value!r}")
        return CheckResult(check, value == check.value, f"value {value!r}")
    if phone is None:
        return CheckResult(check, False, f"'{kind}' checks need the simulated phone")
    if kind == "toggle":
        toggles = phone.toggles
        if check.toggle not in toggles:
            return CheckResult(check, False, f"no toggle {check.toggle!r}")
        return CheckResult(
            check, toggles[check.toggle] == bool(check.value), f"is {'on' if toggles[check.toggle] else 'off'}"
        )
    expect = check.value is not False  # note/contact/text: False asks for absence
    if kind == "note":
        notes = phone.notes
        return CheckResult(check, (check.note in notes) == expect, f"{len(notes)} notes")
    if kind == "contact":
        found = any(
            c.name == check.contact and (check.phone is None or _digits(c.phone) == _digits(check.phone))
            for c in phone.contacts
        )
        return CheckResult(check, found == expect, f"{len(phone.contacts)} contacts")
    if kind == "app":
        package = phone.current_app
        label = phone.packages().get(package, package)
        wanted = (check.app or "").casefold()
        return CheckResult(check, wanted in (package.casefold(), label.casefold()), f"in front: {package}")
    if kind == "screen":
        return CheckResult(check, phone.screen == check.screen, f"screen: {phone.screen}")
    texts = phone.text_on_screen()
    return CheckResult(check, any((check.text or "") in t for t in texts) == expect, "")


def judge(
    checks: Sequence[Check], *, phone: Any | None = None, app_state: dict[str, Any] | None = None
) -> list[CheckResult]:
    """Evaluate every check against the phone (SimPhone) or the desktop app's state."""
    return [_judge_one(check, phone, app_state) for check in checks]


# --- devices -----------------------------------------------------------------------------


@dataclass
class ScenarioDevice:
    """An opened device for one scenario: the driver plus what its checks read."""

    driver: Driver
    phone: Any | None = None
    state_path: Path | None = None
    _cleanup: list[Any] = field(default_factory=list)

    def app_state(self) -> dict[str, Any] | None:
        if self.state_path is None or not self.state_path.exists():
            return None
        return json.loads(self.state_path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]

    def judge(self, checks: Sequence[Check], *, settle_s: float | None = None) -> list[CheckResult]:
        """Judge ``checks`` now; an app writing a state file gets up to ``settle_s`` (default 3 s)
        to finish handling input already sent (typed text arrives after the driver returns)."""
        wait = (3.0 if self.state_path is not None else 0.0) if settle_s is None else settle_s
        deadline = time.monotonic() + wait
        while True:
            with contextlib.suppress(OSError, ValueError):
                results = judge(checks, phone=self.phone, app_state=self.app_state())
                if all(r.passed for r in results) or time.monotonic() >= deadline:
                    return results
            if time.monotonic() >= deadline:
                return judge(checks, phone=self.phone, app_state=None)
            time.sleep(0.05)


def _sim_device(spec: DeviceSpec) -> ScenarioDevice:
    from vlagent.drivers.sim import SimDriver

    try:
        driver = SimDriver(**spec.options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid options for the simulated phone: {exc}") from exc
    phone = driver.phone
    state = spec.state
    for key, value in dict(state.get("toggles", {})).items():
        phone.set_toggle(key, bool(value))
    for text in state.get("notes", []):
        phone.add_note(str(text))
    for contact in state.get("contacts", []):
        phone.add_contact(str(contact["name"]), str(contact["phone"]))
    unknown = set(state) - {"toggles", "notes", "contacts"}
    if unknown:
        raise ConfigError(f"unknown sim state keys {sorted(unknown)}; known: toggles, notes, contacts")
    return ScenarioDevice(driver, phone=phone)  # type: ignore[arg-type]  # BaseDriver.__enter__ is looser than Driver


def _desktop_device(spec: DeviceSpec, workdir: Path) -> ScenarioDevice:
    from vlagent.apps.launcher import SampleAppProcess
    from vlagent.drivers.registry import open_driver

    if not os.environ.get("DISPLAY"):
        raise ConfigError("desktop scenarios need an X display: set DISPLAY or run under xvfb-run")
    app = SampleAppProcess.start(workdir / "app_state.json", timeout=float(spec.options.get("start_timeout", 20)))
    try:
        options = {k: v for k, v in spec.options.items() if k != "start_timeout"}
        options.setdefault("region", (0, 0, 960, 560))
        driver = open_driver("desktop", **options)
    except BaseException:
        app.close()
        raise
    device = ScenarioDevice(driver, state_path=app.state_path)
    device._cleanup.append(app.proc)
    return device


@contextlib.contextmanager
def open_scenario_device(scenario: Scenario, workdir: Path) -> Iterator[ScenarioDevice]:
    """Open (and afterwards close) the device of ``scenario``, with its setup steps applied."""
    spec = scenario.device
    if spec.kind == "sim":
        device = _sim_device(spec)
    elif spec.kind == SAMPLE_DESKTOP:
        device = _desktop_device(spec, workdir)
    else:
        from vlagent.drivers.registry import open_driver

        device = ScenarioDevice(open_driver(spec.kind, **spec.options))
    try:
        for action in scenario.setup:
            device.driver.execute(action)
        yield device
    finally:
        device.driver.close()
        for proc in device._cleanup:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
