"""Scenario files: the shipped ones load, errors name file/line/field, checks read device state."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlagent.actions import Click
from vlagent.drivers.sim import SimPhone
from vlagent.errors import ConfigError
from vlagent.scenario import Check, ScenarioError, judge, load_scenario, load_scenarios, scenario_to_yaml

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
    assert original.success[0].describe() == "no note 'Buy milk'"

    phone = SimPhone()
    phone.add_note("Buy milk")
    absent = [Check(note="Buy milk", value=False), Check(contact="Nobody", value=False), Check(text="Zzz", value=False)]
    assert [r.passed for r in judge(absent, phone=phone)] == [False, True, True]
    assert [r.passed for r in judge([Check(text="Monday", value=False)], phone=phone)] == [False]
    with pytest.raises(ValueError, match="true \\(present\\) or false \\(absent\\)"):
        Check(note="x", value="yes")
    with pytest.raises(ValueError, match="'screen' checks take no value"):
        Check(screen="home", value=False)


def test_checks_read_the_simulated_phone() -> None:
    phone = SimPhone()
    checks = [
        Check(toggle="wifi", value=True),
        Check(note="Call the dentist on Tuesday"),
        Check(contact="Alice Martin", phone="+1 (555) 0100"),
        Check(app="launcher3"),
        Check(screen="home"),
        Check(text="Monday"),
        Check(state="settings.dark_mode", value=True),
    ]
    passed = [r.passed for r in judge(checks, phone=phone)]
    assert passed == [False, True, True, False, True, True, False]
    phone.set_toggle("wifi", True)
    phone.open_app("Settings")
    results = judge([Check(toggle="wifi"), Check(app="Settings"), Check(app="com.android.settings")], phone=phone)
    assert all(r.passed for r in results)


def test_state_checks_read_the_app_state() -> None:
    state = {"settings": {"dark_mode": True}, "note": "Grüße", "visible_items": ["Milk"]}
    results = judge(
        [
            Check(state="settings.dark_mode", value=True),
            Check(state="note", contains="rü"),
            Check(state="visible_items", value=["Milk"]),
            Check(state="missing.key", value=1),
        ],
        app_state=state,
    )
    assert [r.passed for r in results] == [True, True, True, False]
    assert "no key" in results[3].detail
