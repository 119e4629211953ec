"""Every model family end to end on the tiny random Qwen2-VL and the simulated phone.

The weights are random, so what is checked is what a user relies on when switching
``--family``: the family's own prompt reaches the model, its grammar constrains decoding
so that every answer is in the family's format and parses (no invalid outputs), and the
parsed actions land inside the screen.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from vlagent.actions import action_points
from vlagent.agent import EndReason, run_episode
from vlagent.drivers.sim import SimDriver
from vlagent.memory import MemoryConfig, TrajectoryMemory
from vlagent.policies.base import Observation
from vlagent.policies.prompt import system_prompt

pytest.importorskip("transformers", reason="needs the qwen extra (transformers)")
pytest.importorskip("llguidance", reason="needs the qwen extra (llguidance)")

from vlagent.policies.qwen2vl import Qwen2VLPolicy, QwenPolicyConfig

pytestmark = pytest.mark.model

TOKEN_PIXELS = 28 * 28
#: The shape of every answer of a family (its native format, as constrained by its grammar).
FORMATS = {
    "qwen2vl": r'\{"thought":',
    "qwen25vl": r'<tool_call>\n\{"name": "mobile_use", "arguments": \{"action": "',
    "qwen3vl": r'Thought: [^\n]+\nAction: "[^\n]*"\n<tool_call>\n\{"name": "mobile_use"',
    "uitars": r"Thought: [^\n]+\nAction: [a-z_]+\(",
    "uitars15": r"Thought: [^\n]+\nAction: [a-z_]+\(",
    "showui": r"\{'action': '[A-Z]+', 'value': ",
}


@pytest.mark.parametrize("family", sorted(FORMATS))
def test_episode_per_family_on_the_simulated_phone(
    family: str, tiny_qwen2vl: Path, tiny_loaded: tuple[Any, Any]
) -> None:
    config = QwenPolicyConfig(
        model=str(tiny_qwen2vl),
        device="cpu",
        family=family,
        max_pixels=64 * TOKEN_PIXELS,
        max_thought_chars=12,
        max_string_chars=10,
        max_new_tokens=160,
    )
    model, processor = tiny_loaded
    policy = Qwen2VLPolicy(config, model=model, processor=processor)
    assert policy.family.name == family
    driver = SimDriver(sleep=lambda _s: None)
    # The family's own system prompt is what the chat template gives the model.
    obs = Observation("open the settings app", driver.screenshot(), driver.capabilities)
    row = policy.prepare([obs]).rows[0]
    assert system_prompt(obs.task, obs.capabilities, policy.family, row.image_size) in row.text
    if policy.family.history_turns is not None:  # the instructions are the first user turn
        assert (
            "<|im_start|>user\n" + system_prompt(obs.task, obs.capabilities, policy.family, row.image_size) in row.text
        )
    elif policy.family.user_turn is None:
        assert policy.family.ask in row.text
    elif family == "showui":  # instructions and task in the one user turn, no system turn of ours
        assert (
            "<|im_start|>user\n" + system_prompt(obs.task, obs.capabilities, policy.family, row.image_size) in row.text
        )
        assert "Task: open the settings app\n<|vision_start|>" in row.text
    else:  # the cookbook's user turn: the task, then the screenshot
        assert f"The user query: {'' if family == 'qwen3vl' else ' '}open the settings app" in row.text
    memory = TrajectoryMemory(MemoryConfig(max_pixels=64 * TOKEN_PIXELS, max_tokens=256))
    episode = run_episode("open the settings app", driver, policy, max_steps=2, memory=memory)
    assert episode.end in (EndReason.STEP_LIMIT, EndReason.DONE_SUCCESS, EndReason.DONE_FAILURE), episode.detail
    assert episode.steps and episode.invalid_outputs == 0
    for step in episode.steps:
        assert re.match(FORMATS[family], step.decision.raw), step.decision.raw
        for x, y in action_points(step.action):
            assert 0 <= x < 1080 and 0 <= y < 2400
