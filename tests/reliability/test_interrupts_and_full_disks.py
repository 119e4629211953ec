"""Signals, a full disk and evaluations sharing one --out, through the real ``vlagent`` command.

- SIGTERM mid-step ends ``vlagent run`` with exit 143 and an end line saying ``interrupted``.
- Ctrl-C (SIGINT) on ``vlagent eval -j 2`` stops the running scenarios before their next action,
  writes results.json and junit.xml marked interrupted, exits 130; ``--resume`` then finishes it.
- Two evaluations into one ``--out`` never merge: one is refused (exit 2), the other completes.
- A disk that fills mid-run gives one line and exit 1, and leaves no temporary file behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from vlagent.recorder import load_trajectory

_SLOW = """\
name: {name}
task: Wait a while ({name}).
device: {{kind: sim}}
max_steps: 40
success:
- {{app: Home}}
gold:
{steps}- action: {{action: done}}
"""


def _scenario(folder: Path, name: str, waits: int, seconds: float = 0.5) -> Path:
    steps = "".join(f"- action: {{action: wait, seconds: {seconds}}}\n" for _ in range(waits))
    path = folder / f"{name}.yaml"
    path.write_text(_SLOW.format(name=name, steps=steps), encoding="utf-8")
    return path


def _start(*args: str, cwd: Path, **kwargs: object) -> subprocess.Popen[str]:
    env = {**os.environ, "ADBUTILS_ADB_PATH": "/bin/false"}
    return subprocess.Popen(
        [sys.executable, "-m", "vlagent.cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,  # type: ignore[call-overload]
    )


def _wait_for(condition: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def _steps_recorded(trajectory: Path) -> int:
    if not trajectory.exists():
        return 0
    return sum('"type":"step"' in line for line in trajectory.read_text(encoding="utf-8").splitlines())


def test_sigterm_mid_run_writes_the_end_line_and_exits_143(tmp_path: Path) -> None:
    script = tmp_path / "script.yaml"
    script.write_text("".join("- {action: wait, seconds: 0.5}\n" for _ in range(60)), encoding="utf-8")
    proc = _start("run", "wait a lot", "--script", str(script), "--out", "runs", "--max-steps", "60", cwd=tmp_path)
    _wait_for(lambda: any(_steps_recorded(t) >= 2 for t in (tmp_path / "runs").glob("*/trajectory.jsonl")))
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "terminated" in err
    (run,) = (tmp_path / "runs").iterdir()
    traj = load_trajectory(run)
    assert traj.end is not None and traj.end.reason == "interrupted"
    assert 2 <= len(traj.steps) < 60


def test_ctrl_c_on_a_parallel_eval_writes_partial_results_and_resume_finishes(tmp_path: Path) -> None:
    files = [str(_scenario(tmp_path, f"slow-{i}", waits=30)) for i in range(3)]
    proc = _start("eval", *files, "-j", "2", "--out", "ev", cwd=tmp_path)
    running = [tmp_path / "ev" / f"slow-{i}" / "trajectory.jsonl" for i in range(2)]
    _wait_for(lambda: all(_steps_recorded(t) >= 1 for t in running))
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert time.monotonic() - sent < 15, "the running scenarios were waited out instead of stopped"
    assert "Traceback" not in err
    results = json.loads((tmp_path / "ev" / "results.json").read_text(encoding="utf-8"))
    assert results["summary"]["interrupted"] is True
    assert results["summary"]["not_run"] == ["slow-2"]
    assert [r["end_reason"] for r in results["scenarios"]] == ["interrupted", "interrupted"]
    suite = ET.parse(tmp_path / "ev" / "junit.xml").getroot()
    assert suite.get("tests") == "2"
    for i in range(2):
        traj = load_trajectory(tmp_path / "ev" / f"slow-{i}")
        assert traj.end is not None and traj.end.reason == "interrupted"

    # without a choice, the evaluation is refused; --resume runs what did not finish
    again = subprocess.run(
        [sys.executable, "-m", "vlagent.cli", "eval", *files, "--out", "ev"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert again.returncode == 2 and "--resume" in again.stderr and "Traceback" not in again.stderr
    fast = [str(_scenario(tmp_path, f"slow-{i}", waits=2, seconds=0)) for i in range(3)]
    resumed = subprocess.run(
        [sys.executable, "-m", "vlagent.cli", "eval", *fast, "--out", "ev", "--resume"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    results = json.loads((tmp_path / "ev" / "results.json").read_text(encoding="utf-8"))
    assert results["summary"]["passed"] == 3 and results["summary"]["interrupted"] is False
    for i in range(3):
        traj = load_trajectory(tmp_path / "ev" / f"slow-{i}")  # one episode each: nothing merged
        assert traj.end is not None and traj.end.reason == "done_success"


def test_two_evals_into_one_out_never_merge(tmp_path: Path) -> None:
    files = [str(_scenario(tmp_path, f"s{i}", waits=4, seconds=0.25)) for i in range(2)]
    first = _start("eval", *files, "--out", "shared", cwd=tmp_path)
    second = _start("eval", *files, "--out", "shared", cwd=tmp_path)
    outcomes = sorted(
        ((p.returncode, err) for p in (first, second) for _, err in [p.communicate(timeout=300)]), key=lambda x: x[0]
    )
    assert [code for code, _ in outcomes] == [0, 2], outcomes
    assert "Traceback" not in outcomes[1][1]
    assert "another evaluation" in outcomes[1][1] or "already holds an evaluation" in outcomes[1][1]
    results = json.loads((tmp_path / "shared" / "results.json").read_text(encoding="utf-8"))
    assert results["summary"]["passed"] == 2
    for i in range(2):
        traj = load_trajectory(tmp_path / "shared" / f"s{i}")
        assert traj.end is not None and traj.end.reason == "done_success"
    assert not list((tmp_path / "shared").rglob("*.tmp"))


def test_overwrite_replaces_an_evaluation(tmp_path: Path) -> None:
    files = [str(_scenario(tmp_path, "one", waits=1, seconds=0))]
    for flag in ((), ("--overwrite",)):
        done = subprocess.run(
            [sys.executable, "-m", "vlagent.cli", "eval", *files, "--out", "ev", *flag],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
    traj = load_trajectory(tmp_path / "ev" / "one")
    assert traj.end is not None and len(traj.steps) == 2


@contextlib.contextmanager
def _small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (30_000, 30_000))


def _assert_clean_failure(result: subprocess.CompletedProcess[str], out: Path) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not list(out.rglob("*.tmp")), list(out.rglob("*"))
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    traj = load_trajectory(run)  # what was written is still readable
    assert traj.start is not None


def test_a_disk_that_fills_mid_run_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with _small_tmpfs(tmp_path / "small", "400k") as small:
        result = subprocess.run(
            [sys.executable, "-m", "vlagent.cli", "run", "note", "--device", "sim:0", "--out", str(small / "runs")],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "ADBUTILS_ADB_PATH": "/bin/false"},
        )
        _assert_clean_failure(result, small / "runs")
        assert "No space left on device" in result.stdout + result.stderr


def test_a_file_size_limit_mid_run_is_one_line_and_exit_1(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vlagent.cli", "run", "note", "--device", "sim:0", "--out", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_limit_file_size,
        env={**os.environ, "ADBUTILS_ADB_PATH": "/bin/false"},
    )
    _assert_clean_failure(result, tmp_path / "runs")
    assert "File too large" in result.stdout + result.stderr
