"""AdbState and typing read-back over the real adb protocol, against simulated phones (real adbutils, real sockets)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml
from adb_clients import NASTY, focus_note_field, open_adb

from vlagent.actions import ACTION_ADAPTER, Done, OpenApp, Type
from vlagent.agent import run_episode
from vlagent.drivers import open_driver
from vlagent.drivers.android import AdbDriver
from vlagent.drivers.android_state import NOTES_URI, AdbState, ShellResult
from vlagent.drivers.sim import adb_server
from vlagent.drivers.sim import uitree as sim_uitree
from vlagent.drivers.sim.adb_server import SimAdbServer, serve_sim
from vlagent.drivers.sim.device import SimDevice
from vlagent.drivers.sim.shell import Result
from vlagent.drivers.sim.state import SimState
from vlagent.drivers.sim.world import SimPhone
from vlagent.outcome import ActionOutcome
from vlagent.policies.scripted import ScriptedPolicy
from vlagent.recorder import Recorder, load_trajectory
from vlagent.tasks import ContactSpec, DeviceState, StartState, StateUnavailable, UiDumpError, judge, parse_check
from vlagent.tasks.uitree import UiTree

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


# --- reading the state -----------------------------------------------------------------------------


def test_adb_state_is_a_device_state_read_with_the_phones_own_commands(adb_sim: SimAdbServer) -> None:
    device = adb_sim["sim-0"]
    phone = device.phone
    phone.set_toggle("wifi", True)
    driver = open_adb(adb_sim)
    device.clear()
    state = driver.state()
    assert isinstance(state, DeviceState) and state.kind == "adb"
    wifi = state.toggle("Wi-Fi")
    assert (wifi.value, wifi.source, wifi.detail) == (True, "settings", "settings get global wifi_on -> 1")
    dark = state.toggle("dark_mode")
    assert (dark.value, dark.detail) == (False, "cmd uimode night -> Night mode: no")
    assert state.setting("global", "no_such_key").value is None  # settings get prints null
    front = state.foreground()
    assert front.value.package == "com.android.launcher3" and front.source == "activity manager"
    tree = state.ui_tree()
    assert tree.source == "ui tree" and "Settings" in tree.value.texts()
    assert state.ui_tree().value is tree.value  # one dump per look
    assert device.commands("uiautomator") == [["uiautomator", "dump", "/dev/tty"]]
    assert [c.name for c in state.contacts().value] == [c.name for c in phone.contacts]
    assert state.notes().value == phone.notes
    with pytest.raises(StateUnavailable, match="only on the simulated phone"):
        state.screen()
    with pytest.raises(StateUnavailable, match="no toggle 'warp_drive'"):
        state.toggle("warp_drive")


@pytest.mark.parametrize("fmt", ["resumed", "top_resumed"])
def test_foreground_in_the_formats_of_android_9_to_15(adb_sim: SimAdbServer, fmt: str) -> None:
    device = adb_sim["sim-0"]
    device.activity_format = fmt  # type: ignore[assignment]
    device.phone.open_app("Settings")
    front = open_adb(adb_sim).state().foreground().value
    assert (front.package, front.activity) == ("com.android.settings", ".Settings")


@pytest.mark.parametrize("scenario", sorted(p.stem for p in SCENARIOS.glob("sim-*.yaml")))
def test_checks_judged_over_adb_agree_with_the_simulators_own_state(adb_sim: SimAdbServer, scenario: str) -> None:
    data = yaml.safe_load((SCENARIOS / f"{scenario}.yaml").read_text(encoding="utf-8"))
    checks = [parse_check(c) for c in data["success"]]
    phone = adb_sim["sim-0"].phone
    driver = open_adb(adb_sim)
    starts = [StartState(), StartState.model_validate(data["device"].get("state", {}))]
    for start, gold in zip(starts, [None, data.get("gold", [])], strict=True):
        driver.prepare(start)
        if gold:  # the scenario's own solution: the checks that failed at the start now pass
            policy = ScriptedPolicy([ACTION_ADAPTER.validate_python(step["action"]) for step in gold])
            run_episode(data["task"], driver, policy, max_steps=len(gold) + 1)
        over_adb = judge(checks, driver.state())
        in_process = judge(checks, SimState(phone))
        for adb, sim in zip(over_adb, in_process, strict=True):
            # the screen name is the simulator's own idea: unknown on an adb phone, never a wrong verdict
            expected = "unknown" if adb.check.check_kind == "screen" else sim.status
            assert adb.status == expected, (adb.describe(), sim.describe())


def test_a_busy_screen_is_dumped_again_with_compressed(adb_sim: SimAdbServer) -> None:
    device = adb_sim["sim-0"]
    driver = open_adb(adb_sim)
    device.dump_failures = 2
    device.clear()
    tree = driver.state().ui_tree()
    assert len(tree.value) > 0 and "--compressed" in tree.detail
    assert device.commands("uiautomator") == [
        ["uiautomator", "dump", "/dev/tty"],
        ["uiautomator", "dump", "--compressed", "/dev/tty"],
        ["uiautomator", "dump", "--compressed", "/dev/tty"],
    ]


def test_a_truncated_dump_is_taken_again(adb_sim: SimAdbServer) -> None:
    device = adb_sim["sim-0"]
    device.truncated_dumps = 1
    assert "Settings" in open_adb(adb_sim).state().ui_tree().value.texts()
    assert len(device.commands("uiautomator")) == 2


def test_a_screen_that_never_settles_is_unknown_never_a_wrong_verdict(adb_sim: SimAdbServer) -> None:
    device = adb_sim["sim-0"]
    driver = open_adb(adb_sim, dump_attempts=2)
    device.dump_failures = 10
    with pytest.raises(UiDumpError, match=r"after 2 tries \(last: ERROR: could not get idle state"):
        driver.state().ui_tree()
    device.dump_failures = 10
    (text, element) = judge([parse_check({"text": "Nowhere"}), parse_check({"element": "Wi-Fi"})], driver.state())
    assert text.status == element.status == "unknown"
    assert "could not read the screen of sim-0" in text.detail


def test_a_phone_with_its_screen_off_has_no_hierarchy(adb_sim: SimAdbServer) -> None:
    driver = open_adb(adb_sim, dump_attempts=2)
    adb_sim["sim-0"].phone.sleep()
    with pytest.raises(UiDumpError, match=r"after 2 tries \(last: ERROR: null root node"):
        driver.state().ui_tree()


def test_a_build_that_cannot_dump_to_the_terminal_dumps_to_a_file(
    adb_sim: SimAdbServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    uiautomator = adb_server._PROGRAMS["uiautomator"]

    def no_tty(dev: SimDevice, args: list[str]) -> Result:
        if "/dev/tty" in args:  # the XML goes nowhere, only the message is printed
            return Result(stdout=b"UI hierchary dumped to: /dev/tty\n")
        return uiautomator(dev, args)

    monkeypatch.setitem(adb_server._PROGRAMS, "uiautomator", no_tty)
    device = adb_sim["sim-0"]
    driver = open_adb(adb_sim)
    device.clear()
    tree = driver.state().ui_tree()
    assert "Settings" in tree.value.texts() and tree.detail.endswith("+ cat")
    assert [argv[0] for argv in device.commands()] == ["uiautomator", "uiautomator", "cat"]


def test_a_bridge_held_by_another_tool_is_named_at_once(adb_sim: SimAdbServer, monkeypatch: pytest.MonkeyPatch) -> None:
    def taken(dev: SimDevice, args: list[str]) -> Result:
        return Result(
            stderr=b"java.lang.IllegalStateException: UiAutomationService android.accessibilityservice."
            b"IAccessibilityServiceClient$Stub$Proxy@f18df39already registered!\n"
        )

    monkeypatch.setitem(adb_server._PROGRAMS, "uiautomator", taken)
    device = adb_sim["sim-0"]
    driver = open_adb(adb_sim)
    device.clear()
    with pytest.raises(UiDumpError, match="another UI automation tool"):
        driver.state().ui_tree()
    assert len(device.commands("uiautomator")) == 1  # retrying cannot help


def test_dark_mode_on_a_build_without_cmd_uimode_is_read_from_its_setting(
    adb_sim: SimAdbServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    cmd = adb_server._PROGRAMS["cmd"]

    def old_cmd(dev: SimDevice, args: list[str]) -> Result:
        if args[:1] == ["uimode"]:  # Android 7: no uimode shell command
            return Result(stderr=b"cmd: Can't find service: uimode\n", status=20)
        return cmd(dev, args)

    monkeypatch.setitem(adb_server._PROGRAMS, "cmd", old_cmd)
    adb_sim["sim-0"].phone.set_toggle("dark_mode", True)
    dark = open_adb(adb_sim).state().toggle("dark_mode")
    assert (dark.value, dark.detail) == (True, "settings get secure ui_night_mode -> 2")


def test_a_toggle_that_does_not_take_is_a_clear_error(adb_sim: SimAdbServer, monkeypatch: pytest.MonkeyPatch) -> None:
    svc = adb_server._PROGRAMS["svc"]

    def no_radio(dev: SimDevice, args: list[str]) -> Result:
        return Result() if args[:1] == ["nfc"] else svc(dev, args)  # exits 0, changes nothing

    monkeypatch.setitem(adb_server._PROGRAMS, "svc", no_radio)
    driver = open_adb(adb_sim)
    state = driver.state()
    assert isinstance(state, AdbState)
    state._toggle_settle = 0.3
    with pytest.raises(StateUnavailable, match=r"nfc stayed off on sim-0 after 'svc nfc enable'"):
        state.prepare(StartState(toggles={"nfc": True}))


def test_prepare_sets_toggles_replaces_notes_and_contacts_and_goes_home(adb_sim: SimAdbServer) -> None:
    device = adb_sim["sim-0"]
    phone = device.phone
    phone.open_app("Clock")
    driver = open_adb(adb_sim)
    contacts = [ContactSpec(name="Doe, Jane", phone="+1 555 0100"), ContactSpec(name="Zoë 李", phone="0100")]
    start = StartState(
        toggles={"wifi": True, "dark_mode": True, "airplane_mode": False},
        notes=["Buy milk", NASTY, "买牛奶 🥛, text=x"],
        contacts=contacts,
    )
    device.clear()
    driver.prepare(start)
    assert phone.toggles["wifi"] and phone.toggles["dark_mode"] and not phone.toggles["airplane_mode"]
    assert phone.notes == ["Buy milk", NASTY, "买牛奶 🥛, text=x"]
    assert [(c.name, c.phone) for c in phone.contacts] == [(c.name, c.phone) for c in contacts]
    assert phone.screen == "home"
    programs = {argv[0] for argv in device.commands()}
    assert programs <= {"svc", "cmd", "settings", "pm", "content", "input"}, programs  # the nasty note ran nothing
    state = driver.state()
    assert state.notes().value == phone.notes
    assert [(c.name, c.phone) for c in state.contacts().value] == [(c.name, c.phone) for c in contacts]


def test_a_contact_name_holding_the_next_column_is_read_one_column_at_a_time(adb_sim: SimAdbServer) -> None:
    driver = open_adb(adb_sim)
    driver.prepare(StartState(contacts=[ContactSpec(name="Jane, data1=x", phone="+1 555 0100")]))
    adb_sim["sim-0"].clear()
    (contact,) = driver.state().contacts().value
    assert (contact.name, contact.phone) == ("Jane, data1=x", "+1 555 0100")
    projections = [argv[argv.index("--projection") + 1] for argv in adb_sim["sim-0"].commands("content")]
    assert projections == ["display_name:data1", "display_name", "data1"]


class _PhoneWithoutNotes:
    """An AdbShell answering as a stock phone does for a provider it lacks (AOSP Content.java, exit 0)."""

    def __init__(self) -> None:
        self.argvs: list[list[str]] = []

    def __call__(self, what: str, argv: Sequence[str], *, timeout: float | None = None) -> ShellResult:
        self.argvs.append(list(argv))
        if argv[:2] == ["pm", "clear"]:
            return ShellResult(1, "Failed")
        return ShellResult(
            0,
            "Error while accessing provider:com.vlagent.notes\n"
            "java.lang.IllegalArgumentException: Unknown authority com.vlagent.notes\n",
        )


def test_notes_on_a_phone_without_the_sim_notes_app_are_unavailable() -> None:
    shell = _PhoneWithoutNotes()
    state = AdbState(shell, serial="R58M12345")
    with pytest.raises(StateUnavailable, match="needs the vlagent sim Notes app"):
        state.notes()
    (result,) = judge([parse_check({"note": "Buy milk"})], state)
    assert result.status == "unknown" and "vlagent sim Notes app" in result.detail
    with pytest.raises(StateUnavailable, match="needs the vlagent sim Notes app"):
        state.prepare(StartState(notes=["x"], home=False))
    assert ["content", "query", "--uri", NOTES_URI, "--projection", "_id:text"] in shell.argvs


# --- typing read back ------------------------------------------------------------------------------


def test_typed_text_that_arrives_is_verified(adb_sim: SimAdbServer) -> None:
    phone = adb_sim["sim-0"].phone
    focus_note_field(phone)
    driver = open_adb(adb_sim)
    outcome = driver.execute(Type(text="Buy milk"))
    assert outcome == ActionOutcome("verified", "the field holds 'Buy milk'", ("input text",), "Buy milk")
    for text in (" 买牛奶", " 🥛", " café", " Ελληνικά"):
        outcome = driver.execute(Type(text=text))
        assert outcome is not None and outcome.typing == "verified" and outcome.methods == ("ADBKeyboard",)
    assert phone.fields["note_text"] == "Buy milk 买牛奶 🥛 café Ελληνικά"


@pytest.mark.parametrize(
    ("text", "methods"),
    [("Hello world", ("input text", "ADBKeyboard")), ("买牛奶 🥛 café", ("ADBKeyboard", "ADBKeyboard, short chunks"))],
)
def test_lost_characters_are_typed_again_by_another_path(
    adb_sim: SimAdbServer, text: str, methods: tuple[str, ...]
) -> None:
    phone = adb_sim["sim-0"].phone
    focus_note_field(phone)
    phone.type_text("Keep: ")
    driver = open_adb(adb_sim)
    phone.lose_next_input(3)
    outcome = driver.execute(Type(text=text))
    assert outcome is not None and (outcome.typing, outcome.methods) == ("retried", methods)
    assert phone.fields["note_text"] == "Keep: " + text  # what was there before is kept, nothing doubled
    assert outcome.seen == "Keep: " + text


def test_a_retry_path_that_fails_gives_way_to_the_next(adb_sim: SimAdbServer, monkeypatch: pytest.MonkeyPatch) -> None:
    am = adb_server._PROGRAMS["am"]

    def no_broadcasts(dev: SimDevice, args: list[str]) -> Result:
        if args[:1] == ["broadcast"]:
            return Result(stderr=b"Security exception: Permission Denial\n", status=255)
        return am(dev, args)

    monkeypatch.setitem(adb_server._PROGRAMS, "am", no_broadcasts)
    phone = adb_sim["sim-0"].phone
    focus_note_field(phone)
    phone.lose_next_input(2)
    outcome = open_adb(adb_sim).execute(Type(text="Pick up parcel"))
    assert outcome is not None and outcome.typing == "retried"
    assert outcome.methods == ("input text", "ADBKeyboard", "input text, short chunks")
    assert phone.fields["note_text"] == "Pick up parcel"


def test_a_phone_that_keeps_dropping_characters_is_reported_to_the_model(adb_sim: SimAdbServer) -> None:
    phone = adb_sim["sim-0"].phone
    phone.drop_typed = 4
    focus_note_field(phone)
    driver = open_adb(adb_sim)
    outcome = driver.execute(Type(text="Call the dentist"))
    assert outcome is not None and outcome.typing == "failed"
    assert outcome.methods == ("input text", "ADBKeyboard", "input text, short chunks")  # typing_retries=2
    assert outcome.seen == phone.fields["note_text"] != "Call the dentist"
    assert outcome.problem is not None and repr(outcome.seen) in outcome.problem


def test_typing_cannot_be_verified_without_a_focused_field_or_in_a_password_field(
    adb_sim: SimAdbServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    phone = adb_sim["sim-0"].phone
    driver = open_adb(adb_sim)
    outcome = driver.execute(Type(text="nowhere"))
    assert outcome is not None and (outcome.typing, outcome.detail) == (
        "unverifiable",
        "no field has focus before typing",
    )

    real = sim_uitree.phone_ui_tree

    def dotted(p: SimPhone) -> UiTree:  # a password field shows dots, whatever was typed
        nodes = real(p).nodes
        return UiTree(tuple(dataclasses.replace(n, password=True, text="•" * len(n.text)) if n.focused else n
                            for n in nodes))  # fmt: skip

    monkeypatch.setattr(sim_uitree, "phone_ui_tree", dotted)
    focus_note_field(phone)
    outcome = driver.execute(Type(text="hunter2"))
    assert outcome is not None and outcome.typing == "unverifiable" and "password" in outcome.detail
    assert outcome.methods == ("input text",)  # never retyped into a password field
    assert phone.fields["note_text"] == "hunter2"


def test_read_back_is_off_with_the_spec_option(adb_sim: SimAdbServer) -> None:
    device = adb_sim["sim-0"]
    focus_note_field(device.phone)
    driver = open_driver(f"adb:sim-0?verify_typing=0&port={adb_sim.port}")
    assert isinstance(driver, AdbDriver) and driver.config.verify_typing is False
    device.clear()
    assert driver.execute(Type(text="quick")) is None
    assert device.commands("uiautomator") == []


def test_the_outcome_is_on_the_step_and_in_the_trajectory(adb_sim: SimAdbServer, tmp_path: Path) -> None:
    phone = adb_sim["sim-0"].phone
    focus_note_field(phone)
    phone.lose_next_input(2)
    script = [Type(text="Water the plants"), OpenApp(name="Settings"), Done()]
    with open_adb(adb_sim) as driver:
        episode = run_episode("type a note", driver, ScriptedPolicy(script), hooks=[Recorder(tmp_path)])
    first = episode.steps[0].outcome
    assert first is not None and first.typing == "retried" and episode.steps[1].outcome is None
    trajectory = load_trajectory(tmp_path)
    assert trajectory.steps[0].outcome == first
    assert trajectory.steps[1].outcome is None
    lines = [json.loads(line) for line in (tmp_path / "trajectory.jsonl").read_text(encoding="utf-8").splitlines()]
    result = next(line for line in lines if line["type"] == "result" and line["index"] == 0)
    assert result["outcome"]["typing"] == "retried" and result["outcome"]["methods"] == ["input text", "ADBKeyboard"]


def test_a_failed_typing_is_told_to_the_model_as_the_steps_effect(no_real_adb: None) -> None:
    with serve_sim([SimPhone(serial="sim-0", drop_typed=3)]) as server:
        focus_note_field(server["sim-0"].phone)
        with open_adb(server, typing_retries=0) as driver:
            episode = run_episode("t", driver, ScriptedPolicy([Type(text="abcdef"), Done()]))
    step = episode.steps[0]
    assert step.outcome is not None and step.outcome.typing == "failed"
    assert step.effect is not None and step.effect.startswith("the typed text did not arrive as meant")


def test_a_driver_without_outcomes_leaves_the_step_empty(no_real_adb: None, tmp_path: Path) -> None:
    from vlagent.drivers.sim import SimDriver

    with SimDriver() as sim:
        episode = run_episode("t", sim, ScriptedPolicy([Type(text="x"), Done()]), hooks=[Recorder(tmp_path)])
    assert episode.steps[0].outcome is None
    assert load_trajectory(tmp_path).steps[0].outcome is None


def test_typing_over_adb_leaves_the_shell_alone(adb_sim: SimAdbServer) -> None:
    device = adb_sim["sim-0"]
    focus_note_field(device.phone)
    device.phone.lose_next_input(5)
    driver = open_adb(adb_sim)
    device.clear()
    outcome = driver.execute(Type(text=NASTY))
    assert outcome is not None and outcome.typing == "retried"
    assert device.phone.fields["note_text"] == NASTY
    assert {argv[0] for argv in device.commands()} <= {"input", "uiautomator", "am", "ime", "pm", "settings"}
