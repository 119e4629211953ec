"""A UI test suite for the simulated phone, written the way a tester writes one.

Run it with ``pytest examples/ui_tests --vl-device sim``. Without model weights the
plugin answers with the simulated phone's state oracle, so these tests check real
behaviour in CI; with ``--vl-model PATH`` (or ``--vl-base-url URL --vl-model NAME``) the
same tests are carried out and judged by the model. The module is marked for the
simulated phone: ``--vl-device sample_desktop`` skips it (and runs test_sample_app.py).
"""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from vlagent import Click
from vlagent.testing import Agent

pytestmark = pytest.mark.vl_device_kind("sim")


def test_turn_on_wifi(vl_agent: Agent) -> None:
    vl_agent.act("Turn on Wi-Fi")
    vl_agent.assert_("Wi-Fi is on")
    # a check is decided from the phone's own state (view hierarchy, settings), with no model
    vl_agent.assert_({"element": "Wi-Fi", "checked": True})


class Toggles(BaseModel):
    dark_mode: bool
    bluetooth: bool


def test_dark_mode_without_touching_bluetooth(vl_agent: Agent) -> None:
    vl_agent.act("Open Settings and turn on Dark mode.", max_steps=12)
    state = vl_agent.query("Are Dark mode and Bluetooth switched on?", Toggles)
    assert state == Toggles(dark_mode=True, bluetooth=False)


def test_open_notes_by_tapping_its_icon(vl_agent: Agent) -> None:
    x, y = vl_agent.locate("the Notes icon")
    vl_agent.driver.execute(Click(x=x, y=y))
    vl_agent.wait_until("the Notes screen is shown", timeout=5)
    vl_agent.assert_("'New note' is visible")


def test_add_a_contact(vl_agent: Agent) -> None:
    vl_agent.act("Add a contact named Ada Lovelace with phone number +44 20 7946 0958.", max_steps=12)
    vl_agent.assert_("a contact named Ada Lovelace exists")


@pytest.mark.vl_real
def test_battery_level_is_read_from_the_screen(vl_agent: Agent) -> None:
    """Needs a model: reading a number off the Battery row is not something the oracle fakes."""

    class Battery(BaseModel):
        percent: int

    vl_agent.act("Open Settings and scroll down to the Battery row.", max_steps=8)
    assert vl_agent.query("What battery percentage does the Battery row show?", Battery).percent == 85
