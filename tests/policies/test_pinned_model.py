"""The pinned configuration of an evaluation with the tiny Qwen2-VL: family, prompt hash, weight hashes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from vlagent.evaluate import EvalConfig, evaluate
from vlagent.scenario import load_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


@pytest.mark.model
def test_results_pin_the_model_its_weights_and_prompt(tmp_path: Path, tiny_qwen2vl: Path) -> None:
    options = {"model": str(tiny_qwen2vl), "max_pixels": 64 * 28 * 28, "max_new_tokens": 24}
    scenario = load_scenario(SCENARIOS / "sim-wifi-on.yaml").model_copy(update={"max_steps": 1})
    evaluate([scenario], EvalConfig(out=tmp_path, policy="qwen2vl", policy_options=options))
    pin = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))["config"]
    assert pin["policy"] == "qwen2vl" and pin["family"] == "qwen2vl" and pin["coords"]
    assert pin["policy_settings"]["max_pixels"] == 64 * 28 * 28
    assert pin["policy_settings"]["structured"] is True and pin["policy_settings"]["temperature"] == 0.0
    assert len(pin["prompt_sha256"]) == 64
    weights = pin["model_revision"]["sha256"]
    (name,) = [n for n in weights if n.endswith(".safetensors")]
    assert weights[name] == hashlib.sha256((tiny_qwen2vl / name).read_bytes()).hexdigest()
