"""Assembling a run: a built-in task starts from its start state and is judged by its checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlagent.actions import Done
from vlagent.drivers.sim.adb_server import serve_sim
from vlagent.drivers.sim.world import SimPhone
from vlagent.errors import ConfigError
from vlagent.policies.scripted import ScriptedPolicy
from vlagent.runner import RunRequest, run_task
from vlagent.tasks import get_task


def test_builtin_task_starts_prepared_and_is_judged_from_state(tmp_path: Path) -> None:
    result = run_task(RunRequest(task="delete_note", device="sim:4", out=tmp_path, settle_timeout=0))
    assert result.ok and [r.status for r in result.checks] == ["passed"] * 4
    assert all(r.source == "sim state" for r in result.checks)


def test_claiming_success_fails_with_the_check_that_says_why(tmp_path: Path) -> None:
    result = run_task(
        RunRequest(task="wifi", device="sim", out=tmp_path, settle_timeout=0),
        policy_factory=lambda driver: ScriptedPolicy([Done()]),
    )
    assert result.episode.claimed_success and not result.ok
    assert "FAILED judged from device state" in result.summary
    assert "toggle wifi is on -- is off [sim state]" in result.summary


def test_builtin_task_on_a_device_without_state_is_a_user_error(tmp_path: Path) -> None:
    replay = tmp_path / "run"
    run_task(RunRequest(task="wifi", device="sim", out=replay, settle_timeout=0))
    run_dir = next(replay.iterdir())
    with pytest.raises(ConfigError, match="built-in task 'wifi' runs on a phone"):
        run_task(RunRequest(task="wifi", device=f"replay:{run_dir}", out=tmp_path / "again"))


@pytest.mark.parametrize("name", ["wifi", "delete_note"])
def test_builtin_task_runs_on_a_phone_over_adb(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADBUTILS_ADB_PATH", "/bin/false")  # never start a real adb server
    task = get_task(name)
    phone = SimPhone(serial="sim-0", seed=5)
    phone.replace_notes(["left over"])
    with serve_sim([phone], port=0) as server:
        result = run_task(RunRequest(task=name, device=f"adb:sim-0?port={server.port}", out=tmp_path, settle_timeout=0))
    assert result.ok, result.summary
    assert len(result.checks) == len(task.success)
    assert {r.source for r in result.checks} <= {"settings", "content provider"}
    # the start state replaces the notes only when the task names them
    assert ("left over" in phone.notes) is (task.start.notes is None)
