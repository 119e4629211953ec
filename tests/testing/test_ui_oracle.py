"""SimOracle: the state-reading stand-in for a model, on several layout seeds."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from vlagent.drivers.sim import SimDriver
from vlagent.tasks import BUILTIN_TASKS
from vlagent.testing import Agent, SimOracle
from vlagent.testing.oracle import OracleCannotAnswer


@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize(
    ("instruction", "key", "value"),
    [
        ("Turn on Dark mode", "dark_mode", True),
        ("switch NFC on", "nfc", True),
        ("Disable vibrate on touch.", "vibrate_on_touch", False),
        ("Turn off Location", "location", False),
    ],
)
def test_toggle_instructions_from_any_layout(
    seed: int, instruction: str, key: str, value: bool, tmp_path: Path
) -> None:
    driver = SimDriver(seed=seed)
    Agent(driver, SimOracle(driver), out_dir=tmp_path).act(instruction, max_steps=12)
    assert driver.phone.toggles[key] is value


def test_instruction_already_satisfied_ends_at_once(tmp_path: Path) -> None:
    driver = SimDriver()
    episode = Agent(driver, SimOracle(driver), out_dir=tmp_path).act("Turn on Mobile data")
    assert len(episode.steps) == 1 and driver.phone.screen == "home"


@pytest.mark.parametrize("name", sorted(BUILTIN_TASKS))
def test_builtin_tasks_from_another_screen(name: str, tmp_path: Path) -> None:
    driver = SimDriver(seed=2)
    driver.prepare(BUILTIN_TASKS[name].start)  # tasks with a start state (delete_note) seed the phone first
    driver.phone.open_app("Clock")
    Agent(driver, SimOracle(driver), out_dir=tmp_path).act(BUILTIN_TASKS[name].instruction, max_steps=15)
    assert BUILTIN_TASKS[name].passed(driver.state())


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("Wi-Fi is off", True),
        ("the wifi toggle is not enabled", True),
        ("Mobile data is on.", True),
        ("the home screen is shown", True),
        ("the Settings app is open", False),
        ("'Contacts' is visible", True),
        ('the text "Dark mode" is on the screen', False),
        ("a note saying 'dentist' exists", True),
        ("a contact named Bob Chen exists", True),
        ("a contact named Ada Lovelace exists", False),
        ("the keyboard is hidden", True),
    ],
)
def test_statements(statement: str, expected: bool) -> None:
    verdict, reason = SimOracle(SimDriver()).judge(statement)
    assert verdict is expected and reason


def test_unknown_statement_lists_what_it_knows() -> None:
    with pytest.raises(OracleCannotAnswer, match=r"does not understand .*the moon is full.*setting> is on/off"):
        SimOracle(SimDriver()).judge("the moon is full")


def test_query_by_field_name_and_unknown_fields() -> None:
    oracle = SimOracle(SimDriver())

    class Known(BaseModel):
        wifi_enabled: bool
        battery_percent: int
        contacts: list[str]

    class Unknown(BaseModel):
        weather: str

    from vlagent.frames import Frame
    from vlagent.testing import Query

    frame = Frame.of(SimDriver().phone.render())
    assert oracle.ask(Query("query", "state?", "", frame), Known) == Known(
        wifi_enabled=False, battery_percent=85, contacts=["Alice Martin", "Bob Chen"]
    )
    with pytest.raises(OracleCannotAnswer, match=r"does not know weather; known fields: .*battery"):
        oracle.ask(Query("query", "weather?", "", frame), Unknown)
