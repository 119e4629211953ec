"""Coordinate codecs: round trips, conventions of each family, out-of-range policy."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vlagent.actions import Click, Swipe
from vlagent.coords import (
    Pixels,
    Relative,
    ResizedAbsolute,
    codec_by_name,
    decode_action,
    encode_action,
    smart_resize,
    visual_tokens,
)
from vlagent.errors import InvalidModelOutput

sizes = st.tuples(st.integers(320, 3840), st.integers(240, 2160))
CODECS = [Relative(1000, "norm1000"), Relative(999, "norm999"), ResizedAbsolute(max_pixels=1280 * 28 * 28), Pixels()]


@given(size=sizes, fx=st.floats(0, 1, exclude_max=True), fy=st.floats(0, 1, exclude_max=True))
@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_round_trip_within_one_pixel(codec: object, size: tuple[int, int], fx: float, fy: float) -> None:
    width, height = size
    px, py = int(fx * width), int(fy * height)
    gx, gy = codec.to_grid(px, py, width, height)  # type: ignore[attr-defined]
    back = codec.to_device(gx, gy, width, height)  # type: ignore[attr-defined]
    assert abs(back[0] - px) <= 1 and abs(back[1] - py) <= 1


@given(size=sizes, fx=st.floats(0, 1, exclude_max=True), fy=st.floats(0, 1, exclude_max=True))
def test_integer_grid_error_is_half_a_cell(size: tuple[int, int], fx: float, fy: float) -> None:
    """Models emit integers: the error is then bounded by half a grid cell (+1 for rounding)."""
    width, height = size
    codec = Relative(1000, "norm1000")
    px, py = int(fx * width), int(fy * height)
    gx, gy = codec.to_grid(px, py, width, height)
    back = codec.to_device(round(gx), round(gy), width, height)
    assert abs(back[0] - px) <= width / 2000 + 1
    assert abs(back[1] - py) <= height / 2000 + 1


def test_qwen2vl_convention_centre_of_phone() -> None:
    codec = codec_by_name("norm1000")
    assert codec.to_device(500, 500, 1080, 2400) == (540, 1200)
    assert codec.to_device(1000, 1000, 1080, 2400) == (1079, 2399)  # the far edge stays on screen


def test_abs_resized_uses_processor_size() -> None:
    codec = codec_by_name("abs_resized", max_pixels=1280 * 28 * 28)
    w, h = codec.grid_size(1080, 2400)
    assert (h, w) == smart_resize(2400, 1080, max_pixels=1280 * 28 * 28)
    assert codec.to_device(w / 2, h / 2, 1080, 2400) == (540, 1200)


def test_out_of_range_raises_or_clamps() -> None:
    codec = codec_by_name("norm1000")
    with pytest.raises(InvalidModelOutput, match="outside the screen"):
        codec.to_device(1200, 10, 1080, 2400)
    assert codec.to_device(1200, -5, 1080, 2400, out_of_range="clamp") == (1079, 0)


def test_decode_and_encode_whole_actions() -> None:
    codec = codec_by_name("norm1000")
    swipe = Swipe(x1=500, y1=800, x2=500, y2=200)
    device = decode_action(swipe, codec, 1080, 2400)
    assert device == Swipe(x1=540, y1=1920, x2=540, y2=480)
    assert encode_action(device, codec, 1080, 2400) == swipe
    assert decode_action(Click(x=0, y=0), codec, 1080, 2400) == Click(x=0, y=0)


@pytest.mark.parametrize(
    ("width", "height", "max_pixels", "tokens"),
    [(1080, 2400, 1280 * 28 * 28, 1272), (1280, 800, 16384 * 28 * 28, 46 * 29), (28, 28, 16384 * 28 * 28, 4)],
)
def test_visual_tokens(width: int, height: int, max_pixels: int, tokens: int) -> None:
    assert visual_tokens(width, height, max_pixels=max_pixels) == tokens


def test_unknown_codec_name() -> None:
    with pytest.raises(ValueError, match="norm1000"):
        codec_by_name("percent")


def test_smart_resize_matches_transformers_including_tiny_images() -> None:
    pytest.importorskip("transformers", reason="needs the qwen extra")
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as reference

    sides = [1, 5, 9, 13, 14, 15, 27, 28, 42, 56, 100, 142, 333, 800, 1080, 1920, 2400, 4000]
    budgets = [(4 * 28 * 28, 16384 * 28 * 28), (56 * 56, 1280 * 28 * 28), (256 * 28 * 28, 1280 * 28 * 28)]
    checked = 0
    for height in sides:
        for width in sides:
            if max(height, width) / min(height, width) > 200:
                continue
            for min_pixels, max_pixels in budgets:
                ours = smart_resize(height, width, min_pixels=min_pixels, max_pixels=max_pixels)
                theirs = reference(height, width, factor=28, min_pixels=min_pixels, max_pixels=max_pixels)
                assert ours == tuple(theirs), (height, width, min_pixels, max_pixels)
                checked += 1
    assert checked > 500
    assert smart_resize(9, 142) == (28, 224)
