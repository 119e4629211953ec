"""History as video: earlier screens given to a Qwen2-VL model as the frames of a video.

Qwen2-VL's vision tower cuts a video into temporal patches of two frames, so two frames of
one size cost the visual tokens of one image: ``(T/2)*(H/28)*(W/28)`` for ``T`` frames.
Memory (``MemoryConfig(history="video")``) picks the screens, pairs the older ones at one
stable size and numbers the clips in its :class:`~vlagent.memory.Selection`; this module
turns the chat messages of one step (built with images by :mod:`vlagent.policies.prompt`)
into messages whose clip frames are one ``{"type": "video", "video": [PIL frames]}`` part
each, which the chat template writes as ``<|vision_start|><|video_pad|><|vision_end|>`` and
the processor expands to one token per merged patch of each frame pair.

Only the Qwen2-VL and Qwen2.5-VL families (and model types) take such prompts: their
processors accept frames as a video and their towers encode each pair on its own.

This module must not resize images (memory sized them) and imports torch only through the
tensors it is given.
"""

from __future__ import annotations

import logging
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from vlagent.errors import ConfigError
from vlagent.memory import Selection
from vlagent.policies.base import Observation
from vlagent.policies.pixels import PixelLayout, patchify, supported
from vlagent.policies.prompt import Message

__all__ = [
    "VIDEO_FAMILIES",
    "VIDEO_MODEL_TYPES",
    "DirectVideos",
    "PairCache",
    "VideoPrompt",
    "as_video",
    "clip_selection",
    "direct_videos",
    "encode_pairs",
    "encode_videos",
    "require_video",
    "videos_as_images",
    "with_video_tokens",
]

log = logging.getLogger(__name__)

#: Prompt families whose models take earlier screens as video.
VIDEO_FAMILIES = frozenset({"qwen2vl", "qwen25vl"})
#: Model types whose processor and tower take a list of frames as a video, each pair encoded on its own.
VIDEO_MODEL_TYPES = frozenset({"qwen2_vl", "qwen2_5_vl"})


def require_video(family: str, model_type: str | None) -> None:
    """ConfigError unless this family and model type can take history as video."""
    if family not in VIDEO_FAMILIES:
        raise ConfigError(
            f"--history video needs the qwen2vl or qwen25vl model family; the {family} family takes images only"
        )
    if model_type is not None and model_type not in VIDEO_MODEL_TYPES:
        raise ConfigError(f"--history video needs a Qwen2-VL or Qwen2.5-VL model, not model type {model_type}")


#: ``direct_videos``' answer: the video inputs, and per row the tokens of each of its videos.
DirectVideos = tuple[dict[str, Any], list[list[int]]]


@dataclass
class VideoPrompt:
    """One step's messages with its clips as video parts, and the visual inputs in prompt order."""

    messages: list[Message]
    images: list[Image.Image] = field(default_factory=list)
    """The images still sent as images (the current screen last)."""
    videos: list[list[Image.Image]] = field(default_factory=list)
    """One list of frames per clip, oldest first (an even count: whole pairs)."""


def clip_selection(observation: Observation) -> Selection | None:
    """Memory's selection for ``observation`` when it holds video clips and its images are the prompt's.

    Call after ``observation.prompt_images``; None when images were given explicitly (no choice of
    memory's is in the prompt) or memory sent every screen as an image.
    """
    if observation.images or observation.choice is None:
        return None
    selection = observation.choice.selection
    return selection if selection is not None and selection.clips else None


def _is_label(part: Message) -> bool:
    """A one-line text part: the label a layout puts before each screenshot."""
    return part.get("type") == "text" and "\n" not in str(part.get("text", ""))


def as_video(messages: Sequence[Message], images: Sequence[Image.Image], selection: Selection) -> VideoPrompt:
    """``messages`` (with one image part per prompt image, in order) with each clip of ``selection``
    as one video part, at its first frame's place; the label before that frame names the clip's
    steps, the labels before its other frames go.

    ``images`` are the prompt's images as sized for the model (one per ``selection.images``).
    """
    if len(images) != len(selection.images):
        raise ValueError(f"{len(images)} images for a selection of {len(selection.images)}")
    clip_of = {n: c for c, frames in enumerate(selection.clips) for n in frames}
    prompt = VideoPrompt([])
    n = 0
    for message in messages:
        content = message.get("content")
        if not isinstance(content, list):
            prompt.messages.append(message)
            continue
        parts: list[Message] = []
        for part in content:
            if part.get("type") != "image":
                parts.append(part)
                continue
            clip = clip_of.get(n)
            if clip is None:
                parts.append({"type": "image", "image": images[n]})
                prompt.images.append(images[n])
            else:
                frames = selection.clips[clip]
                if parts and _is_label(parts[-1]):
                    parts.pop()
                if n == frames[0]:
                    steps = [selection.images[i].step for i in frames]
                    named = ", ".join(str(s + 1) for s in steps if s is not None)
                    text = f"Earlier screens of steps {named} as a video of {len(frames)} frames, oldest first:"
                    video = [images[i] for i in frames]
                    parts += [{"type": "text", "text": text}, {"type": "video", "video": video}]
                    prompt.videos.append(video)
            n += 1
        prompt.messages.append({**message, "content": parts})
    if n != len(images):
        raise ValueError(f"the messages hold {n} image parts for {len(images)} images")
    return prompt


def with_video_tokens(
    encoded: Sequence[float], video_grid: Any, videos_per_row: Sequence[int], computed: Sequence[bool]
) -> list[float]:
    """``encoded`` (per row, visual tokens the tower computed) plus the tokens of each row's videos
    that were ``computed`` now (``video_grid``: one (t, h, w) row per video, in order; 2x2 patches
    merge into one token)."""
    tokens = [
        int(t * h * w) // 4 if fresh else 0 for (t, h, w), fresh in zip(video_grid.tolist(), computed, strict=True)
    ]
    sums: list[float] = []
    start = 0
    for n, count in enumerate(videos_per_row):
        sums.append((encoded[n] if encoded else 0.0) + float(sum(tokens[start : start + count])))
        start += count
    return sums


def encode_videos(model: Any, pixel_values_videos: Any, video_grid_thw: Any) -> Any:
    """The tower's output for the videos (one tensor per video in ``pooler_output``), as ``generate``
    takes it in ``mm_encoder_outputs["video"]``."""
    return model.model.get_video_features(pixel_values_videos, video_grid_thw, return_dict=True)


@dataclass
class _Pair:
    frames: tuple[weakref.ref[Image.Image], weakref.ref[Image.Image]]
    embeds: Any
    nbytes: int


class PairCache:
    """The tower's embeddings of two-frame videos, keyed by the identity of both (sized) frames.

    Memory pairs screens by age, so a pair shown at one step is shown again two steps later
    (one pair further back) with the very same image objects; the tower encodes each pair on
    its own, so its embeddings are exact to reuse. Frames are held weakly: an entry goes once
    memory lets a frame go. Least recently used out first past ``max_bytes``.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[tuple[int, int], _Pair] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, frames: Sequence[Image.Image]) -> Any | None:
        key = (id(frames[0]), id(frames[1]))
        entry = self._entries.get(key)
        if entry is None or entry.frames[0]() is not frames[0] or entry.frames[1]() is not frames[1]:
            return None
        self._entries.move_to_end(key)
        return entry.embeds

    def put(self, frames: Sequence[Image.Image], embeds: Any) -> None:
        for key in [k for k, e in self._entries.items() if e.frames[0]() is None or e.frames[1]() is None]:
            self.bytes -= self._entries.pop(key).nbytes
        nbytes = int(embeds.numel() * embeds.element_size())
        if nbytes > self.max_bytes:
            return
        key = (id(frames[0]), id(frames[1]))
        old = self._entries.pop(key, None)
        self.bytes += nbytes - (old.nbytes if old is not None else 0)
        self._entries[key] = _Pair((weakref.ref(frames[0]), weakref.ref(frames[1])), embeds, nbytes)
        while self.bytes > self.max_bytes:
            self.bytes -= self._entries.popitem(last=False)[1].nbytes


def encode_pairs(
    videos: Sequence[Sequence[Image.Image]], inputs: Mapping[str, Any], model: Any, cache: PairCache | None
) -> tuple[list[Any], list[bool]]:
    """Per video its embeddings, and whether the tower computed them now: the cached ones are taken
    from ``cache``, the others encoded in one call on their rows of the inputs' ``pixel_values_videos``
    (``video_grid_thw``: one (t, h, w) row per video) and cached."""
    pixel_values_videos, video_grid = inputs["pixel_values_videos"], inputs["video_grid_thw"]
    found: list[Any | None] = [cache.get(v) if cache is not None else None for v in videos]
    todo = [i for i, e in enumerate(found) if e is None]
    if cache is not None:
        cache.hits += len(videos) - len(todo)
        cache.misses += len(todo)
    if todo:
        values, grid = pixel_values_videos, video_grid
        if len(todo) < len(videos):  # only the rows of the videos not found
            patches = [int(t * h * w) for t, h, w in video_grid.tolist()]
            starts = [sum(patches[:i]) for i in range(len(patches))]
            values = pixel_values_videos.new_empty((sum(patches[i] for i in todo), pixel_values_videos.shape[1]))
            at = 0
            for i in todo:
                values[at : at + patches[i]] = pixel_values_videos[starts[i] : starts[i] + patches[i]]
                at += patches[i]
            grid = video_grid[todo]
        fresh = encode_videos(model, values, grid).pooler_output
        for i, tensor in zip(todo, fresh, strict=True):
            found[i] = tensor
            if cache is not None:
                cache.put(videos[i], tensor)
    computed = [i in todo for i in range(len(videos))]
    return [e for e in found if e is not None], computed


def videos_as_images(
    rows: Sequence[Sequence[int]],
    inputs: Mapping[str, Any],
    image_embeds: Sequence[Any] | None,
    video_embeds: Sequence[Any],
    pads: tuple[int, int],
    *,
    tower: Callable[[Any, Any], Sequence[Any]],
) -> tuple[list[list[int]], list[Any], Any]:
    """The prompts of ``rows`` (token ids) for a decoder that knows only images: each video's
    placeholders become image placeholders, and the embeddings and (t, h, w) grid rows of images
    and videos are merged in prompt order. ``inputs``: the model inputs; ``image_embeds``: the
    images' embeddings if already computed (else ``tower`` computes them); ``video_embeds``: one
    tensor per video; ``pads``: the ids of ``<|image_pad|>`` and ``<|video_pad|>``.

    Exact for videos of one temporal patch (a pair of frames): M-RoPE gives their tokens the
    positions of an image of the same grid, and placeholders are replaced by embeddings anyway.
    """
    import torch

    image_pad, video_pad = pads
    video_grid = inputs["video_grid_thw"]
    if any(int(t) != 1 for t, _, _ in video_grid.tolist()):
        raise ValueError("only videos of one temporal patch (two frames) can run as images")
    if image_embeds is None:
        image_embeds = list(tower(inputs["pixel_values"], inputs["image_grid_thw"]))
    images = iter(zip(image_embeds, inputs["image_grid_thw"], strict=True))
    videos = iter(zip(video_embeds, video_grid, strict=True))
    out_rows: list[list[int]] = []
    embeds: list[Any] = []
    grids: list[Any] = []
    for row in rows:
        out: list[int] = []
        previous = None
        for token in row:
            if token in pads and token != previous:  # an image or a video starts
                embed, grid = next(images if token == image_pad else videos)
                embeds.append(embed)
                grids.append(grid)
            out.append(image_pad if token == video_pad else token)
            previous = token
        out_rows.append(out)
    if next(images, None) is not None or next(videos, None) is not None:
        raise ValueError("more images or videos than placeholders in the prompts")
    return out_rows, embeds, torch.stack(grids)


def direct_videos(
    processor: Any,
    layout: PixelLayout | None,
    videos: Sequence[Sequence[Sequence[Image.Image]]],
    model: Any,
) -> DirectVideos | None:
    """``pixel_values_videos`` and ``video_grid_thw`` of each row's two-frame videos, made as Qwen2-VL's
    video processor makes them from frames already sized (one temporal patch: the pair's two frames
    where a still image repeats its one), and per row the token count of each video; None when the
    video processor has settings :func:`~vlagent.policies.pixels.patchify` does not reproduce (or
    ``layout`` is None: the images are not made directly either). Tensors go to ``model``'s device, in its dtype.
    """
    import torch

    device, dtype = model.device, model.dtype
    video_processor = getattr(processor, "video_processor", None)
    if (
        layout is None
        or video_processor is None
        or not supported(video_processor)
        or PixelLayout.of(video_processor) != layout
    ):
        return None
    if layout.temporal_patch_size != 2:
        return None
    values: list[Any] = []
    grids: list[list[int]] = []
    counts: list[list[int]] = []
    for row in videos:
        counts.append([])
        for frames in row:
            if len(frames) != 2:
                raise ValueError(f"a video of history is one pair of frames, got {len(frames)}")
            # Each frame alone gives rows of (channel, frame repeated, 14, 14); keep one copy of each.
            first, second = (patchify([f], layout, device=device, dtype=dtype)[0] for f in frames)
            n = first.shape[0]
            pair = torch.cat([first.view(n, 3, 2, -1)[:, :, :1], second.view(n, 3, 2, -1)[:, :, :1]], dim=2)
            values.append(pair.reshape(n, -1))
            gh, gw = frames[0].height // layout.patch_size, frames[0].width // layout.patch_size
            grids.append([1, gh, gw])
            counts[-1].append(gh * gw // layout.merge_size**2)
    if not values:
        return {}, counts
    data = {
        "pixel_values_videos": torch.cat(values),
        "video_grid_thw": torch.tensor(grids, dtype=torch.long, device=device),
    }
    return data, counts
