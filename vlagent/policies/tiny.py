"""A tiny random-weight Qwen2-VL, built offline, for tests, demos and benchmarks.

The model has the real architecture (vision tower, merger, M-RoPE text decoder), a real
byte-level BPE tokenizer with the 14 Qwen2-VL special tokens in their real order, the
official chat template and a real ``Qwen2VLProcessor``. It is written with
``save_pretrained`` so that loading it goes through exactly the ``from_pretrained`` code
path a user with the real weights hits. Its answers are random, which is what tests of
constrained decoding want.

This module must not download anything, and must not import torch or transformers at
import time (``import vlagent`` stays light).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from vlagent.errors import MissingExtraError

__all__ = [
    "CHAT_TEMPLATE",
    "SPECIAL_TOKENS",
    "build_tiny_qwen2vl",
    "create_policy",
    "full_size_config",
    "tiny_model_path",
]

log = logging.getLogger(__name__)

#: Bumped whenever the tiny model's recipe changes, so cached copies are rebuilt.
_FORMAT = 2

#: Qwen2-VL's special tokens in the order of the real tokenizer (ids 151643...151656 there).
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

#: The chat template shipped with Qwen/Qwen2-VL-2B-Instruct (chat_template.json).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Text the BPE is trained on: the words and punctuation the agent's JSON answers use, so
# that a random model emits multi-character tokens and the grammar has real merges to handle.
_CORPUS = (
    '{"thought": "tap the search box", "action": {"action": "click", "x": 512, "y": 640}}',
    '{"action": {"action": "long_press", "x": 10, "y": 999, "duration": 1.5}}',
    '{"action": {"action": "type", "text": "hello world", "submit": true}}',
    '{"action": {"action": "swipe", "x1": 500, "y1": 800, "x2": 500, "y2": 200, "duration": 0.3}}',
    '{"action": {"action": "scroll", "direction": "down", "amount": 2}}',
    '{"action": {"action": "key", "key": "enter", "modifiers": ["ctrl", "shift"]}}',
    '{"action": {"action": "open_app", "name": "Settings"}}',
    '{"action": {"action": "wait", "seconds": 1.0}}',
    '{"action": {"action": "done", "status": "success", "answer": null}}',
    "left right middle up down home back menu false true null failure clicks button",
    "You are a GUI agent. Task: open the settings and turn on wifi. Step 1: click(100, 200).",
    "Coordinates are integers from 0 to 1000 relative to the screenshot width and height.",
    "0123456789 ,.:;!?'\"()[]{}<>-_+=*/\\|@#$%^&~` abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ",
)


def _require() -> tuple[Any, Any, Any]:
    try:
        import tokenizers
        import torch
        import transformers
    except ImportError as exc:
        raise MissingExtraError("qwen", exc.name or "transformers", "Building the tiny Qwen2-VL model") from exc
    return tokenizers, torch, transformers


def _corpus() -> list[str]:
    # The agent's own instructions too: a tokenizer that knows the prompt's words keeps
    # prompts near the real model's length (~600 tokens instead of ~1700 bytes).
    from vlagent.capabilities import DESKTOP_CAPABILITIES, PHONE_CAPABILITIES
    from vlagent.policies.prompt import get_family, system_prompt

    prompts = [
        system_prompt("open the settings", caps, get_family(name), (1092, 2408))
        for caps in (PHONE_CAPABILITIES, DESKTOP_CAPABILITIES)
        for name in ("qwen2vl", "qwen25vl", "qwen3vl")
    ]
    return [*_CORPUS, *prompts]


def _tokenizer(path: Path) -> Any:
    tokenizers, _, transformers = _require()
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1200,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(_corpus() * 3, trainer=trainer)
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok)
    fast.save_pretrained(str(path))
    # Reload as the real class with the real special-token settings of Qwen2-VL.
    qwen = transformers.Qwen2Tokenizer.from_pretrained(
        str(path),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        errors="replace",
        model_max_length=32768,
        padding_side="left",
    )
    qwen.chat_template = CHAT_TEMPLATE
    return qwen


def _config(transformers: Any, tok: Any, *, full_size: bool) -> Any:
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    if full_size:  # Qwen/Qwen2-VL-2B-Instruct's config.json
        text: dict[str, Any] = {
            "hidden_size": 1536,
            "intermediate_size": 8960,
            "num_hidden_layers": 28,
            "num_attention_heads": 12,
            "num_key_value_heads": 2,
            "vocab_size": 151936,
            "max_window_layers": 28,
            "rope_parameters": {"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1000000.0},
        }
        vision: dict[str, Any] = {"depth": 32, "embed_dim": 1280, "num_heads": 16, "hidden_size": 1536}
    else:
        # 64-wide, 2 layers: big enough to exercise every code path, small enough for ~0.2 s per answer.
        vocab = ((len(tok) + 63) // 64) * 64
        text = {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "vocab_size": vocab,
            "max_window_layers": 2,
            "max_position_embeddings": 32768,
            "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 1000000.0},
        }
        vision = {"depth": 2, "embed_dim": 64, "num_heads": 4, "hidden_size": 64}
    text.update(bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    vision.update(mlp_ratio=4, patch_size=14, spatial_merge_size=2, temporal_patch_size=2, in_channels=3)
    return transformers.Qwen2VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
        architectures=["Qwen2VLForConditionalGeneration"],
    )


def full_size_config(path: Path) -> Any:
    """Qwen2-VL-2B's architecture config (with the tiny tokenizer's special ids), for benchmarks."""
    _, _, transformers = _require()
    tok = transformers.AutoTokenizer.from_pretrained(str(path))
    return _config(transformers, tok, full_size=True)


def build_tiny_qwen2vl(path: Path, *, seed: int = 0, full_size: bool = False) -> Path:
    """Write a random-weight Qwen2-VL (model, processor, tokenizer) to ``path`` and return it.

    Deterministic for a given ``seed``. ``full_size=True`` uses Qwen2-VL-2B's architecture
    (about 2.2 B random parameters, ~9 GB in float32) for speed measurements on a GPU.
    """
    _, torch, transformers = _require()
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tok = _tokenizer(path)
    image_processor = transformers.Qwen2VLImageProcessor(
        min_pixels=4 * 28 * 28, max_pixels=1280 * 28 * 28, patch_size=14, merge_size=2, temporal_patch_size=2
    )
    video_processor = transformers.Qwen2VLVideoProcessor()
    processor = transformers.Qwen2VLProcessor(
        image_processor=image_processor, tokenizer=tok, video_processor=video_processor, chat_template=CHAT_TEMPLATE
    )
    config = _config(transformers, tok, full_size=full_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.Qwen2VLForConditionalGeneration(config)
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    model.generation_config.eos_token_id = [config.text_config.eos_token_id, config.text_config.bos_token_id]
    model.generation_config.do_sample = False
    model.save_pretrained(str(path))
    processor.save_pretrained(str(path))
    # Record what this is, so nobody mistakes it for real weights.
    (path / "VLAGENT_TINY.json").write_text(json.dumps({"seed": seed, "full_size": full_size, "random": True}))
    log.info("built random Qwen2-VL (%s) in %s", "full size" if full_size else "tiny", path)
    return path


def _cache_dir(seed: int) -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "vlagent" / f"tiny-qwen2vl-{_FORMAT}-seed{seed}"


def tiny_model_path(seed: int = 0) -> Path:
    """The tiny model's directory in the user cache, built on first use (< 1 s)."""
    path = _cache_dir(seed)
    if (path / "VLAGENT_TINY.json").exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    # Build beside and rename, so a concurrent user never sees a half-written model.
    staging = Path(tempfile.mkdtemp(prefix=path.name + ".", dir=path.parent))
    build_tiny_qwen2vl(staging, seed=seed)
    try:
        staging.rename(path)
    except OSError:  # another process won the race; its copy is identical
        shutil.rmtree(staging, ignore_errors=True)
    return path


def create_policy(**options: Any) -> Any:
    """Registry factory for ``--policy tiny``: the qwen2vl policy on the tiny random model.

    It answers random but always valid actions (constrained decoding), which is what demos
    of the plumbing and load tests want. Short string caps keep its answers inside
    ``max_new_tokens``, since a random model fills every string to its limit.
    """
    from vlagent.policies.qwen2vl import create_policy as create_qwen

    seed = int(options.pop("seed", 0) or 0)
    options.pop("model", None)
    options.setdefault("max_thought_chars", 16)
    options.setdefault("max_string_chars", 12)
    options.setdefault("max_new_tokens", 256)
    options.setdefault("family", "qwen2vl")
    policy = create_qwen(model=str(tiny_model_path(seed)), **options)
    policy.name = "tiny"
    return policy
