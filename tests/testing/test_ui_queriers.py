"""assert_/query/locate through the REAL tiny Qwen2-VL: the constrained structured path end to end.

The weights are random, so the verdicts are random too; what must hold is what a user relies
on: every answer is a valid instance of the schema, assert_ either passes or fails with the
model's reason, locate lands inside the screen, and each call is recorded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field

from vlagent.drivers.sim import SimDriver
from vlagent.recorder import load_trajectory
from vlagent.testing import Agent, AssertionFailed, Judgement, LocateFailed, Location, Query, querier_for
from vlagent.testing.queriers import Qwen2VLQuerier, parse_answer

pytestmark = pytest.mark.model


class Screen(BaseModel):
    title: str = Field(max_length=40)
    toggles_on: int = Field(ge=0, le=20)
    dark: bool
    labels: list[str] = Field(max_length=2)


def test_the_qwen_policy_gets_a_querier(tiny_policy: Any) -> None:
    assert isinstance(querier_for(tiny_policy), Qwen2VLQuerier)


def test_assert_query_locate_answer_valid_schemas(tiny_policy: Any, tmp_path: Path) -> None:
    driver = SimDriver()
    agent = Agent(driver, tiny_policy, out_dir=tmp_path)
    outcomes: list[bool] = []
    for statement in ("Wi-Fi is on", "the home screen is shown"):
        try:
            reason = agent.assert_(statement)
            outcomes.append(True)
            assert isinstance(reason, str)
        except AssertionFailed as failure:
            outcomes.append(False)
            assert f"assert_({statement!r}) failed" in str(failure)
            assert f"reason given: {failure.judgement.reason or '(none given)'}" in str(failure)
    screen = agent.query("Describe the screen", Screen)
    assert isinstance(screen, Screen) and 0 <= screen.toggles_on <= 20
    try:
        x, y = agent.locate("the Settings icon")
        assert 0 <= x < driver.phone.width and 0 <= y < driver.phone.height
    except LocateFailed as failure:
        assert isinstance(failure.location, Location)
    for call in agent.calls:
        recorded = load_trajectory(call.run_dir)
        assert recorded.complete and recorded.steps[0].raw and (call.run_dir / "frame_0000.png").is_file()


def test_many_answers_in_a_row_are_all_schema_valid(tiny_policy: Any) -> None:
    querier = Qwen2VLQuerier(tiny_policy)
    driver = SimDriver(seed=1)
    answers = []
    for app in ("Settings", "Notes", "Contacts"):
        driver.phone.open_app(app)
        query = Query("assert", "x", f"Is the {app} app open?", driver.screenshot())
        answers.append(querier.ask(query, Judgement))
    assert all(isinstance(a, Judgement) for a in answers)


def test_invalid_text_is_feedback_for_the_model() -> None:
    from vlagent.errors import InvalidModelOutput

    with pytest.raises(InvalidModelOutput, match="verdict: Field required"):
        parse_answer('{"reason": "no verdict"}', Judgement)
