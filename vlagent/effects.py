"""What an action did to the screen: change measure, settle-waiting and loop detection.

- ``FrameChange`` / ``frame_change``: the fraction of pixels that visibly changed between the
  frame before and after an action, looking closely around the action's point and coarsely at
  the whole screen. ``0.0`` means nothing changed beyond noise; the loop then tells the model
  "no visible change".
- ``Settle``: after an action, capture until two consecutive frames are equal (animations
  over) or a timeout, instead of sleeping a fixed time.
- ``LoopDetector``: an episode hook that stops (or warns) an agent that repeats an action
  which changes nothing, or goes round a cycle of screens.

Everything here works on Pillow images only (no numpy, no torch) and must stay cheap: it
runs on every step. It must not decide anything about the task; it only measures.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from PIL import Image, ImageChops

from vlagent.actions import Action, Click, LongPress, Wait, action_points, describe_action, map_points
from vlagent.agent import EndReason, Hook, Verdict
from vlagent.drivers.base import Driver
from vlagent.frames import Frame

if TYPE_CHECKING:
    from vlagent.agent import Episode, StepRecord

__all__ = [
    "ChangeConfig",
    "FrameChange",
    "LoopConfig",
    "LoopDetector",
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


def _point_of(action: Action) -> tuple[int, int] | None:
    if isinstance(action, (Click, LongPress)):
        return action.x, action.y
    return None


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
        point = _point_of(action)
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


def _origin(x: int, y: int) -> tuple[int, int]:
    return (0, 0)


def hash_distance(a: int, b: int) -> int:
    """Number of differing bits between two ``screen_hash`` values."""
    return (a ^ b).bit_count()


@dataclass(frozen=True)
class LoopConfig:
    """When an agent counts as stuck, and what to do about it."""

    repeats: int = 3
    """The same action with no visible change this many times in a row is a loop."""
    cycle_repeats: int = 3
    """A cycle of screens (A, B, A, B, ...) gone round this many times is a loop."""
    max_period: int = 4
    """Longest cycle of screens looked for (2 = A, B, A, B)."""
    on_stuck: Literal["stop", "hint"] = "stop"
    """``stop`` ends the episode as STUCK; ``hint`` tells the model and carries on."""
    max_hints: int | None = 2
    """In hint mode, stop anyway at the next loop after this many hints (None: never stop)."""
    hash_distance: int = 8
    """Screens whose 256-bit hashes differ in at most this many bits are the same screen."""
    point_tolerance: float = 0.02
    """Points closer than this fraction of the screen's larger side count as the same point."""

    def __post_init__(self) -> None:
        if self.repeats < 2 or self.cycle_repeats < 2 or self.max_period < 2:
            raise ValueError("repeats, cycle_repeats and max_period must be >= 2")
        if self.on_stuck not in ("stop", "hint"):
            raise ValueError(f"on_stuck must be 'stop' or 'hint', got {self.on_stuck!r}")


class LoopDetector(Hook):
    """Episode hook: ends (or warns) an agent repeating a useless action or cycling screens.

    It reads ``StepRecord.change`` (set by the loop's effect check; without one, only screen
    cycles are detected) and hashes each step's frames.
    """

    def __init__(self, config: LoopConfig | None = None) -> None:
        self.config = config or LoopConfig()
        self.hints = 0
        self._same: list[Action] = []
        self._hashes: list[int] = []
        self._last_image: Image.Image | None = None

    def on_start(self, episode: Episode, driver: object, policy: object) -> None:
        self.hints = 0
        self._reset()

    def _reset(self) -> None:
        self._same = []
        self._hashes = []
        self._last_image = None

    def on_step(self, episode: Episode, record: StepRecord, after: Frame) -> Verdict | None:
        problem = self._useless_repeat(record) or self._screen_cycle(record.frame, after)
        if problem is None:
            return None
        detail, hint = problem
        self._reset()
        cfg = self.config
        if cfg.on_stuck == "hint" and (cfg.max_hints is None or self.hints < cfg.max_hints):
            self.hints += 1
            log.info("loop detected (hint %d): %s", self.hints, detail)
            return Verdict(hint=hint, detail=detail)
        log.info("loop detected, stopping: %s", detail)
        return Verdict(stop=EndReason.STUCK, detail=detail)

    def _same_action(self, a: Action, b: Action, frame: Frame) -> bool:
        if a.action != b.action:
            return False
        tolerance = self.config.point_tolerance * max(frame.width, frame.height)
        points_a, points_b = action_points(a), action_points(b)
        if len(points_a) != len(points_b):
            return False
        if any(
            abs(xa - xb) > tolerance or abs(ya - yb) > tolerance
            for (xa, ya), (xb, yb) in zip(points_a, points_b, strict=True)
        ):
            return False
        # Points were compared with a tolerance above; everything else must be equal.
        return map_points(a, _origin) == map_points(b, _origin)

    def _useless_repeat(self, record: StepRecord) -> tuple[str, str] | None:
        # A wait is meant to change nothing by itself; endless waiting is bounded by the step limit.
        if record.change != 0.0 or isinstance(record.action, Wait):
            self._same = []
            return None
        if self._same and not self._same_action(self._same[0], record.action, record.frame):
            self._same = []
        self._same.append(record.action)
        n = len(self._same)
        if n < self.config.repeats:
            return None
        what = describe_action(self._same[0])
        return (
            f"{what} changed nothing on the screen {n} times in a row",
            f"The last {n} actions ({what}) changed nothing on the screen. "
            "That element does not respond: try something else (another element, scroll, go back).",
        )

    def _screen_cycle(self, before: Frame, after: Frame) -> tuple[str, str] | None:
        if not self._hashes or self._last_image is not before.image:
            self._hashes = [screen_hash(before)]
        self._hashes.append(screen_hash(after))
        self._last_image = after.image
        cfg = self.config
        hashes = self._hashes[-cfg.max_period * cfg.cycle_repeats :]
        self._hashes = hashes

        def same(i: int, j: int) -> bool:
            return hash_distance(hashes[i], hashes[j]) <= cfg.hash_distance

        for period in range(2, cfg.max_period + 1):
            span = period * cfg.cycle_repeats
            if len(hashes) < span:
                break
            start = len(hashes) - span
            repeating = all(same(k, k + period) for k in range(start, len(hashes) - period))
            # A screen that never changes also "repeats"; that is the no-effect rule's business.
            distinct = not all(same(k, k + 1) for k in range(start, start + period - 1))
            if repeating and distinct:
                return (
                    f"the screen went round the same cycle of {period} screens {cfg.cycle_repeats} times",
                    f"You have gone back and forth between the same {period} screens {cfg.cycle_repeats} times. "
                    "Stop repeating these actions and try a different approach.",
                )
        return None
