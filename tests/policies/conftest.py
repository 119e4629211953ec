"""Fixtures for policy tests: the tiny random Qwen2-VL, built once per session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


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
