"""What every published dataset's reader gives the step-level evaluation: episodes of steps.

A :class:`DatasetStep` knows its screenshot (decoded when asked), its gold action as a
vlagent action in the screenshot's pixels, the gold as the dataset writes it, and how to
score a prediction by the dataset's reference rules. Readers of this room only read files
and compare actions; they must not run policies.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from PIL import Image

from vlagent.actions import MAX_COORD, Action
from vlagent.datasets.tfrecord import DatasetError
from vlagent.frames import Frame
from vlagent.scoring import Convention, StepScore

__all__ = ["DatasetEpisode", "DatasetStep", "decode_image", "pixel", "read_split"]

log = logging.getLogger(__name__)

#: Largest screenshot accepted, in pixels (a 4K phone is ~10 M).
MAX_PIXELS = 64 << 20


class DatasetStep(Protocol):
    """One gold step: the screen before it, the action taken, and the dataset's scoring rules."""

    @property
    def episode_id(self) -> str: ...

    @property
    def index(self) -> int:
        """Position in the episode, from 0."""

    @property
    def goal(self) -> str: ...

    @property
    def instruction(self) -> str | None:
        """The step's own instruction (AndroidControl's low level), None when the dataset has none."""

    @property
    def gold(self) -> Action:
        """The gold action in the screenshot's pixels."""

    @property
    def kind(self) -> str:
        """The gold action's type as the dataset names it (per-type breakdowns)."""

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the screenshot."""

    @property
    def source(self) -> str:
        """Where the step was read: ``FILE: record N``."""

    def frame(self) -> Frame:
        """The screenshot, decoded now (DatasetError when it cannot be)."""

    def native(self) -> dict[str, object]:
        """The gold as the dataset writes it (JSON-able)."""

    def score(self, prediction: Action | None) -> dict[Convention, StepScore]:
        """``prediction`` (None: no valid answer) judged by each of the dataset's reference rules."""

    def predicted_native(self, prediction: Action) -> dict[str, object]:
        """``prediction`` as each reference rule reads it (JSON-able)."""


@dataclass(frozen=True)
class DatasetEpisode:
    """The steps of one episode, in order."""

    episode_id: str
    goal: str
    steps: Sequence[DatasetStep]
    source: str


def decode_image(data: bytes, where: str, *, expected: tuple[int, int] | None = None) -> Image.Image:
    """An encoded screenshot (PNG, JPEG...) as RGB; its size is checked before it is decoded."""
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        if not 0 < width <= MAX_COORD or not 0 < height <= MAX_COORD or width * height > MAX_PIXELS:
            raise DatasetError(f"{where}: a screenshot of {width}x{height} pixels is beyond what is read")
        image.load()
        rgb = image.convert("RGB")
    except DatasetError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"{where}: the screenshot cannot be decoded ({type(exc).__name__}: {exc})") from exc
    if expected is not None and rgb.size != expected:
        log.warning("%s: the screenshot is %dx%d, the record says %dx%d", where, *rgb.size, *expected)
    return rgb


def pixel(fraction: float, extent: int) -> int:
    """A finite fraction of a screen side as the nearest pixel on the screen."""
    return min(extent - 1, max(0, round(fraction * extent)))


def read_split(path: Path | str, label: str) -> frozenset[str]:
    """The episode ids under ``label`` of a split file: JSON mapping a label (train, validation,
    test) to a list of episode ids, as AITW's README describes its split files."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read the split file ({exc})") from exc
    except (ValueError, RecursionError) as exc:
        raise DatasetError(f"{path}: the split file is not JSON ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: a split file maps labels to lists of episode ids, this is a {type(data).__name__}")
    if label not in data:
        raise DatasetError(f"{path}: no split {label!r}; it has {', '.join(map(str, data)) or 'none'}")
    ids = data[label]
    if not isinstance(ids, list) or not all(isinstance(i, (str, int)) and not isinstance(i, bool) for i in ids):
        raise DatasetError(f"{path}: split {label!r} is not a list of episode ids")
    return frozenset(str(i) for i in ids)
