"""Fixtures for policy tests: the tiny random Qwen2-VL, built once per session, and policies on it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from policy_helpers import BUDGET, PolicyFactory

if TYPE_CHECKING:
    from vlagent.policies.qwen2vl import Qwen2VLPolicy


@pytest.fixture(scope="session")
def tiny_qwen2vl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of a tiny random-weight Qwen2-VL (model, processor, tokenizer), built offline."""
    pytest.importorskip("transformers", reason="needs the qwen extra (transformers)")
    from vlagent.policies.tiny import build_tiny_qwen2vl

    return build_tiny_qwen2vl(tmp_path_factory.mktemp("tiny-qwen2vl"))


@pytest.fixture(scope="session")
def tiny_loaded(tiny_qwen2vl: Path) -> tuple[Any, Any]:
    """(model, processor) of the tiny model, loaded once and shared by policies with different settings."""
    from vlagent.policies.qwen2vl import Qwen2VLPolicy, QwenPolicyConfig

    policy = Qwen2VLPolicy(QwenPolicyConfig(model=str(tiny_qwen2vl), device="cpu"))
    return policy.model, policy.processor


@pytest.fixture
def tiny_policy(tiny_qwen2vl: Path, tiny_loaded: tuple[Any, Any]) -> PolicyFactory:
    """Makes Qwen2-VL policies on the loaded tiny model; keyword options of ``QwenPolicyConfig``
    override the defaults: on the CPU, ``BUDGET`` pixels a screen, no thought, and string caps small
    enough that any answer closes within ``max_new_tokens`` (a random model fills every string to
    its cap, in bytes that may cost a token each, or 6 for a \\u escape)."""
    from vlagent.policies.qwen2vl import Qwen2VLPolicy, QwenPolicyConfig

    model, processor = tiny_loaded
    defaults: dict[str, Any] = {
        "model": str(tiny_qwen2vl),
        "device": "cpu",
        "max_pixels": BUDGET,
        "with_thought": False,
        "max_thought_chars": 16,
        "max_string_chars": 12,
    }

    def make(**options: Any) -> Qwen2VLPolicy:
        return Qwen2VLPolicy(QwenPolicyConfig(**{**defaults, **options}), model=model, processor=processor)

    return make
