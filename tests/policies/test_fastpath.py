"""The fast path of the Qwen2-VL policy chooses exactly what the plain path chooses.

Plain path: the processor + transformers' ``generate`` under the grammar. Fast path:
pixel values and token ids built directly, the prompt prefix's KV cache reused, forced
tokens fast-forwarded, optional static cache. Under greedy decoding on the tiny random
model both must give the same answer text and the same action, for single steps and for
batches, phones and desktops, with and without a thought, and multi-image prompts.
"""

from __future__ import annotations

from typing import Any

import pytest
from policy_helpers import BUDGET, PolicyFactory, random_screen

from vlagent.actions import Click
from vlagent.drivers.base import DESKTOP_CAPABILITIES, PHONE_CAPABILITIES
from vlagent.frames import Frame
from vlagent.memory import MemoryConfig, TrajectoryMemory
from vlagent.policies.base import Decision, HistoryEntry, Observation

pytest.importorskip("transformers", reason="needs the qwen extra (transformers)")
pytest.importorskip("llguidance", reason="needs the qwen extra (llguidance)")

from vlagent.policies.qwen2vl import Qwen2VLPolicy

pytestmark = pytest.mark.model

TASKS = ("open settings", "turn on wifi", "write a note saying hi", "call Bob", "search for cats")


def _plain(tiny_policy: PolicyFactory, **options: Any) -> Qwen2VLPolicy:
    return tiny_policy(fast=False, fast_inputs=False, **options)


def _observations(count: int, *, history: bool = False) -> list[Observation]:
    sizes = ((1080, 2400), (1280, 800), (720, 1280), (1920, 1080))
    result = []
    for seed in range(count):
        caps = PHONE_CAPABILITIES if seed % 2 == 0 else DESKTOP_CAPABILITIES
        memory = TrajectoryMemory(MemoryConfig(max_pixels=BUDGET, max_images=3, max_tokens=4 * 96))
        entries: list[HistoryEntry] = []
        if history:  # two earlier screens: a multi-image prompt with a history
            for step in range(2):
                earlier = Frame.of(random_screen(sizes[seed % 4], 100 + seed * 7 + step))
                entries.append(HistoryEntry(step, Click(x=10 + step, y=20)))
                memory.add(entries[-1], earlier)
        frame = Frame.of(random_screen(sizes[seed % 4], seed))
        images = memory.select(frame)
        result.append(Observation(TASKS[seed % 5], frame, caps, len(entries), tuple(entries), images))
    return result


def _same(a: Decision, b: Decision) -> None:
    assert (a.raw, a.step) == (b.raw, b.step)


def test_direct_inputs_equal_the_processor_output(tiny_policy: PolicyFactory) -> None:
    torch = pytest.importorskip("torch", reason="needs the qwen extra (torch)")
    observations = _observations(3, history=True) + _observations(2)
    plain = _plain(tiny_policy).prepare(observations).inputs
    direct = tiny_policy().prepare(observations).inputs
    for key in ("input_ids", "attention_mask", "mm_token_type_ids", "image_grid_thw"):
        assert torch.equal(plain[key], direct[key]), key
    assert plain["pixel_values"].shape == direct["pixel_values"].shape
    assert torch.allclose(plain["pixel_values"], direct["pixel_values"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("thought", [False, True])
def test_fast_and_plain_paths_choose_identical_actions(tiny_policy: PolicyFactory, thought: bool) -> None:
    observations = _observations(4) + _observations(2, history=True)
    plain = _plain(tiny_policy, with_thought=thought)
    fast = tiny_policy(with_thought=thought)
    fast_decisions = [fast.decide(obs) for obs in observations]
    for obs, mine in zip(observations, fast_decisions, strict=True):
        _same(plain.decide(obs), mine)
    # The fast path reached the same answers with fewer forward passes: forced tokens came in chunks.
    forced = sum(d.usage["forced_tokens"] for d in fast_decisions)
    sampled = sum(d.usage["sampled_tokens"] for d in fast_decisions)
    assert forced > sampled > 0
    assert all(d.usage["forward_passes"] < d.usage["output_tokens"] for d in fast_decisions)
    # Batched (rows with different tasks, so no shared prefix, and different prompt lengths).
    for a, b in zip(plain.decide_batch(observations), fast.decide_batch(observations), strict=True):
        assert isinstance(a, Decision) and isinstance(b, Decision)
        _same(a, b)


def test_an_episode_reuses_its_prompt_prefix(tiny_policy: PolicyFactory) -> None:
    plain = _plain(tiny_policy)
    fast = tiny_policy()
    # Steps of one episode: same task and device kind, new screens.
    steps = [
        Observation("open settings", Frame.of(random_screen((1080, 2400), seed)), PHONE_CAPABILITIES, seed)
        for seed in range(3)
    ]
    results = [fast.decide(obs) for obs in steps]
    assert all(r.usage["prefix_tokens"] > 100 for r in results)
    assert [r.usage["prefix_reused"] for r in results] == [0.0, 1.0, 1.0]
    for obs, mine in zip(steps, results, strict=True):
        _same(plain.decide(obs), mine)
    # A batch of rows sharing the prefix uses it too, and agrees with the plain batch; a history
    # makes one row longer, so the rows are padded between the prefix and the rest.
    steps[2] = Observation(
        steps[2].task, steps[2].frame, steps[2].capabilities, 2, (HistoryEntry(0, Click(x=5, y=9), "hi"),)
    )
    batch = fast.decide_batch(steps)
    assert all(isinstance(r, Decision) and r.usage["prefix_reused"] == 1.0 for r in batch)
    for a, b in zip(plain.decide_batch(steps), batch, strict=True):
        assert isinstance(a, Decision) and isinstance(b, Decision)
        _same(a, b)


def test_static_cache_gives_the_same_actions(tiny_policy: PolicyFactory) -> None:
    observations = _observations(3)
    plain = _plain(tiny_policy)
    static = tiny_policy(cache="static", compile="off")
    for obs in observations:
        _same(plain.decide(obs), static.decide(obs))
    for a, b in zip(plain.decide_batch(observations), static.decide_batch(observations), strict=True):
        assert isinstance(a, Decision) and isinstance(b, Decision)
        _same(a, b)


def test_fast_forward_keeps_answers_of_the_plain_generate(tiny_policy: PolicyFactory) -> None:
    # Forcing the grammar's canonical tokens changes nothing a user sees on these screens:
    # the same actions as sampling every token under the mask.
    observations = _observations(4)
    unforced = _plain(tiny_policy, fast_forward=False)
    fast = tiny_policy()
    for obs in observations:
        assert unforced.decide(obs).action == fast.decide(obs).action


def test_compiled_decode_gives_the_same_actions_and_compiles_once_per_shape(tiny_policy: PolicyFactory) -> None:
    # The CUDA default (static cache + compiled decode step), run with inductor on the CPU:
    # the same answers, and a new screen size within the same cache bucket compiles nothing.
    observations = _observations(4)
    plain = _plain(tiny_policy)
    compiled = tiny_policy(cache="static", compile="default")
    decisions = [compiled.decide(obs) for obs in observations]
    for obs, mine in zip(observations, decisions, strict=True):
        _same(plain.decide(obs), mine)
    # The first steps compile the bucket's decode shapes (one per chunk length met); the third
    # and fourth screens (720x1280, 1920x1080) are new sizes and compile nothing.
    assert decisions[0].usage["compile_s"] > 0
    assert [d.usage["compile_s"] for d in decisions[2:]] == [0.0, 0.0]
    again = [compiled.decide(obs).usage["compile_s"] for obs in observations]
    assert again == [0.0] * len(observations)


@pytest.mark.parametrize(
    ("family", "reuse"),
    [
        # UI-TARS-1.5: instructions as the first user turn, earlier screenshots and answers as
        # turns. As screenshots leave the window the turns after the instructions change, yet
        # the instructions' keys and values are computed once.
        ("uitars15", [0.0, 1.0, 1.0, 1.0]),
        # Qwen3-VL: the task and progress open the user turn; the system turn is reused.
        ("qwen3vl", [0.0, 1.0, 1.0, 1.0]),
        # ShowUI: everything in one user turn after the template's default system turn: too
        # short a prefix to be worth caching.
        ("showui", [0.0, 0.0, 0.0, 0.0]),
    ],
)
def test_native_layouts_keep_identical_actions_and_reuse_what_is_constant(
    tiny_policy: PolicyFactory, family: str, reuse: list[float]
) -> None:
    plain = _plain(tiny_policy, family=family)
    fast = tiny_policy(family=family)
    memory = TrajectoryMemory(MemoryConfig(max_pixels=BUDGET, max_images=2, max_tokens=4 * 96))
    entries: list[HistoryEntry] = []
    reused = []
    for step in range(4):
        frame = Frame.of(random_screen((1080, 2400), 40 + step))
        obs = Observation("open settings", frame, PHONE_CAPABILITIES, step, tuple(entries), memory.select(frame))
        mine = fast.decide(obs)
        _same(plain.decide(obs), mine)
        reused.append(mine.usage["prefix_reused"])
        entries.append(HistoryEntry(step, mine.action, mine.step.thought))
        memory.add(entries[-1], frame)
    assert reused == reuse
