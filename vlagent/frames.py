"""Frame: one observation of a screen.

A frame holds the captured image (physical pixels) plus the *logical* screen size in
which actions are executed. On a HiDPI desktop a 2560x1600 capture of a 1280x800 logical
screen has ``scale == 2.0``; the model sees the image, the driver clicks in logical
pixels, and :mod:`vlagent.coords` converts via fractions of the screen so both agree.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from PIL import Image

__all__ = ["Frame"]


def _empty_meta() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True)
class Frame:
    """An RGB screenshot with the geometry needed to act on it."""

    image: Image.Image
    width: int
    """Logical screen width (the space actions are executed in)."""
    height: int
    """Logical screen height."""
    timestamp: float = field(default_factory=time.time)
    device: Mapping[str, str] = field(default_factory=_empty_meta)
    """Free-form device facts: serial, density, rotation, monitor..."""

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"frame size must be positive, got {self.width}x{self.height}")
        if self.image.mode != "RGB":
            object.__setattr__(self, "image", self.image.convert("RGB"))

    @property
    def size(self) -> tuple[int, int]:
        """Logical (width, height)."""
        return (self.width, self.height)

    @property
    def scale(self) -> float:
        """Physical image pixels per logical pixel (1.0 unless HiDPI)."""
        return self.image.width / self.width

    @classmethod
    def of(cls, image: Image.Image, *, scale: float = 1.0, device: Mapping[str, str] | None = None) -> Frame:
        """A frame whose logical size is the image size divided by ``scale``."""
        return cls(
            image=image,
            width=max(1, round(image.width / scale)),
            height=max(1, round(image.height / scale)),
            device=MappingProxyType(dict(device or {})),
        )
