"""``--history video`` as a user meets it: run, eval and eval-steps take it; mistakes are one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vlagent.recorder import load_trajectory


def vlagent(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ADBUTILS_ADB_PATH": "/bin/false"}
    return subprocess.run(
        [sys.executable, "-m", "vlagent.cli", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


@pytest.mark.model
def test_an_episode_on_the_sim_sends_older_screens_as_video(tmp_path: Path) -> None:
    pytest.importorskip("transformers", reason="needs the qwen extra (transformers)")
    args = ["run", "open settings", "--device", "sim:2", "--policy", "tiny", "--max-steps", "7", "--on-stuck", "hint"]
    args += ["--max-pixels", str(400 * 784), "--max-tokens", "900", "--max-images", "6", "--history", "video"]
    result = vlagent(*args, "--out", str(tmp_path))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr  # 1: not judged a success
    run_dir = Path(result.stdout.strip().splitlines()[-1].removeprefix("run written to "))
    steps = [s for s in load_trajectory(run_dir).steps if s.selection]
    assert len(steps) >= 6, result.stderr
    for step in steps:
        assert step.selection is not None
        images = step.selection["images"]
        assert isinstance(images, list)
        clips = [i for i in images if "clip" in i]
        assert step.usage["visual_tokens"] == step.selection["total_tokens"]  # what the processor made
        assert step.usage["video_tokens"] == sum(i["tokens"] for i in clips)
    last = steps[-1].selection
    assert last is not None and isinstance(last["images"], list)
    # five earlier screens: the previous one as an image, then two pairs (clips 0 and 1)
    # Oldest first: a screen without a partner (as an image), two pairs, the current screen.
    assert [i.get("clip") for i in last["images"]] == [None, 0, 0, 1, 1, None]
    assert steps[-1].usage["video_tokens"] > 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--policy", "tiny", "--family", "uitars"], "--history video needs the qwen2vl or qwen25vl model family"),
        (["--policy", "tiny", "--no-history-reuse"], "cannot go with --no-history-reuse"),
        (["--policy", "openai", "--base-url", "http://127.0.0.1:9/v1", "--model", "m"], "in-process qwen2vl"),
    ],
)
@pytest.mark.model
def test_mistakes_are_one_line(tmp_path: Path, extra: list[str], message: str) -> None:
    pytest.importorskip("transformers", reason="needs the qwen extra (transformers)")
    result = vlagent("run", "open settings", "--device", "sim", "--history", "video", *extra, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize("command", ["run", "eval", "eval-steps"])
def test_each_command_offers_the_flag(command: str) -> None:
    result = vlagent(command, "--help")
    assert result.returncode == 0 and "--history [images|video]" in result.stdout, result.stdout
    wrong = vlagent(command, "x", "--history", "film")
    assert wrong.returncode == 2 and "'film' is not one of 'images', 'video'" in wrong.stderr


def test_eval_and_eval_steps_give_memory_the_video_schedule(tmp_path: Path) -> None:
    from vlagent.evaluate import EvalConfig, _Runner
    from vlagent.runner import _memory
    from vlagent.stepeval import _memory_config

    memory = _Runner(EvalConfig(out=tmp_path, policy_options={"history": "video"}))._memory()
    assert memory is not None and memory.config.history == "video" and memory.config.sizes == "stable"
    assert _memory_config({"history": "video", "max_images": 6}).history == "video"
    assert _memory_config({"max_images": 6}).history == "images"
    assert _memory({"history": "video", "max_images": 6}).config.max_images == 6
    assert _memory({"history": "video"}).config.history == "video"


@pytest.mark.model
def test_the_bench_compares_video_with_images() -> None:
    pytest.importorskip("transformers", reason="needs the qwen extra (transformers)")
    tools = Path(__file__).resolve().parent.parent / "tools"
    args = ["--steps", "8", "--max-pixels", str(400 * 784), "--max-tokens", "900"]
    result = subprocess.run(
        [sys.executable, str(tools / "bench_history.py"), *args, "--lanes", "single,reuse,video,video+2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lanes = ("single", "reuse", "video", "video+2")
    fields = [line.split() for line in result.stdout.splitlines()]
    rows = {f[0]: f[1:] for f in fields if f and f[0] in lanes}
    assert set(rows) == set(lanes), result.stdout
    visual, encoded = ({k: float(v[i]) for k, v in rows.items()} for i in (0, 1))
    screens = {k: int(v[-1]) for k, v in rows.items()}
    assert screens == {"single": 1, "reuse": 4, "video": 4, "video+2": 6}, result.stdout
    assert visual["video"] < visual["reuse"] and visual["video+2"] <= 900, result.stdout  # a pair costs one image
    assert encoded["video+2"] < visual["video+2"], result.stdout  # the older pair's embeddings are reused
