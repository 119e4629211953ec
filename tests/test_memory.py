"""Trajectory memory: the visual-token budget holds, the processor agrees with our token counts,
and the text history keeps every step."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from vlagent.actions import Click, Key, Scroll
from vlagent.coords import IMAGE_FACTOR, smart_resize, visual_tokens
from vlagent.errors import ConfigError
from vlagent.frames import Frame
from vlagent.memory import MemoryConfig, Selection, SummaryEntry, TrajectoryMemory
from vlagent.policies.base import HistoryEntry

TOKEN = IMAGE_FACTOR * IMAGE_FACTOR


def screen(width: int, height: int, shade: int = 0) -> Frame:
    return Frame.of(Image.new("RGB", (width, height), (shade % 256, 80, 160)))


def run_steps(
    memory: TrajectoryMemory, frames: list[Frame], selections: list[Selection] | None = None
) -> list[tuple[Frame, ...]]:
    """Drive memory the way the loop does: choose for the current frame, then add the step."""
    prompts = []
    for index, frame in enumerate(frames):
        images, selection = memory.choose(frame)
        prompts.append(images)
        if selections is not None:
            selections.append(selection)
        memory.add(HistoryEntry(index, Click(x=1, y=1), f"thought {index}"), frame)
    return prompts


# --- token arithmetic against the real processor -------------------------------------

SIZES = [
    (1080, 2400),
    (2400, 1080),
    (1280, 800),
    (2560, 1600),
    (1920, 1080),
    (720, 1280),
    (1440, 3200),
    (28, 28),
    (29, 57),
    (56, 4000),
    (100, 100),
    (333, 777),
    (640, 480),
    (1170, 2532),
    (3840, 2160),
]
BOUNDS = [(4 * TOKEN, 1280 * TOKEN), (256 * TOKEN, 512 * TOKEN), (4 * TOKEN, 16384 * TOKEN), (64 * TOKEN, 96 * TOKEN)]


@pytest.fixture(scope="module")
def processor_tokens():
    transformers = pytest.importorskip("transformers", reason="needs the qwen extra (transformers)")
    pytest.importorskip("torch", reason="needs the qwen extra (torch)")
    processors = {}

    def tokens(image: Image.Image, min_pixels: int, max_pixels: int) -> tuple[int, tuple[int, int]]:
        key = (min_pixels, max_pixels)
        if key not in processors:
            processors[key] = transformers.Qwen2VLImageProcessor(min_pixels=min_pixels, max_pixels=max_pixels)
        grid = processors[key](images=[image], return_tensors="pt")["image_grid_thw"][0].tolist()
        t, h, w = grid
        # 14-pixel patches, merged 2x2 into one token.
        return t * h * w // 4, (w * 14, h * 14)

    return tokens


def test_visual_tokens_equal_the_qwen2vl_processor(processor_tokens) -> None:
    rng = random.Random(7)
    sizes = SIZES + [(rng.randint(28, 3000), rng.randint(28, 3000)) for _ in range(25)]
    checked = 0
    for width, height in sizes:
        if max(width, height) / min(width, height) > 200:
            continue
        min_pixels, max_pixels = BOUNDS[checked % len(BOUNDS)]
        expected, _ = processor_tokens(Image.new("RGB", (width, height)), min_pixels, max_pixels)
        assert visual_tokens(width, height, min_pixels=min_pixels, max_pixels=max_pixels) == expected, (width, height)
        checked += 1
    assert checked >= 35


def test_selected_images_pass_the_processor_unresized(processor_tokens) -> None:
    config = MemoryConfig(max_tokens=2000, max_pixels=1024 * TOKEN, max_images=4, drop="oldest")
    memory = TrajectoryMemory(config)
    selections: list[Selection] = []
    prompts = run_steps(memory, [screen(1080, 2400, i * 40) for i in range(5)], selections)
    last = prompts[-1]
    assert len(last) == 4
    counted = 0
    for frame in last:
        tokens, processed_size = processor_tokens(frame.image, config.min_pixels, config.max_pixels)
        assert processed_size == frame.image.size  # no second resize: coordinates stay where memory put them
        counted += tokens
    assert counted == selections[-1].total_tokens <= config.max_tokens
    assert [i.tokens for i in selections[-1].images] == [visual_tokens(f.image.width, f.image.height) for f in last]


# --- the budget invariant -------------------------------------------------------------

configs = st.builds(
    MemoryConfig,
    max_tokens=st.integers(min_value=4, max_value=3000),
    # The processor needs room above min_pixels (4 tokens) to round elongated images up.
    max_pixels=st.integers(min_value=64 * TOKEN, max_value=1500 * TOKEN),
    max_images=st.integers(min_value=1, max_value=6),
    older_scale=st.floats(min_value=0.05, max_value=1.0),
    min_history_tokens=st.integers(min_value=1, max_value=300),
)
sizes = st.tuples(st.integers(min_value=28, max_value=900), st.integers(min_value=28, max_value=900))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=configs, trajectory=st.lists(sizes, min_size=1, max_size=12))
def test_budget_is_never_exceeded_and_the_newest_frame_is_always_sent(config, trajectory) -> None:
    memory = TrajectoryMemory(config)
    for index, (width, height) in enumerate(trajectory):
        frame = screen(width, height, index)
        try:
            images, selection = memory.choose(frame)
        except ConfigError:
            # Only a tiny budget cannot hold a screen (sides at most 32:1) at its smallest size.
            assert config.max_tokens < 64
            return
        assert memory.select(frame) == images  # select gives the same images without the accounting
        assert memory.tokens(images) == selection.total_tokens <= config.max_tokens
        assert 1 <= len(images) <= config.max_images
        assert images[-1].timestamp == frame.timestamp and selection.images[-1].step is None
        assert images[-1].size == frame.size  # logical geometry kept for decoding coordinates
        steps = [i.step for i in selection.images[:-1]]
        assert steps == list(range(index - len(steps), index))  # the most recent screens, oldest first
        for image in images:
            h, w = image.image.height, image.image.width
            assert h % IMAGE_FACTOR == 0 and w % IMAGE_FACTOR == 0
            assert smart_resize(h, w, min_pixels=config.min_pixels, max_pixels=config.max_pixels) == (h, w)
        memory.add(HistoryEntry(index, Click(x=0, y=0)), frame)


def test_older_screens_shrink_then_drop_oldest_first() -> None:
    # The "shrink" schedule: each older screen half the pixels of the next newer one.
    memory = TrajectoryMemory(
        MemoryConfig(max_tokens=2560, max_images=8, older_scale=0.5, min_history_tokens=64, sizes="shrink")
    )
    selections: list[Selection] = []
    run_steps(memory, [screen(1080, 2400, i) for i in range(12)], selections)
    selection = selections[-1]
    tokens = [i.tokens for i in selection.images]
    assert tokens[-1] == 1272  # the newest at full resolution (1080x2400 at 1280*28*28)
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)
    assert [i.step for i in selection.images[:-1]] == [7, 8, 9, 10]
    assert selection.dropped == 11 - 4  # 11 earlier steps, 4 of their screens sent


def test_stable_sizes_show_each_screen_at_three_sizes_at_most() -> None:
    memory = TrajectoryMemory(MemoryConfig(max_tokens=2560, max_images=4, half_steps=1))  # sizes="stable" by default
    selections: list[Selection] = []
    run_steps(memory, [screen(1080, 2400, i) for i in range(12)], selections)
    assert [i.tokens for i in selections[-1].images] == [312, 312, 592, 1272]  # smallest, smaller, full
    assert [i.step for i in selections[-1].images[:-1]] == [8, 9, 10]
    sizes: dict[int, set[tuple[int, int]]] = {}
    for index, selection in enumerate(selections):
        for image in selection.images:
            sizes.setdefault(index if image.step is None else image.step, set()).add((image.width, image.height))
    assert max(len(s) for s in sizes.values()) == 3
    assert all(len(s) == 3 for step, s in sizes.items() if step <= 8)  # full, then smaller, then smallest
    # The previous screen's size never depends on what else is in the prompt.
    assert len({(s.images[-2].width, s.images[-2].height) for s in selections[1:]}) == 1


def test_half_steps_zero_sends_every_earlier_screen_at_the_smallest_size() -> None:
    memory = TrajectoryMemory(MemoryConfig(max_tokens=2560, max_images=4, half_steps=0, drop="oldest"))
    selections: list[Selection] = []
    run_steps(memory, [screen(1080, 2400, i) for i in range(6)], selections)
    assert [i.tokens for i in selections[-1].images] == [312, 312, 312, 1272]
    sizes = {(i.width, i.height) for s in selections for i in s.images}
    assert len(sizes) == 2  # each screen at two sizes in its life: full, then the smallest
    with pytest.raises(ConfigError, match="half_steps"):
        MemoryConfig(half_steps=-1)


@pytest.mark.parametrize("half_steps", [0, 1, 2])
def test_blocks_keep_the_start_of_the_prompt_between_clearings(half_steps: int) -> None:
    """drop="blocks": the smallest-size screens of a prompt are those of the next prompt's start
    (same screens, same sizes, same order) except when a full block is cleared."""
    memory = TrajectoryMemory(MemoryConfig(max_tokens=4000, max_images=5, half_steps=half_steps))
    selections: list[Selection] = []
    run_steps(memory, [screen(1080, 2400, i) for i in range(20)], selections)
    smallest = [
        [i for i in s.images[:-1] if i.step is not None and i.step < index - half_steps]
        for index, s in enumerate(selections)
    ]
    size = max(len(block) for block in smallest)
    assert size >= 2
    cleared = 0
    for before, after in itertools.pairwise(smallest):
        if after[: len(before)] == before:
            assert len(after) == len(before) + (1 if before or after else 0)
        else:
            cleared += 1
            assert len(before) == size and len(after) == 1  # a full block gives way to a new one
    steady = len(selections) - (half_steps + 1)
    assert cleared == pytest.approx(steady / size, abs=1)
    assert all(s.total_tokens <= 4000 for s in selections)
    # Each screen is shown at one size within the smallest bucket (no resize while it stays).
    seen: dict[int, set[tuple[int, int]]] = {}
    for block in smallest:
        for image in block:
            seen.setdefault(image.step or 0, set()).add((image.width, image.height))
    assert all(len(s) == 1 for s in seen.values())
    with pytest.raises(ConfigError, match="drop"):
        MemoryConfig(drop="newest")  # type: ignore[arg-type]


def test_a_shown_screen_is_kept_at_its_shown_size_and_later_sizes_come_from_it() -> None:
    """After its own prompt, a screen is held at the size that prompt showed it (the largest it is
    ever shown at), and its later, smaller copies are resized from that one; sizes are unchanged."""
    rng = random.Random(3)
    frames = [Frame.of(Image.frombytes("RGB", (1080, 2400), rng.randbytes(1080 * 2400 * 3))) for _ in range(6)]
    memory = TrajectoryMemory(MemoryConfig(max_tokens=2560, max_images=4, half_steps=1))
    reference = TrajectoryMemory(MemoryConfig(max_tokens=2560, max_images=4, half_steps=1))
    for index, frame in enumerate(frames):
        images, selection = memory.choose(frame)
        for stored in memory._frames:
            assert stored.frame.image.size == (672, 1484)  # as its own prompt showed it, not 1080x2400
        reference_images = reference.select(frame)
        entry = HistoryEntry(index, Click(x=1, y=1))
        memory.add(entry, frame)
        reference.add(entry, Frame.of(frame.image.copy()))  # never chosen for: kept as captured
        assert [i.image.size for i in images] == [i.image.size for i in reference_images]
        assert [(i.width, i.height) for i in selection.images][-1] == (672, 1484)
        assert images[-1].image.tobytes() == reference_images[-1].image.tobytes()  # the current screen: as before
    # An earlier screen shrunk from its shown copy stays close to one shrunk from the capture.
    for mine, theirs in zip(images[:-1], reference_images[:-1], strict=True):
        a, b = mine.image.tobytes(), theirs.image.tobytes()
        assert sum(abs(x - y) for x, y in zip(a, b, strict=True)) / len(a) < 8


def test_preview_holds_the_screens_the_next_prompt_shows() -> None:
    """``preview`` is memory after the step's ``add``: the next prompt's earlier screens, as the very
    objects it will show, with a blank stand-in for the screen still to come."""
    memory = TrajectoryMemory(MemoryConfig(max_tokens=2560, max_images=4, half_steps=0))
    frames = [screen(1080, 2400, i) for i in range(7)]
    for index, frame in enumerate(frames[:-1]):
        memory.choose(frame)
        entry = HistoryEntry(index, Click(x=1, y=1))
        upcoming = memory.preview(entry, frame)
        ahead, ahead_selection = upcoming.choose(frame, stand_in=True)
        assert upcoming.history[-1] == entry and len(memory.history) == index  # memory itself unchanged
        assert ahead[-1].image.size == (672, 1484) and ahead[-1].image.getbbox() is None  # blank
        memory.add(entry, frame)
        images, selection = memory.choose(frames[index + 1])
        assert len(images) == len(ahead) >= 2
        assert all(a.image is b.image for a, b in zip(ahead[:-1], images[:-1], strict=True))
        assert ahead_selection == selection
    # An ``add`` of another frame does not take the previewed screen.
    memory.choose(frames[-1])
    upcoming = memory.preview(HistoryEntry(6, Click(x=1, y=1)), frames[-1])
    other = screen(1080, 2400, 99)
    memory.add(HistoryEntry(6, Click(x=1, y=1)), other)
    assert memory._frames[-1].frame.image is other.image
    assert upcoming._frames[-1].frame.image is not other.image


def test_stable_sizes_drop_a_screen_that_does_not_fit_instead_of_shrinking_it() -> None:
    # 1272 (current) + 592 (previous) leaves 136 tokens: too few for the 312-token smallest size.
    memory = TrajectoryMemory(MemoryConfig(max_tokens=2000, max_images=4, half_steps=1))
    selections: list[Selection] = []
    run_steps(memory, [screen(1080, 2400, i) for i in range(5)], selections)
    assert [i.tokens for i in selections[-1].images] == [592, 1272]
    shrink = TrajectoryMemory(MemoryConfig(max_tokens=2000, max_images=4, sizes="shrink"))
    shrunk: list[Selection] = []
    run_steps(shrink, [screen(1080, 2400, i) for i in range(5)], shrunk)
    assert [i.tokens for i in shrunk[-1].images] == [119, 592, 1272]  # squeezed into what was left
    with pytest.raises(ConfigError, match="sizes"):
        MemoryConfig(sizes="video")  # type: ignore[arg-type]


def test_max_images_limits_the_prompt_for_servers_with_image_limits() -> None:
    memory = TrajectoryMemory(MemoryConfig(max_tokens=100_000, max_images=2, older_scale=1.0))
    prompts = run_steps(memory, [screen(1080, 2400, i) for i in range(5)])
    assert [len(p) for p in prompts] == [1, 2, 2, 2, 2]
    assert prompts[-1][0].image.size == prompts[-1][1].image.size  # older_scale 1.0: same size


def test_budget_too_small_for_one_screen_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="max_tokens"):
        MemoryConfig(max_tokens=2, min_pixels=4 * TOKEN)
    memory = TrajectoryMemory(MemoryConfig(max_tokens=4))
    with pytest.raises(ConfigError, match="cannot hold"):
        memory.select(screen(28, 5000))


# --- the text history ------------------------------------------------------------------


def test_history_keeps_every_step_and_compacts_old_ones() -> None:
    memory = TrajectoryMemory(MemoryConfig(max_history_steps=10, recent_steps=3, old_thought_chars=20))
    for i in range(25):
        action = Scroll(direction="down") if i % 2 else Key(key="back")
        memory.add(
            HistoryEntry(i, action, "a long thought " * 10, "no visible change" if i < 4 else None), screen(56, 56)
        )
    history = memory.history
    assert len(history) == 10
    summary = history[0]
    assert isinstance(summary, SummaryEntry)
    assert summary.render() == "Steps 1-16 (summary): 8x key(back), 8x scroll(down); 4 with no visible change"
    assert [e.index for e in history[1:]] == list(range(16, 25))
    assert all(len(e.thought or "") <= 20 for e in history[1:-3])
    assert all(e.thought == "a long thought " * 10 for e in history[-3:])
    assert len(memory.full_history) == 25
    memory.reset()
    assert memory.history == () and memory.full_history == ()
