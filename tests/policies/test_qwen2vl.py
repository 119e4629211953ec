"""The in-process Qwen2-VL policy on the tiny random model: the whole path, end to end.

processor + chat template + vision tokens + generate + grammar + parse + coordinate
decode + execute on the simulated phone. The model's weights are random, so what is
checked is the plumbing a user relies on: every constrained answer is a valid action
inside the screen, token counts match the budget, batching changes nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from policy_helpers import PolicyFactory, random_screen

from vlagent.actions import Wait, action_points
from vlagent.agent import EndReason, run_episode
from vlagent.coords import visual_tokens
from vlagent.drivers.base import PHONE_CAPABILITIES, Capabilities
from vlagent.drivers.sim import SimDriver
from vlagent.errors import InvalidModelOutput, ModelLoadError
from vlagent.frames import Frame
from vlagent.memory import MemoryConfig, TrajectoryMemory
from vlagent.policies.base import Decision, HistoryEntry, Observation

pytest.importorskip("transformers", reason="needs the qwen extra (transformers)")
pytest.importorskip("llguidance", reason="needs the qwen extra (llguidance)")

from vlagent.policies.qwen2vl import Qwen2VLPolicy, QwenPolicyConfig

pytestmark = pytest.mark.model

TOKEN_PIXELS = 28 * 28


def _observation(seed: int, caps: Capabilities, size: tuple[int, int], memory: TrajectoryMemory) -> Observation:
    frame = Frame.of(random_screen(size, seed, rectangles=6))
    tasks = ("open settings", "turn on wifi", "write a note saying hi", "call Bob", "search for cats")
    return Observation(tasks[seed % len(tasks)], frame, caps, step_index=seed % 3, images=memory.select(frame))


def test_200_constrained_steps_are_valid_actions_inside_the_screen(tiny_policy: PolicyFactory) -> None:
    # 50 simulated phones of several sizes and layouts, 4 rounds: observe all, decide in one
    # batch, execute every action on its phone (so later screens differ). Sampling at
    # temperature 1 walks many branches of the grammar (greedy decoding of a random model
    # tends to repeat one action).
    torch = pytest.importorskip("torch", reason="needs the qwen extra (torch)")
    torch.manual_seed(0)
    budget = {"max_pixels": 64 * TOKEN_PIXELS, "min_pixels": 16 * TOKEN_PIXELS}
    policy = tiny_policy(temperature=1.0, **budget)
    sizes = [(1080, 2400), (720, 1280), (1080, 1920), (480, 800)]
    drivers = [
        SimDriver(sleep=lambda _s: None, seed=i, width=sizes[i % 4][0], height=sizes[i % 4][1]) for i in range(50)
    ]
    memories = [TrajectoryMemory(MemoryConfig(max_tokens=128, **budget)) for _ in drivers]
    tasks = ("open settings", "turn on wifi", "write a note saying hi", "call Bob", "search for cats")
    kinds: set[str] = set()
    valid = 0
    for round_index in range(4):
        observations = []
        for i, (driver, memory) in enumerate(zip(drivers, memories, strict=True)):
            frame = driver.screenshot()
            observations.append(
                Observation(tasks[i % 5], frame, driver.capabilities, round_index, memory.history, memory.select(frame))
            )
        results = policy.decide_batch(observations)
        for obs, result, driver, memory in zip(observations, results, drivers, memories, strict=True):
            assert isinstance(result, Decision), f"row failed: {result!r}"
            action = result.action
            assert obs.capabilities.refusal(action) is None, action
            for x, y in action_points(action):
                assert 0 <= x < obs.frame.width and 0 <= y < obs.frame.height, (action, obs.frame.size)
            assert result.usage["output_tokens"] <= policy.config.max_new_tokens
            driver.execute(action)
            memory.add(HistoryEntry(round_index, action, result.step.thought), obs.frame)
            kinds.add(action.action)
            valid += 1
    assert valid == 200
    assert len(kinds) >= 5, f"sampling should reach most action types, got only {kinds}"


@pytest.mark.parametrize(
    ("size", "budget"),
    [((1080, 2400), 1280), ((1280, 800), 256), ((720, 1280), 512), ((2560, 1600), 1024), ((500, 333), 1280)],
)
def test_visual_tokens_per_image_match_the_budget(
    tiny_policy: PolicyFactory, size: tuple[int, int], budget: int
) -> None:
    policy = tiny_policy(max_pixels=budget * TOKEN_PIXELS)
    # A raw capture (the policy sizes it) and a screen sized by memory with the same budget.
    raw = Observation("t", Frame.of(random_screen(size, 1, rectangles=6)), PHONE_CAPABILITIES)
    memory = TrajectoryMemory(MemoryConfig(max_pixels=budget * TOKEN_PIXELS, max_tokens=4 * budget))
    sized = _observation(2, PHONE_CAPABILITIES, size, memory)
    batch = policy.prepare([raw, sized])
    image_pad = policy.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    expected = visual_tokens(*size, max_pixels=budget * TOKEN_PIXELS)
    counts = [int((batch.inputs["input_ids"][i] == image_pad).sum()) for i in range(2)]
    assert counts == [expected, expected]
    # The processor kept the images as sized (no second resize): grid (t, h/14, w/14).
    for row, thw in zip(batch.rows, batch.inputs["image_grid_thw"].tolist(), strict=True):
        w, h = row.image_size
        assert thw == [1, h // 14, w // 14]


def test_batch_results_equal_single_results_under_greedy_decoding(tiny_policy: PolicyFactory) -> None:
    policy = tiny_policy(max_pixels=64 * TOKEN_PIXELS)
    memory = TrajectoryMemory(MemoryConfig(max_pixels=64 * TOKEN_PIXELS))
    # Different sizes and prompt lengths, so the batch really pads.
    observations = [
        _observation(seed, PHONE_CAPABILITIES, size, memory)
        for seed, size in ((11, (1080, 2400)), (12, (1280, 800)), (13, (720, 1280)))
    ]
    observations[1] = Observation(
        observations[1].task,
        observations[1].frame,
        observations[1].capabilities,
        history=(HistoryEntry(0, Wait(seconds=1)),),
        images=observations[1].images,
    )
    batched = policy.decide_batch(observations)
    single = [policy.decide(obs) for obs in observations]
    for b, s in zip(batched, single, strict=True):
        assert isinstance(b, Decision)
        assert (b.raw, b.step) == (s.raw, s.step)


def test_episode_on_the_simulated_phone(tiny_policy: PolicyFactory) -> None:
    policy = tiny_policy(max_pixels=64 * TOKEN_PIXELS, with_thought=True, max_new_tokens=256)
    driver = SimDriver(sleep=lambda _s: None)
    memory = TrajectoryMemory(MemoryConfig(max_pixels=64 * TOKEN_PIXELS, max_tokens=256))
    episode = run_episode("open the settings app", driver, policy, max_steps=3, memory=memory)
    assert episode.end in (EndReason.STEP_LIMIT, EndReason.DONE_SUCCESS, EndReason.DONE_FAILURE), episode.detail
    assert episode.steps and episode.invalid_outputs == 0
    for step in episode.steps:
        assert step.decision.usage["visual_tokens"] > 0
        for x, y in action_points(step.action):
            assert 0 <= x < 1080 and 0 <= y < 2400


def test_unconstrained_mode_feeds_back_invalid_output(tiny_policy: PolicyFactory) -> None:
    # A random model does not write JSON by itself: without the grammar its answer is rejected
    # with feedback for the model, and the loop puts that feedback into the next prompt.
    policy = tiny_policy(max_pixels=64 * TOKEN_PIXELS, structured=False, max_new_tokens=24)
    obs = _observation(3, PHONE_CAPABILITIES, (1080, 2400), TrajectoryMemory())
    with pytest.raises(InvalidModelOutput) as info:
        policy.decide(obs)
    assert "JSON" in info.value.feedback
    retry = Observation(obs.task, obs.frame, obs.capabilities, images=obs.images, feedback=info.value.feedback)
    assert info.value.feedback in policy.prepare([retry]).rows[0].text


def test_missing_model_path_gives_a_useful_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as info:
        Qwen2VLPolicy(QwenPolicyConfig(model=str(tmp_path / "no-such-model")))
    assert "no-such-model" in str(info.value) and "directory" in str(info.value)


def test_missing_hub_weights_say_how_to_download(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ModelLoadError) as info:
        Qwen2VLPolicy(QwenPolicyConfig(model="vlagent-tests/not-a-model"))
    message = str(info.value)
    assert "hf download vlagent-tests/not-a-model" in message and "--model" in message


def test_tiny_model_builds_deterministically(tmp_path: Path) -> None:
    from vlagent.policies.tiny import build_tiny_qwen2vl

    a = build_tiny_qwen2vl(tmp_path / "a", seed=3)
    b = build_tiny_qwen2vl(tmp_path / "b", seed=3)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_import_vlagent_does_not_import_torch() -> None:
    code = (
        "import sys, vlagent, vlagent.policies.prompt, vlagent.policies.grammar, vlagent.policies.qwen2vl, "
        "vlagent.policies.tiny; heavy = [m for m in ('torch', 'transformers', 'llguidance') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ))
    assert result.returncode == 0, result.stdout + result.stderr


def test_registry_opens_qwen2vl_and_tiny_policies(
    tiny_qwen2vl: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from vlagent.errors import ConfigError
    from vlagent.policies.registry import open_policy

    policy = open_policy(
        "qwen2vl", model=str(tiny_qwen2vl), max_pixels=64 * TOKEN_PIXELS, model_device="cpu", no_constrain=True
    )
    assert isinstance(policy, Qwen2VLPolicy) and policy.config.structured is False
    assert policy.family.name == "qwen2vl" and policy.config.device == "cpu"
    with pytest.raises(ConfigError, match="base_url"):
        open_policy("qwen2vl", model=str(tiny_qwen2vl), base_url="http://127.0.0.1:1/v1")
    with pytest.raises(ConfigError, match="colour"):
        open_policy("qwen2vl", model=str(tiny_qwen2vl), colour="red")

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    tiny = open_policy("tiny", max_pixels=64 * TOKEN_PIXELS)
    assert tiny.name == "tiny"
    obs = _observation(
        5, PHONE_CAPABILITIES, (1080, 2400), TrajectoryMemory(MemoryConfig(max_pixels=64 * TOKEN_PIXELS))
    )
    assert obs.capabilities.refusal(tiny.decide(obs).action) is None
