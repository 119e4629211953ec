"""Recording: the run directory, the loader, and survival of a kill -9 mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from vlagent.actions import Click, Done, Type, Wait
from vlagent.agent import run_episode
from vlagent.drivers.sim import SimDriver
from vlagent.errors import UserError
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


def test_two_runs_recorded_into_one_directory_are_refused_when_loaded(tmp_path: Path) -> None:
    with SimDriver() as sim:
        for task in ("first", "second"):
            run_episode(task, sim, ScriptedPolicy([Wait(seconds=0), Done()]), hooks=[Recorder(tmp_path)])
    with pytest.raises(UserError, match=r"trajectory.jsonl:\d+: a second episode starts here"):
        load_trajectory(tmp_path)
    assert not list(tmp_path.glob(".*.tmp"))  # every frame's temporary file was renamed into place


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
