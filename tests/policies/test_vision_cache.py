"""Vision embeddings reused across steps: the same greedy actions as encoding every image anew.

Episodes of several steps on the tiny random Qwen2-VL with memory's stable sizes: each step
the policy asks memory for the images, and memory hands back the same sized image objects for
earlier screens whose size did not change. With the cache the vision tower encodes only the
images it has not seen; the answers must not change (batch 1 and 4, fast and plain paths).
"""

from __future__ import annotations

import dataclasses
import gc
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from policy_helpers import BUDGET, SIZES, PolicyFactory, lockstep_step, random_screen

from vlagent.memory import MemoryConfig, TrajectoryMemory
from vlagent.policies.base import Decision, HistoryEntry
from vlagent.policies.fastdecode import image_spans
from vlagent.policies.visioncache import VisionCache

pytest.importorskip("transformers", reason="needs the qwen extra (transformers)")
pytest.importorskip("llguidance", reason="needs the qwen extra (llguidance)")

from vlagent.policies.qwen2vl import Qwen2VLPolicy, create_policy

pytestmark = pytest.mark.model


def _episodes(
    policy: Qwen2VLPolicy,
    count: int,
    steps: int,
    drop: str = "oldest",
    logits: list[Any] | None = None,
    half_steps: int = 1,
    ahead: list[list[tuple[int, int]]] | None = None,
) -> list[list[Decision]]:
    """``count`` episodes in lockstep, one ``decide_batch`` per step; memory as the loop drives it.

    ``ahead``: after each step, each episode's next prompt start is computed ahead (``prefetch``, as
    the agent loop does while the device acts; ``prefetch_batch`` for all episodes at once when there
    are several); per episode and step, the list receives where the prompt's current screen starts
    and that screen's tokens.
    """
    config = MemoryConfig(
        max_pixels=BUDGET,
        max_images=4,
        max_tokens=4 * 96,
        min_history_tokens=4,
        drop=drop,  # type: ignore[arg-type]
        half_steps=half_steps,
    )
    memories = [TrajectoryMemory(config) for _ in range(count)]
    decisions: list[list[Decision]] = [[] for _ in range(count)]
    for step in range(steps):
        observations, results = lockstep_step(policy, memories, step)
        if logits is not None:  # the fast loop's logits after each prompt, to compare numerically
            assert policy._decoder is not None and policy._decoder.last is not None
            logits.append(policy._decoder.last.first_logits)
        if ahead is not None:
            inputs = policy.prepare(observations).inputs
            rows = zip(inputs["input_ids"], inputs["attention_mask"], observations, strict=True)
            for n, (ids, mask, obs) in enumerate(rows):
                start = image_spans(ids[mask.bool()].tolist(), policy._image_pad_id)[-1][0]
                assert obs.choice is not None and obs.choice.selection is not None
                ahead[n].append((start, obs.choice.selection.images[-1].tokens))
        following = []
        for n, (obs, result) in enumerate(zip(observations, results, strict=True)):
            assert isinstance(result, Decision), result
            decisions[n].append(result)
            entry = HistoryEntry(step, result.step.action, result.step.thought)
            upcoming = memories[n].preview(entry, obs.frame)
            choice = upcoming.lazy_choice(obs.frame, stand_in=True)
            following.append(dataclasses.replace(obs, step_index=step + 1, history=upcoming.history, choice=choice))
        if ahead is not None:  # several episodes: one batch, as BatchingPolicy gathers them
            computed = policy.prefetch_batch(following) if count > 1 else [policy.prefetch(following[0])]
            assert all(n > 0 for n in computed)
        for n, (obs, decision) in enumerate(zip(observations, results, strict=True)):
            assert isinstance(decision, Decision)
            memories[n].add(HistoryEntry(step, decision.step.action, decision.step.thought), obs.frame)
    return decisions


@pytest.mark.parametrize(
    ("path", "count"),
    [("fast", 1), ("fast", 4), ("plain", 1), ("plain", 4), ("static", 4)],
)
def test_cached_embeddings_give_the_same_actions(tiny_policy: PolicyFactory, path: str, count: int) -> None:
    plain_inputs: dict[str, Any] = {
        "fast": {},
        "plain": {"fast": False, "fast_inputs": False},  # the processor and transformers' generate
        "static": {"cache": "static"},  # the fast loop on a static KV cache
    }[path]
    fresh = tiny_policy(history_reuse=False, **plain_inputs)
    reuse = tiny_policy(**plain_inputs)
    assert fresh.vision_cache is None and reuse.vision_cache is not None
    steps = 6
    expected = _episodes(fresh, count, steps)
    got = _episodes(reuse, count, steps)
    for mine, theirs in zip(got, expected, strict=True):
        assert [(d.raw, d.step) for d in mine] == [(d.raw, d.step) for d in theirs]
        assert [d.usage["visual_tokens"] for d in mine] == [d.usage["visual_tokens"] for d in theirs]
        # Without the cache every image is encoded; with it, from the fourth step on (three earlier
        # screens, the oldest at the size it had the step before) fewer tokens are.
        assert [d.usage["encoded_visual_tokens"] for d in theirs] == [d.usage["visual_tokens"] for d in theirs]
        assert all(
            m.usage["encoded_visual_tokens"] < t.usage["encoded_visual_tokens"]
            for m, t in zip(mine[3:], theirs[3:], strict=True)
        )
    assert reuse.vision_cache.hits >= count * (steps - 3)


@pytest.mark.parametrize(
    ("path", "count", "half_steps"), [("fast", 1, 1), ("fast", 4, 1), ("static", 4, 1), ("fast", 4, 0)]
)
def test_earlier_prompts_keys_and_values_give_the_same_actions(
    tiny_policy: PolicyFactory, path: str, count: int, half_steps: int
) -> None:
    """Memory's block dropping keeps the start of each prompt from one step to the next; the fast
    loop computes only what follows it, and the greedy answers are those of a full prefill."""
    options: dict[str, Any] = {"cache": "static"} if path == "static" else {}
    fresh = tiny_policy(history_reuse=False, **options)
    reuse = tiny_policy(**options)
    steps = 9
    torch = pytest.importorskip("torch", reason="needs the qwen extra (torch)")
    fresh_logits: list[Any] = []
    reuse_logits: list[Any] = []
    expected = _episodes(fresh, count, steps, drop="blocks", logits=fresh_logits, half_steps=half_steps)
    got = _episodes(reuse, count, steps, drop="blocks", logits=reuse_logits, half_steps=half_steps)
    for a, b in zip(reuse_logits, fresh_logits, strict=True):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), (a - b).abs().max()
    for mine, theirs in zip(got, expected, strict=True):
        assert [(d.raw, d.step) for d in mine] == [(d.raw, d.step) for d in theirs]
        assert [d.usage["prompt_tokens"] for d in mine] == [d.usage["prompt_tokens"] for d in theirs]
        assert all(d.usage["history_tokens_reused"] == 0 for d in theirs)
        reused = [d.usage["history_tokens_reused"] for d in mine]
        assert all(n < p for n, p in zip(reused, (d.usage["prompt_tokens"] for d in mine), strict=True))
        if half_steps == 0:  # blocks of three smallest screens, restarting at steps 1, 4, 7
            assert reused[0] == 0 and min(reused[2:4] + reused[5:7]) - max(reused[4], reused[7]) >= 20
            continue
        # Steps 0 and 1 have nothing earlier to take (a one-image prompt is not kept); a block restarts
        # at steps 2, 4, ... (only the instructions and a label carry over) and grows at 3, 5, ...,
        # where the block's first screen, with its label, comes from the step before.
        assert reused[:2] == [0, 0]
        assert min(reused[2::2]) > 0
        assert min(reused[3::2]) - max(reused[2::2]) >= 20  # at least the smallest screen's tokens


@pytest.mark.parametrize(("path", "count"), [("fast", 1), ("fast", 4), ("static", 4)])
def test_prompts_started_ahead_give_the_same_actions(tiny_policy: PolicyFactory, path: str, count: int) -> None:
    """With the next prompt's start computed ahead after each step, a step computes only its own
    screen and what follows; the greedy answers and logits are those of a full prefill."""
    torch = pytest.importorskip("torch", reason="needs the qwen extra (torch)")
    options: dict[str, Any] = {"cache": "static"} if path == "static" else {}
    fresh = tiny_policy(history_reuse=False, **options)
    policy = tiny_policy(**options)
    steps = 9
    fresh_logits: list[Any] = []
    ahead_logits: list[Any] = []
    starts: list[list[tuple[int, int]]] = [[] for _ in range(count)]
    expected = _episodes(fresh, count, steps, drop="blocks", logits=fresh_logits, half_steps=0)
    got = _episodes(policy, count, steps, drop="blocks", logits=ahead_logits, half_steps=0, ahead=starts)
    for a, b in zip(ahead_logits, fresh_logits, strict=True):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), (a - b).abs().max()
    for mine, theirs, where in zip(got, expected, starts, strict=True):
        assert [(d.raw, d.step) for d in mine] == [(d.raw, d.step) for d in theirs]
        assert [d.usage["prompt_tokens"] for d in mine] == [d.usage["prompt_tokens"] for d in theirs]
        reused = [int(d.usage["history_tokens_reused"]) for d in mine]
        # From the second step on, everything before the current screen was computed ahead: its
        # keys and values, and the embeddings of the earlier screens.
        assert reused[0] == 0 and reused[1:] == [start for start, _ in where[1:]]
        assert [d.usage["encoded_visual_tokens"] for d in mine[1:]] == [tokens for _, tokens in where[1:]]


def test_an_image_encoded_alone_equals_it_encoded_with_others(tiny_policy: PolicyFactory) -> None:
    torch = pytest.importorskip("torch", reason="needs the qwen extra (torch)")
    from vlagent.policies.pixels import PixelLayout, patchify

    policy = tiny_policy()
    layout = PixelLayout.of(policy.processor.image_processor)
    images = [random_screen(size, n).resize((size[0] // 112 * 28, size[1] // 112 * 28)) for n, size in enumerate(SIZES)]
    values, grid = patchify(images, layout)
    with torch.inference_mode():
        together = policy._tower(values, grid)
        for n, image in enumerate(images):
            alone = policy._tower(*patchify([image], layout))
            assert torch.allclose(alone[0], together[n], atol=1e-5, rtol=1e-4)
        # The cache's way: only the missing images' rows, cut out of the whole batch's pixel values.
        cache = VisionCache(1 << 30)
        cache.put(images[1], together[1])
        found = cache.lookup(images)
        result = cache.encode(images, found, values, grid, policy._tower)
    assert result.encoded == [True, False, True, True]
    for a, b in zip(result.embeds, together, strict=True):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)


def test_the_cache_is_bounded_and_forgets_images_memory_let_go() -> None:
    torch = pytest.importorskip("torch", reason="needs the qwen extra (torch)")
    cache = VisionCache(3 * 4096)
    images = [Image.new("RGB", (28, 28), (n, 0, 0)) for n in range(5)]
    for image in images:
        cache.put(image, torch.zeros(32, 32))  # 4 KiB each
    assert len(cache) == 3 and cache.bytes == 3 * 4096
    assert cache.get(images[0]) is None and cache.get(images[4]) is not None  # least recently used out
    cache.get(images[2])
    extra = Image.new("RGB", (28, 28))
    cache.put(extra, torch.zeros(32, 32))
    assert cache.get(images[2]) is not None and cache.get(images[3]) is None
    del images[2]
    gc.collect()
    cache.put(images[0], torch.zeros(1, 32))
    assert cache.bytes == 2 * 4096 + 128  # the entry of the image gone was pruned
    assert cache.get(extra) is not None
    cache.put(images[1], torch.zeros(64, 64))  # larger than the whole bound: not kept
    assert cache.get(images[1]) is None


def test_no_history_reuse_turns_the_cache_off(tiny_qwen2vl: Path) -> None:
    assert create_policy(model=str(tiny_qwen2vl), device="cpu", no_history_reuse=True).vision_cache is None
    # A served model has no cache of its own; the flag still reaches memory, so the policy accepts it.
    from vlagent.policies.openai_compat import create_policy as create_openai

    create_openai(base_url="http://127.0.0.1:9/v1", model="m", no_history_reuse=True)
