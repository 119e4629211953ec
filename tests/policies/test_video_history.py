"""History as video on the tiny random Qwen2-VL: the real processor, the real tower, generate().

Memory (``history="video"``) pairs the older screens; the policy turns each pair into a
``{"type": "video"}`` part that the processor expands to ``<|video_pad|>`` tokens. Checked:
the processor's token count is memory's count, a pair's tokens come from both its frames,
and the fast loop (each pair run in the form of an image) answers what transformers'
``generate`` answers on the real video input (batch 1 and 4, vision cache on and off).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from policy_helpers import BUDGET, SIZES, TASKS, PolicyFactory, lockstep_step, random_screen

from vlagent.actions import Key
from vlagent.drivers.base import PHONE_CAPABILITIES
from vlagent.errors import ConfigError
from vlagent.frames import Frame
from vlagent.memory import MemoryConfig, Selection, TrajectoryMemory
from vlagent.policies.base import Decision, HistoryEntry, Observation

pytest.importorskip("transformers", reason="needs the qwen extra (transformers)")
pytest.importorskip("llguidance", reason="needs the qwen extra (llguidance)")

from vlagent.policies.qwen2vl import Qwen2VLPolicy, create_policy

pytestmark = pytest.mark.model


@pytest.fixture
def video_policy(tiny_policy: PolicyFactory) -> PolicyFactory:
    """The tiny policy with history as video."""

    def make(**options: Any) -> Qwen2VLPolicy:
        return tiny_policy(history="video", **options)

    return make


def _memory(max_images: int = 6) -> TrajectoryMemory:
    return TrajectoryMemory(
        MemoryConfig(max_pixels=BUDGET, max_images=max_images, max_tokens=3 * 96, min_history_tokens=4, history="video")
    )


def _episodes(
    policy: Qwen2VLPolicy, count: int, steps: int, max_images: int = 6
) -> tuple[list[list[Decision]], list[list[Selection]]]:
    """``count`` episodes in lockstep, one ``decide_batch`` per step; memory as the loop drives it."""
    memories = [_memory(max_images) for _ in range(count)]
    decisions: list[list[Decision]] = [[] for _ in range(count)]
    selections: list[list[Selection]] = [[] for _ in range(count)]
    for step in range(steps):
        observations, results = lockstep_step(policy, memories, step)
        for n, (obs, result) in enumerate(zip(observations, results, strict=True)):
            assert isinstance(result, Decision), result
            assert obs.choice is not None and obs.choice.selection is not None
            decisions[n].append(result)
            selections[n].append(obs.choice.selection)
            memories[n].add(HistoryEntry(step, result.step.action, result.step.thought), obs.frame)
    return decisions, selections


@pytest.mark.parametrize("max_images", [4, 6])
def test_the_processor_spends_the_tokens_memory_counted(video_policy: PolicyFactory, max_images: int) -> None:
    policy = video_policy(fast_inputs=False)  # the processor makes the inputs
    video_pad = policy.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    memory = _memory(max_images)
    clips_seen = 0
    for step in range(7):
        frame = Frame.of(random_screen(SIZES[0], step))
        obs = Observation(
            "open settings", frame, PHONE_CAPABILITIES, step, memory.history, choice=memory.lazy_choice(frame)
        )
        batch = policy.prepare([obs])
        assert obs.choice is not None and obs.choice.selection is not None
        selection = obs.choice.selection
        clip_tokens = sum(selection.images[clip[0]].tokens for clip in selection.clips)
        ids = batch.inputs["input_ids"][0]
        assert int((ids == video_pad).sum()) == clip_tokens
        assert int((ids == policy._image_pad_id).sum()) + clip_tokens == selection.total_tokens
        if selection.clips:
            grid = batch.inputs["video_grid_thw"]
            assert grid.shape[0] == len(selection.clips) and set(grid[:, 0].tolist()) == {1}  # one pair each
            assert batch.rows[0].text.count("<|vision_start|><|video_pad|><|vision_end|>") == len(selection.clips)
            assert batch.rows[0].text.count("as a video of 2 frames, oldest first:") == len(selection.clips)
            clips_seen += len(selection.clips)
        decision = policy.decide(obs)
        assert decision.usage["visual_tokens"] == selection.total_tokens
        assert decision.usage["video_tokens"] == clip_tokens
        memory.add(HistoryEntry(step, decision.step.action), frame)
    assert clips_seen >= 4 if max_images == 4 else clips_seen >= 6


def test_video_inputs_made_directly_equal_the_processor_s(video_policy: PolicyFactory) -> None:
    torch = pytest.importorskip("torch", reason="needs the qwen extra (torch)")
    direct = video_policy(history_reuse=False)
    processor = video_policy(history_reuse=False, fast_inputs=False)
    memories = [_memory(6), _memory(4), _memory(6)]
    for step in range(6):
        frames = [Frame.of(random_screen(SIZES[n], 10 * n + step)) for n in range(len(memories))]
        observations = [
            Observation(TASKS[n], f, PHONE_CAPABILITIES, step, m.history, choice=m.lazy_choice(f))
            for n, (m, f) in enumerate(zip(memories, frames, strict=True))
        ]
        ours, theirs = direct.prepare(observations).inputs, processor.prepare(observations).inputs
        assert set(ours) == set(theirs), (set(ours), set(theirs))
        for key in ("input_ids", "attention_mask", "mm_token_type_ids", "image_grid_thw", "video_grid_thw"):
            if key in theirs:
                assert torch.equal(ours[key].cpu(), theirs[key].cpu()), key
        for key in ("pixel_values", "pixel_values_videos"):
            if key in theirs:
                assert torch.allclose(ours[key], theirs[key], atol=1e-5), key
        for memory, frame in zip(memories, frames, strict=True):
            memory.add(HistoryEntry(step, Key(key="back")), frame)
    assert "pixel_values_videos" in theirs and theirs["video_grid_thw"].shape[0] == 5  # 2 + 1 + 2 pairs


def test_a_pair_sees_both_frames_and_a_still_pair_is_the_image(video_policy: PolicyFactory) -> None:
    torch = pytest.importorskip("torch", reason="needs the qwen extra (torch)")
    from vlagent.coords import MAX_PIXELS, MIN_PIXELS
    from vlagent.policies.videohistory import encode_videos

    policy = video_policy()
    a, b = (random_screen((280, 560), seed) for seed in (1, 2))
    inputs = policy.processor(
        text=["<|vision_start|><|image_pad|><|vision_end|>" + "<|vision_start|><|video_pad|><|vision_end|>" * 2],
        images=[a],
        videos=[[a, a], [a, b]],
        return_tensors="pt",
        size={"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS},
        cap_pixels_per_frame=False,
    )
    with torch.inference_mode():
        (image,) = policy._tower(inputs["pixel_values"], inputs["image_grid_thw"])
        still, moving = encode_videos(
            policy.model, inputs["pixel_values_videos"], inputs["video_grid_thw"]
        ).pooler_output
    assert image.shape == still.shape == moving.shape == (200, image.shape[1])  # (280/28)*(560/28) tokens for 2 frames
    # A still image is its frame repeated over the temporal patch: the same as a pair of that frame.
    assert torch.allclose(still, image, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(moving, still, atol=1e-3)  # the second frame is seen


@pytest.mark.parametrize(("path", "count"), [("fast", 1), ("fast", 4), ("fast-no-cache", 4), ("plain-cache", 1)])
def test_the_fast_loop_answers_what_generate_answers_on_video(
    video_policy: PolicyFactory, path: str, count: int
) -> None:
    options: dict[str, Any] = {
        "fast": {},
        "fast-no-cache": {"history_reuse": False},
        "plain-cache": {"fast": False},  # generate with the images' cached embeddings, the videos' computed
    }[path]
    reference = video_policy(fast=False, fast_inputs=False, history_reuse=False)
    policy = video_policy(**options)
    steps = 7
    expected, selections = _episodes(reference, count, steps)
    got, _ = _episodes(policy, count, steps)
    assert all(len(episode[-1].clips) == 2 for episode in selections)
    for mine, theirs in zip(got, expected, strict=True):
        assert [(d.raw, d.step) for d in mine] == [(d.raw, d.step) for d in theirs]
        assert [d.usage["video_tokens"] for d in mine] == [d.usage["video_tokens"] for d in theirs]
        assert all(d.usage["encoded_visual_tokens"] == d.usage["visual_tokens"] for d in theirs)
        if policy.pairs is not None:  # from step 6 on, the older pair is the one shown two steps before
            later = zip(mine[5:], theirs[5:], strict=True)
            assert all(m.usage["encoded_visual_tokens"] < t.usage["visual_tokens"] for m, t in later)
    if policy.pairs is not None:
        assert policy.pairs.hits >= count * (steps - 5)


def test_pairs_in_the_form_of_images_give_the_logits_of_real_video(video_policy: PolicyFactory) -> None:
    """What the fast loop relies on: one-pair videos as image-shaped inputs change nothing the model computes."""
    torch = pytest.importorskip("torch", reason="needs the qwen extra (torch)")
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    from vlagent.policies.videohistory import encode_videos, videos_as_images

    policy = video_policy()
    memories = [_memory(6), _memory(4)]
    for step in range(6):
        observations = []
        for n, memory in enumerate(memories):
            frame = Frame.of(random_screen(SIZES[n], 10 * n + step))
            observations.append(
                Observation(TASKS[n], frame, PHONE_CAPABILITIES, step, memory.history, choice=memory.lazy_choice(frame))
            )
        batch = policy.prepare(observations)
        for memory, obs in zip(memories, observations, strict=True):
            memory.add(HistoryEntry(step, Key(key="back")), obs.frame)
    inputs = batch.inputs
    assert inputs["video_grid_thw"].shape[0] == 3  # two pairs in the first row, one in the second

    def last_logits(**kwargs: Any) -> Any:
        with torch.inference_mode():
            return policy.model(**kwargs).logits[:, -1]

    real = last_logits(**inputs)  # the processor's video input, as generate() gets it
    rows = [ids[mask.bool()].tolist() for ids, mask in zip(inputs["input_ids"], inputs["attention_mask"], strict=True)]
    pads = (policy._image_pad_id, policy._video_pad_id)

    def as_images(frames_swapped: bool) -> Any:
        values = inputs["pixel_values_videos"]
        if frames_swapped:  # each patch row holds (channel, frame, 14, 14): swap the two frames
            values = values.view(values.shape[0], 3, 2, -1).flip(2).reshape(values.shape)
        with torch.inference_mode():
            videos = encode_videos(policy.model, values, inputs["video_grid_thw"]).pooler_output
            made = videos_as_images(rows, inputs, None, videos, pads, tower=policy._tower)
        width = max(len(r) for r in made[0])
        ids = torch.full((len(rows), width), policy._pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, row in enumerate(made[0]):  # left padding, as the processor pads
            ids[i, width - len(row) :], mask[i, width - len(row) :] = torch.tensor(row), 1
        return last_logits(
            input_ids=ids,
            attention_mask=mask,
            mm_token_type_ids=(ids == policy._image_pad_id).int(),
            image_grid_thw=made[2],
            mm_encoder_outputs={"image": BaseModelOutputWithPooling(pooler_output=tuple(made[1]))},
        )

    assert torch.allclose(as_images(False), real, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(as_images(True), real, atol=1e-4, rtol=1e-4)  # the frames' order is seen


@pytest.mark.parametrize("family", ["qwen3vl", "uitars", "showui"])
def test_other_families_refuse_history_as_video(tiny_qwen2vl: Path, family: str) -> None:
    with pytest.raises(ConfigError, match=f"needs the qwen2vl or qwen25vl model family; the {family} family"):
        create_policy(model=str(tiny_qwen2vl), device="cpu", family=family, history="video")


def test_the_qwen25vl_family_takes_video(video_policy: PolicyFactory) -> None:
    policy = video_policy(family="qwen25vl")
    decisions, selections = _episodes(policy, 1, 5, max_images=4)
    assert selections[0][-1].clips and decisions[0][-1].usage["video_tokens"] > 0


def test_served_models_and_the_former_schedule_refuse_video(tiny_qwen2vl: Path) -> None:
    from vlagent.policies.openai_compat import create_policy as create_openai

    with pytest.raises(ConfigError, match="needs the in-process qwen2vl policy"):
        create_openai(base_url="http://127.0.0.1:9/v1", model="m", history="video")
    create_openai(base_url="http://127.0.0.1:9/v1", model="m", history="images")
    with pytest.raises(ConfigError, match="cannot go with --no-history-reuse"):
        create_policy(model=str(tiny_qwen2vl), device="cpu", history="video", no_history_reuse=True)


def test_the_pair_cache_is_bounded_and_forgets_frames_memory_let_go() -> None:
    torch = pytest.importorskip("torch", reason="needs the qwen extra (torch)")
    import gc

    from vlagent.policies.videohistory import PairCache

    cache = PairCache(2 * 4096)
    frames = [Image.new("RGB", (28, 28), (n, 0, 0)) for n in range(4)]
    cache.put(frames[0:2], torch.zeros(32, 32))  # 4 KiB
    assert cache.get(frames[0:2]) is not None
    assert cache.get(frames[1:3]) is None and cache.get([frames[1], frames[0]]) is None  # both frames, in order
    cache.put(frames[1:3], torch.zeros(32, 32))
    cache.put(frames[2:4], torch.zeros(32, 32))  # past the bound: the least recently used goes
    assert len(cache) == 2 and cache.get(frames[0:2]) is None
    del frames[3]
    gc.collect()
    cache.put(frames[0:2], torch.zeros(1, 32))
    assert cache.bytes == 4096 + 128 and cache.get(frames[1:3]) is not None  # the pair whose frame went is gone
