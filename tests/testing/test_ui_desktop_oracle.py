"""SampleAppOracle: the state-reading stand-in for a model on the sample desktop app (real Tk app on Xvfb)."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from pydantic import BaseModel

from vlagent import Click
from vlagent.drivers.base import Driver
from vlagent.drivers.registry import open_driver
from vlagent.drivers.xvfb import xvfb_available
from vlagent.testing import ActFailed, Agent, AssertionFailed, LocateFailed
from vlagent.testing.desktop_oracle import SampleAppOracle
from vlagent.testing.oracle import OracleCannotAnswer

if TYPE_CHECKING:
    from tests.conftest import SampleApp

pytestmark = pytest.mark.xvfb
pytest_plugins = ("pytester",)


@pytest.fixture
def driver(sample_app: SampleApp) -> Iterator[Driver]:
    """A desktop driver whose frame is the app's window (as the pytest plugin opens it)."""
    drv = open_driver("desktop", region=tuple(sample_app.state()["window"]))
    yield drv
    drv.close()


@pytest.fixture
def oracle(driver: Driver, sample_app: SampleApp) -> SampleAppOracle:
    return SampleAppOracle(driver, sample_app.state_path)


@pytest.fixture
def agent(driver: Driver, oracle: SampleAppOracle, tmp_path: Path) -> Agent:
    return Agent(driver, oracle, out_dir=tmp_path / "runs")


def test_signs_in_and_the_app_state_shows_it(agent: Agent, sample_app: SampleApp) -> None:
    agent.act("Sign in as ada with password secret", max_steps=12)
    state = sample_app.state()
    assert (state["logged_in"], state["user"], state["login_attempts"]) == (True, "ada", 1)
    assert agent.assert_("the user is signed in") == "signed in as 'ada'"
    assert agent.check("bob is signed in").verdict is False


def test_a_wrong_password_is_refused_and_judged_false(
    agent: Agent, oracle: SampleAppOracle, sample_app: SampleApp
) -> None:
    with pytest.raises(ActFailed, match=r"refused to sign in 'ada': Unknown user or wrong password"):
        agent.act("Log in as ada with password hunter2", max_steps=12)
    state = sample_app.state()
    assert (state["logged_in"], state["login_attempts"], state["password_length"]) == (False, 1, 7)
    assert oracle.judge("the user is signed in") == (
        False,
        "not signed in; the app says 'Unknown user or wrong password.'",
    )
    assert oracle.judge("a sign-in error is shown")[0] is True
    with pytest.raises(AssertionFailed, match=r"the SampleAppOracle judged it false.\nreason given: not signed in"):
        agent.assert_("the user is logged in")


class Settings(BaseModel):
    dark_mode: bool
    is_notifications_on: bool
    auto_save: bool
    volume: int


def test_query_fills_a_model_from_the_app_state(agent: Agent, sample_app: SampleApp) -> None:
    agent.act("Turn on Dark mode")
    agent.act("Disable notifications")
    assert sample_app.state()["settings"]["dark_mode"] is True
    answer = agent.query("What are the settings?", Settings)
    assert answer == Settings(dark_mode=True, is_notifications_on=False, auto_save=False, volume=30)

    class Weather(BaseModel):
        weather: str

    with pytest.raises(OracleCannotAnswer, match=r"does not know weather; known fields: .*dark_mode"):
        agent.query("How is the weather?", Weather)


def test_locate_hits_the_widget(agent: Agent, sample_app: SampleApp) -> None:
    x, y = agent.locate("the Log in button")
    agent.driver.execute(Click(x=x, y=y))
    state = sample_app.wait_for(lambda s: s["login_attempts"] == 1)
    assert state["last_click"]["widget"] == "login_button"
    bx, by, bw, bh = state["widgets"]["login_button"]
    assert bx <= state["last_click"]["x"] < bx + bw and by <= state["last_click"]["y"] < by + bh
    with pytest.raises(LocateFailed, match="no visible element called 'Teleport button'"):
        agent.locate("the Teleport button")


def test_unknown_instruction_fails_with_its_reason(agent: Agent, sample_app: SampleApp) -> None:
    with pytest.raises(ActFailed, match=r"done_failure after 1 step\(s\) \(the sample app oracle cannot do 'Brew a"):
        agent.act("Brew a coffee")
    assert sample_app.settle()["last_click"] is None  # nothing was touched
    with pytest.raises(ActFailed, match="there is no setting called 'warp drive'"):
        agent.act("Turn on warp drive")


def test_unknown_statement_names_the_known_forms(oracle: SampleAppOracle) -> None:
    with pytest.raises(OracleCannotAnswer, match=r"SampleAppOracle does not understand .*the moon.*is signed in"):
        oracle.judge("the moon is full")


def test_open_an_item_hidden_by_the_search_and_below_the_fold(agent: Agent, sample_app: SampleApp) -> None:
    agent.act("Search the shopping list for 'te'")
    assert sample_app.state()["visible_items"] == ["Butter", "Tea"]
    agent.assert_("'Milk' is not visible in the list")
    agent.act("Open item Yoghurt", max_steps=12)  # clears the search, scrolls, double-clicks
    state = sample_app.state()
    assert (state["opened"], state["search"]) == ("Yoghurt", "")
    agent.assert_("'Yoghurt' is opened")
    agent.act("Type 'bread, eggs' into the note field")
    agent.act("Set the note to 'eggs'")  # replaces the text
    assert sample_app.state()["note"] == "eggs"
    agent.assert_("the note says 'eggs'")


@pytest.mark.skipif(not xvfb_available(), reason="Xvfb is not installed (apt-get install xvfb)")
def test_plugin_gives_each_test_a_fresh_app_and_names_the_oracle_on_failure(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_fresh_app_one(vl_agent, vl_sample_app):
            vl_agent.act("Turn on Dark mode")
            assert vl_sample_app.state()["settings"]["dark_mode"] is True

        def test_fresh_app_two(vl_agent, vl_sample_app):
            assert vl_sample_app.state()["settings"]["dark_mode"] is False
            vl_agent.assert_("Dark mode is on")
        """
    )
    registered = any(ep.value == "vlagent.testing.plugin" for ep in entry_points(group="pytest11"))
    plugin = [] if registered else ["-p", "vlagent.testing.plugin"]
    result = pytester.runpytest_subprocess(*plugin, "-p", "no:cacheprovider", "--vl-device", "sample_desktop")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*assert_('Dark mode is on') failed: the SampleAppOracle judged it false.*",
            "*reason given: Dark mode is off*",
        ]
    )
