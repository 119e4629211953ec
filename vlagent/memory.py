"""Trajectory memory: which past screens and what text history a policy sees.

A prompt carries images, and images cost visual tokens: Qwen2-VL spends (H/28)*(W/28)
tokens on an image resized to multiples of 28 (``vlagent.coords.smart_resize``). Memory
keeps a prompt under a fixed budget of visual tokens however long the episode runs:

- the newest screen is always sent, at the full per-image resolution the budget allows;
- older screens are sent smaller. By default (``sizes="stable"``) a screen's size depends only
  on its age: every earlier screen gets ``older_scale`` squared of the full pixels (312 tokens
  for a 1080x2400 phone), or, with ``half_steps`` > 0, the last ``half_steps`` earlier screens
  get ``older_scale`` first. A screen is thus shown at two (or three) sizes in its life, and a
  policy can reuse what it computed for a (screen, size) at later steps. Earlier screens at
  the smallest size leave the prompt in blocks (``drop="blocks"``): the block grows by one
  screen per step and is cleared when the budget or ``max_images`` is full, so between
  clearings each prompt starts as the previous one did and only grows at its end. A screen
  that does not fit at its size is dropped, never squeezed. ``sizes="shrink"`` makes each
  older screen ``older_scale`` of the next newer one (new sizes at every step) and drops the
  oldest first;
- with ``history="video"`` the older screens (past the ``half_steps`` bucket) go to the model
  in consecutive pairs as the frames of a video: Qwen2-VL's temporal patch is 2 frames, so a
  pair of screens at one size costs the tokens of one image (see ``_choose_video``);
- the text of every step (thought, action, effect) is kept; old thoughts are shortened and,
  in very long episodes, the oldest steps are merged into one summary line.

Every image ``select`` returns is already resized to a multiple-of-28 size inside
``[min_pixels, max_pixels]``, so a processor configured with the same bounds leaves it as it
is: the token count computed here is the count the model sees, and coordinates are not
shifted by a second resize. Memory must not talk to models or devices.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from PIL import Image

from vlagent.actions import Action, Key, OpenApp, Scroll, describe_action
from vlagent.coords import IMAGE_FACTOR, MIN_PIXELS, smart_resize, visual_tokens
from vlagent.errors import ConfigError
from vlagent.frames import Frame

__all__ = [
    "HistoryEntry",
    "ImageChoice",
    "MemoryConfig",
    "SelectedImage",
    "Selection",
    "SummaryEntry",
    "TrajectoryMemory",
    "memory_config",
]

log = logging.getLogger(__name__)

_TOKEN_PIXELS = IMAGE_FACTOR * IMAGE_FACTOR
# Bicubic after a cheap box pre-reduction: near-identical to plain bicubic, ~10x faster on phone screenshots.
_REDUCING_GAP = 3.0


@dataclass(frozen=True)
class MemoryConfig:
    """Budget of visual tokens per prompt and how older screens share it.

    The policy's image processor must use the same ``min_pixels``/``max_pixels`` (or a wider
    range), so that it does not resize the images memory already sized.
    """

    max_tokens: int = 2560
    """Visual tokens per prompt, all images together."""
    max_pixels: int = 1280 * _TOKEN_PIXELS
    """Pixels of one image at most (the newest screen's resolution); 1280*28*28 = 1272 tokens for 1080x2400."""
    min_pixels: int = MIN_PIXELS
    max_images: int = 4
    """Images per prompt, the current screen included (servers may limit images per prompt)."""
    older_scale: float = 0.5
    """Each older screen gets this fraction of the pixels of the next newer one (1.0: same size)."""
    min_history_tokens: int = 64
    """An older screen that would get fewer tokens than this is dropped instead."""
    sizes: Literal["stable", "shrink"] = "stable"
    """``stable``: sizes by age bucket (previous screen ``older_scale``, older ones ``older_scale``²
    of the full pixels), so a screen is resized and encoded at most three times in its life;
    ``shrink``: each older screen ``older_scale`` of the next newer one (new sizes every step)."""
    half_steps: int = 0
    """Stable sizes: the last this many earlier screens get ``older_scale``, older ones ``older_scale``²
    (0, the default: every earlier screen at the smallest size, so a screen is encoded twice in its life;
    1: the previous screen with more detail, at the cost of encoding it once more)."""
    drop: Literal["blocks", "oldest"] = "blocks"
    """Stable sizes: how screens at the smallest size leave the prompt. ``blocks``: they are shown in
    blocks of as many as the budget holds (steps ``k*S`` to ``k*S + S - 1``); a block grows by one
    screen per step and is cleared when full, so the prompt only ever grows at its end between
    clearings and a policy can reuse what it computed for the unchanged start of the prompt.
    ``oldest``: the oldest screen leaves as soon as the budget is full (the start of the prompt
    changes at every step)."""
    history: Literal["images", "video"] = "images"
    """``video``: the screens older than the ``half_steps`` bucket are sent in consecutive pairs, at the
    smallest stable size, each pair a two-frame video (it costs the tokens of one image); a screen
    left without a partner is sent as an image. ``max_images`` still counts screens. Needs stable sizes."""
    recent_steps: int = 8
    """The latest steps keep their full thought; older thoughts are shortened."""
    old_thought_chars: int = 80
    max_history_steps: int = 40
    """Text history lines at most; the oldest steps beyond it are merged into one summary line."""

    def __post_init__(self) -> None:
        if self.min_pixels < _TOKEN_PIXELS or self.max_pixels < self.min_pixels:
            raise ConfigError(
                f"need {_TOKEN_PIXELS} <= min_pixels <= max_pixels, got {self.min_pixels}, {self.max_pixels}"
            )
        if self.max_tokens * _TOKEN_PIXELS < self.min_pixels:
            raise ConfigError(
                f"max_tokens={self.max_tokens} cannot hold one image of min_pixels={self.min_pixels} "
                f"({self.min_pixels // _TOKEN_PIXELS} tokens)"
            )
        if self.max_images < 1:
            raise ConfigError(f"max_images must be >= 1, got {self.max_images}")
        if not 0.0 < self.older_scale <= 1.0:
            raise ConfigError(f"older_scale must be in (0, 1], got {self.older_scale}")
        if self.half_steps < 0:
            raise ConfigError(f"half_steps must be >= 0, got {self.half_steps}")
        if self.drop not in ("blocks", "oldest"):
            raise ConfigError(f"drop must be 'blocks' or 'oldest', got {self.drop!r}")
        if self.sizes not in ("stable", "shrink"):
            raise ConfigError(f"sizes must be 'stable' or 'shrink', got {self.sizes!r}")
        if self.history not in ("images", "video"):
            raise ConfigError(f"history must be 'images' or 'video', got {self.history!r}")
        if self.history == "video" and self.sizes != "stable":
            raise ConfigError("history as video pairs screens of one stable size: it needs sizes='stable'")
        if self.max_history_steps < 2 or self.recent_steps < 0 or self.old_thought_chars < 0:
            raise ConfigError("max_history_steps must be >= 2; recent_steps and old_thought_chars >= 0")


#: Run options (CLI flags, policy options) that size memory.
MEMORY_OPTIONS = ("max_pixels", "min_pixels", "max_images", "max_tokens")


def memory_config(options: Mapping[str, object]) -> MemoryConfig:
    """The memory a run's options ask for: ``max_pixels``, ``min_pixels``, ``max_images``, ``max_tokens``,
    ``history`` ("images" | "video"), ``no_history_reuse`` (the former schedule, every screen resized at
    every step); other options are ignored. Raises ConfigError for values memory cannot take."""
    values: dict[str, Any] = {k: options[k] for k in MEMORY_OPTIONS if options.get(k) is not None}
    if options.get("no_history_reuse"):
        values["sizes"] = "shrink"
    if options.get("history") is not None:
        values["history"] = options["history"]
    return MemoryConfig(**values)


@dataclass(frozen=True)
class SelectedImage:
    """One image of a prompt: which screen it is, its size as sent and its token cost."""

    step: int | None
    """Index of the step this screen preceded; None for the current screen."""
    width: int
    height: int
    tokens: int
    """Visual tokens this image adds; in a video clip a pair's tokens are counted on its older frame, 0 on the newer."""
    clip: int | None = None
    """Index of the video clip this screen is a frame of (``history="video"``); None: sent as an image."""


@dataclass(frozen=True)
class Selection:
    """What ``select`` chose for one prompt (for recorders and benchmarks)."""

    images: tuple[SelectedImage, ...]
    """Oldest first, the current screen last."""
    budget: int
    dropped: int = 0
    """Stored older screens not sent."""

    @property
    def total_tokens(self) -> int:
        return sum(image.tokens for image in self.images)

    def as_dict(self) -> dict[str, Any]:
        return {
            "budget": self.budget,
            "total_tokens": self.total_tokens,
            "dropped": self.dropped,
            "images": [
                {"step": i.step, "width": i.width, "height": i.height, "tokens": i.tokens}
                | ({} if i.clip is None else {"clip": i.clip})
                for i in self.images
            ],
        }

    @property
    def clips(self) -> tuple[tuple[int, ...], ...]:
        """Per video clip, the positions (in ``images``) of its frames, oldest first; () without video."""
        found: dict[int, list[int]] = {}
        for n, image in enumerate(self.images):
            if image.clip is not None:
                found.setdefault(image.clip, []).append(n)
        return tuple(tuple(found[c]) for c in sorted(found))


class ImageChoice:
    """Memory's choice of images for one observation, made when a policy first asks for them.

    The loop passes it on the Observation; a policy that looks at images calls ``frames()``,
    and afterwards ``selection`` says what was sent (None: the policy never looked).
    """

    def __init__(self, memory: TrajectoryMemory, frame: Frame, *, stand_in: bool = False) -> None:
        self._memory, self._frame, self._stand_in = memory, frame, stand_in
        self._made: tuple[tuple[Frame, ...], Selection] | None = None

    def frames(self) -> tuple[Frame, ...]:
        """The images, oldest first, the current screen last (chosen on the first call)."""
        if self._made is None:
            self._made = self._memory.choose(self._frame, stand_in=self._stand_in)
        return self._made[0]

    @property
    def selection(self) -> Selection | None:
        return None if self._made is None else self._made[1]


@dataclass(frozen=True)
class HistoryEntry:
    """What the model is told about an earlier step."""

    index: int
    action: Action
    thought: str | None = None
    effect: str | None = None
    """e.g. 'no visible change'; None when unknown."""

    def render(self, action_text: str | None = None) -> str:
        """One history line; ``action_text`` replaces the default rendering of the action
        (model families show actions in their own grid and syntax)."""
        text = f"Step {self.index + 1}: {action_text or describe_action(self.action)}"
        if self.thought:
            text += f" - {self.thought}"
        if self.effect:
            text += f" [{self.effect}]"
        return text


@dataclass(frozen=True)
class SummaryEntry(HistoryEntry):
    """Several old steps merged into one line; ``action`` is the last merged step's action."""

    last_index: int = 0
    text: str = ""

    def render(self, action_text: str | None = None) -> str:
        return self.text


@dataclass
class _Stored:
    step: int
    frame: Frame
    """The screen as captured, or as the prompt of its own step showed it (the largest size it is
    ever shown at): smaller copies are made from it on demand."""
    source_size: tuple[int, int]
    """The size as captured (sizes are chosen from it)."""
    resized: dict[tuple[int, int], Image.Image] = field(default_factory=dict)

    def image(self, size: tuple[int, int]) -> Image.Image:
        if self.frame.image.size == size:
            return self.frame.image
        if size not in self.resized:
            # Sizes only shrink with age, so keep just the newest one.
            self.resized = {size: _resize(self.frame.image, size)}
        return self.resized[size]


def _resize(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    if image.size == size:
        return image
    return image.resize(size, Image.Resampling.BICUBIC, reducing_gap=_REDUCING_GAP)


def _action_kind(action: Action) -> str:
    if isinstance(action, Key):
        return f"key({action.key})"
    if isinstance(action, Scroll):
        return f"scroll({action.direction})"
    if isinstance(action, OpenApp):
        return f"open_app({action.name!r})"
    return action.action


def _shorten(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: max(0, limit - 1)].rstrip() + "…" if limit else None


class TrajectoryMemory:
    """The history of one episode and the images each prompt carries, under a token budget."""

    def __init__(self, config: MemoryConfig | None = None) -> None:
        self.config = config or MemoryConfig()
        self._history: list[HistoryEntry] = []
        self._frames: list[_Stored] = []
        self._shown: tuple[Frame, Image.Image] | None = None
        """The last current screen ``choose`` saw, and its image as the prompt showed it."""
        self._pending: tuple[Frame, _Stored] | None = None
        """The screen ``preview`` stored ahead of ``add``, and the stored screen ``add`` then keeps."""

    def reset(self) -> None:
        """Forget everything (a new episode)."""
        self._history.clear()
        self._frames.clear()
        self._shown = self._pending = None

    # --- text ------------------------------------------------------------------------

    @property
    def full_history(self) -> tuple[HistoryEntry, ...]:
        """Every step exactly as added."""
        return tuple(self._history)

    @property
    def history(self) -> tuple[HistoryEntry, ...]:
        """The text history to show a model: every step, older ones compactly."""
        cfg = self.config
        entries = self._history
        head: list[HistoryEntry] = []
        if len(entries) > cfg.max_history_steps:
            merged, entries = entries[: len(entries) - cfg.max_history_steps + 1], entries[-cfg.max_history_steps + 1 :]
            head = [self._summary(merged)]
        recent_from = len(entries) - cfg.recent_steps
        shown = [
            e
            if i >= recent_from
            else HistoryEntry(e.index, e.action, _shorten(e.thought, cfg.old_thought_chars), e.effect)
            for i, e in enumerate(entries)
        ]
        return (*head, *shown)

    @staticmethod
    def _summary(entries: list[HistoryEntry]) -> SummaryEntry:
        kinds = Counter(_action_kind(e.action) for e in entries)
        no_change = sum(1 for e in entries if e.effect == "no visible change")
        counts = ", ".join(f"{n}x {kind}" for kind, n in kinds.most_common())
        text = f"Steps {entries[0].index + 1}-{entries[-1].index + 1} (summary): {counts}"
        if no_change:
            text += f"; {no_change} with no visible change"
        return SummaryEntry(entries[0].index, entries[-1].action, last_index=entries[-1].index, text=text)

    # --- images ----------------------------------------------------------------------

    def add(self, entry: HistoryEntry, frame: Frame) -> None:
        """Remember a finished step and the screen it acted on."""
        self._history.append(entry)
        pending, self._pending = self._pending, None
        stored = pending[1] if pending is not None and pending[0] is frame else self._store(entry, frame)
        self._shown = None
        if stored is not None:
            self._frames.append(stored)
            del self._frames[: -(self.config.max_images - 1)]

    def preview(self, entry: HistoryEntry, frame: Frame) -> TrajectoryMemory:
        """This memory as it will be once ``add(entry, frame)`` is called, for work done ahead (the
        next prompt's start, while the device acts). The copy shares the stored screens, and ``add``
        with the same ``frame`` then keeps the very screen the copy holds, so images sized for the
        copy's prompts are the objects the next prompt shows. The copy must not outlive that ``add``."""
        ahead = copy.copy(self)
        ahead._history = [*self._history, entry]
        ahead._frames = list(self._frames)
        ahead._shown = ahead._pending = None
        stored = self._store(entry, frame)
        self._pending = None if stored is None else (frame, stored)
        if stored is not None:
            ahead._frames.append(stored)
            del ahead._frames[: -(self.config.max_images - 1)]
        return ahead

    def _store(self, entry: HistoryEntry, frame: Frame) -> _Stored | None:
        """What ``add`` keeps of ``frame``: None when no later prompt can show it."""
        if self.config.max_images <= 1:
            return None
        cap = int(self.config.max_pixels * self.config.older_scale)
        if self._fit_tokens(frame.image.width, frame.image.height, self.config.max_tokens, cap) is None:
            return None  # too large to ever be sent as an older screen
        # Later sizes are never larger than the one the frame's own prompt showed (the caps only shrink
        # with age), so that image is kept and shrunk from: a smaller source makes each later resize a
        # few times cheaper and holds a fraction of the pixels. A frame no prompt showed (scripted
        # policies never look) is kept as captured and shrunk only if a policy asks for it.
        shown = self._shown[1] if self._shown is not None and self._shown[0] is frame else None
        kept = frame if shown is None else self._framed(frame, shown)
        return _Stored(entry.index, kept, frame.image.size)

    def select(self, frame: Frame) -> tuple[Frame, ...]:
        """The images for the next prompt, oldest first, ``frame`` (the current screen) last.

        Raises ConfigError when the budget cannot hold even the current screen.
        """
        return self.choose(frame)[0]

    def lazy_choice(self, frame: Frame, *, stand_in: bool = False) -> ImageChoice:
        """The choice for ``frame``, made only if a policy asks for the images. ``stand_in``: ``frame``
        stands for a screen still to come, of its size; the current image is then blank."""
        return ImageChoice(self, frame, stand_in=stand_in)

    def choose(self, frame: Frame, *, stand_in: bool = False) -> tuple[tuple[Frame, ...], Selection]:
        """``select``'s images and what was chosen (sizes and tokens per image, budget, screens dropped).

        ``stand_in``: the current image is a blank of the size ``frame`` would be sent at (for a
        prompt whose screen is not captured yet, of ``frame``'s size), and is not resized.
        """
        cfg = self.config
        if cfg.history == "video":
            return self._choose_video(frame, stand_in=stand_in)
        chosen: list[tuple[Frame, SelectedImage]] = [self._current(frame, stand_in)]
        tokens = chosen[0][1].tokens
        remaining = cfg.max_tokens - tokens
        cap = float(cfg.max_pixels)
        block_start = self._block_start(*frame.image.size, tokens)
        for age, stored in enumerate(reversed(self._frames), start=1):
            cap *= cfg.older_scale
            if len(chosen) >= cfg.max_images or remaining < cfg.min_history_tokens:
                break
            if age > cfg.half_steps and stored.step < block_start:
                break
            if cfg.sizes == "stable":
                # The size depends on the age bucket only (not on what is left), so it stays put;
                # a screen that does not fit at its size is dropped, never shrunk to fit.
                fit = self._fit_tokens(*stored.source_size, cfg.max_tokens, int(self._bucket_cap(age)))
                if fit is not None and fit[1] > remaining:
                    break
            else:
                fit = self._fit_tokens(*stored.source_size, remaining, int(cap))
            if fit is None or fit[1] < cfg.min_history_tokens:
                break
            (size, tokens), remaining = fit, remaining - fit[1]
            chosen.append((self._framed(stored.frame, stored.image(size)), SelectedImage(stored.step, *size, tokens)))
        chosen.reverse()
        selection = Selection(
            tuple(info for _, info in chosen), cfg.max_tokens, dropped=len(self._history) - (len(chosen) - 1)
        )
        log.debug("memory selected %d images, %d/%d visual tokens", len(chosen), remaining, cfg.max_tokens)
        return tuple(f for f, _ in chosen), selection

    def _block_start(self, width: int, height: int, current_tokens: int) -> int:
        """Under ``drop="blocks"``: the first step whose screen the smallest-size block shows (-1: no blocks).

        The block size S is what the budget holds at the smallest size once the current screen and the
        ``half_steps`` screens at the middle size are in; it depends on the screen size only, so it stays
        put. Blocks are aligned on step numbers: the newest smallest-size screen ``n`` shows with the
        screens of steps ``n - n % S`` to ``n``.
        """
        cfg = self.config
        smallest = self._frames[: max(0, len(self._frames) - cfg.half_steps)]
        if cfg.sizes != "stable" or cfg.drop != "blocks" or not smallest:
            return -1
        remaining = cfg.max_tokens - current_tokens
        slots = cfg.max_images - 1
        if cfg.half_steps:
            middle = self._fit_tokens(width, height, cfg.max_tokens, int(self._bucket_cap(1)))
            shown = min(cfg.half_steps, slots)
            slots -= shown
            remaining -= shown * (middle[1] if middle is not None else 0)
        low = self._fit_tokens(width, height, cfg.max_tokens, int(self._bucket_cap(cfg.half_steps + 1)))
        if low is None or low[1] < cfg.min_history_tokens or remaining < low[1] or slots < 1:
            return -1
        size = min(slots, remaining // low[1])
        newest = smallest[-1].step
        return newest - newest % size

    def _current(self, frame: Frame, stand_in: bool) -> tuple[Frame, SelectedImage]:
        """The current screen as the prompt sends it, at the full budget (remembered for ``add``), or a
        blank stand-in of that size; ConfigError when the budget cannot hold it."""
        cfg = self.config
        src_w, src_h = frame.image.size
        current = self._fit_tokens(src_w, src_h, cfg.max_tokens, cfg.max_pixels)
        if current is None:
            raise ConfigError(f"max_tokens={cfg.max_tokens} cannot hold a {src_w}x{src_h} screen; raise it")
        size, tokens = current
        if stand_in:
            sent = Image.new(frame.image.mode, size)
        else:
            sent = _resize(frame.image, size)
            self._shown = (frame, sent)
        return self._framed(frame, sent), SelectedImage(None, *size, tokens)

    def _choose_video(self, frame: Frame, *, stand_in: bool = False) -> tuple[tuple[Frame, ...], Selection]:
        """``choose`` with older screens as video: the current screen and the last ``half_steps`` earlier
        ones as images (stable sizes), then the older ones newest first in pairs by age ((h+1, h+2),
        (h+3, h+4)...) at the smallest size. A pair's two frames share one size and one set of
        tokens ((H/28)*(W/28) for both, Qwen2-VL's temporal patch being 2 frames). Each pair is a clip
        of its own: its tokens then take the positions an image of that size would (one temporal
        patch), so a decoder that knows only images can run it exactly. A screen without a partner
        (the oldest shown, or one whose partner has another size) is sent as an image. Screens count
        against ``max_images`` one by one.
        """
        cfg = self.config
        chosen = [self._current(frame, stand_in)]
        remaining = cfg.max_tokens - chosen[0][1].tokens
        older = list(reversed(self._frames))  # newest first: older[age - 1]

        def fit(age: int) -> tuple[tuple[int, int], int] | None:
            stored = older[age - 1]
            made = self._fit_tokens(*stored.source_size, cfg.max_tokens, int(self._bucket_cap(age)))
            return None if made is None or made[1] < cfg.min_history_tokens else made

        def take(age: int, size: tuple[int, int], tokens: int, clip: int | None) -> None:
            stored = older[age - 1]
            image = self._framed(stored.frame, stored.image(size))
            chosen.append((image, SelectedImage(stored.step, *size, tokens, clip)))

        age, clip = 1, -1
        while age <= len(older) and len(chosen) < cfg.max_images and remaining >= cfg.min_history_tokens:
            made = fit(age)
            if made is None or made[1] > remaining:
                break
            (size, tokens), partner = made, None
            if age > cfg.half_steps and age < len(older) and len(chosen) + 1 < cfg.max_images:
                partner = fit(age + 1)
            if partner is None or partner[0] != size:  # an image; nothing older is shown after a lone screen
                take(age, size, tokens, None)
                remaining -= tokens
                if age > cfg.half_steps:
                    break
                age += 1
                continue
            clip += 1
            take(age, size, 0, clip)  # the newer frame of the pair; the older one carries the tokens
            take(age + 1, size, tokens, clip)
            remaining -= tokens
            age += 2
        chosen.reverse()
        count = clip + 1  # clips were numbered newest first; number them oldest first
        infos = [i if i.clip is None else dataclasses.replace(i, clip=count - 1 - i.clip) for _, i in chosen]
        selection = Selection(tuple(infos), cfg.max_tokens, dropped=len(self._history) - (len(chosen) - 1))
        log.debug(
            "memory selected %d screens (%d clips), %d/%d visual tokens", len(chosen), count, remaining, cfg.max_tokens
        )
        return tuple(f for f, _ in chosen), selection

    def _bucket_cap(self, age: int) -> float:
        """Pixels at most for a screen ``age`` steps old under the stable schedule."""
        cfg = self.config
        return cfg.max_pixels * cfg.older_scale ** (1 if age <= cfg.half_steps else 2)

    def tokens(self, frames: tuple[Frame, ...]) -> int:
        """Visual tokens the processor (with this config's pixel bounds) spends on ``frames``."""
        cfg = self.config
        return sum(
            visual_tokens(f.image.width, f.image.height, min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels)
            for f in frames
        )

    @staticmethod
    def _framed(frame: Frame, image: Image.Image) -> Frame:
        return Frame(image, frame.width, frame.height, frame.timestamp, frame.device)

    def _fit(self, width: int, height: int, budget_pixels: int) -> tuple[int, int] | None:
        """(width, height) within ``budget_pixels`` that the processor will not resize again, if any."""
        cfg = self.config
        h, w = smart_resize(height, width, min_pixels=cfg.min_pixels, max_pixels=max(cfg.min_pixels, budget_pixels))
        for _ in range(4):
            h2, w2 = smart_resize(h, w, min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels)
            if (h2, w2) == (h, w):
                return w, h
            h, w = h2, w2
        # min_pixels close to max_pixels: rounding up and rounding down chase each other.
        return None

    def _fit_tokens(
        self, width: int, height: int, max_tokens: int, cap_pixels: int
    ) -> tuple[tuple[int, int], int] | None:
        """The largest fitting size (within ``cap_pixels``) costing at most ``max_tokens``, and its cost."""
        cfg = self.config
        budget = min(cap_pixels, max_tokens * _TOKEN_PIXELS)
        for _ in range(32):
            size = self._fit(width, height, budget)
            if size is not None:
                tokens = (size[0] // IMAGE_FACTOR) * (size[1] // IMAGE_FACTOR)
                if tokens <= max_tokens:
                    return size, tokens
            else:
                tokens = 2 * max_tokens
            if budget <= cfg.min_pixels:
                return None
            # Very elongated screens: rounding up the short side to 28 overshoots; shrink and retry.
            budget = max(cfg.min_pixels, int(budget * max_tokens / tokens * 0.95))
        return None
