"""Model inputs for Qwen2-VL built directly from already-sized images, without the processor.

The policy's images already have their final size (multiples of 28 inside the pixel
budget, see :mod:`vlagent.memory`), so everything the processor still does is layout:
rescale and normalise every pixel, repeat the frame for the temporal patch, cut 14x14
patches in the merge order the vision tower expects, and expand each ``<|image_pad|>`` to
one token per merged patch. Done here with one uint8 copy of the image and one fused
normalise-and-reorder on the target device (on a GPU the upload is 4x smaller than float
pixels and the arithmetic runs there).

The output equals ``Qwen2VLProcessor``'s to float tolerance (checked by the tests); when a
processor setting this module does not reproduce is present (a different resample, no
normalisation...), :func:`supported` says so and the policy keeps the processor.

This module must not resize images (a second resize would shift coordinates) and imports
numpy and torch only inside its functions.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

__all__ = ["PixelLayout", "expand_image_tokens", "patchify", "supported"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PixelLayout:
    """The image processor settings that decide pixel_values (read once from the processor)."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    rescale: float = 1 / 255
    patch_size: int = 14
    merge_size: int = 2
    temporal_patch_size: int = 2

    @property
    def factor(self) -> int:
        return self.patch_size * self.merge_size

    @classmethod
    def of(cls, image_processor: Any) -> PixelLayout:
        mean = tuple(float(v) for v in image_processor.image_mean)
        std = tuple(float(v) for v in image_processor.image_std)
        return cls(
            mean=(mean[0], mean[1], mean[2]),
            std=(std[0], std[1], std[2]),
            rescale=float(image_processor.rescale_factor),
            patch_size=int(image_processor.patch_size),
            merge_size=int(image_processor.merge_size),
            temporal_patch_size=int(image_processor.temporal_patch_size),
        )


def supported(image_processor: Any) -> bool:
    """Whether :func:`patchify` reproduces this processor exactly."""
    needed = ("image_mean", "image_std", "rescale_factor", "patch_size", "merge_size", "temporal_patch_size")
    if not all(hasattr(image_processor, name) for name in needed):
        return False
    return bool(
        getattr(image_processor, "do_rescale", True)
        and getattr(image_processor, "do_normalize", True)
        and getattr(image_processor, "do_convert_rgb", True)
        and len(image_processor.image_mean) == 3
    )


def patchify(images: Sequence[Image.Image], layout: PixelLayout, *, device: Any = "cpu", dtype: Any = None) -> Any:
    """(pixel_values, image_grid_thw) for ``images`` whose sides are multiples of ``layout.factor``.

    pixel_values has one row per 14x14 patch (``3 * temporal * 14 * 14`` values), rows in
    the processor's order: image by image, merge window by merge window (row-major), and
    inside a window the 2x2 patches row-major.
    """
    import numpy as np
    import torch

    dtype = dtype or torch.float32
    p, m, t = layout.patch_size, layout.merge_size, layout.temporal_patch_size
    mean = torch.tensor(layout.mean, dtype=torch.float32, device=device)
    std = torch.tensor(layout.std, dtype=torch.float32, device=device)
    # (x * rescale - mean) / std == x * a + b, the processor's arithmetic up to rounding.
    scale = (layout.rescale / std).view(1, 3, 1, 1)
    shift = (-mean / std).view(1, 3, 1, 1)
    grids: list[list[int]] = []
    for image in images:
        width, height = image.size
        if width % layout.factor or height % layout.factor:
            raise ValueError(f"image {width}x{height} is not a multiple of {layout.factor}; size it first")
        grids.append([1, height // p, width // p])
    # Every image's rows are written in place into one tensor (no concatenation copies).
    out = torch.empty((sum(h * w for _, h, w in grids), 3, t, p, p), dtype=torch.float32, device=device)
    at = 0
    for image, (_, gh, gw) in zip(images, grids, strict=True):
        if image.mode != "RGB":
            image = image.convert("RGB")
        # One uint8 copy (np.asarray of a PIL image is read-only), uploaded before the float blow-up.
        pixels = torch.from_numpy(np.array(image)).to(device, non_blocking=True)  # (H, W, 3) uint8
        # (H, W, C) -> (gh/m, m, p, gw/m, m, p, C) -> (gh/m, gw/m, m, m, C, p, p): the processor's patch order.
        blocks = pixels.view(gh // m, m, p, gw // m, m, p, 3).permute(0, 3, 1, 4, 6, 2, 5)
        first = out[at : at + gh * gw, :, 0]
        first.copy_(blocks.reshape(gh * gw, 3, p, p))
        first.mul_(scale).add_(shift)
        # A still image is its own temporal pair: the frame repeated after the channel axis.
        for k in range(1, t):
            out[at : at + gh * gw, :, k] = first
        at += gh * gw
    pixel_values = out.view(out.shape[0], 3 * t * p * p)
    return pixel_values.to(dtype), torch.tensor(grids, dtype=torch.long, device=device)


def expand_image_tokens(ids: Sequence[int], image_token_id: int, counts: Sequence[int]) -> list[int]:
    """``ids`` with the i-th ``image_token_id`` repeated ``counts[i]`` times (one per merged patch).

    Tokenizing the text with one placeholder and repeating it gives the same ids as the
    processor's tokenizing of the text with the placeholders already repeated, because
    special tokens are split off before BPE; the ids of thousands of placeholders are
    just not worth tokenizing.
    """
    out: list[int] = []
    index = 0
    for token in ids:
        if token == image_token_id:
            if index >= len(counts):
                raise ValueError("more image placeholders in the prompt than images")
            out.extend([token] * counts[index])
            index += 1
        else:
            out.append(token)
    if index != len(counts):
        raise ValueError(f"{len(counts)} images but {index} image placeholders in the prompt")
    return out
