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

Success is judged on device state after the episode (never on the model's ``done``): each
``success:`` item is a :data:`vlagent.tasks.Check` (toggle, setting, app, screen, text,
element, field, contact, note, state, window), judged through the device's
:class:`~vlagent.tasks.DeviceState` (the simulated phone's objects, an adb phone's settings
and view hierarchy, the desktop app's state file and window title). ``device: state:``
gives the start relative to a fresh simulated phone; :meth:`Scenario.start_state` spells
it out so that any phone (``--device adb:SERIAL``) is brought to the same start. Gold steps
give step-level scores and let ``replay`` re-execute the scenario. Validation errors name
the file, line and field.

This module parses, validates and judges; it must not run episodes (see ``evaluate``) and
must not import the simulated phone or the desktop stack until a device is opened.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from vlagent.actions import Action, describe_action
from vlagent.apps.launcher import SAMPLE_DESKTOP
from vlagent.coords import points_off_screen
from vlagent.drivers.base import Driver
from vlagent.errors import ConfigError, DeviceError
from vlagent.tasks import (
    Check,
    CheckResult,
    ContactCheck,
    ContactSpec,
    DeviceState,
    NoteCheck,
    StartState,
    StatePreparer,
    StateReader,
    StateUnavailable,
    ToggleCheck,
    check_data,
    judge,
)
from vlagent.tasks.state import capture_start, changes_back
from vlagent.tasks.uitree import NodeRef

__all__ = [
    "DeviceSpec",
    "GoldStep",
    "PhoneState",
    "Scenario",
    "ScenarioDevice",
    "ScenarioError",
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


class PhoneState(_Model):
    """A phone scenario's start, relative to a fresh simulated phone: these toggles set, these
    notes and contacts added to the ones it ships with (see :meth:`Scenario.start_state`)."""

    toggles: dict[str, bool] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    contacts: list[ContactSpec] = Field(default_factory=list)


class DeviceSpec(_Model):
    """Where the scenario runs: ``sim`` (options go to SimPhone), ``sample_desktop``, or any driver spec."""

    kind: str = "sim"
    options: dict[str, Any] = Field(default_factory=dict)
    state: PhoneState = Field(default_factory=PhoneState)
    """Start of a phone: ``toggles``, ``notes``, ``contacts`` ({name, phone}) on top of the sim defaults."""

    @property
    def screen_size(self) -> tuple[int, int] | None:
        """The screen's (width, height) in device pixels where the file fixes it (the simulated phone)."""
        if self.kind.split(":", 1)[0] != "sim":
            return None
        width, height = self.options.get("width", 1080), self.options.get("height", 2400)
        return (width, height) if isinstance(width, int) and isinstance(height, int) else None

    @property
    def is_phone(self) -> bool:
        """True for a phone (sim, adb...), which ``--device`` may replace; False for a desktop."""
        return self.kind.split(":", 1)[0] not in (SAMPLE_DESKTOP, "desktop")


class GoldStep(_Model):
    """A reference step: the action (device pixels) and what it aims at."""

    action: Action
    thought: str | None = None
    target: str | None = None
    """Label of the element acted on (used for healing and in reports)."""
    box: tuple[int, int, int, int] | None = None
    """Pixel box ``(x0, y0, x1, y1)`` of the target element, for box-based scoring."""
    annotations: list[tuple[int, int, int, int]] | None = Field(default=None, max_length=2000)
    """Pixel boxes of every labelled element on the screen the step was taken on, as AITW
    annotates a screen: the ``aitw`` rule judges a tap by all of them (a tap on a neighbour
    is wrong even when near), where ``box`` alone would let a near miss count."""
    fingerprint: str | None = None
    """Hash of the screen around the target when the step was recorded (see ``vlagent.replay``)."""
    node: NodeRef | None = None
    """The UI element aimed at (resource-id, text, description), when the device had a view hierarchy:
    replay finds a moved target by it before asking a model."""


class Scenario(_Model):
    """A validated scenario file."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]*[A-Za-z0-9][A-Za-z0-9_.-]*$")
    """Letters, digits, ``_ . -`` with at least one letter or digit: it names a run directory."""
    task: str = Field(min_length=1, max_length=10_000)
    device: DeviceSpec = Field(default_factory=DeviceSpec)
    setup: list[Action] = Field(default_factory=list)
    max_steps: int = Field(default=20, ge=1, le=500)
    success: list[Check] = Field(min_length=1)
    gold: list[GoldStep] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    frames: str | None = None
    """Directory (relative to the file) holding the recorded frames of the gold steps."""
    secrets: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]] = Field(
        default_factory=list, max_length=32
    )
    """Names of secrets the task types as ``{{NAME}}``; each value is read from the environment
    variable of that name when the scenario runs, never from the file."""
    source: str | None = Field(default=None, exclude=True)
    """The file this scenario was read from (set by the loader)."""

    @model_validator(mode="after")
    def _points_on_screen(self) -> Scenario:
        """Where the screen's size is known (the simulated phone), no step may point off it."""
        size = self.device.screen_size
        if size is None:
            return self
        steps = [("setup step", a) for a in self.setup] + [("gold step", g.action) for g in self.gold]
        numbers: dict[str, int] = {}
        for kind, action in steps:
            numbers[kind] = numbers.get(kind, 0) + 1
            off = points_off_screen(action, *size)
            if off:
                where = ", ".join(f"({x}, {y})" for x, y in off)
                raise ValueError(
                    f"{kind} {numbers[kind]} ({describe_action(action)}): {where} is off the "
                    f"{size[0]}x{size[1]} screen of the simulated phone"
                )
        return self

    @property
    def frames_dir(self) -> Path | None:
        if self.frames is None or self.source is None:
            return None
        return Path(self.source).parent / self.frames

    def start_state(self) -> StartState:
        """Where the scenario starts, spelled out so that any phone can be brought there.

        The file's ``device: state:`` is relative to a fresh simulated phone; this is the full
        start: its toggles, plus the fresh phone's value of every toggle a success check names;
        the fresh phone's notes (contacts) plus the given ones when the checks or the state
        involve notes (contacts); from the home screen.
        """
        from vlagent.drivers.sim.world import SimPhone  # the defaults the file's state is relative to

        fresh = SimPhone()
        given = self.device.state
        defaults = fresh.toggles
        toggles = {
            c.toggle: defaults[c.toggle] for c in self.success if isinstance(c, ToggleCheck) and c.toggle in defaults
        }
        toggles.update(given.toggles)
        notes = None
        if given.notes or any(isinstance(c, NoteCheck) for c in self.success):
            notes = [*fresh.notes, *given.notes]
        contacts = None
        if given.contacts or any(isinstance(c, ContactCheck) for c in self.success):
            contacts = [*(ContactSpec(name=c.name, phone=c.phone) for c in fresh.contacts), *given.contacts]
        return StartState(toggles=toggles, notes=notes, contacts=contacts, home=True)


# --- loading with line numbers -----------------------------------------------------------


#: Values a scenario file may expand to, aliases included: a real one has a few hundred; an
#: alias bomb (each level repeating the one before) would have billions.
_MAX_VALUES = 10_000
_MAX_FILE_BYTES = 4 * 1024 * 1024
"""Recorded scenarios with fingerprints run to tens of kilobytes; megabytes are not a scenario."""
_MAX_DEPTH = 50


class _BadShape(ValueError):
    """The YAML is valid but not the plain data a scenario is (line of the problem attached)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


def _construct(
    node: yaml.Node,
    path: tuple[str | int, ...],
    lines: dict[tuple[str | int, ...], int],
    budget: list[int] | None = None,
    open_nodes: frozenset[int] = frozenset(),
) -> Any:
    """Plain data from a YAML node, remembering the line of every path on the way.

    Refuses (``_BadShape``) what no scenario needs and a hostile file uses: an alias inside its
    own value, more than ``_MAX_VALUES`` values once aliases are expanded, nesting deeper than
    ``_MAX_DEPTH``, and keys that are not plain scalars.
    """
    budget = [_MAX_VALUES] if budget is None else budget
    line = node.start_mark.line + 1
    budget[0] -= 1
    if budget[0] < 0:
        raise _BadShape(line, f"expands to more than {_MAX_VALUES} values (aliases repeating aliases?)")
    if id(node) in open_nodes:
        raise _BadShape(line, "an alias refers to the value it stands in (a recursive alias)")
    if len(path) > _MAX_DEPTH:
        raise _BadShape(line, f"nested more than {_MAX_DEPTH} levels deep")
    lines[path] = line
    inner = open_nodes | {id(node)}
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise _BadShape(key_node.start_mark.line + 1, "keys must be plain names, not lists or mappings")
            key = yaml.safe_load(yaml.serialize(key_node))
            out[key] = _construct(value_node, (*path, key), lines, budget, inner)
            lines[(*path, key)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, (*path, i), lines, budget, inner) for i, item in enumerate(node.value)]
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
        # one line: the problem and its column, not YAML's multi-line excerpt of the file
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        column = f" (column {mark.column + 1})" if mark is not None else ""
        message = " ".join(f"not valid YAML: {problem}{column}".split())
        raise ScenarioError(path, mark.line + 1 if mark else None, "", message) from exc
    if root is None:
        raise ScenarioError(path, None, "", "the file is empty")
    lines: dict[tuple[str | int, ...], int] = {}
    try:
        data = _construct(root, (), lines)
    except _BadShape as exc:
        raise ScenarioError(path, exc.line, "", str(exc)) from exc
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
        size = path.stat().st_size
        if size > _MAX_FILE_BYTES:
            raise ScenarioError(path, None, "", f"{size} bytes: a scenario file holds at most {_MAX_FILE_BYTES}")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(path, None, "", f"cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise ScenarioError(path, line, "", f"not UTF-8 text (byte {exc.object[exc.start]:#x})") from exc
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


def scenario_to_yaml(scenario: Scenario) -> str:
    """YAML text of ``scenario``: defaults left out, actions and boxes on one line each."""
    data: dict[str, Any] = {"name": scenario.name, "task": scenario.task}
    device = scenario.device.model_dump(mode="json", exclude_defaults=True)
    data["device"] = {"kind": scenario.device.kind, **device}
    if scenario.setup:
        data["setup"] = [_action_data(a) for a in scenario.setup]
    data["max_steps"] = scenario.max_steps
    data["success"] = [check_data(c) for c in scenario.success]
    if scenario.gold:
        data["gold"] = [
            {"action": _action_data(g.action), **g.model_dump(mode="json", exclude_none=True, exclude={"action"})}
            for g in scenario.gold
        ]
        for entry in data["gold"]:
            if "annotations" in entry:  # a screen's boxes are data to keep, not to read: one flow list
                entry["annotations"] = _FlowList(entry["annotations"])
    if scenario.tags:
        data["tags"] = list(scenario.tags)
    if scenario.frames:
        data["frames"] = scenario.frames
    return yaml.dump(
        data, Dumper=_ScenarioDumper, sort_keys=False, allow_unicode=True, width=120, default_flow_style=None
    )


class _FlowList(list[Any]):
    """A list written in flow style, wrapped at the dumper's width."""


class _ScenarioDumper(yaml.SafeDumper):
    """The safe dumper, plus flow-style lists for long data (registered on this class only)."""


_ScenarioDumper.add_representer(
    _FlowList, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)
)


# --- devices -----------------------------------------------------------------------------


@dataclass
class ScenarioDevice:
    """An opened device for one scenario: the driver, and where its checks read the device's state."""

    driver: Driver
    state_path: Path | None = None
    """The desktop app's state file (sample desktop scenarios)."""
    _cleanup: list[Any] = field(default_factory=list)

    def state(self) -> DeviceState | None:
        """A fresh look at the device (None: this device cannot report its state)."""
        if self.state_path is not None:
            from vlagent.drivers.desktop_state import DesktopState

            return DesktopState(self.state_path)
        if isinstance(self.driver, StateReader):
            return self.driver.state()
        return None

    def judge(self, checks: Sequence[Check], *, settle_s: float | None = None) -> list[CheckResult]:
        """Judge ``checks`` on the device's state now; an app writing a state file gets up to ``settle_s``
        (default 3 s) to finish handling input already sent (typed text arrives after the driver returns)."""
        wait = (3.0 if self.state_path is not None else 0.0) if settle_s is None else settle_s
        deadline = time.monotonic() + wait
        while True:
            state = self.state()
            if state is None:
                why = f"the {self.driver.name} device cannot report its state"
                return [CheckResult(check, "unknown", why) for check in checks]
            results = judge(checks, state)
            if all(r.passed for r in results) or time.monotonic() >= deadline:
                return results
            time.sleep(0.05)


def _sim_driver(spec: DeviceSpec) -> Driver:
    from vlagent.drivers.sim import SimDriver

    try:
        return SimDriver(**spec.options)  # type: ignore[return-value]  # BaseDriver.__enter__ is looser than Driver
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid options for the simulated phone: {exc}") from exc


def _desktop_device(spec: DeviceSpec, workdir: Path) -> ScenarioDevice:
    from vlagent.apps.launcher import SampleAppProcess
    from vlagent.drivers.registry import open_driver

    if not os.environ.get("DISPLAY"):
        raise ConfigError("desktop scenarios need an X display: set DISPLAY or run under xvfb-run")
    options = {k: v for k, v in spec.options.items() if k != "start_timeout"}
    options.setdefault("region", (0, 0, 960, 560))
    driver = open_driver("desktop", **options)
    try:
        park = getattr(driver, "park_pointer", None)
        if callable(park):
            # Before the app's window exists: a pointer an earlier scenario left where the window
            # opens would hover-highlight a widget, and the first screen would differ from the recording.
            park()
        app = SampleAppProcess.start(workdir / "app_state.json", timeout=float(spec.options.get("start_timeout", 20)))
    except BaseException:
        driver.close()
        raise
    device = ScenarioDevice(driver, state_path=app.state_path)
    device._cleanup.append(app.proc)
    return device


def _put_back(driver: Driver, before: StartState, name: str) -> None:
    """Undo what the scenario changed on a shared phone (toggles, and notes/contacts it set up)."""
    if not (isinstance(driver, StateReader) and isinstance(driver, StatePreparer)):
        return
    try:
        now = capture_start(driver.state(), notes=before.notes is not None, contacts=before.contacts is not None)
        back = changes_back(before, now)
        driver.prepare(back)
        log.info("%s: phone put back as it was (%s)", name, back.describe())
    except (StateUnavailable, DeviceError) as exc:
        log.warning("%s: could not put the phone back as it was: %s", name, exc)


def _open_device(scenario: Scenario, workdir: Path, override: str | None) -> ScenarioDevice:
    from vlagent.drivers.registry import open_driver

    spec = scenario.device
    if override is not None and spec.is_phone:
        return ScenarioDevice(open_driver(override))
    if spec.kind == "sim":
        return ScenarioDevice(_sim_driver(spec))
    if spec.kind == SAMPLE_DESKTOP:
        return _desktop_device(spec, workdir)
    return ScenarioDevice(open_driver(spec.kind, **spec.options))


@contextlib.contextmanager
def open_scenario_device(scenario: Scenario, workdir: Path, device: str | None = None) -> Iterator[ScenarioDevice]:
    """Open (and afterwards close) the device of ``scenario``, brought to its start and with its setup
    steps applied. ``device`` (a driver spec such as ``adb:SERIAL``) replaces a phone scenario's device;
    a desktop scenario keeps its own. A driver that can prepare a start state (``prepare``) is brought
    to :meth:`Scenario.start_state` first."""
    opened = _open_device(scenario, workdir, device)
    restore: StartState | None = None
    try:
        driver = opened.driver
        if isinstance(driver, StatePreparer) and scenario.device.is_phone:
            start = scenario.start_state()
            if isinstance(driver, StateReader) and (device is not None or scenario.device.kind != "sim"):
                # A phone that outlives the scenario is handed back as it was found: the next scenario
                # on it starts where this one did, and a user's phone keeps its settings.
                restore = capture_start(
                    driver.state(), notes=start.notes is not None, contacts=start.contacts is not None
                )
            try:
                driver.prepare(start)
            except StateUnavailable as exc:
                raise ConfigError(f"{scenario.name}: {driver.name} cannot start this scenario: {exc}") from exc
        for action in scenario.setup:
            driver.execute(action)
        yield opened
    finally:
        if restore is not None:
            _put_back(opened.driver, restore, scenario.name)
        opened.driver.close()
        for proc in opened._cleanup:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
