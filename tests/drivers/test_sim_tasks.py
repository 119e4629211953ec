"""Built-in sim tasks: each oracle solves its task through the real episode loop, on any seed."""

from __future__ import annotations

import pytest

from vlagent.actions import Done, Scroll
from vlagent.agent import EndReason, run_episode
from vlagent.drivers.sim import SimDriver, SimPhone
from vlagent.drivers.sim.tasks import SIM_TASKS, get_task
from vlagent.errors import ConfigError
from vlagent.policies import ScriptedPolicy


@pytest.mark.parametrize("seed", [0, 7])
@pytest.mark.parametrize("name", sorted(SIM_TASKS))
def test_oracle_solves_the_task_judged_from_phone_state(name: str, seed: int) -> None:
    task = get_task(name)
    phone = task.prepare(SimPhone(seed=seed))
    assert not task.check(phone)
    episode = run_episode(task.instruction, SimDriver(phone), ScriptedPolicy(task.oracle(phone)))
    assert episode.end is EndReason.DONE_SUCCESS, episode.detail
    assert task.check(phone)


def test_required_tasks_are_registered() -> None:
    assert {"wifi", "dark_mode", "note", "add_contact"} <= set(SIM_TASKS)
    with pytest.raises(ConfigError, match="dark_mode"):
        get_task("make coffee")


def test_dark_mode_needs_a_scroll() -> None:
    task = get_task("dark_mode")
    phone = SimPhone()
    episode = run_episode(task.instruction, SimDriver(phone), ScriptedPolicy(task.oracle(phone)))
    assert any(isinstance(step.action, Scroll) for step in episode.steps)
    assert task.check(phone) and phone.dark


def test_claiming_success_does_not_pass_the_check() -> None:
    task = get_task("note")
    phone = SimPhone()
    episode = run_episode(task.instruction, SimDriver(phone), ScriptedPolicy([Done()]))
    assert episode.end is EndReason.DONE_SUCCESS and not task.check(phone)


def test_oracles_work_through_transitions() -> None:
    task = get_task("add_contact")
    phone = SimPhone(transition_delay=0.2, clock=lambda: 0.0)  # frozen clock: always mid-transition
    episode = run_episode(task.instruction, SimDriver(phone), ScriptedPolicy(task.oracle(phone)))
    assert episode.end is EndReason.DONE_SUCCESS and task.check(phone)


def test_setup_prepares_the_phone_before_the_episode() -> None:
    from vlagent.drivers.sim.tasks import SimTask, tap_label

    task = SimTask(
        "bluetooth_off",
        "Turn Bluetooth off.",
        lambda p: not p.toggles["bluetooth"],
        lambda p: [tap_label(p, "Settings"), tap_label(p, "Bluetooth"), Done()],
        setup=lambda p: p.set_toggle("bluetooth", True),
    )
    phone = task.prepare(SimPhone())
    assert not task.check(phone)
    run_episode(task.instruction, SimDriver(phone), ScriptedPolicy(task.oracle(phone)))
    assert task.check(phone)
