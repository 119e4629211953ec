"""The vision tower's embeddings of prompt images, kept so later steps do not encode them again.

Memory shows each earlier screen at a size that stays put for several steps (see
:mod:`vlagent.memory`) and hands the policy the same sized image object each time. Qwen2-VL's
vision tower encodes every image on its own (attention never crosses images; positions
restart at each image), so an image's embeddings do not depend on the rest of the prompt:
reusing them is exact.

Entries are keyed by the identity of the sized image and hold it only weakly: an entry lives
while memory still holds that image (a screen that changes size or leaves the prompt gives
its image up, and its entry goes with it at the next ``put``), so entries do not outlive
their episode. The total is also bounded in bytes, least recently used first out.

This module imports torch only through the tensors it is given.
"""

from __future__ import annotations

import logging
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

__all__ = ["EncodedImages", "VisionCache"]

log = logging.getLogger(__name__)


@dataclass
class _Entry:
    image: weakref.ref[Image.Image]
    embeds: Any
    """(tokens, hidden) tensor on the model's device."""
    nbytes: int


@dataclass
class EncodedImages:
    """Embeddings of a batch's images, in prompt order, and what the tower computed for them."""

    embeds: list[Any]
    """One (tokens, hidden) tensor per image."""
    encoded: list[bool]
    """Per image: computed by the tower now (False: taken from the cache)."""


class VisionCache:
    """Least-recently-used image embeddings, at most ``max_bytes`` in all."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[int, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, image: Image.Image) -> Any | None:
        """The embeddings of this very image object, if cached."""
        entry = self._entries.get(id(image))
        if entry is None or entry.image() is not image:
            return None
        self._entries.move_to_end(id(image))
        return entry.embeds

    def put(self, image: Image.Image, embeds: Any) -> None:
        self._prune()
        nbytes = int(embeds.numel() * embeds.element_size())
        if nbytes > self.max_bytes:
            return
        old = self._entries.pop(id(image), None)
        if old is not None:
            self.bytes -= old.nbytes
        self._entries[id(image)] = _Entry(weakref.ref(image), embeds, nbytes)
        self.bytes += nbytes
        while self.bytes > self.max_bytes:
            _, dropped = self._entries.popitem(last=False)
            self.bytes -= dropped.nbytes

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0

    def _prune(self) -> None:
        """Forget entries whose image is gone (memory no longer shows it at that size)."""
        for key in [k for k, e in self._entries.items() if e.image() is None]:
            self.bytes -= self._entries.pop(key).nbytes

    def lookup(self, images: Sequence[Image.Image]) -> list[Any | None]:
        """Per image: its cached embeddings, or None (it must be encoded; its pixels are needed)."""
        found = [self.get(image) for image in images]
        hits = sum(1 for e in found if e is not None)
        self.hits += hits
        self.misses += len(found) - hits
        return found

    def encode(
        self,
        images: Sequence[Image.Image],
        found: Sequence[Any | None],
        pixel_values: Any,
        grid: Any,
        tower: Callable[[Any, Any], Sequence[Any]],
        *,
        pixels_of_missing_only: bool = False,
    ) -> EncodedImages:
        """Embeddings of ``images`` given what :meth:`lookup` ``found``: the others run through
        ``tower`` in one call and are cached.

        ``grid`` has one (t, h, w) row per image. ``pixel_values`` holds the patch rows of every
        image in order, or with ``pixels_of_missing_only`` only those of the images not found.
        ``tower(pixel_values, grid)`` returns one tensor per image.
        """
        embeds = list(found)
        todo = [i for i, e in enumerate(found) if e is None]
        if todo:
            values = pixel_values
            if not pixels_of_missing_only and len(todo) < len(images):
                patches = [int(t * h * w) for t, h, w in grid.tolist()]
                starts = [sum(patches[:i]) for i in range(len(patches))]
                values = pixel_values.new_empty((sum(patches[i] for i in todo), pixel_values.shape[1]))
                at = 0
                for i in todo:
                    values[at : at + patches[i]] = pixel_values[starts[i] : starts[i] + patches[i]]
                    at += patches[i]
            fresh = tower(values, grid[todo])
            for i, tensor in zip(todo, fresh, strict=True):
                embeds[i] = tensor
                self.put(images[i], tensor)
        encoded = [e is None for e in found]
        return EncodedImages([e for e in embeds if e is not None], encoded)
