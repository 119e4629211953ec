"""Trajectory memory: which past frames and what text history a policy sees.

Minimal first version: the text history of every step, and the current frame resized to
the per-image pixel budget. Older frames, downscaling and the token budget come next.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from vlagent.coords import IMAGE_FACTOR, MIN_PIXELS, smart_resize, visual_tokens
from vlagent.frames import Frame
from vlagent.policies.base import HistoryEntry

__all__ = ["MemoryConfig", "TrajectoryMemory"]


@dataclass(frozen=True)
class MemoryConfig:
    """Budget of visual tokens per prompt and pixels per image."""

    max_pixels: int = 1280 * IMAGE_FACTOR * IMAGE_FACTOR
    min_pixels: int = MIN_PIXELS


class TrajectoryMemory:
    def __init__(self, config: MemoryConfig | None = None) -> None:
        self.config = config or MemoryConfig()
        self._history: list[HistoryEntry] = []

    @property
    def history(self) -> tuple[HistoryEntry, ...]:
        return tuple(self._history)

    def add(self, entry: HistoryEntry, frame: Frame) -> None:
        self._history.append(entry)

    def select(self, frame: Frame) -> tuple[Frame, ...]:
        h, w = smart_resize(
            frame.image.height, frame.image.width, min_pixels=self.config.min_pixels, max_pixels=self.config.max_pixels
        )
        image = frame.image if frame.image.size == (w, h) else frame.image.resize((w, h), Image.Resampling.BICUBIC)
        return (Frame(image, frame.width, frame.height, frame.timestamp, frame.device),)

    def tokens(self, frames: tuple[Frame, ...]) -> int:
        return sum(visual_tokens(f.image.width, f.image.height, max_pixels=self.config.max_pixels) for f in frames)
