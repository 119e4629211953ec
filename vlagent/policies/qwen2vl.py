"""Qwen2VLPolicy: a Qwen-VL model run in-process with transformers.

One ``generate`` call serves a whole batch of observations (left padding, one grammar
state per row). Each step: resize every prompt image once to the pixel budget (multiples
of 28), build the chat with :mod:`vlagent.policies.prompt`, run the processor, generate
under the step's JSON grammar (:mod:`vlagent.policies.grammar`), parse the text
(:func:`vlagent.parsing.parse_step`), and convert the model's grid to device pixels with
the family's codec.

Why not ``qwen_vl_utils.process_vision_info`` (the seed recipe, measured as the baseline
in ``tools/bench_policy.py``): its only effect on our already-sized images is an RGB
conversion and a full copy through ``Image.resize``; and it resizes with its own constants,
so a change of its defaults would silently shift coordinates. Here the one resize uses
:func:`vlagent.coords.smart_resize` (the same arithmetic) and the processor is told a
size range that keeps the image as it is, so what the model sees is exactly the size the
codec assumes.

This module imports torch and transformers only when a policy is created.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from PIL import Image

from vlagent.actions import Step
from vlagent.coords import IMAGE_FACTOR, MAX_PIXELS, MIN_PIXELS, decode_action, smart_resize
from vlagent.errors import (
    ConfigError,
    InvalidModelOutput,
    MissingExtraError,
    ModelError,
    PolicyBackendError,
)
from vlagent.frames import Frame
from vlagent.policies import videohistory
from vlagent.policies.base import Decision, Observation, step_seed
from vlagent.policies.budget import bounded_schema
from vlagent.policies.grammar import GrammarCompiler, RowConstraint, make_logits_processor
from vlagent.policies.hub import Weights, load_error, locate_weights
from vlagent.policies.pixels import PixelLayout, expand_image_tokens, patchify, supported
from vlagent.policies.prompt import GrammarLimits, ModelFamily, build_messages, detect_family, get_family
from vlagent.policies.visioncache import VisionCache
from vlagent.schema import step_schema

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, ProcessorMixin

    from vlagent.policies.fastdecode import FastDecoder

__all__ = ["DEFAULT_MODEL", "PreparedBatch", "Qwen2VLPolicy", "QwenPolicyConfig", "create_policy"]

log = logging.getLogger(__name__)

DEFAULT_MODEL = "Qwen/Qwen2-VL-2B-Instruct"
_IMAGE_PAD = "<|image_pad|>"
_VISION_START = "<|vision_start|>"
_VIDEO_PAD = "<|video_pad|>"
_END_OF_TURN = "<|im_end|>"
#: Model types whose vision tower encodes each image on its own into everything the decoder takes.
_PER_IMAGE_TOWERS = frozenset({"qwen2_vl", "qwen2_5_vl"})


@dataclass(frozen=True)
class QwenPolicyConfig:
    """Settings of the in-process Qwen-VL policy."""

    model: str = DEFAULT_MODEL
    """Hub id or local directory with config.json, weights and processor files."""
    device: str = "auto"
    """``auto`` (cuda when available, else cpu), ``cpu``, ``cuda``, ``cuda:1``..."""
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    """``auto``: bfloat16 on GPU, float32 on CPU."""
    attn: Literal["auto", "flash_attention_2", "sdpa", "eager"] = "auto"
    """``auto``: flash_attention_2 on CUDA when flash-attn is installed, else sdpa."""
    load_in_4bit: bool = False
    """Quantize weights to 4 bits with bitsandbytes (GPU only)."""
    min_pixels: int = MIN_PIXELS
    max_pixels: int = 1280 * IMAGE_FACTOR * IMAGE_FACTOR
    """Pixel budget per image: visual tokens = pixels / 784 (1280 tokens by default)."""
    max_new_tokens: int = 128
    structured: bool = True
    """Decode under the step's JSON grammar (llguidance); off: free text parsed leniently."""
    with_thought: bool = True
    """Ask for a short thought before the action."""
    max_thought_chars: int = 200
    """Cap on the thought under constrained decoding, so the JSON closes within max_new_tokens."""
    max_string_chars: int = 120
    """Cap on other free strings (typed text, answers) under constrained decoding, same reason."""
    family: str | None = None
    """Model family (qwen2vl, qwen25vl, qwen3vl); detected from the model when None."""
    coords: str | None = None
    """Coordinate convention override: norm1000, norm999 or abs_resized."""
    temperature: float = 0.0
    """0 decodes greedily (reproducible); above 0 samples."""
    fast: bool = True
    """Decode with vlagent's loop (:mod:`vlagent.policies.fastdecode`); False: transformers' ``generate``."""
    prefix_cache: bool = True
    """Fast loop: compute the prompt before the first image once per episode and reuse its KV cache."""
    fast_forward: bool = True
    """Append the tokens the grammar forces (keys, punctuation) without a choice; several per pass in the fast loop."""
    fast_inputs: bool = True
    """Build pixel values and token ids directly from the sized images instead of running the processor."""
    cache: Literal["auto", "dynamic", "static"] = "auto"
    """KV cache: ``static`` pre-allocates fixed-length buckets (needed to compile); ``auto``: static on CUDA."""
    compile: Literal["auto", "off", "default", "reduce-overhead"] = "auto"
    """torch.compile mode of the decode step (static cache only); ``auto``: reduce-overhead on CUDA, off on CPU."""
    time_parts: bool = False
    """Wait for the GPU between vision, prefill and decode so their times are exact (benchmarks)."""
    history_reuse: bool = True
    """Keep the vision tower's embeddings of each sized image and reuse them when memory shows the
    same image again at a later step (exact: the tower encodes each image on its own)."""
    vision_cache_mb: int = 512
    """Bound of those embeddings in MiB, least recently used out first."""
    work_ahead: bool = True
    """With history reuse: compute the next prompt's start while the device acts (``prefetch``)."""
    history: Literal["images", "video"] = "images"
    """``video``: memory sends older screens in pairs as two-frame video clips (``MemoryConfig.history``);
    the policy checks that its family and model take video (:mod:`vlagent.policies.videohistory`)."""

    def __post_init__(self) -> None:
        if not 0 < self.min_pixels <= self.max_pixels <= MAX_PIXELS:
            raise ConfigError(
                f"need 0 < min_pixels <= max_pixels <= {MAX_PIXELS}, got {self.min_pixels}, {self.max_pixels}"
            )
        if self.max_new_tokens < 8:
            raise ConfigError("max_new_tokens must be at least 8")
        if not self.temperature >= 0 or self.temperature == float("inf"):  # NaN fails both ways
            raise ConfigError(f"temperature must be a finite number >= 0, got {self.temperature!r}")
        if self.vision_cache_mb < 0:
            raise ConfigError("vision_cache_mb must be >= 0")
        if self.history not in ("images", "video"):
            raise ConfigError(f"history must be 'images' or 'video', got {self.history!r}")
        if self.coords not in (None, "norm1000", "norm999", "abs_resized"):
            raise ConfigError(f"coords must be norm1000, norm999 or abs_resized, got {self.coords!r}")


@dataclass
class _Row:
    observation: Observation
    family: ModelFamily
    image_size: tuple[int, int]
    grid: tuple[int, int]
    schema: dict[str, Any] | str
    """The step's JSON schema, or a native family's Lark grammar (see ModelFamily.grammar)."""
    messages: list[dict[str, Any]]
    images: list[Image.Image]
    text: str = ""
    videos: list[list[Image.Image]] = field(default_factory=list)
    """Earlier screens sent as video clips (memory's ``history="video"``), frames oldest first."""


@dataclass
class PreparedBatch:
    """Processor output for a batch, plus what is needed to read the answers back."""

    rows: list[_Row]
    inputs: Any
    """transformers BatchFeature: input_ids, attention_mask, pixel_values, image_grid_thw, ..."""
    preprocess_s: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    found: list[Any] | None = None
    """Per image (all rows, in order): its cached embeddings or None; None when the cache is off."""
    pixels_of_missing_only: bool = False
    """``pixel_values`` holds only the images not found in the cache."""
    encoded_tokens: list[float] = field(default_factory=list)
    """Per row: visual tokens the vision tower computed for it (the rest came from the cache)."""
    reused_tokens: list[float] = field(default_factory=list)
    """Per row: prompt tokens whose keys and values came from an earlier step's prompt (fast path)."""


def _batch_seed(batch: PreparedBatch) -> int | None:
    """One seed for a plain-path batch, folded from its rows' step seeds (None when none is seeded)."""
    seeds = [row.observation.sampling_seed for row in batch.rows]
    if all(s is None for s in seeds):
        return None
    folded = 0
    for s in seeds:
        folded = step_seed(folded, -1 if s is None else s)
    return folded


def _require(purpose: str) -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise MissingExtraError("qwen", exc.name or "transformers", purpose) from exc
    return torch, transformers


def _installed(purpose: str) -> None:
    """MissingExtraError when torch or transformers is missing, without importing them (seconds)."""
    for module in ("torch", "transformers"):
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError("qwen", module, purpose)


class _FirstCallTimer:
    """A logits processor that records when the first token's logits arrive (end of prefill)."""

    def __init__(self) -> None:
        self.first: float | None = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self.first is None:
            self.first = time.perf_counter()
        return scores


class Qwen2VLPolicy:
    """Chooses steps with a Qwen-VL model in this process; batches many episodes per call."""

    name = "qwen2vl"

    def __init__(
        self,
        config: QwenPolicyConfig | None = None,
        *,
        model: PreTrainedModel | None = None,
        processor: ProcessorMixin | None = None,
    ) -> None:
        """Load ``config.model`` (or use an already loaded ``model`` and ``processor``)."""
        self.config = config or QwenPolicyConfig()
        weights: Weights | None = None
        if model is None or processor is None:
            # Where the weights are is settled first, in seconds, before torch and transformers load.
            _installed("The qwen2vl policy")
            weights = locate_weights(self.config.model)
        torch, _ = _require("The qwen2vl policy")
        self._torch = torch
        if model is None or processor is None:
            assert weights is not None
            model, processor = self._load(weights)
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"  # decoder-only batches pad on the left
        self.device = next(model.parameters()).device
        model_type = getattr(model.config, "model_type", None)
        family = get_family(self.config.family) if self.config.family else detect_family(model_type, self.config.model)
        if self.config.coords:
            family = dataclasses.replace(family, coords=self.config.coords)
        if self.config.history == "video":
            videohistory.require_video(family.name, model_type)
        self.family = family
        self._video_pad_id = self.tokenizer.convert_tokens_to_ids(_VIDEO_PAD)
        self._image_pad_id = self.tokenizer.convert_tokens_to_ids(_IMAGE_PAD)
        self._eos_id = self.tokenizer.convert_tokens_to_ids(_END_OF_TURN)
        self._pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self._eos_id
        self._vision_start_id = self.tokenizer.convert_tokens_to_ids(_VISION_START)
        self._compiler: GrammarCompiler | None = None
        self._schemas: dict[tuple[Any, tuple[int, int]], dict[str, Any]] = {}
        image_processor = getattr(processor, "image_processor", None)
        self._layout = (
            PixelLayout.of(image_processor) if self.config.fast_inputs and supported(image_processor) else None
        )
        on_gpu = self.device.type == "cuda"
        self.cache_kind: Literal["dynamic", "static"] = (
            self.config.cache if self.config.cache != "auto" else ("static" if on_gpu else "dynamic")
        )
        compile_mode = (
            self.config.compile if self.config.compile != "auto" else ("reduce-overhead" if on_gpu else "off")
        )
        self.compile_mode = compile_mode if self.cache_kind == "static" and compile_mode != "off" else None
        self._decoder: FastDecoder | None = None
        self.lock = threading.RLock()
        """Held by each model call (``decide_batch``, ``prefetch``): one at a time on the model."""
        # Cached embeddings are exact where the tower encodes each image on its own and its pooled
        # output is all the decoder takes (Qwen3-VL also feeds per-layer "deepstack" features).
        reusable = self.config.history_reuse and model_type in _PER_IMAGE_TOWERS
        if self.config.history_reuse and not reusable:
            log.info("no vision-embedding cache for model type %s", model_type)
        self.vision_cache = VisionCache(self.config.vision_cache_mb << 20) if reusable else None
        self.pairs = videohistory.PairCache(self.config.vision_cache_mb << 20) if reusable else None  # history as video
        log.info("qwen2vl policy: %s on %s, family %s (%s)", self.config.model, self.device, family.name, family.coords)

    # ------------------------------------------------------------------ loading

    def _load(self, weights: Weights) -> tuple[Any, Any]:
        torch, transformers = _require("The qwen2vl policy")
        cfg = self.config
        source = weights.source
        device = cfg.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        on_gpu = device.startswith("cuda")
        if on_gpu and not torch.cuda.is_available():
            raise ConfigError(f"device '{device}' requested but torch sees no CUDA GPU")
        dtype = {"auto": torch.bfloat16 if on_gpu else torch.float32}.get(cfg.dtype) or getattr(torch, cfg.dtype)
        attn = cfg.attn
        if attn == "auto":
            attn = "flash_attention_2" if on_gpu and importlib.util.find_spec("flash_attn") else "sdpa"
        kwargs: dict[str, Any] = {
            "dtype": dtype,
            "attn_implementation": attn,
            "local_files_only": weights.local_files_only,
        }
        if cfg.load_in_4bit:
            if not on_gpu:
                raise ConfigError("load_in_4bit needs a CUDA GPU (bitsandbytes)")
            if importlib.util.find_spec("bitsandbytes") is None:
                raise MissingExtraError("gpu", "bitsandbytes", "4-bit loading")
            kwargs["quantization_config"] = transformers.BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_compute_dtype=dtype
            )
            kwargs["device_map"] = {"": device}
        elif on_gpu:
            kwargs["device_map"] = {"": device}
        t0 = time.perf_counter()
        try:
            processor = transformers.AutoProcessor.from_pretrained(source, local_files_only=kwargs["local_files_only"])
            model = transformers.AutoModelForImageTextToText.from_pretrained(source, **kwargs)
        except ImportError as exc:
            raise MissingExtraError("gpu", exc.name or "flash_attn", f"attention '{attn}'") from exc
        except (OSError, ValueError, KeyError) as exc:
            raise load_error(cfg.model, exc) from exc
        if not on_gpu:
            model = model.to(device)
        model.eval()
        log.info("loaded %s (%s, %s, %s) in %.1f s", source, device, dtype, attn, time.perf_counter() - t0)
        return model, processor

    # ------------------------------------------------------------------ preprocessing

    def _fit(self, frame: Frame) -> Frame:
        """The frame with its image at a size the processor keeps as is (multiples of 28, in budget)."""
        w, h = frame.image.size
        th, tw = smart_resize(h, w, min_pixels=self.config.min_pixels, max_pixels=self.config.max_pixels)
        if (tw, th) == (w, h):
            return frame
        image = frame.image.resize((tw, th), Image.Resampling.BICUBIC)
        return Frame(image, frame.width, frame.height, frame.timestamp, frame.device)

    def _schema(self, obs: Observation, grid: tuple[int, int]) -> dict[str, Any] | str:
        cfg = self.config
        limits = GrammarLimits(cfg.max_thought_chars, cfg.max_string_chars, cfg.with_thought)
        native = self.family.lark_grammar(obs.capabilities, grid, limits)
        if native is not None:  # a non-JSON answer format brings its own grammar
            return native
        key = (obs.capabilities, grid)
        schema = self._schemas.get(key)
        if schema is None:  # the same for every step of a device: build it once
            if self.config.structured:  # every free string capped, the thought at its own cap
                schema = bounded_schema(obs.capabilities, grid, limits)
            else:
                schema = step_schema(obs.capabilities, grid=grid, with_thought=self.config.with_thought)
            self._schemas[key] = schema
        return schema

    def _rows(self, observations: Sequence[Observation]) -> list[_Row]:
        """Per observation: its sized images, messages and chat text."""
        rows: list[_Row] = []
        for obs in observations:
            fitted = tuple(self._fit(f) for f in obs.prompt_images)
            clips = videohistory.clip_selection(obs)
            obs = dataclasses.replace(obs, images=fitted)
            size = fitted[-1].image.size
            grid = self.family.grid(size)
            messages = build_messages(obs, self.family, with_thought=self.config.with_thought)
            images, videos = [f.image for f in fitted], []
            if clips is not None:  # memory's video clips replace their frames' image parts
                video = videohistory.as_video(messages, images, clips)
                messages, images, videos = video.messages, video.images, video.videos
            rows.append(_Row(obs, self.family, size, grid, self._schema(obs, grid), messages, images, videos=videos))
        for row in rows:
            row.text = self.processor.apply_chat_template(row.messages, tokenize=False, add_generation_prompt=True)
        return rows

    def prepare(self, observations: Sequence[Observation]) -> PreparedBatch:
        """Messages, chat template and processor for a batch (no model call)."""
        t0 = time.perf_counter()
        rows = self._rows(observations)
        all_images = [image for row in rows for image in row.images]
        found = self.vision_cache.lookup(all_images) if self.vision_cache is not None and all_images else None
        all_videos = [video for row in rows for video in row.videos]
        direct = videohistory.direct_videos(self.processor, self._layout, [r.videos for r in rows], self.model)
        if self._layout is not None and (direct is not None or not all_videos):
            inputs = self._direct_inputs(rows, found, direct)
            return PreparedBatch(rows, inputs, time.perf_counter() - t0, found=found, pixels_of_missing_only=True)
        # The images already have their final size; a wide size range makes the processor keep it.
        video_kwargs: dict[str, Any] = {"videos": all_videos, "cap_pixels_per_frame": False} if all_videos else {}
        inputs = self.processor(
            text=[row.text for row in rows],
            images=all_images,
            padding=True,
            return_tensors="pt",
            size={"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS},
            **video_kwargs,
        )
        inputs = inputs.to(self.device)
        for key in ("pixel_values", "pixel_values_videos"):
            if key in inputs:
                inputs[key] = inputs[key].to(self.model.dtype)
        return PreparedBatch(rows, inputs, time.perf_counter() - t0, found=found)

    def _direct_inputs(
        self, rows: list[_Row], found: list[Any] | None = None, videos: videohistory.DirectVideos | None = None
    ) -> Any:
        """What the processor returns (left-padded), built from the sized images and one tokenizer call.

        With ``found`` (the vision cache's lookup), pixel values are made only for the images not found.
        ``videos``: ``direct_videos`` of the rows' video clips (their inputs, and per row their tokens).
        """
        torch = self._torch
        from transformers import BatchFeature

        layout = self._layout
        assert layout is not None
        images = [image for row in rows for image in row.images]
        data: dict[str, Any] = {}
        counts: list[int] = []
        if images:
            p = layout.patch_size
            grid = torch.tensor([[1, im.height // p, im.width // p] for im in images], dtype=torch.long)
            need = images if found is None else [im for im, e in zip(images, found, strict=True) if e is None]
            if need:
                data["pixel_values"] = patchify(need, layout, device=self.device, dtype=self.model.dtype)[0]
            counts = [int(t * h * w) // layout.merge_size**2 for t, h, w in grid.tolist()]
            data["image_grid_thw"] = grid.to(self.device)
        encoded = self.tokenizer([row.text for row in rows], add_special_tokens=False)["input_ids"]
        ids: list[list[int]] = []
        start = 0
        video_data, video_counts = videos or ({}, [[] for _ in rows])
        data.update(video_data)
        for row, row_ids, clips in zip(rows, encoded, video_counts, strict=True):
            row_ids = expand_image_tokens(row_ids, self._video_pad_id, clips)
            ids.append(expand_image_tokens(row_ids, self._image_pad_id, counts[start : start + len(row.images)]))
            start += len(row.images)
        width = max(len(r) for r in ids)
        input_ids = torch.full((len(ids), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, r in enumerate(ids):  # left padding, as the processor does for a decoder-only model
            input_ids[i, width - len(r) :] = torch.tensor(r)
            mask[i, width - len(r) :] = 1
        data.update(
            input_ids=input_ids.to(self.device),
            attention_mask=mask.to(self.device),
            mm_token_type_ids=(
                (input_ids == self._image_pad_id).int() + 2 * (input_ids == self._video_pad_id).int()
            ).to(self.device),
        )
        return BatchFeature(data)

    # ------------------------------------------------------------------ deciding

    def _grammar(self) -> GrammarCompiler:
        if self._compiler is None:
            vocab = self.model.config.get_text_config().vocab_size
            self._compiler = GrammarCompiler(self.tokenizer, vocab_size=vocab, eos_token_id=self._eos_id)
        return self._compiler

    def _generate(self, batch: PreparedBatch) -> tuple[torch.Tensor, list[RowConstraint] | None]:
        """Run the model on a prepared batch; returns the new tokens per row and the grammar states."""
        torch = self._torch
        from transformers import LogitsProcessorList

        sampling: dict[str, Any] = (
            {"do_sample": True, "temperature": self.config.temperature}
            if self.config.temperature > 0
            else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        )
        prompt_length = batch.inputs["input_ids"].shape[1]
        timer = _FirstCallTimer()
        processors: list[Any] = [timer]
        constraints: list[RowConstraint] | None = None
        if self.config.structured and all(row.family.json_actions or row.family.grammar for row in batch.rows):
            compiler = self._grammar()
            constraints = [compiler.row(row.schema, fast_forward=self.config.fast_forward) for row in batch.rows]
            processors.append(make_logits_processor(constraints, prompt_length, compiler.vocab_size, self._eos_id))
        image_embeds = self._encode_images(batch)
        video_embeds = self._encode_videos(batch, needed=self.config.fast or image_embeds is not None)
        if self.config.fast:
            return self._generate_fast(batch, constraints, image_embeds, video_embeds), constraints
        if self.cache_kind == "static":  # transformers then compiles its decode step itself
            sampling["cache_implementation"] = "static"
        seed = _batch_seed(batch)
        if self.config.temperature > 0 and seed is not None:
            # generate() draws from torch's global generator: seeding it makes a seeded episode
            # repeat its samples (exactly so at batch 1; in a batch, for the same set of rows).
            torch.manual_seed(seed)
        inputs = dict(batch.inputs)
        if image_embeds is not None:  # generate takes the images' embeddings instead of their pixels
            from transformers.modeling_outputs import BaseModelOutputWithPooling

            inputs.pop("pixel_values", None)
            pooled: Any = tuple(image_embeds)  # one tensor per image, as get_image_features gives them
            inputs["mm_encoder_outputs"] = {"image": BaseModelOutputWithPooling(pooler_output=pooled)}
            if video_embeds is not None:  # generate takes the embeddings of every modality or the pixels of all
                inputs.pop("pixel_values_videos")
                clips: Any = tuple(video_embeds)
                inputs["mm_encoder_outputs"]["video"] = BaseModelOutputWithPooling(pooler_output=clips)
        t0 = time.perf_counter()
        generate: Any = getattr(self.model, "generate")  # noqa: B009 - transformers types it through nn.Module
        with torch.inference_mode():
            output = generate(
                **inputs,
                max_new_tokens=self.config.max_new_tokens,
                logits_processor=LogitsProcessorList(processors),
                pad_token_id=self._pad_id,
                eos_token_id=sorted({self._eos_id, self._pad_id}),
                **sampling,
            )
        end = time.perf_counter()
        first = timer.first or end
        batch.timings.update(prefill_s=first - t0, decode_s=end - first)
        return output[:, prompt_length:].cpu(), constraints

    def _encode_images(self, batch: PreparedBatch) -> list[Any] | None:
        """Per image, its vision embeddings: from the cache, or computed now and cached (None: cache off)."""
        merge = int(self.model.config.vision_config.spatial_merge_size) ** 2
        grid = batch.inputs.get("image_grid_thw")
        tokens = [int(t * h * w) // merge for t, h, w in grid.tolist()] if grid is not None else []
        per_row = [len(row.images) for row in batch.rows]
        if batch.found is None or grid is None:
            batch.encoded_tokens = _row_sums(tokens, per_row, [True] * len(tokens))
            return None
        cache = self.vision_cache
        assert cache is not None
        torch = self._torch
        images = [image for row in batch.rows for image in row.images]
        self._sync()
        t0 = time.perf_counter()
        with torch.inference_mode():
            result = cache.encode(
                images,
                batch.found,
                batch.inputs.get("pixel_values"),
                grid,
                self._tower,
                pixels_of_missing_only=batch.pixels_of_missing_only,
            )
        self._sync()
        batch.timings["vision_s"] = time.perf_counter() - t0
        batch.encoded_tokens = _row_sums(tokens, per_row, result.encoded)
        return result.embeds

    def _encode_videos(self, batch: PreparedBatch, *, needed: bool) -> list[Any] | None:
        """Per video clip, its embeddings (from the pair cache, or computed now); None without video, or
        when not ``needed`` (generate then takes the pixels); counts the tokens the tower computed."""
        if "pixel_values_videos" not in batch.inputs:
            return None
        videos = [video for row in batch.rows for video in row.videos]
        embeds: list[Any] | None = None
        computed = [True] * len(videos)
        if needed:
            self._sync()
            t0 = time.perf_counter()
            with self._torch.inference_mode():
                embeds, computed = videohistory.encode_pairs(videos, batch.inputs, self.model, self.pairs)
            self._sync()
            batch.timings["vision_s"] = batch.timings.get("vision_s", 0.0) + time.perf_counter() - t0
        grid, per_row = batch.inputs["video_grid_thw"], [len(row.videos) for row in batch.rows]
        batch.encoded_tokens = videohistory.with_video_tokens(batch.encoded_tokens, grid, per_row, computed)
        return embeds

    def _tower(self, pixel_values: Any, grid: Any) -> Any:
        """The vision tower on ``pixel_values`` of the images in ``grid``; one tensor per image."""
        features = self.model.model.get_image_features(
            pixel_values.to(self.device), grid.to(self.device), return_dict=True
        )
        return features.pooler_output

    def _sync(self) -> None:
        if self.config.time_parts and self.device.type == "cuda":
            self._torch.cuda.synchronize(self.device)

    def fast_decoder(self) -> FastDecoder:
        """The fast decode loop (:class:`~vlagent.policies.fastdecode.FastDecoder`), made on first use."""
        from vlagent.policies.fastdecode import FastDecoder

        if self._decoder is None:
            self._decoder = FastDecoder(
                self.model,
                image_token_id=self._image_pad_id,
                vision_start_id=self._vision_start_id,
                turn_start_id=self.tokenizer.convert_tokens_to_ids("<|im_start|>"),
                eos_id=self._eos_id,
                pad_id=self._pad_id,
                prefix_cache=self.config.prefix_cache,
                cache=self.cache_kind,
                compile_mode=self.compile_mode,
                synchronize=self.config.time_parts,
                step_cache=self.vision_cache is not None,
            )
        return self._decoder

    def _generate_fast(
        self,
        batch: PreparedBatch,
        constraints: list[RowConstraint] | None,
        image_embeds: list[Any] | None = None,
        video_embeds: list[Any] | None = None,
    ) -> Any:
        torch = self._torch
        decoder = self.fast_decoder()
        inputs = batch.inputs
        rows = [
            ids[mask.bool()].tolist() for ids, mask in zip(inputs["input_ids"], inputs["attention_mask"], strict=True)
        ]
        grid = inputs.get("image_grid_thw")
        if video_embeds is not None:  # the decoder takes images only: pairs run as image-shaped inputs
            pads = (self._image_pad_id, self._video_pad_id)
            with torch.inference_mode():
                rows, image_embeds, grid = videohistory.videos_as_images(
                    rows, inputs, image_embeds, video_embeds, pads, tower=self._tower
                )
        with torch.inference_mode():
            result = decoder.run(
                rows,
                inputs.get("pixel_values"),
                grid,
                constraints,
                max_new_tokens=self.config.max_new_tokens,
                temperature=self.config.temperature,
                seeds=[row.observation.sampling_seed for row in batch.rows],
                image_embeds=image_embeds or None,
                # Step reuse matches image slots to image objects; a video's slots have none (and its
                # pairs shift every step), so prompts with video are prefilled whole.
                images=[row.images for row in batch.rows] if video_embeds is None else (),
            )
        batch.timings.update(
            vision_s=batch.timings.get("vision_s", 0.0) + result.vision_s,
            prefill_s=result.prefill_s,
            decode_s=result.decode_s,
            forward_passes=float(result.forward_passes),
            prefix_tokens=float(result.prefix_tokens),
            prefix_reused=float(result.prefix_hit),
            compile_s=result.compile_s,
        )
        batch.reused_tokens = [float(n) for n in result.reused]
        width = max(1, max(len(t) for t in result.tokens))
        out = torch.full((len(rows), width), self._pad_id, dtype=torch.long)
        for i, tokens in enumerate(result.tokens):
            out[i, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        return out

    def decide_batch(self, observations: Sequence[Observation]) -> list[Decision | ModelError]:
        """One model call for all ``observations``; per row a Decision or the ModelError it caused."""
        if not observations:
            return []
        try:
            with self.lock:
                batch = self.prepare(observations)
                new_tokens, constraints = self._generate(batch)
        except (RuntimeError, ValueError) as exc:  # OOM, shape or backend failures
            log.exception("generation failed for a batch of %d", len(observations))
            error = PolicyBackendError(f"model call failed: {exc}")
            error.__cause__ = exc
            return [error for _ in observations]
        results: list[Decision | ModelError] = []
        for i, row in enumerate(batch.rows):
            t0 = time.perf_counter()
            try:
                results.append(self._read(batch, i, row, new_tokens[i], constraints[i] if constraints else None, t0))
            except ModelError as exc:
                results.append(exc)
        return results

    def decide(self, observation: Observation) -> Decision:
        result = self.decide_batch([observation])[0]
        if isinstance(result, ModelError):
            raise result
        return result

    def prefetch(self, observation: Observation) -> int:
        """Compute ahead the start of a prompt still to come (see :mod:`vlagent.policies.ahead`):
        ``observation`` is the next step's, its current screen a stand-in. Returns the prompt
        tokens computed (0: nothing to do for this policy or prompt). Never changes an answer."""
        return self.prefetch_batch([observation])[0]

    def prefetch_batch(self, observations: Sequence[Observation]) -> list[int]:
        """``prefetch`` for several next steps at once (one tower call, one batched prefill)."""
        from vlagent.policies import ahead

        return ahead.prefetch(self, observations)

    def _read(
        self, batch: PreparedBatch, i: int, row: _Row, tokens: Any, constraint: RowConstraint | None, t0: float
    ) -> Decision:
        ids = tokens.tolist()
        length = next((n for n, t in enumerate(ids) if t in (self._eos_id, self._pad_id)), len(ids))
        text = self.tokenizer.decode(ids[:length], skip_special_tokens=True)
        if constraint is None and length == len(ids) >= self.config.max_new_tokens:
            # No end of turn within max_new_tokens: whatever JSON is there may be cut short.
            what = "one JSON object" if row.family.json_actions else "one action in the format asked for"
            raise InvalidModelOutput(
                f"the answer was cut off after {length} tokens; keep the thought short and answer with {what}", text
            )
        if constraint is not None:
            if constraint.error:
                raise InvalidModelOutput(f"the answer broke the JSON grammar ({constraint.error})", text)
            if length == len(ids) and not constraint.matcher.is_accepting():
                raise InvalidModelOutput(
                    f"the answer was cut off after {length} tokens; keep the thought short and answer with one "
                    "JSON object",
                    text,
                )
        step = row.family.read(text, row.grid, row.observation.capabilities)
        frame = row.observation.frame
        codec = row.family.codec(row.image_size)
        action = decode_action(step.action, codec, frame.width, frame.height)
        input_ids = batch.inputs["input_ids"][i]
        mask = batch.inputs["attention_mask"][i]
        video_tokens = float(int((input_ids == self._video_pad_id).sum()))
        usage = {
            "prompt_tokens": float(int(mask.sum())),
            "visual_tokens": float(int((input_ids == self._image_pad_id).sum())) + video_tokens,
            "video_tokens": video_tokens,
            "encoded_visual_tokens": batch.encoded_tokens[i] if batch.encoded_tokens else 0.0,
            "output_tokens": float(length),
            "batch_size": float(len(batch.rows)),
            "preprocess_s": batch.preprocess_s,
            "vision_s": batch.timings.get("vision_s", 0.0),
            "prefill_s": batch.timings.get("prefill_s", 0.0),
            "decode_s": batch.timings.get("decode_s", 0.0),
            "forward_passes": batch.timings.get("forward_passes", float(length)),
            "prefix_tokens": batch.timings.get("prefix_tokens", 0.0),
            "prefix_reused": batch.timings.get("prefix_reused", 0.0),
            "history_tokens_reused": batch.reused_tokens[i] if batch.reused_tokens else 0.0,
            "compile_s": batch.timings.get("compile_s", 0.0),
            "sampled_tokens": float(constraint.sampled if constraint else length),
            "forced_tokens": float(constraint.forced if constraint else 0),
            "parse_s": time.perf_counter() - t0,
        }
        return Decision(step=Step(thought=step.thought, action=action), raw=text, usage=MappingProxyType(usage))


def _row_sums(tokens: list[int], per_row: list[int], encoded: list[bool]) -> list[float]:
    """Per row, the visual tokens of its images that the vision tower computed."""
    sums: list[float] = []
    start = 0
    for count in per_row:
        pairs = zip(tokens[start : start + count], encoded[start : start + count], strict=True)
        sums.append(float(sum(t for t, e in pairs if e)))
        start += count
    return sums


_OTHER_POLICIES_OPTIONS = frozenset({"base_url", "api_key", "script", "max_images", "max_tokens"})


def create_policy(**options: Any) -> Qwen2VLPolicy:
    """Registry factory: ``open_policy("qwen2vl", model=..., max_pixels=..., device=..., ...)``.

    Accepts every QwenPolicyConfig field; ``model_device`` is an alias of ``device`` for
    command lines where ``--device`` names the screen. Options that belong to other
    policies are accepted when empty and refused otherwise.
    """
    options = {k: v for k, v in options.items() if v is not None}
    if "model_device" in options:
        options["device"] = options.pop("model_device")
    if "no_constrain" in options:
        options["structured"] = not options.pop("no_constrain")
    if "no_work_ahead" in options:
        options["work_ahead"] = not options.pop("no_work_ahead")
    if "no_history_reuse" in options:  # the CLI's --no-history-reuse (memory's sizes follow it too)
        options["history_reuse"] = not options.pop("no_history_reuse")
        if not options["history_reuse"] and options.get("history") == "video":
            raise ConfigError("--history video pairs screens at stable sizes; it cannot go with --no-history-reuse")
    if options.get("history") == "video" and options.get("family"):  # refused before the weights load
        videohistory.require_video(str(options["family"]), None)
    misplaced = sorted(set(options) & _OTHER_POLICIES_OPTIONS - {"max_images", "max_tokens"})
    if misplaced:
        raise ConfigError(f"option(s) {', '.join(misplaced)} do not apply to the qwen2vl policy")
    for key in ("max_images", "max_tokens"):  # memory options, handled by TrajectoryMemory
        options.pop(key, None)
    known = {f.name for f in dataclasses.fields(QwenPolicyConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"unknown qwen2vl option(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return Qwen2VLPolicy(QwenPolicyConfig(**options))
