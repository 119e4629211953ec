"""Fixtures for the UI-testing API: the tiny random Qwen2-VL, built once per session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def tiny_policy(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The qwen2vl policy on a tiny random-weight Qwen2-VL (CPU), loaded once."""
    pytest.importorskip("transformers", reason="needs the qwen extra (transformers)")
    pytest.importorskip("llguidance", reason="needs the qwen extra (llguidance)")
    from vlagent.policies.qwen2vl import Qwen2VLPolicy, QwenPolicyConfig
    from vlagent.policies.tiny import build_tiny_qwen2vl

    path: Path = build_tiny_qwen2vl(tmp_path_factory.mktemp("tiny-qwen2vl"))
    # A small image budget and short strings keep each answer around a second on a CPU.
    config = QwenPolicyConfig(
        model=str(path), device="cpu", max_thought_chars=24, max_string_chars=16, max_pixels=256 * 28 * 28
    )
    return Qwen2VLPolicy(config)
