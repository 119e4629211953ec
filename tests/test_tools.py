"""The benchmark scripts in tools/ run end to end and print their comparisons.

Speed is measured by these scripts, not by timed tests; this only keeps them from rotting
(a bench that crashes measures nothing). Each runs with its smallest settings, in its own
process, as a user would start it. The figures themselves are not asserted, only that
the rows and ratios a reader looks for are there and are numbers.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def _bench(script: str, *args: str, display: bool = True) -> str:
    env = dict(os.environ)
    if not display:
        env.pop("DISPLAY", None)  # the script starts its own Xvfb
    result = subprocess.run(
        [sys.executable, str(TOOLS / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=TOOLS.parent,
    )
    assert result.returncode == 0, f"{script} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def _ratio(text: str, pattern: str) -> float:
    match = re.search(pattern, text)
    assert match, f"no match for {pattern!r} in:\n{text}"
    return float(match[1])


def test_bench_loop_compares_the_loop_with_bare_calls() -> None:
    out = _bench("bench_loop.py", "--steps", "5", "--repeats", "1")
    for row in ("bare", "loop", "recorded"):
        assert _ratio(out, rf"\n{row}\s+([\d.]+)\s") > 0


def test_bench_sim_and_adb_print_their_figures() -> None:
    assert _ratio(_bench("bench_sim.py", "--repeat", "3"), r"tap \+ screenshot: ([\d.]+) steps/s") > 0
    assert _ratio(_bench("bench_adb.py", "--repeat", "2"), r"png / raw capture over adb: ([\d.]+)x") > 0


def test_bench_sim_memory_reports_a_bounded_command_log() -> None:
    out = _bench("bench_sim_memory.py", "--commands", "200", display=False)
    assert _ratio(out, r"RSS [\d.]+ MB -> ([\d.]+) MB") > 0
    assert _ratio(out, r"wrong answers: (\d+)") == 0


def test_bench_memory_keeps_the_prompt_within_its_budget() -> None:
    out = _bench("bench_memory.py", "--steps", "10", "--every", "5", "--naive-cap", "2000")
    rows = [line.split("|") for line in out.splitlines() if re.match(r"\s+\d+ \|", line)]
    assert len(rows) >= 4
    memory_tokens = [int(row[1].split()[1]) for row in rows]
    naive_tokens = [int(row[2].split()[1]) for row in rows]
    assert all(0 < tokens <= 2560 for tokens in memory_tokens), out  # the default budget
    assert naive_tokens[-1] > memory_tokens[-1], out


@pytest.mark.model
def test_bench_step_prints_ratios_against_the_naive_recipe() -> None:
    pytest.importorskip("transformers", reason="needs the qwen extra (transformers)")
    out = _bench("bench_step.py", "--budgets", "64", "--steps", "1", "--no-levers", "--batch", "2")
    for row in ("naive", "plain", "ours"):
        assert re.search(rf"\n{row}\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+\d+\+\d+\s+\d+\s+[\d.]+\s+[\d.]+x", out), out
    assert _ratio(out, r"throughput ours\s+\(budget 64\): .*\(([\d.]+)x\)") > 0


@pytest.mark.model
def test_bench_policy_counts_valid_answers() -> None:
    pytest.importorskip("transformers", reason="needs the qwen extra (transformers)")
    out = _bench("bench_policy.py", "--steps", "1", "--batch", "2")
    assert re.search(r"\nvlagent\s.*\s1/1\s+[\d.]+x", out), out


@pytest.mark.xvfb
def test_bench_desktop_compares_with_pyautogui_defaults() -> None:
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb)")
    out = _bench("bench_desktop.py", "--repeat", "2", display=False)
    assert _ratio(out, r"click: defaults / ours = ([\d.]+)x") > 1


@pytest.mark.model
def test_bench_ahead_runs_the_loop_with_work_ahead_off_and_on() -> None:
    pytest.importorskip("transformers", reason="needs the qwen extra (transformers)")
    out = _bench("bench_ahead.py", "--steps", "3", "--warmup", "1", "--repeats", "1", "--max-pixels", str(200 * 784))
    rows = {m[1]: [float(v) for v in m[2].split()] for m in re.finditer(r"\n(off|on) +([\d. ]+)", out)}
    assert set(rows) == {"off", "on"} and all(len(v) == 3 and v[0] > 0 for v in rows.values()), out
    assert re.search(r"\non / off\s+[\d.]+x\s+[\d.]+x\s+[\d.]+x", out), out


def test_bench_history_reuses_embeddings_of_screens_at_stable_sizes() -> None:
    pytest.importorskip("transformers", reason="needs the qwen extra (transformers)")
    out = _bench(
        "bench_history.py", "--steps", "6", "--max-pixels", str(400 * 784), "--max-tokens", "800",
        "--lanes", "single,shrink,stable,reuse,quarter,ahead",  # video lanes: tests/test_history_video.py
    )  # fmt: skip
    rows = {
        m[1]: [float(v) for v in m[2].split()]
        for m in re.finditer(r"\n(single|shrink|stable|reuse|quarter|ahead)\s+([\d.\s]+?)x\s+[\d.]+x", out)
    }
    assert set(rows) == {"single", "shrink", "stable", "reuse", "quarter", "ahead"}, out
    visual, encoded = {k: v[0] for k, v in rows.items()}, {k: v[1] for k, v in rows.items()}
    assert visual["single"] < visual["shrink"] <= 800 and visual["reuse"] <= visual["stable"] <= 800, out
    assert encoded["stable"] == visual["stable"] and encoded["reuse"] < visual["reuse"], out
    assert encoded["quarter"] < encoded["reuse"], out
    # Tokens prefilled: with the start of the prompt taken from the step before, fewer than the prompt.
    prefilled = {k: v[2] for k, v in rows.items()}
    assert prefilled["quarter"] < prefilled["stable"] and prefilled["reuse"] < prefilled["stable"], out
    assert rows["single"][-1] == 1.0, out
    # Worked ahead: a step encodes only its own screen and prefills less than without.
    assert encoded["ahead"] == encoded["single"] and prefilled["ahead"] < prefilled["quarter"], out
    assert rows["ahead"][-2] > 0 and rows["quarter"][-2] == 0, out  # "ahead ms", the work done ahead
