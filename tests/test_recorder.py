"""Recording: the run directory, the loader, and survival of a kill -9 mid-run."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from vlagent.actions import Click, Done, Type, Wait
from vlagent.agent import run_episode
from vlagent.drivers.sim import SimDriver
from vlagent.errors import OutputError, UserError
from vlagent.policies.scripted import ScriptedPolicy
from vlagent.recorder import Recorder, load_trajectory, new_run_dir


def test_run_directory_round_trip(tmp_path: Path) -> None:
    run_dir = new_run_dir(tmp_path, "Turn on Wi-Fi!")
    assert run_dir.name.endswith("turn-on-wi-fi")
    script = [Click(x=540, y=1200), Type(text="买牛奶 🥛 café"), Done(answer="ok")]
    with SimDriver() as sim:
        ep = run_episode("turn on wifi", sim, ScriptedPolicy(script), hooks=[Recorder(run_dir)])
    traj = load_trajectory(run_dir)
    assert traj.complete and traj.end is not None and traj.end.reason == "done_success"
    assert traj.start is not None and traj.start.task == "turn on wifi" and traj.start.device == "sim"
    assert [s.action for s in traj.steps] == script
    assert traj.steps[1].action == Type(text="买牛奶 🥛 café")
    for step in traj.steps:
        assert step.frame_size == (1080, 2400)
        with Image.open(traj.frame_path(step)) as image:
            assert image.size == (1080, 2400)
        assert step.capture_s >= 0 and step.model_s >= 0
    assert traj.steps[0].execute_s is not None  # merged from the result line
    assert traj.steps[2].execute_s is None  # done is never executed
    assert len(ep.steps) == 3


def test_torn_last_line_is_skipped(tmp_path: Path) -> None:
    with SimDriver() as sim:
        run_episode("t", sim, ScriptedPolicy([Wait(seconds=0), Done()]), hooks=[Recorder(tmp_path)])
    path = tmp_path / "trajectory.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2], encoding="utf-8")
    traj = load_trajectory(tmp_path)
    assert traj.torn_lines == 1 and traj.end is None and len(traj.steps) == 2


def test_corrupt_middle_line_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "trajectory.jsonl").write_text('{"type": "start"}\n{nonsense\n{"type":"x"}\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"trajectory.jsonl:1"):
        load_trajectory(tmp_path)


def test_a_second_run_into_a_used_directory_is_refused_and_the_first_kept(tmp_path: Path) -> None:
    with SimDriver() as sim:
        run_episode("first", sim, ScriptedPolicy([Wait(seconds=0), Done()]), hooks=[Recorder(tmp_path)])
        before = (tmp_path / "trajectory.jsonl").read_bytes()
        with pytest.raises(OutputError, match="already holds a run"):
            run_episode("second", sim, ScriptedPolicy([Done()]), hooks=[Recorder(tmp_path)])
        assert (tmp_path / "trajectory.jsonl").read_bytes() == before
        assert load_trajectory(tmp_path).start.task == "first"  # type: ignore[union-attr]
        run_episode("third", sim, ScriptedPolicy([Done()]), hooks=[Recorder(tmp_path, overwrite=True)])
    traj = load_trajectory(tmp_path)
    assert traj.start is not None and traj.start.task == "third" and len(traj.steps) == 1
    assert sorted(p.name for p in tmp_path.glob("frame_*")) == ["frame_0000.png"]  # the old frames went too
    assert not list(tmp_path.glob(".*.tmp"))  # every frame's temporary file was renamed into place


def test_a_file_holding_two_episodes_is_refused_when_loaded(tmp_path: Path) -> None:
    with SimDriver() as sim:
        for name in ("a", "b"):
            run_episode(name, sim, ScriptedPolicy([Done()]), hooks=[Recorder(tmp_path / name)])
    merged = (tmp_path / "a" / "trajectory.jsonl").read_text() + (tmp_path / "b" / "trajectory.jsonl").read_text()
    (tmp_path / "a" / "trajectory.jsonl").write_text(merged)
    with pytest.raises(UserError, match=r"trajectory.jsonl:\d+: a second episode starts here"):
        load_trajectory(tmp_path / "a")


def test_run_dirs_are_private_and_never_shared(tmp_path: Path) -> None:
    made = {new_run_dir(tmp_path / "runs", "same {{PASSWORD}} task") for _ in range(20)}
    assert len(made) == 20
    for path in made:
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
        assert "password" not in path.name.lower() and "{" not in path.name


def test_missing_run_dir_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no trajectory"):
        load_trajectory(tmp_path / "nope")


_SLOW_RUN = """
import sys, time
from vlagent.actions import Click, Wait
from vlagent.agent import run_episode
from vlagent.drivers.sim import SimDriver
from vlagent.policies.scripted import ScriptedPolicy
from vlagent.recorder import Recorder

def slow(obs):
    time.sleep(0.05)
    return Click(x=540, y=1200) if obs.step_index % 2 else Wait(seconds=0.05)

run_episode("endless", SimDriver(), ScriptedPolicy([slow] * 10_000), max_steps=10_000, hooks=[Recorder(sys.argv[1])])
"""


def test_kill_9_mid_run_leaves_a_loadable_prefix(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_RUN, str(run_dir)])
    trajectory = run_dir / "trajectory.jsonl"
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if trajectory.exists() and trajectory.read_text(encoding="utf-8").count('"type":"step"') >= 5:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the run never recorded 5 steps")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    traj = load_trajectory(run_dir)
    assert traj.start is not None and traj.end is None and len(traj.steps) >= 5
    for step in traj.steps:  # every recorded step names a complete image
        with Image.open(traj.frame_path(step)) as image:
            image.load()
    assert [s.index for s in traj.steps] == list(range(len(traj.steps)))
    json.dumps([s.model_dump(mode="json") for s in traj.steps])  # serialisable as loaded
