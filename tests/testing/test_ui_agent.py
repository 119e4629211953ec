"""Agent on the simulated phone with the state oracle: what a UI test author sees."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from pydantic import BaseModel

from vlagent.actions import Click, Done
from vlagent.agent import EndReason
from vlagent.drivers.sim import SimDriver
from vlagent.errors import ConfigError, InvalidModelOutput
from vlagent.policies.scripted import ScriptedPolicy
from vlagent.recorder import load_trajectory
from vlagent.tasks import ToggleCheck
from vlagent.testing import (
    ActFailed,
    Agent,
    AssertionFailed,
    Judgement,
    LocateFailed,
    Query,
    SimOracle,
    WaitTimeout,
)


@pytest.fixture
def driver() -> SimDriver:
    return SimDriver()


@pytest.fixture
def agent(driver: SimDriver, tmp_path: Path) -> Agent:
    return Agent(driver, SimOracle(driver), out_dir=tmp_path / "run")


def test_act_changes_the_phone_and_records_every_step(agent: Agent, driver: SimDriver) -> None:
    episode = agent.act("Turn on Wi-Fi")
    assert driver.phone.toggles["wifi"] is True
    assert episode.end is EndReason.DONE_SUCCESS
    trajectory = load_trajectory(agent.calls[-1].run_dir)
    assert trajectory.complete and len(trajectory.steps) == len(episode.steps) >= 2
    assert all(trajectory.frame_path(step).is_file() for step in trajectory.steps)


def test_act_failure_is_an_assertion_with_steps_and_frames(agent: Agent) -> None:
    with pytest.raises(ActFailed) as info:
        agent.act("Make me a coffee")
    message = str(info.value)
    assert isinstance(info.value, AssertionError)
    assert "act('Make me a coffee') did not succeed" in message and "done_failure" in message
    assert "cannot do 'Make me a coffee'" in message  # the policy's reason
    frame = Path(message.split("last frame: ")[1].splitlines()[0])
    assert frame.is_file()


def test_act_step_limit_names_the_limit(driver: SimDriver, tmp_path: Path) -> None:
    agent = Agent(driver, ScriptedPolicy([Click(x=5, y=5)] * 5), out_dir=tmp_path, querier=SimOracle(driver))
    with pytest.raises(ActFailed, match=r"step_limit after 3 step\(s\) \(no 'done' within 3 steps\)"):
        agent.act("tap the corner", max_steps=3)


def test_assert_passes_and_fails_with_the_reason(agent: Agent, driver: SimDriver) -> None:
    assert agent.assert_("Wi-Fi is off") == "Wi-Fi is off"
    driver.phone.set_toggle("wifi", True)
    with pytest.raises(AssertionFailed) as info:
        agent.assert_("Wi-Fi is off")
    message = str(info.value)
    assert "reason given: Wi-Fi is on" in message
    assert info.value.judgement == Judgement(verdict=False, reason="Wi-Fi is on")
    assert (info.value.run_dir / "frame_0000.png").is_file()
    recorded = load_trajectory(info.value.run_dir)
    assert recorded.end is not None and recorded.end.reason == "done_failure"
    assert recorded.steps[0].thought == "Wi-Fi is on"


def test_query_returns_a_validated_schema_instance(agent: Agent) -> None:
    class Phone(BaseModel):
        screen: str
        bluetooth: bool
        contact_names: list[str]

    agent.act("open Contacts")
    answer = agent.query("Which screen is this, is Bluetooth on, who are the contacts?", Phone)
    assert answer == Phone(screen="contacts", bluetooth=False, contact_names=["Alice Martin", "Bob Chen"])
    assert '"screen":"contacts"' in load_trajectory(agent.calls[-1].run_dir).steps[0].raw


def test_wait_until_sees_a_later_change_and_times_out_readably(agent: Agent, driver: SimDriver) -> None:
    timer = threading.Timer(0.3, driver.phone.set_toggle, ("bluetooth", True))
    timer.start()
    try:
        assert agent.wait_until("Bluetooth is on", timeout=5, interval=0.05).verdict
    finally:
        timer.cancel()
    assert len(load_trajectory(agent.calls[-1].run_dir).steps) >= 2  # it did wait
    with pytest.raises(WaitTimeout, match=r"timed out after 0.2 s .*\n.*Airplane mode is off"):
        agent.wait_until("Airplane mode is on", timeout=0.2, interval=0.05)


def test_locate_points_at_the_element(agent: Agent, driver: SimDriver) -> None:
    x, y = agent.locate("the Settings icon")
    assert abs(x - driver.phone.locate("Settings")[0]) <= 2  # type: ignore[index]
    driver.execute(Click(x=x, y=y))
    assert driver.phone.screen == "settings"
    with pytest.raises(LocateFailed, match="no visible element called 'Teleport button'"):
        agent.locate("Teleport button")


def test_a_policy_that_cannot_answer_questions_is_a_config_error(driver: SimDriver, tmp_path: Path) -> None:
    agent = Agent(driver, ScriptedPolicy([Done()]), out_dir=tmp_path)
    agent.act("anything")
    with pytest.raises(ConfigError, match="cannot answer questions"):
        agent.assert_("Wi-Fi is on")


def test_invalid_answers_are_fed_back_then_raised(driver: SimDriver, tmp_path: Path) -> None:
    class Flaky:
        def __init__(self, bad: int) -> None:
            self.bad = bad
            self.feedback: list[str | None] = []

        def ask(self, query: Query, schema: type[Judgement]) -> Judgement:
            self.feedback.append(query.feedback)
            if len(self.feedback) <= self.bad:
                raise InvalidModelOutput(f"bad answer {len(self.feedback)}")
            return schema(verdict=True, reason="fine")

    flaky = Flaky(bad=2)
    agent = Agent(driver, ScriptedPolicy([]), out_dir=tmp_path, querier=flaky, max_invalid=2)
    assert agent.assert_("anything") == "fine"
    assert flaky.feedback == [None, "bad answer 1", "bad answer 2"]
    agent = Agent(driver, ScriptedPolicy([]), out_dir=tmp_path / "b", querier=Flaky(bad=5), max_invalid=2)
    with pytest.raises(InvalidModelOutput):
        agent.assert_("anything")


def test_calls_get_their_own_numbered_directories(agent: Agent) -> None:
    agent.act("Turn on Bluetooth")
    agent.assert_("Bluetooth is on")
    names = [call.run_dir.name for call in agent.calls]
    assert names == ["01-act-turn-on-bluetooth", "02-assert-bluetooth-is-on"]
    assert all(call.passed for call in agent.calls)


# --- checks judged from device state, with no model -----------------------------------------------


def test_assert_a_check_reads_the_phone_state_without_a_model(driver: SimDriver, tmp_path: Path) -> None:
    agent = Agent(driver, ScriptedPolicy([]), out_dir=tmp_path)  # the scripted policy cannot answer questions
    assert agent.assert_(ToggleCheck(toggle="wifi", value=False)) == "is off [sim state]"
    assert agent.assert_({"text": "Contacts"}).endswith("[sim state]")
    driver.phone.set_toggle("wifi", True)
    assert agent.check({"toggle": "wifi"}).verdict
    with pytest.raises(AssertionFailed) as info:
        agent.assert_({"element": "Wi-Fi", "checked": False})
    message = str(info.value)
    assert message.startswith("assert_(\"element 'Wi-Fi' is on screen with checked=false\") failed")
    assert (
        "judged from the device state (failed)" in message
        and "seen: no element 'Wi-Fi' on screen [sim state]" in message
    )
    assert info.value.result is not None and info.value.result.source == "sim state"
    assert Path(message.split("screen: ")[1].splitlines()[0]).is_file()
    recorded = load_trajectory(agent.calls[-1].run_dir)
    assert recorded.start is not None and recorded.start.policy == "device state"


def test_a_check_the_device_cannot_judge_fails_as_unknown(driver: SimDriver, tmp_path: Path) -> None:
    agent = Agent(driver, SimOracle(driver), out_dir=tmp_path)
    with pytest.raises(AssertionFailed, match=r"\(unknown\)\.\nseen: cannot be judged on this sim device"):
        agent.assert_({"state": "logged_in"})
    with pytest.raises(ConfigError, match="not a valid check"):
        agent.assert_({"colour": "red"})


def test_wait_until_a_check_holds(driver: SimDriver, tmp_path: Path) -> None:
    agent = Agent(driver, ScriptedPolicy([]), out_dir=tmp_path)
    timer = threading.Timer(0.2, driver.phone.set_toggle, ("bluetooth", True))
    timer.start()
    try:
        judgement = agent.wait_until(ToggleCheck(toggle="bluetooth"), timeout=5, interval=0.05)
    finally:
        timer.cancel()
    assert judgement.verdict and judgement.reason == "is on [sim state]"
    with pytest.raises(WaitTimeout, match="last seen on the device: is off \\[sim state\\]") as info:
        agent.wait_until({"toggle": "airplane_mode"}, timeout=0.1, interval=0.05)
    assert info.value.result is not None and info.value.result.status == "failed"
