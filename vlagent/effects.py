"""What an action did to the screen: change measure, settle-waiting and loop detection.

- ``FrameChange`` / ``frame_change``: the fraction of pixels that visibly changed between the
  frame before and after an action, looking closely around the action's point and coarsely at
  the whole screen. ``0.0`` means nothing changed beyond noise; the loop then tells the model
  "no visible change".
- ``Settle``: after an action, capture until two consecutive frames are equal (animations
  over) or a timeout, instead of sleeping a fixed time.
- ``screen_hash``: a difference hash of a whole screen, for telling screens apart cheaply
  (the loop detector in :mod:`vlagent.watchers` uses it).

Everything here works on Pillow images only (no numpy, no torch) and must stay cheap: it
runs on every step. It must not decide anything about the task; it only measures.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from PIL import Image, ImageChops

from vlagent.actions import Action, tap_point
from vlagent.drivers.base import Driver
from vlagent.frames import Frame

if TYPE_CHECKING:
    pass

__all__ = [
    "ChangeConfig",
    "FrameChange",
    "Settle",
    "frame_change",
    "frames_equal",
    "hash_distance",
    "screen_hash",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChangeConfig:
    """How a visible change is measured.

    A pixel counts as changed when its grey level moves by more than ``threshold`` (0-255)
    after box-averaging: the whole screen is averaged over ``coarse_factor`` squared blocks
    (so dithering and compression noise vanish), the window around the action point over
    ``window_factor`` squared blocks (so a small highlight under the finger is still seen).
    """

    threshold: int = 24
    coarse_factor: int = 8
    window: float = 0.15
    """Side of the square window around the action point, as a fraction of the screen width."""
    window_factor: int = 2

    def __post_init__(self) -> None:
        if not 0 <= self.threshold < 255:
            raise ValueError(f"threshold must be 0..254, got {self.threshold}")
        if self.coarse_factor < 1 or self.window_factor < 1:
            raise ValueError("coarse_factor and window_factor must be >= 1")
        if not 0.0 < self.window <= 1.0:
            raise ValueError(f"window must be in (0, 1], got {self.window}")


def _grey(image: Image.Image, factor: int) -> Image.Image:
    # Reducing RGB first and converting the small image is ~2x faster than the other order.
    small = image.reduce(factor) if factor > 1 and min(image.size) >= factor else image
    return small.convert("L")


def _changed(a: Image.Image, b: Image.Image, threshold: int) -> float:
    """Fraction of pixels whose grey level differs by more than ``threshold``."""
    if a.size != b.size:
        return 1.0
    hist = ImageChops.difference(a, b).histogram()
    return sum(hist[threshold + 1 :]) / max(1, a.width * a.height)


def _window_box(frame: Frame, x: int, y: int, side_fraction: float) -> tuple[int, int, int, int]:
    scale = frame.scale
    cx, cy = round(x * scale), round(y * scale)
    half = max(4, round(frame.image.width * side_fraction / 2))
    left, top = max(0, cx - half), max(0, cy - half)
    right, bottom = min(frame.image.width, cx + half), min(frame.image.height, cy + half)
    return left, top, max(right, left + 1), max(bottom, top + 1)


class FrameChange:
    """The effect check the loop calls: ``change(before, after, action) -> fraction``.

    Keeps the coarse thumbnails of the last few frames, because each step's "after" frame
    is the next step's "before" frame: that halves the cost.
    """

    def __init__(self, config: ChangeConfig | None = None, *, cache_size: int = 4) -> None:
        self.config = config or ChangeConfig()
        self._cache: list[tuple[Image.Image, Image.Image]] = []
        self._cache_size = cache_size

    def coarse(self, frame: Frame) -> Image.Image:
        """The whole screen as a small grey image (cached by image identity)."""
        for source, small in self._cache:
            if source is frame.image:
                return small
        small = _grey(frame.image, self.config.coarse_factor)
        self._cache = [*self._cache[-(self._cache_size - 1) :], (frame.image, small)] if self._cache_size else []
        return small

    def __call__(self, before: Frame, after: Frame, action: Action) -> float:
        """Fraction (0-1) of changed pixels: the larger of the action window's and the whole screen's."""
        cfg = self.config
        if before.image.size != after.image.size:
            return 1.0  # rotation or a different monitor: certainly a change
        overall = _changed(self.coarse(before), self.coarse(after), cfg.threshold)
        point = tap_point(action)
        if point is None:
            return overall
        box = _window_box(before, *point, cfg.window)
        local = _changed(
            _grey(before.image.crop(box), cfg.window_factor),
            _grey(after.image.crop(box), cfg.window_factor),
            cfg.threshold,
        )
        return max(local, overall)


def frame_change(before: Frame, after: Frame, action: Action, config: ChangeConfig | None = None) -> float:
    """Fraction (0-1) of pixels that visibly changed; see ``FrameChange`` (this form keeps no cache)."""
    return FrameChange(config, cache_size=0)(before, after, action)


def frames_equal(a: Frame, b: Frame, config: ChangeConfig | None = None) -> bool:
    """True when no pixel of the coarse thumbnails differs by more than the threshold."""
    cfg = config or ChangeConfig()
    if a.image.size != b.image.size:
        return False
    return _changed(_grey(a.image, cfg.coarse_factor), _grey(b.image, cfg.coarse_factor), cfg.threshold) == 0.0


# --- settle-waiting ------------------------------------------------------------------


@dataclass(frozen=True)
class Settle:
    """Capture after an action until the screen stops changing; returns the settled frame.

    Captures every ``interval`` seconds; the screen has settled once consecutive captures
    stayed equal (``frames_equal``) for ``stable_for`` seconds (0: the first two equal
    captures). ``stable_for`` must outlast any *static* intermediate screen (a "Loading…"
    page); animations change every frame and are caught by the comparison itself. After
    ``timeout`` seconds the latest frame is returned anyway (a video never settles).
    ``min_wait`` delays the first capture, for devices slow to even start reacting.
    """

    timeout: float = 3.0
    interval: float = 0.1
    stable_for: float = 0.3
    min_wait: float = 0.0
    change: ChangeConfig = field(default_factory=ChangeConfig)
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        if self.timeout < 0 or self.interval <= 0 or self.min_wait < 0 or self.stable_for < 0:
            raise ValueError("timeout, stable_for and min_wait must be >= 0 and interval > 0")

    def __call__(self, driver: Driver) -> Frame:
        start = self.clock()
        if self.min_wait:
            self.sleep(self.min_wait)
        frame = driver.screenshot()
        small = _grey(frame.image, self.change.coarse_factor)
        stable_since = self.clock()
        captures = 1
        while True:
            waited = self.clock() - start
            if waited >= self.timeout:
                log.info("screen did not settle within %.2fs (%d captures)", self.timeout, captures)
                return frame
            self.sleep(min(self.interval, self.timeout - waited))
            current = driver.screenshot()
            current_small = _grey(current.image, self.change.coarse_factor)
            captures += 1
            now = self.clock()
            same = frame.image.size == current.image.size and _changed(small, current_small, self.change.threshold) == 0
            if not same:
                stable_since = now
            elif now - stable_since >= self.stable_for:
                log.debug("screen settled after %.2fs (%d captures)", now - start, captures)
                return current
            frame, small = current, current_small


# --- loop detection ------------------------------------------------------------------


def screen_hash(frame: Frame, size: int = 16) -> int:
    """A difference hash (dHash) of ``size`` x ``size`` bits: similar screens, similar bits."""
    grey = _grey(frame.image, 8).resize((size + 1, size), Image.Resampling.BOX)
    pixels = list(grey.tobytes())
    bits = 0
    for row in range(size):
        base = row * (size + 1)
        for col in range(size):
            bits = (bits << 1) | (pixels[base + col] > pixels[base + col + 1])
    return bits


def hash_distance(a: int, b: int) -> int:
    """Number of differing bits between two ``screen_hash`` values."""
    return (a ^ b).bit_count()
