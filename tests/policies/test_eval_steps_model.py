"""``eval-steps`` end to end with the tiny random Qwen2-VL on an AndroidControl file.

The weights are random, so the figures are not checked; what is: every step is asked and
scored (answers that parse are judged, the others count as invalid), the raw answers and
the pinned model reach the outputs, and batching steps gives each its own history.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from vlagent.datasets import androidcontrol_record, write_records
from vlagent.drivers.sim import SimDriver
from vlagent.stepeval import StepEvalConfig, evaluate_steps

pytest.importorskip("transformers", reason="needs the qwen extra (transformers)")

pytestmark = pytest.mark.model

MAX_PIXELS = 64 * 28 * 28


def _file(path: Path) -> Path:
    driver = SimDriver(width=360, height=800)
    shots: list[Image.Image] = [driver.screenshot().image]
    driver.phone.tap(45, 280)
    shots += [driver.screenshot().image] * 3
    actions = [
        {"action_type": "click", "x": 45, "y": 280},
        {"action_type": "scroll", "direction": "down"},
        {"action_type": "navigate_back"},
    ]
    record = androidcontrol_record(
        episode_id=3, goal="open the settings", screenshots=shots, actions=actions,
        step_instructions=["tap settings", "scroll down", "go back"],
    )  # fmt: skip
    write_records(path, [record])
    return path


def test_tiny_model_is_asked_and_scored_on_every_step(tmp_path: Path, tiny_qwen2vl: Path) -> None:
    path = _file(tmp_path / "ac.tfrecord.gz")
    config = StepEvalConfig(
        dataset="androidcontrol",
        files=[path],
        out=tmp_path / "out",
        policy="qwen2vl",
        policy_options={"model": str(tiny_qwen2vl), "model_device": "cpu", "max_pixels": MAX_PIXELS},
        level="low",
        batch=2,
    )
    result = evaluate_steps(config)
    summary = result.summary
    assert summary["steps"] == 3 and summary["episodes"] == 1
    lines = [json.loads(line) for line in (tmp_path / "out" / "steps.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [0, 1, 2]
    for line in lines:
        assert line["raw"], line  # the model's own text, or why there was none
        assert (line["predicted"] is None) == (line["error"] is not None)
        for convention in ("osatlas", "qwen_androidcontrol"):
            assert isinstance(line["match"][convention]["success"], bool)
    invalid = sum(line["predicted"] is None for line in lines)
    assert summary["invalid_answers"] == invalid
    for convention in ("osatlas", "qwen_androidcontrol"):
        matched = sum(line["match"][convention]["success"] for line in lines)
        assert summary["scores"][convention]["step_success_rate"] == pytest.approx(matched / 3)
    pinned = json.loads((tmp_path / "out" / "results.json").read_text())["config"]
    assert pinned["policy"] == "qwen2vl" and pinned["family"] == "qwen2vl" and pinned["model_revision"]["sha256"]
    assert pinned["scoring"] == ["osatlas", "qwen_androidcontrol"] and pinned["level"] == "low"


def test_cli_runs_the_tiny_model(tmp_path: Path, tiny_qwen2vl: Path) -> None:
    path = _file(tmp_path / "ac.tfrecord.gz")
    result = subprocess.run(
        [sys.executable, "-m", "vlagent.cli", "eval-steps", "androidcontrol", str(path), "--out", str(tmp_path / "o"),
         "--policy", "qwen2vl", "--model", str(tiny_qwen2vl), "--model-device", "cpu",
         "--max-pixels", str(MAX_PIXELS), "--max-episodes", "1"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "ADBUTILS_ADB_PATH": "/bin/false"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "androidcontrol (high level): 1 episodes, 3 steps" in result.stdout
    assert (tmp_path / "o" / "report.html").exists()
