"""Regenerate the shipped scenario files in ``scenarios/`` by playing a script for each one.

Each definition below gives a task, its device, its success checks and a script (the same
kind of items ScriptedPolicy plays, looking targets up on the live screen). The script is
played once on the real device (the simulated phone, or the sample desktop app on a private
Xvfb screen), and every step is written as a gold step with its target label, box and the
fingerprint of the frame it was decided on. The scenario is kept only when its checks pass.

    python tools/make_scenarios.py [--out scenarios] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlagent.actions import Action, Click, Done, Key, LongPress, OpenApp, Scroll, Type
from vlagent.agent import Hook, run_episode
from vlagent.drivers.desktop_state import DesktopState
from vlagent.drivers.sim import SimDriver, SimPhone
from vlagent.policies.base import Observation
from vlagent.policies.scripted import ScriptedPolicy
from vlagent.policies.task_scripts import long_press_label, tap_label
from vlagent.replay import frame_fingerprint
from vlagent.scenario import (
    DeviceSpec,
    GoldStep,
    Scenario,
    ScenarioDevice,
    open_scenario_device,
    scenario_to_yaml,
)
from vlagent.tasks import AppCheck, Check, ContactCheck, ElementCheck, NoteCheck, StateCheck, TextCheck, ToggleCheck
from vlagent.tasks.builtin import CONTACT_NAME, CONTACT_PHONE, NOTE_TEXT
from vlagent.tasks.state import StateReader
from vlagent.tasks.uitree import NodeRef

log = logging.getLogger("make_scenarios")

Item = Action | Callable[[Observation], Action | None]
Script = Callable[[ScenarioDevice], list[Item]]


@dataclass
class Definition:
    name: str
    task: str
    checks: list[Check]
    script: Script
    device: dict[str, Any] = field(default_factory=lambda: {"kind": "sim"})
    max_steps: int = 12
    tags: list[str] = field(default_factory=list)


# --- simulated phone ---------------------------------------------------------------------


def _phone(dev: ScenarioDevice) -> SimPhone:
    assert isinstance(dev.driver, SimDriver), "the sim scenarios are recorded on the simulated phone"
    return dev.driver.phone


def tap(label: str) -> Callable[[ScenarioDevice], Item]:
    """A tap on the element called ``label``, found when the step is played."""
    return lambda dev: tap_label(_phone(dev).locate, label)


def hold(label: str) -> Callable[[ScenarioDevice], Item]:
    """A long press on the element called ``label``."""
    return lambda dev: long_press_label(_phone(dev).locate, label)


def sim_script(*parts: Callable[[ScenarioDevice], Item] | Action) -> Script:
    def script(dev: ScenarioDevice) -> list[Item]:
        return [p if not callable(p) else p(dev) for p in parts]  # type: ignore[misc]

    return script


def toggle_script(label: str, scrolls: int = 0) -> Script:
    return sim_script(tap("Settings"), *([Scroll(direction="down")] * scrolls), tap(label), Done())


GREEK = "Καλημέρα κόσμε ✓"

SIM: list[Definition] = [
    Definition("sim-wifi-on", "Turn on Wi-Fi.", [ToggleCheck(toggle="wifi", value=True)], toggle_script("Wi-Fi")),
    Definition(
        "sim-dark-mode",
        "Open Settings and turn on Dark mode.",
        [ToggleCheck(toggle="dark_mode", value=True)],
        toggle_script("Dark mode", scrolls=2),
        tags=["scroll"],
    ),
    Definition(
        "sim-battery-saver",
        "Turn on Battery saver (it is further down in Settings).",
        [ToggleCheck(toggle="battery_saver", value=True)],
        toggle_script("Battery saver", scrolls=2),
        tags=["scroll"],
    ),
    Definition(
        "sim-airplane-mode",
        "Turn on airplane mode.",
        [ToggleCheck(toggle="airplane_mode", value=True)],
        toggle_script("Airplane mode"),
    ),
    Definition(
        "sim-bluetooth-off",
        "Turn Bluetooth off.",
        [ToggleCheck(toggle="bluetooth", value=False)],
        toggle_script("Bluetooth"),
        device={"kind": "sim", "state": {"toggles": {"bluetooth": True}}},
    ),
    Definition(
        "sim-location-off",
        "Turn off location.",
        [ToggleCheck(toggle="location", value=False)],
        toggle_script("Location"),
    ),
    Definition(
        "sim-note-unicode",
        f'Write a new note that says "{NOTE_TEXT}" and save it.',
        [NoteCheck(note=NOTE_TEXT)],
        sim_script(tap("Notes"), tap("New note"), tap("Note text"), Type(text=NOTE_TEXT), tap("Save"), Done()),
        tags=["unicode"],
    ),
    Definition(
        "sim-note-greek",
        f'Create a note with the text "{GREEK}".',
        [NoteCheck(note=GREEK), AppCheck(app="Notes"), ElementCheck(element="New note")],
        sim_script(OpenApp(name="Notes"), tap("New note"), tap("Note text"), Type(text=GREEK), tap("Save"), Done()),
        tags=["unicode"],
    ),
    Definition(
        "sim-add-contact",
        f"Add a contact named {CONTACT_NAME} with phone number {CONTACT_PHONE}.",
        [ContactCheck(contact=CONTACT_NAME, phone=CONTACT_PHONE)],
        sim_script(
            tap("Contacts"),
            tap("Add contact"),
            tap("Name"),
            Type(text=CONTACT_NAME),
            tap("Phone"),
            Type(text=CONTACT_PHONE, submit=True),
            Done(),
        ),
    ),
    Definition("sim-open-camera", "Open the Camera app.", [AppCheck(app="Camera")], sim_script(tap("Camera"), Done())),
    Definition(
        "sim-open-clock-by-name",
        "Open the Clock app.",
        [AppCheck(app="com.android.deskclock")],
        sim_script(OpenApp(name="Clock"), Done()),
    ),
    Definition(
        "sim-back-home",
        "Leave Settings and go back to the home screen.",
        [AppCheck(app="Home"), TextCheck(text="Monday, 1 January")],
        sim_script(Key(key="home"), Done()),
        device={"kind": "sim"},
    ),
    Definition(
        "sim-delete-note",
        'In Notes, delete the note that says "Buy milk" and keep the others.',
        [
            NoteCheck(note="Buy milk", value=False),
            NoteCheck(note="Water the plants"),
            NoteCheck(note="Buy milk chocolate for Sam"),
        ],
        sim_script(OpenApp(name="Notes"), hold("Buy milk"), tap("Delete"), Done()),
        device={"kind": "sim", "state": {"notes": ["Water the plants", "Buy milk", "Buy milk chocolate for Sam"]}},
        tags=["long_press"],
    ),
]
# sim-back-home starts inside Settings
SETUP: dict[str, list[Action]] = {"sim-back-home": [OpenApp(name="Settings")]}


# --- sample desktop app ------------------------------------------------------------------


def widget(name: str) -> Callable[[ScenarioDevice], Item]:
    def bind(dev: ScenarioDevice) -> Item:
        def item(obs: Observation) -> Action:
            state: Any = DesktopState(dev.state_path).app_state().value
            x, y, w, h = state["widgets"][name]
            return Click(x=x + w // 2, y=y + h // 2)

        return item

    return bind


DESKTOP_DEVICE = {"kind": "sample_desktop"}
DESKTOP: list[Definition] = [
    Definition(
        "desktop-login",
        "Sign in to the sample app as user 'ada' with the password 'secret'.",
        [StateCheck(state="logged_in", value=True), StateCheck(state="user", value="ada")],
        sim_script(
            widget("username"),
            Type(text="ada"),
            widget("password"),
            Type(text="secret"),
            widget("login_button"),
            Done(),
        ),
        device=DESKTOP_DEVICE,
    ),
    Definition(
        "desktop-dark-mode",
        "Turn on Dark mode in the sample app's settings.",
        [StateCheck(state="settings.dark_mode", value=True)],
        sim_script(widget("dark_mode"), Done()),
        device=DESKTOP_DEVICE,
    ),
    Definition(
        "desktop-note-unicode",
        "Type 'Grüße, 世界 ✓' into the Note field of the sample app.",
        [StateCheck(state="note", value="Grüße, 世界 ✓")],
        sim_script(widget("note"), Type(text="Grüße, 世界 ✓"), Done()),
        device=DESKTOP_DEVICE,
        tags=["unicode"],
    ),
    Definition(
        "desktop-search",
        "Search the shopping list for 'milk'.",
        [StateCheck(state="search", value="milk"), StateCheck(state="visible_items", value=["Milk"])],
        sim_script(widget("search"), Type(text="milk"), Done()),
        device=DESKTOP_DEVICE,
    ),
]


# --- recording ---------------------------------------------------------------------------


class _Targets(Hook):
    """Episode hook: the target label and box of every click, read from the live device."""

    def __init__(self, dev: ScenarioDevice) -> None:
        self.dev = dev
        self.gold: list[GoldStep] = []

    def on_decision(self, episode: object, record: Any) -> None:
        action = record.action
        target: str | None = None
        box: tuple[int, int, int, int] | None = None
        pointed = isinstance(action, (Click, LongPress))
        if pointed:
            target, box = self._element_at(action.x, action.y, long=isinstance(action, LongPress))
        fp = frame_fingerprint(record.frame, (action.x, action.y), box) if pointed else None
        node = self._node_at(action.x, action.y) if pointed else None
        annotations = self._annotations() if pointed else None
        self.gold.append(
            GoldStep(action=action, target=target, box=box, annotations=annotations, fingerprint=fp, node=node)
        )

    def _annotations(self) -> list[tuple[int, int, int, int]] | None:
        """Every labelled element's box on the screen now, as AITW annotates each screen (its
        detector finds icons and text, never a backdrop: boxes over a quarter of the screen are
        left out, since one would put every tap in the same box)."""
        if isinstance(self.dev.driver, SimDriver):
            boxes = [e.hit_box for e in self.dev.driver.phone.elements() if e.label]
        else:
            state: Any = DesktopState(self.dev.state_path).app_state().value
            boxes = [(x, y, x + w, y + h) for x, y, w, h in state.get("widgets", {}).values()]
        width, height = self.dev.driver.screen_size()
        kept = [b for b in boxes if (b[2] - b[0]) * (b[3] - b[1]) <= width * height / 4]
        return list(dict.fromkeys(kept)) or None

    def _node_at(self, x: int, y: int) -> NodeRef | None:
        """The UI element under the tap, from the device's view hierarchy (phones only)."""
        driver = self.dev.driver
        if not isinstance(driver, StateReader):
            return None
        node = driver.state().ui_tree().value.node_at(x, y)
        return NodeRef.of(node) if node is not None else None

    def _element_at(self, x: int, y: int, *, long: bool = False) -> tuple[str | None, tuple[int, int, int, int] | None]:
        if isinstance(self.dev.driver, SimDriver):
            handler = "on_long_press" if long else "on_tap"
            hits = [e for e in self.dev.driver.phone.elements() if getattr(e, handler) is not None]
            for element in reversed(hits):
                x0, y0, x1, y1 = element.hit_box
                if x0 <= x < x1 and y0 <= y < y1:
                    return element.label, element.hit_box
            return None, None
        state: Any = DesktopState(self.dev.state_path).app_state().value
        for name, (wx, wy, ww, wh) in state.get("widgets", {}).items():
            if wx <= x < wx + ww and wy <= y < wy + wh:
                return name, (wx, wy, wx + ww, wy + wh)
        return None, None


def build(definition: Definition, workdir: Path) -> Scenario:
    draft = Scenario(
        name=definition.name,
        task=definition.task,
        device=DeviceSpec.model_validate(definition.device),
        setup=SETUP.get(definition.name, []),
        max_steps=definition.max_steps,
        success=list(definition.checks),
        tags=definition.tags,
    )
    with open_scenario_device(draft, workdir) as dev:
        hook = _Targets(dev)
        policy = ScriptedPolicy(definition.script(dev))
        episode = run_episode(draft.task, dev.driver, policy, max_steps=draft.max_steps, hooks=[hook])
        results = dev.judge(draft.success)
    failed = [r.check.describe() for r in results if not r.passed]
    if failed:
        raise RuntimeError(f"{definition.name}: script did not succeed ({episode.end}): {failed}")
    return draft.model_copy(update={"gold": hook.gold})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("scenarios"))
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    definitions = [d for d in SIM + DESKTOP if args.only is None or d.name in args.only]
    display = None
    if any(d.device.get("kind") == "sample_desktop" for d in definitions) and not os.environ.get("DISPLAY"):
        from vlagent.drivers.xvfb import VirtualDisplay

        display = VirtualDisplay(1280, 800, 24).start()
        os.environ.update(display.env)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for definition in definitions:
                scenario = build(definition, Path(tmp) / definition.name)
                path = args.out / f"{definition.name}.yaml"
                path.write_text(scenario_to_yaml(scenario), encoding="utf-8")
                log.info("wrote %s (%d gold steps)", path, len(scenario.gold))
    finally:
        if display is not None:
            display.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
