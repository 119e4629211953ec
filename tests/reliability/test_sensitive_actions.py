"""Sensitive actions wait for a person's yes; without one they are refused and the model is told.

The phone is the real simulated phone, read through its view hierarchy; the person answering
is a scripted stand-in (``_Answers``, named as such) or :class:`TerminalPerson` on real streams.
"""

from __future__ import annotations

import io
from pathlib import Path

from vlagent.actions import CallUser, Click, Done, Type
from vlagent.agent import EndReason, run_episode
from vlagent.confirm import Confirm, SensitiveRules, TerminalPerson
from vlagent.drivers.sim import SimDriver
from vlagent.policies.base import Observation
from vlagent.policies.scripted import ScriptedPolicy
from vlagent.policies.task_scripts import task_script, ui_locator
from vlagent.recorder import Recorder, load_trajectory
from vlagent.tasks import BUILTIN_TASKS


class _Answers:
    """A stand-in person: answers each question from a list and records what was asked."""

    def __init__(self, *answers: bool, present: bool = True) -> None:
        self.answers = list(answers)
        self.asked: list[str] = []
        self.handed: list[str] = []
        self._present = present

    @property
    def present(self) -> bool:
        return self._present

    def confirm(self, question: str) -> bool:
        self.asked.append(question)
        return self.answers.pop(0)

    def hand_over(self, reason: str) -> None:
        self.handed.append(reason)


def _delete_note(person: _Answers, tmp_path: Path) -> tuple[EndReason | None, bool, int]:
    task = BUILTIN_TASKS["delete_note"]
    with SimDriver() as sim:
        sim.prepare(task.start)
        policy = ScriptedPolicy(task_script(task, ui_locator(sim)))
        episode = run_episode(task.instruction, sim, policy, hooks=[Recorder(tmp_path)], confirm=Confirm(person=person))
        deleted = all(check.evaluate(sim.state()).passed for check in task.success)
    return episode.end, deleted, episode.invalid_outputs


def test_a_tap_on_delete_runs_only_after_a_yes(tmp_path: Path) -> None:
    person = _Answers(True, True)
    end, deleted, invalid = _delete_note(person, tmp_path / "yes")
    assert end is EndReason.DONE_SUCCESS and deleted and invalid == 0
    # the long press lands on the note "Buy milk" (a word of the rules), then the Delete button
    assert len(person.asked) == 2 and "'Delete' (delete)" in person.asked[1]


def test_a_declined_tap_is_fed_back_and_not_performed(tmp_path: Path) -> None:
    person = _Answers(True, False)
    end, deleted, invalid = _delete_note(person, tmp_path / "no")
    assert not deleted and invalid == 1
    assert end is EndReason.DONE_SUCCESS  # the script claims success; the phone's state says otherwise
    steps = load_trajectory(tmp_path / "no").steps
    assert [s.invalid_outputs for s in steps] == [0, 0, 1]  # the Delete tap was refused, then done


def test_without_a_person_a_sensitive_action_is_refused(tmp_path: Path) -> None:
    _, deleted, invalid = _delete_note(_Answers(present=False), tmp_path)
    assert not deleted and invalid >= 1


def test_typing_a_secret_asks_first_and_harmless_actions_do_not() -> None:
    person = _Answers(False)
    seen: list[str | None] = []

    def after_refusal(obs: Observation) -> Done:
        seen.append(obs.feedback)
        return Done(status="failure", answer="not allowed")

    with SimDriver() as sim:
        episode = run_episode(
            "t",
            sim,
            ScriptedPolicy([Click(x=10, y=10), Type(text="{{PIN}}"), after_refusal]),
            secrets={"PIN": "2468"},
            confirm=Confirm(person=person),
        )
    assert len(person.asked) == 1 and "secret PIN" in person.asked[0]
    assert seen and seen[0] is not None and "declined" in seen[0]
    assert episode.end is EndReason.DONE_FAILURE


def test_any_action_in_a_listed_app_needs_a_yes() -> None:
    rules = SensitiveRules(apps=("Settings",), words=())
    with SimDriver() as sim:
        sim.execute(Click(x=10, y=10))
        assert rules.reason(Click(x=10, y=10), sim) is None  # the home screen
        from vlagent.actions import OpenApp

        sim.execute(OpenApp(name="Settings"))
        assert "Settings is in front" in (rules.reason(Click(x=10, y=10), sim) or "")


def test_call_user_hands_over_and_resumes_only_with_a_person() -> None:
    person = _Answers()
    with SimDriver() as sim:
        episode = run_episode(
            "t", sim, ScriptedPolicy([CallUser(reason="solve the CAPTCHA"), Done()]), confirm=Confirm(person=person)
        )
    assert person.handed == ["solve the CAPTCHA"] and episode.end is EndReason.DONE_SUCCESS
    with SimDriver() as sim:
        alone = run_episode(
            "t", sim, ScriptedPolicy([CallUser(reason="help"), Done()]), confirm=Confirm(person=_Answers(present=False))
        )
    assert alone.invalid_outputs == 1  # not offered: refused as an action this device cannot do


def test_the_terminal_person_reads_an_explicit_yes() -> None:
    out = io.StringIO()
    assert TerminalPerson(io.StringIO("y\n"), out).confirm("Pay?") is True
    assert "Pay? [y/N]" in out.getvalue()
    assert TerminalPerson(io.StringIO("\n"), io.StringIO()).confirm("Pay?") is False
    assert TerminalPerson(io.StringIO("yes please\n"), io.StringIO()).confirm("Pay?") is False
    handed = io.StringIO()
    TerminalPerson(io.StringIO("\n"), handed).hand_over("log in")
    assert "log in" in handed.getvalue() and "Enter" in handed.getvalue()
    assert not TerminalPerson(io.StringIO(), None).present


def test_the_command_asks_on_its_terminal(tmp_path: Path) -> None:
    """``vlagent run --confirm`` on a real pseudo-terminal: two questions, two yeses, the note is deleted."""
    import fcntl
    import os
    import select
    import subprocess
    import sys
    import termios
    import time

    master, slave = os.openpty()

    def controlling_tty() -> None:
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        [sys.executable, "-m", "vlagent.cli", "run", "delete_note", "--out", str(tmp_path), "--confirm"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        preexec_fn=controlling_tty,
        env={**os.environ, "ADBUTILS_ADB_PATH": "/bin/false", "COLUMNS": "200"},
    )
    os.close(slave)
    seen, answered, deadline = b"", 0, time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                seen += os.read(master, 4096)
            except OSError:
                break
        if seen.count(b"[y/N]") > answered:
            answered += 1
            os.write(master, b"y\n")
    proc.wait(timeout=30)
    os.close(master)
    text = seen.decode(errors="replace")
    assert answered == 2, text
    assert proc.returncode == 0 and "SUCCESS judged from device state" in text, text


def test_ui_tars_call_user_hands_over_only_while_a_person_is_at_hand() -> None:
    import dataclasses

    from vlagent.capabilities import PHONE_CAPABILITIES
    from vlagent.policies.families.base import get_family

    family = get_family("uitars15")
    answer = "Thought: the page asks for a login only the owner knows.\nAction: call_user()"
    with_person = dataclasses.replace(PHONE_CAPABILITIES, actions=PHONE_CAPABILITIES.actions | {"call_user"})
    assert isinstance(family.parse(answer, (1092, 2408), with_person).action, CallUser)
    alone = family.parse(answer, (1092, 2408), PHONE_CAPABILITIES).action
    assert isinstance(alone, Done) and alone.status == "failure"
