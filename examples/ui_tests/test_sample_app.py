"""A UI test suite for the sample desktop app, written the way a tester writes one.

Run it with ``pytest examples/ui_tests --vl-device sample_desktop``. Each test gets the
sample Tk app (``python -m vlagent.apps.sample_desktop``) started afresh on a private
Xvfb screen (the ``xvfb`` package must be installed). Without model weights the plugin
answers with the app's state oracle, so these tests check real behaviour in CI; with
``--vl-model PATH`` (or ``--vl-base-url URL --vl-model NAME``) the same tests are carried
out and judged by the model, from screenshots.

The phone tests of this directory are skipped on this device and these on the phone:
each module is marked with the device kind it is written for.
"""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from vlagent import Click
from vlagent.testing import Agent

pytestmark = pytest.mark.vl_device_kind("sample_desktop")


def test_sign_in(vl_agent: Agent) -> None:
    vl_agent.act("Sign in as ada with password secret", max_steps=12)
    vl_agent.assert_("the user is signed in")
    vl_agent.assert_("'Welcome, ada!' is visible")


class Settings(BaseModel):
    dark_mode: bool
    notifications: bool
    auto_save: bool


def test_dark_mode_leaves_the_other_settings_alone(vl_agent: Agent) -> None:
    vl_agent.act("Turn on Dark mode")
    settings = vl_agent.query("Which of the settings checkboxes are ticked?", Settings)
    assert settings == Settings(dark_mode=True, notifications=True, auto_save=False)


def test_tick_auto_save_by_clicking_it(vl_agent: Agent) -> None:
    x, y = vl_agent.locate("the Auto-save checkbox")
    vl_agent.driver.execute(Click(x=x, y=y))
    vl_agent.wait_until("Auto-save is on", timeout=5)


def test_search_and_open_an_item(vl_agent: Agent) -> None:
    vl_agent.act("Search the shopping list for 'milk'")
    vl_agent.assert_("'Milk' is visible in the list")
    vl_agent.assert_("'Bread' is not visible in the list")
    vl_agent.act("Open item Milk")
    vl_agent.assert_("'Milk' is opened")


def test_write_a_note(vl_agent: Agent) -> None:
    vl_agent.act("Type 'call the bakery' into the note field")
    vl_agent.assert_("the note says 'call the bakery'")
