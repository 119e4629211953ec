"""Scenario files: the shipped ones load, errors name file/line/field, checks read device state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from vlagent.actions import Click
from vlagent.drivers.desktop_state import DesktopState
from vlagent.drivers.sim import SimDriver, SimPhone
from vlagent.drivers.sim.state import SimState
from vlagent.errors import ConfigError
from vlagent.scenario import ScenarioError, load_scenario, load_scenarios, open_scenario_device, scenario_to_yaml
from vlagent.tasks import (
    AppCheck,
    Check,
    ContactCheck,
    ContactSpec,
    NoteCheck,
    ScreenCheck,
    StartState,
    StateCheck,
    TextCheck,
    ToggleCheck,
    WindowCheck,
    judge,
)

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


def test_shipped_scenarios_cover_both_devices_unicode_and_scrolling() -> None:
    scenarios = load_scenarios([SCENARIOS])
    assert len(scenarios) >= 12
    kinds = {s.device.kind for s in scenarios}
    assert kinds == {"sim", "sample_desktop"}
    assert any("unicode" in s.tags and any(ord(ch) > 0x2000 for ch in s.task) for s in scenarios)
    scrolling = [s for s in scenarios if "scroll" in s.tags]
    assert scrolling and all(any(g.action.action == "scroll" for g in s.gold) for s in scrolling)
    for s in scenarios:
        assert s.gold and s.gold[-1].action.action == "done", s.name
        assert all(g.fingerprint for g in s.gold if isinstance(g.action, Click)), s.name


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_error_names_file_line_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, "task: Turn on Wi-Fi.\ndevice: {kind: sim}\nmax_steps: -3\nsuccess:\n  - {toggle: wifi}\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert (info.value.line, info.value.field) == (3, "max_steps")
    assert str(info.value).startswith(f"{path}:3: max_steps:")


def test_error_inside_a_gold_action_points_at_its_line(tmp_path: Path) -> None:
    text = (
        "task: t\nsuccess:\n  - {toggle: wifi}\ngold:\n"
        "  - action: {action: click, x: 10, y: 10}\n"
        "  - action:\n      action: click\n      x: -5\n      y: 3\n"
    )
    with pytest.raises(ScenarioError) as info:
        load_scenario(write(tmp_path, text))
    assert info.value.line == 8
    assert info.value.field.startswith("gold.1.action") and info.value.field.endswith("x")


def test_check_needs_exactly_one_kind_and_yaml_errors_have_lines(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"bad.yaml:3: success.0: .*exactly one"):
        load_scenario(write(tmp_path, "task: t\nsuccess:\n  - {toggle: wifi, note: hi}\n"))
    with pytest.raises(ScenarioError, match=r"bad.yaml:3: not valid YAML"):
        load_scenario(write(tmp_path, "task: t\nsuccess: [\n"))
    with pytest.raises(ScenarioError, match="success"):
        load_scenario(write(tmp_path, "task: t\n"))


def test_duplicate_names_are_refused(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / f"{name}.yaml").write_text("name: same\ntask: t\nsuccess: [{screen: home}]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="two scenarios are named 'same'"):
        load_scenarios([tmp_path])


def test_yaml_round_trip(tmp_path: Path) -> None:
    original = load_scenario(SCENARIOS / "sim-dark-mode.yaml")
    copy = write(tmp_path, scenario_to_yaml(original))
    again = load_scenario(copy)
    assert again.model_dump(exclude={"source"}) == original.model_dump(exclude={"source"})


def test_value_false_asks_for_absence_and_survives_the_yaml(tmp_path: Path) -> None:
    original = load_scenario(SCENARIOS / "sim-delete-note.yaml")
    again = load_scenario(write(tmp_path, scenario_to_yaml(original)))
    assert again.success == original.success and again.success[0].value is False
    assert original.success[0].describe() == "note 'Buy milk' does not exist"

    phone = SimPhone()
    phone.add_note("Buy milk")
    absent: list[Check] = [
        NoteCheck(note="Buy milk", value=False),
        ContactCheck(contact="Nobody", value=False),
        TextCheck(text="Zzz", value=False),
    ]
    assert [r.passed for r in judge(absent, SimState(phone))] == [False, True, True]
    assert [r.passed for r in judge([TextCheck(text="Monday", value=False)], SimState(phone))] == [False]
    with pytest.raises(ValidationError, match="valid boolean"):
        NoteCheck(note="x", value="maybe")
    with pytest.raises(ValidationError, match="Extra inputs"):
        ScreenCheck(screen="home", value=False)  # type: ignore[call-arg]


def test_scenario_files_keep_their_check_forms(tmp_path: Path) -> None:
    text = (
        "task: t\nsuccess:\n  - {toggle: wifi, value: true}\n  - {note: X, value: false}\n"
        "  - {state: a.b, contains: x}\n  - {element: Wi-Fi, checked: true}\n  - {window: Notes}\n"
    )
    scenario = load_scenario(write(tmp_path, text))
    assert [type(c) for c in scenario.success][:3] == [ToggleCheck, NoteCheck, StateCheck]
    assert scenario.success[2] == StateCheck(state="a.b", contains="x")
    again = load_scenario(write(tmp_path, scenario_to_yaml(scenario)))
    assert again.success == scenario.success


def test_checks_read_the_simulated_phone() -> None:
    phone = SimPhone()
    checks: list[Check] = [
        ToggleCheck(toggle="wifi", value=True),
        NoteCheck(note="Call the dentist on Tuesday"),
        ContactCheck(contact="Alice Martin", phone="+1 (555) 0100"),
        AppCheck(app="launcher3"),
        ScreenCheck(screen="home"),
        TextCheck(text="Monday"),
        StateCheck(state="settings.dark_mode", value=True),
    ]
    results = judge(checks, SimState(phone))
    assert [r.passed for r in results] == [False, True, True, True, True, True, False]
    assert results[-1].status == "unknown" and "no desktop app state" in results[-1].detail
    partial = [NoteCheck(note="dentist", partial=True), NoteCheck(note="dentist")]
    assert [r.passed for r in judge(partial, SimState(phone))] == [True, False]
    phone.set_toggle("wifi", True)
    phone.open_app("Settings")
    state = SimState(phone)
    results = judge([ToggleCheck(toggle="wifi"), AppCheck(app="Settings"), AppCheck(app="com.android.settings")], state)
    assert all(r.passed for r in results) and results[0].source == "sim state"


def test_state_checks_read_the_app_state_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"settings": {"dark_mode": True}, "note": "Grüße", "visible_items": ["Milk"]}))
    results = judge(
        [
            StateCheck(state="settings.dark_mode", value=True),
            StateCheck(state="note", contains="rü"),
            StateCheck(state="visible_items", value=["Milk"]),
            StateCheck(state="missing.key", value=1),
            ToggleCheck(toggle="wifi"),
        ],
        DesktopState(path),
    )
    assert [r.status for r in results] == ["passed", "passed", "passed", "failed", "unknown"]
    assert "no key" in results[3].detail and results[0].source == "app state file"
    missing = judge([StateCheck(state="note", value="x")], DesktopState(tmp_path / "none.json"))
    assert missing[0].status == "unknown" and "not written" in missing[0].detail


def test_window_check_reads_the_focused_window_title(xvfb_display: str) -> None:
    result = judge([WindowCheck(window="anything")], DesktopState())[0]
    # a bare X server has no focused window: the check cannot be judged, it is not guessed
    assert result.status == "unknown" and result.source is None


def test_start_state_spells_out_the_sim_defaults(tmp_path: Path) -> None:
    delete = load_scenario(SCENARIOS / "sim-delete-note.yaml")
    start = delete.start_state()
    assert start.notes is not None and start.notes[0] == "Call the dentist on Tuesday" and "Buy milk" in start.notes
    assert start.contacts is None and start.toggles == {} and start.home
    bluetooth = load_scenario(SCENARIOS / "sim-bluetooth-off.yaml").start_state()
    assert bluetooth.toggles == {"bluetooth": True}
    location = load_scenario(SCENARIOS / "sim-location-off.yaml").start_state()
    assert location.toggles == {"location": True} and location.notes is None
    contact = load_scenario(SCENARIOS / "sim-add-contact.yaml").start_state()
    assert contact.contacts is not None and ContactSpec(name="Alice Martin", phone="+1 555 0100") in contact.contacts


def test_a_device_override_gets_the_scenario_start(tmp_path: Path) -> None:
    scenario = load_scenario(SCENARIOS / "sim-delete-note.yaml")
    with open_scenario_device(scenario, tmp_path, "sim:3") as device:
        assert isinstance(device.driver, SimDriver) and device.driver.phone.seed == 3
        assert "Buy milk" in device.driver.phone.notes
        results = device.judge(scenario.success)
        assert [r.status for r in results] == ["failed", "passed", "passed"]
    phone = SimDriver()
    phone.prepare(StartState(toggles={"wifi": True}))
    assert phone.phone.toggles["wifi"]


def test_an_unknown_start_state_key_names_its_line(tmp_path: Path) -> None:
    text = "task: t\ndevice:\n  kind: sim\n  state:\n    alarms: [7am]\nsuccess: [{screen: home}]\n"
    with pytest.raises(ScenarioError, match=r"bad.yaml:5: device.state.alarms"):
        load_scenario(write(tmp_path, text))


_BOMB = (
    "a: &a [x, x, x, x, x, x, x, x, x]\n"
    + "".join(f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefg", "bcdefgh", strict=True))
    + "task: [*h, *h, *h, *h, *h, *h, *h, *h, *h]\nsuccess: [{toggle: wifi}]\n"
)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (_BOMB.encode(), "expands to more than"),
        (b"task: &a [*a]\nsuccess: [{toggle: wifi}]\n", "recursive alias"),
        (b"task: \xff\xfe bad\nsuccess: [{toggle: wifi}]\n", "not UTF-8"),
        (b"? [a, b]\n: 1\ntask: x\nsuccess: [{toggle: wifi}]\n", "keys must be plain names"),
        (b'name: ".."\ntask: x\nsuccess: [{toggle: wifi}]\n', "name"),
        (b"task: " + b"x" * 20_000 + b"\nsuccess: [{toggle: wifi}]\n", "task"),
    ],
)
def test_hostile_scenario_files_are_refused_with_the_file_and_line(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "hostile.yaml"
    path.write_bytes(content)
    with pytest.raises(ScenarioError, match=message) as info:
        load_scenario(path)
    assert str(info.value).startswith(str(path))


@pytest.mark.parametrize(
    ("step", "where"),
    [
        ("{action: click, x: 5000, y: 9000}", "(5000, 9000)"),
        ("{action: click, x: 1080, y: 10}", "(1080, 10)"),
        ("{action: swipe, x1: 10, y1: 10, x2: 10, y2: 2400}", "(10, 2400)"),
        ("{action: long_press, x: 10, y: 9999}", "(10, 9999)"),
    ],
)
def test_steps_off_the_simulated_phones_screen_are_refused_at_load(tmp_path: Path, step: str, where: str) -> None:
    text = "name: far\ntask: t\nsuccess:\n- {app: Home}\ngold:\n- action: {action: wait, seconds: 0}\n"
    text += f"- action: {step}\n"
    with pytest.raises(ScenarioError, match=rf"gold step 2 .*{where.replace('(', '[(]').replace(')', '[)]')} is off"):
        load_scenario(write(tmp_path, text))
    edge = text.replace(step, "{action: click, x: 1079, y: 2399}")
    assert load_scenario(write(tmp_path, edge)).gold[1].action == Click(x=1079, y=2399)
    wide = text.replace("success:", "device: {kind: sim, options: {width: 20000, height: 20000}}\nsuccess:")
    assert load_scenario(write(tmp_path, wide)).device.screen_size == (20000, 20000)


def test_an_oversized_scenario_file_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    path = write(tmp_path, "name: big\ntask: t\nsuccess:\n- {app: Home}\n#" + "x" * (5 * 1024 * 1024) + "\n")
    with pytest.raises(ScenarioError, match="at most"):
        load_scenario(path)
