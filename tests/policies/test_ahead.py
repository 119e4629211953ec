"""Work ahead in the agent loop: while the device acts, the policy computes the next prompt's start.

Real parts: the agent loop, the simulated phone, memory, and the tiny random Qwen2-VL through its
processor and the fast decode loop. The answers must be those of a policy that computes every
prompt whole, and a step must compute only its own screen.
"""

from __future__ import annotations

from typing import Any

import pytest
from policy_helpers import PolicyFactory

from vlagent.actions import Wait
from vlagent.agent import Episode, run_episode
from vlagent.drivers.sim import SimDriver
from vlagent.memory import MemoryConfig, TrajectoryMemory
from vlagent.policies.base import HistoryEntry, Observation, Prefetcher

pytest.importorskip("transformers", reason="needs the qwen extra (transformers)")
pytest.importorskip("llguidance", reason="needs the qwen extra (llguidance)")

BUDGET = 160 * 28 * 28


def _episode(policy: Any, steps: int = 7) -> Episode:
    memory = TrajectoryMemory(MemoryConfig(max_pixels=BUDGET, max_tokens=4 * 160, max_images=4, min_history_tokens=4))
    return run_episode("open the settings", SimDriver(seed=3), policy, max_steps=steps, memory=memory)


@pytest.mark.model
def test_the_loop_computes_the_next_prompt_start_while_the_device_acts(tiny_policy: PolicyFactory) -> None:
    whole = _episode(tiny_policy(max_pixels=BUDGET, history_reuse=False))
    policy = tiny_policy(max_pixels=BUDGET)
    assert isinstance(policy, Prefetcher)
    ahead = _episode(policy)
    assert len(ahead.steps) == len(whole.steps) == 7
    assert [s.decision.raw for s in ahead.steps] == [s.decision.raw for s in whole.steps]
    assert [s.action for s in ahead.steps] == [s.action for s in whole.steps]
    for step in ahead.steps[1:]:
        usage, selection = step.decision.usage, step.selection
        assert selection is not None and len(selection["images"]) >= 2
        # Only the current screen went through the vision tower; the start before it came from the cache.
        assert usage["encoded_visual_tokens"] == selection["images"][-1]["tokens"]
        assert usage["history_tokens_reused"] > sum(i["tokens"] for i in selection["images"][:-1])
    assert ahead.steps[0].decision.usage["history_tokens_reused"] == 0


@pytest.mark.model
@pytest.mark.parametrize(
    "options",
    [
        {"work_ahead": False},
        {"history_reuse": False},
        {"fast": False},
        {"fast_inputs": False},
        {"family": "uitars"},  # the step history opens the prompt: its start changes every step
        {"family": "qwen25vl"},
    ],
)
def test_a_policy_that_cannot_gain_from_working_ahead_does_nothing(
    tiny_policy: PolicyFactory, options: dict[str, Any]
) -> None:
    policy = tiny_policy(max_pixels=BUDGET, **options)
    memory = TrajectoryMemory(MemoryConfig(max_pixels=BUDGET, max_tokens=4 * 160, max_images=4, min_history_tokens=4))
    with SimDriver(seed=3) as sim:
        frame = sim.screenshot()
        obs = Observation("open the settings", frame, sim.capabilities, 0, choice=memory.lazy_choice(frame))
        policy.decide(obs)
        upcoming = memory.preview(HistoryEntry(0, Wait(seconds=0)), frame)
        following = Observation(
            "open the settings",
            frame,
            sim.capabilities,
            1,
            upcoming.history,
            choice=upcoming.lazy_choice(frame, stand_in=True),
        )
        assert policy.prefetch(following) == 0
    assert policy._decoder is None or not policy._decoder._steps
