"""Memory with history as video: older screens in pairs of one size, tokens counted once per pair."""

from __future__ import annotations

import pytest
from PIL import Image

from vlagent.actions import Key
from vlagent.coords import IMAGE_FACTOR
from vlagent.errors import ConfigError
from vlagent.frames import Frame
from vlagent.memory import HistoryEntry, MemoryConfig, Selection, TrajectoryMemory


def _frame(step: int, size: tuple[int, int] = (1080, 2400)) -> Frame:
    return Frame.of(Image.new("RGB", size, (step * 20 % 256, 0, 0)))


def _episode(config: MemoryConfig, steps: int, sizes: dict[int, tuple[int, int]] | None = None) -> list[Selection]:
    memory = TrajectoryMemory(config)
    chosen: list[Selection] = []
    for step in range(steps):
        frame = _frame(step, (sizes or {}).get(step, (1080, 2400)))
        images, selection = memory.choose(frame)
        assert [(f.image.width, f.image.height) for f in images] == [(i.width, i.height) for i in selection.images]
        chosen.append(selection)
        memory.add(HistoryEntry(step, Key(key="back")), frame)
    return chosen


def _pair_tokens(selection: Selection, clip: tuple[int, ...]) -> int:
    first = selection.images[clip[0]]
    return (first.width // IMAGE_FACTOR) * (first.height // IMAGE_FACTOR)


@pytest.mark.parametrize("max_images", [2, 3, 4, 5, 6, 8])
@pytest.mark.parametrize("max_tokens", [1400, 2560, 4000])
def test_pairs_share_one_size_and_the_budget_holds(max_images: int, max_tokens: int) -> None:
    config = MemoryConfig(half_steps=1, drop="oldest", history="video", max_images=max_images, max_tokens=max_tokens)
    for selection in _episode(config, 12):
        assert selection.total_tokens <= max_tokens
        assert len(selection.images) <= max_images  # screens, each frame of a pair included
        assert selection.images[-1].step is None and selection.images[-1].clip is None  # the current screen
        steps = [i.step for i in selection.images[:-1]]
        assert steps == sorted(steps) and len(set(steps)) == len(steps)  # oldest first, each screen once
        clip_tokens = 0
        for clip in selection.clips:
            older, newer = (selection.images[n] for n in clip)
            assert len(clip) == 2 and clip[1] == clip[0] + 1
            assert (older.width, older.height) == (newer.width, newer.height)
            assert older.step is not None and newer.step == older.step + 1  # consecutive screens
            # (T/2)*(H/28)*(W/28) for T=2 frames, carried by the older frame
            assert (older.tokens, newer.tokens) == (_pair_tokens(selection, clip), 0)
            clip_tokens += older.tokens
        images = [i.tokens for i in selection.images if i.clip is None]
        assert selection.total_tokens == clip_tokens + sum(images)


def test_video_shows_the_same_screens_as_images_for_fewer_tokens() -> None:
    video = _episode(MemoryConfig(half_steps=1, drop="oldest", history="video"), 8)
    images = _episode(MemoryConfig(half_steps=1, drop="oldest"), 8)
    for v, i in zip(video[3:], images[3:], strict=True):
        assert [x.step for x in v.images] == [x.step for x in i.images]  # the same four screens
        assert len(v.clips) == 1 and v.total_tokens < i.total_tokens
    # 1080x2400 at the default budget: 1272 current + 592 previous + one pair of two 312-token screens
    assert [i.tokens for i in video[-1].images] == [312, 0, 592, 1272] and video[-1].total_tokens == 2176
    assert images[-1].total_tokens == 2488


def test_with_six_screens_video_costs_what_four_images_do() -> None:
    video = _episode(MemoryConfig(half_steps=1, drop="oldest", history="video", max_images=6), 8)[-1]
    assert len(video.images) == 6 and len(video.clips) == 2
    assert video.total_tokens == _episode(MemoryConfig(half_steps=1, drop="oldest", max_images=4), 8)[-1].total_tokens


def test_a_screen_without_a_partner_goes_as_an_image() -> None:
    selections = _episode(MemoryConfig(half_steps=1, drop="oldest", history="video", max_images=6), 6)
    assert not selections[2].clips and len(selections[2].images) == 3  # two earlier screens: half, quarter
    assert selections[4].clips == ((1, 2),) and selections[4].images[0].clip is None  # the oldest has no partner
    # A screen whose older neighbour has another size (the phone turned) goes alone as an image,
    # and is the oldest shown.
    turned = _episode(
        MemoryConfig(half_steps=1, drop="oldest", history="video", max_images=6), 7, sizes={3: (2400, 1080)}
    )[-1]
    assert [i.step for i in turned.images] == [4, 5, None] and not turned.clips
    assert [i.tokens for i in turned.images] == [312, 592, 1272]


def test_the_selection_records_each_frame_clip() -> None:
    selection = _episode(MemoryConfig(half_steps=1, drop="oldest", history="video"), 5)[-1]
    recorded = selection.as_dict()["images"]
    assert isinstance(recorded, list)
    assert [i.get("clip") for i in recorded] == [0, 0, None, None]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"history": "film"}, "history must be 'images' or 'video'"),
        ({"history": "video", "sizes": "shrink"}, "needs sizes='stable'"),
    ],
)
def test_config_mistakes_are_refused(options: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        MemoryConfig(**options)  # type: ignore[arg-type]
