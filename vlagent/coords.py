"""Coordinate codecs: a model's grid <-> device (logical) pixels.

Every model family answers in its own units (per the models' own repositories: Qwen2-VL and UI-TARS 1.0 use
0-1000 relative ints, Qwen3-VL 0-999, Qwen2.5-VL and UI-TARS 1.5 absolute pixels of the
smart-resized image). A codec converts through the fraction of the screen, so the same
point lands where the model saw it whatever the capture's physical scale.

Rounding: the grid has finite resolution. Converting device -> grid -> device is exact
within 1 device pixel when the grid value is kept as a float; with integer grid values
(what models emit) the error is at most half a grid cell, i.e. ``width / (2 * 1000)``
pixels for ``norm1000``. A point a parser read finer than the grid (a box's centre, a
fraction of the screen) is kept exact for :func:`decode_action` and rounded once, to a pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Protocol

from vlagent.actions import Action, Click, LongPress, Scroll, Swipe, map_points
from vlagent.errors import InvalidModelOutput

__all__ = [
    "IMAGE_FACTOR",
    "MAX_PIXELS",
    "MIN_PIXELS",
    "CoordCodec",
    "ImageGrid",
    "OutOfRange",
    "Pixels",
    "Relative",
    "ResizedAbsolute",
    "codec_by_name",
    "decode_action",
    "encode_action",
    "points_off_screen",
    "smart_resize",
    "visual_tokens",
]

#: Qwen2-VL's patch (14) times spatial merge (2): image sides are multiples of this.
IMAGE_FACTOR = 28
#: qwen-vl-utils defaults: 4 and 16384 visual tokens.
MIN_PIXELS = 4 * 28 * 28
MAX_PIXELS = 16384 * 28 * 28
_MAX_RATIO = 200

OutOfRange = Literal["raise", "clamp"]


def smart_resize(
    height: int,
    width: int,
    *,
    factor: int = IMAGE_FACTOR,
    min_pixels: int = MIN_PIXELS,
    max_pixels: int = MAX_PIXELS,
) -> tuple[int, int]:
    """(height, width) the Qwen2-VL processor resizes an image to.

    Same arithmetic as ``smart_resize`` of transformers' Qwen2-VL image processor, which
    resizes the image the model is shown, reimplemented here so that token budgets can be
    computed without torch. (``qwen_vl_utils.smart_resize`` differs for a side under half a
    ``factor``: it first raises that side to ``factor``, transformers rounds it to 0 and
    then scales the whole image up to ``min_pixels``.)
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if max(height, width) / min(height, width) > _MAX_RATIO:
        raise ValueError(f"aspect ratio of {width}x{height} exceeds {_MAX_RATIO}")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def visual_tokens(width: int, height: int, *, min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS) -> int:
    """Visual tokens Qwen2-VL spends on a ``width`` x ``height`` image."""
    h, w = smart_resize(height, width, min_pixels=min_pixels, max_pixels=max_pixels)
    return (h // IMAGE_FACTOR) * (w // IMAGE_FACTOR)


class CoordCodec(Protocol):
    """Converts between a model's grid and device pixels for a screen of a given size."""

    @property
    def name(self) -> str: ...

    def grid_size(self, width: int, height: int) -> tuple[int, int]:
        """Largest valid (x, y) grid values for a screen of this logical size."""
        ...

    def to_grid(self, x: float, y: float, width: int, height: int) -> tuple[float, float]:
        """Device pixel -> grid (float; round it to show a model)."""
        ...

    def to_device(
        self, x: float, y: float, width: int, height: int, *, out_of_range: OutOfRange = "raise"
    ) -> tuple[int, int]:
        """Grid -> device pixel, clamped to the screen or raising InvalidModelOutput."""
        ...


def _check_range(
    x: float, y: float, max_x: float, max_y: float, name: str, out_of_range: OutOfRange
) -> tuple[float, float]:
    if 0 <= x <= max_x and 0 <= y <= max_y:
        return x, y
    if out_of_range == "clamp":
        return min(max(x, 0.0), max_x), min(max(y, 0.0), max_y)
    raise InvalidModelOutput(
        f"point ({x:g}, {y:g}) is outside the screen: {name} coordinates must be "
        f"0..{max_x:g} for x and 0..{max_y:g} for y"
    )


def _to_pixel(fraction: float, size: int) -> int:
    return min(size - 1, max(0, round(fraction * size)))


@dataclass(frozen=True)
class Relative:
    """Relative coordinates on a fixed grid: 0..``scale`` on both axes."""

    scale: int = 1000
    name: str = "norm1000"

    def grid_size(self, width: int, height: int) -> tuple[int, int]:
        return self.scale, self.scale

    def to_grid(self, x: float, y: float, width: int, height: int) -> tuple[float, float]:
        return x / width * self.scale, y / height * self.scale

    def to_device(
        self, x: float, y: float, width: int, height: int, *, out_of_range: OutOfRange = "raise"
    ) -> tuple[int, int]:
        x, y = _check_range(x, y, self.scale, self.scale, self.name, out_of_range)
        return _to_pixel(x / self.scale, width), _to_pixel(y / self.scale, height)


@dataclass(frozen=True)
class ResizedAbsolute:
    """Absolute pixels of the image as the processor resized it (Qwen2.5-VL, UI-TARS 1.5)."""

    min_pixels: int = MIN_PIXELS
    max_pixels: int = MAX_PIXELS
    name: str = "abs_resized"

    def grid_size(self, width: int, height: int) -> tuple[int, int]:
        h, w = smart_resize(height, width, min_pixels=self.min_pixels, max_pixels=self.max_pixels)
        return w, h

    def to_grid(self, x: float, y: float, width: int, height: int) -> tuple[float, float]:
        gw, gh = self.grid_size(width, height)
        return x / width * gw, y / height * gh

    def to_device(
        self, x: float, y: float, width: int, height: int, *, out_of_range: OutOfRange = "raise"
    ) -> tuple[int, int]:
        gw, gh = self.grid_size(width, height)
        x, y = _check_range(x, y, gw, gh, self.name, out_of_range)
        return _to_pixel(x / gw, width), _to_pixel(y / gh, height)


@dataclass(frozen=True)
class ImageGrid:
    """Absolute pixels of one image the model was shown, of a known size (``abs_resized`` once
    the size is fixed, e.g. by an OpenAI-compatible server's own resize)."""

    width: int
    height: int
    name: str = "abs_resized"

    def grid_size(self, width: int, height: int) -> tuple[int, int]:
        return self.width, self.height

    def to_grid(self, x: float, y: float, width: int, height: int) -> tuple[float, float]:
        return x / width * self.width, y / height * self.height

    def to_device(
        self, x: float, y: float, width: int, height: int, *, out_of_range: OutOfRange = "raise"
    ) -> tuple[int, int]:
        x, y = _check_range(x, y, self.width, self.height, "pixel (of the screenshot you were shown)", out_of_range)
        return _to_pixel(x / self.width, width), _to_pixel(y / self.height, height)


@dataclass(frozen=True)
class Pixels:
    """Device pixels as they are (scripted policies, replays)."""

    name: str = "pixels"

    def grid_size(self, width: int, height: int) -> tuple[int, int]:
        return width - 1, height - 1

    def to_grid(self, x: float, y: float, width: int, height: int) -> tuple[float, float]:
        return x, y

    def to_device(
        self, x: float, y: float, width: int, height: int, *, out_of_range: OutOfRange = "raise"
    ) -> tuple[int, int]:
        x, y = _check_range(x, y, width - 1, height - 1, self.name, out_of_range)
        return round(x), round(y)


def codec_by_name(name: str, *, min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS) -> CoordCodec:
    """``norm1000`` | ``norm999`` | ``abs_resized`` | ``pixels``."""
    if name == "norm1000":
        return Relative(1000, "norm1000")
    if name == "norm999":
        return Relative(999, "norm999")
    if name == "abs_resized":
        return ResizedAbsolute(min_pixels, max_pixels)
    if name == "pixels":
        return Pixels()
    raise ValueError(f"unknown coordinate codec {name!r}: use norm1000, norm999, abs_resized or pixels")


def decode_action(
    action: Action, codec: CoordCodec, width: int, height: int, *, out_of_range: OutOfRange = "raise"
) -> Action:
    """Convert every point of ``action`` from the model's grid to device pixels.

    A point a parser rounded to the grid (see ``Action.with_exact_points``) converts from its
    exact value, so it is rounded once, to a device pixel.
    """

    def to_device(x: int, y: int) -> tuple[int, int]:
        fx, fy = action.exact_point(x, y)
        return codec.to_device(fx, fy, width, height, out_of_range=out_of_range)

    return map_points(action, to_device)


def encode_action(action: Action, codec: CoordCodec, width: int, height: int) -> Action:
    """Convert every point of ``action`` from device pixels to the model's grid (rounded)."""

    def to_grid(x: int, y: int) -> tuple[int, int]:
        gx, gy = codec.to_grid(x, y, width, height)
        return round(gx), round(gy)

    return map_points(action, to_grid)


def points_off_screen(action: Action, width: int, height: int) -> list[tuple[int | None, int | None]]:
    """The points of ``action``, in device pixels, that lie outside a ``width`` x ``height`` screen.

    A screen's pixels are 0..width-1 and 0..height-1 (the convention of :class:`Pixels`): x = width
    is off the screen. Every point an action carries counts: a click or long press, both ends of a
    swipe, a scroll's point; a scroll may name only one coordinate, the other (None) being the
    driver's choice. Only for actions in device pixels: a model's grid may be larger than the screen.
    """

    def off(x: int | None, y: int | None) -> bool:
        return (x is not None and not 0 <= x < width) or (y is not None and not 0 <= y < height)

    points: list[tuple[int | None, int | None]]
    if isinstance(action, (Click, LongPress)):
        points = [(action.x, action.y)]
    elif isinstance(action, Swipe):
        points = [(action.x1, action.y1), (action.x2, action.y2)]
    elif isinstance(action, Scroll):
        points = [(action.x, action.y)]
    else:
        points = []
    return [point for point in points if off(*point)]
