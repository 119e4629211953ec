"""Built-in tasks on the simulated phone: each script solves its task through the real episode loop, on any seed."""

from __future__ import annotations

import pytest

from vlagent.actions import Done, Scroll
from vlagent.agent import EndReason, run_episode
from vlagent.drivers.sim import SimDriver, SimPhone
from vlagent.errors import ConfigError
from vlagent.policies import ScriptedPolicy
from vlagent.policies.task_scripts import tap_label, task_script, ui_locator
from vlagent.tasks import BUILTIN_TASKS, StartState, Task, ToggleCheck, get_task


@pytest.mark.parametrize("seed", [0, 7])
@pytest.mark.parametrize("name", sorted(BUILTIN_TASKS))
def test_oracle_solves_the_task_judged_from_phone_state(name: str, seed: int) -> None:
    task = get_task(name)
    driver = SimDriver(SimPhone(seed=seed))
    driver.prepare(task.start)
    assert not task.passed(driver.state())
    episode = run_episode(task.instruction, driver, ScriptedPolicy(task_script(task, ui_locator(driver))))
    assert episode.end is EndReason.DONE_SUCCESS, episode.detail
    assert task.passed(driver.state())


def test_required_tasks_are_registered() -> None:
    assert {"wifi", "dark_mode", "note", "add_contact"} <= set(BUILTIN_TASKS)
    with pytest.raises(ConfigError, match="dark_mode"):
        get_task("make coffee")


def test_dark_mode_needs_a_scroll() -> None:
    task = get_task("dark_mode")
    phone = SimPhone()
    episode = run_episode(task.instruction, SimDriver(phone), ScriptedPolicy(task_script(task, phone.locate)))
    assert any(isinstance(step.action, Scroll) for step in episode.steps)
    assert task.passed(SimDriver(phone).state()) and phone.dark


def test_claiming_success_does_not_pass_the_check() -> None:
    task = get_task("note")
    phone = SimPhone()
    episode = run_episode(task.instruction, SimDriver(phone), ScriptedPolicy([Done()]))
    assert episode.end is EndReason.DONE_SUCCESS and not task.passed(SimDriver(phone).state())


def test_oracles_work_through_transitions() -> None:
    task = get_task("add_contact")
    phone = SimPhone(transition_delay=0.2, clock=lambda: 0.0)  # frozen clock: always mid-transition
    driver = SimDriver(phone)
    episode = run_episode(task.instruction, driver, ScriptedPolicy(task_script(task, ui_locator(driver))))
    assert episode.end is EndReason.DONE_SUCCESS and task.passed(driver.state())


def test_setup_prepares_the_phone_before_the_episode() -> None:
    task = Task(
        "bluetooth_off",
        "Turn Bluetooth off.",
        (ToggleCheck(toggle="bluetooth", value=False),),
        StartState(toggles={"bluetooth": True}),
    )
    driver = SimDriver(SimPhone())
    driver.prepare(task.start)
    assert not task.passed(driver.state())
    locate = ui_locator(driver)
    run_episode(
        task.instruction,
        driver,
        ScriptedPolicy([tap_label(locate, "Settings"), tap_label(locate, "Bluetooth"), Done()]),
    )
    assert task.passed(driver.state())
