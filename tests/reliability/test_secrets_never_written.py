"""A secret typed on a phone reaches the phone, and nothing written or shown holds its value.

The value goes through ``run_episode`` (Python), ``vlagent eval`` with a scenario's ``secrets:``,
``vlagent report``/``show`` and the logs at -vv; then every file under the output directories
and every line printed is searched for it (as written, JSON-escaped, and URL-encoded).
"""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

from vlagent.actions import Action, Type
from vlagent.agent import EndReason, Episode, run_episode
from vlagent.drivers.sim import SimDriver
from vlagent.errors import ConfigError
from vlagent.policies.base import Decision, Observation, Policy
from vlagent.policies.scripted import ScriptedPolicy
from vlagent.policies.task_scripts import task_script, ui_locator
from vlagent.recorder import Recorder, load_trajectory
from vlagent.secrets import Secrets, scrub, scrub_url
from vlagent.tasks import BUILTIN_TASKS, NoteCheck

SECRET = 'Zq9!"s3cr3t"-Ü\\42 ok'
"""Quotes, a backslash, a non-ASCII letter and a space: each escapes differently in JSON."""

_SCENARIO = """\
name: secret-note
task: Write a new note that holds the password {{PIN}} and save it.
device: {kind: sim}
secrets: [PIN]
max_steps: 8
success:
- {app: Notes}
gold:
- action: {action: click, x: 405, y: 840}
- action: {action: click, x: 796, y: 2145}
- action: {action: click, x: 540, y: 1290}
- action: {action: type, text: '{{PIN}}'}
- action: {action: click, x: 930, y: 172}
- action: {action: done}
"""


def _forms(value: str) -> list[str]:
    escaped = [
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        repr(value)[1:-1],
        ascii(value)[1:-1],
    ]
    return [value, *escaped, urllib.parse.quote(value)]


def _leaks(root: Path, value: str) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path}: {form!r}" for form in _forms(value) if form.encode() in data]
    return found


class _TypesThePin:
    """The oracle of the built-in note task, typing ``{{PIN}}`` where it would type the note."""

    name = "pin-typer"

    def __init__(self, inner: Policy) -> None:
        self.inner = inner
        self.prompts: list[str] = []

    def decide(self, observation: Observation) -> Decision:
        self.prompts.append(observation.task)
        decision = self.inner.decide(observation)
        if isinstance(decision.action, Type):
            action: Action = Type(text="{{PIN}}")
            step = decision.step.model_copy(update={"action": action})
            return Decision(step=step, raw=step.model_dump_json())
        return decision


def test_the_value_reaches_the_phone_and_no_file_or_log_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    task = BUILTIN_TASKS["note"]
    with SimDriver() as sim:
        sim.prepare(task.start)
        policy = _TypesThePin(ScriptedPolicy(task_script(task, ui_locator(sim))))
        episode = run_episode(
            "Write a note holding {{PIN}} and save it.",
            sim,
            policy,
            hooks=[Recorder(tmp_path / "run")],
            secrets={"PIN": SECRET},
        )
        assert episode.end is EndReason.DONE_SUCCESS, episode.detail
        # the phone got the value itself
        assert NoteCheck(note=SECRET).evaluate(sim.state()).passed
    typed = [s.action for s in load_trajectory(tmp_path / "run").steps if isinstance(s.action, Type)]
    assert [t.text for t in typed] == ["{{PIN}}"]
    assert all(SECRET not in prompt and "{{PIN}}" in prompt for prompt in policy.prompts)
    assert _leaks(tmp_path, SECRET) == []
    assert not [r for r in caplog.records if any(f in r.getMessage() for f in _forms(SECRET))]
    assert stat.S_IMODE((tmp_path / "run").stat().st_mode) == 0o700


def test_a_secret_the_model_copies_off_the_screen_is_still_not_written(tmp_path: Path) -> None:
    with SimDriver() as sim:
        policy = ScriptedPolicy([Type(text=f"x{SECRET}y")])
        episode = run_episode("t", sim, policy, max_steps=1, hooks=[Recorder(tmp_path)], secrets={"PIN": SECRET})
    assert episode.end is EndReason.STEP_LIMIT
    assert _leaks(tmp_path, SECRET) == []
    assert "x{{PIN}}y" in (tmp_path / "trajectory.jsonl").read_text(encoding="utf-8")


def test_an_undeclared_secret_is_fed_back_to_the_model_not_typed(tmp_path: Path) -> None:
    with SimDriver() as sim:
        episode = run_episode(
            "t", sim, ScriptedPolicy([Type(text="{{OTHER}}")] * 5), max_steps=1, secrets={"PIN": SECRET}, max_invalid=1
        )
    assert episode.end is EndReason.ERROR and "no secret named OTHER" in episode.detail
    assert episode.invalid_outputs == 2


def test_eval_report_show_and_logs_hold_no_secret(tmp_path: Path) -> None:
    (tmp_path / "secret.yaml").write_text(_SCENARIO, encoding="utf-8")
    env = {**os.environ, "PIN": SECRET, "ADBUTILS_ADB_PATH": "/bin/false"}

    def vlagent(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "vlagent.cli", "-vv", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=300,
        )

    evaluated = vlagent("eval", "secret.yaml", "--out", "ev")
    assert evaluated.returncode == 0, evaluated.stderr
    results = json.loads((tmp_path / "ev" / "results.json").read_text(encoding="utf-8"))
    assert results["summary"]["passed"] == 1
    shown = vlagent("show", "ev/secret-note", "--json")
    assert shown.returncode == 0 and "{{PIN}}" in shown.stdout
    reported = vlagent("report", "ev")
    assert reported.returncode == 0, reported.stderr
    printed = "".join(p.stdout + p.stderr for p in (evaluated, shown, reported))
    assert not [f for f in _forms(SECRET) if f in printed]
    assert _leaks(tmp_path, SECRET) == []
    assert stat.S_IMODE((tmp_path / "ev").stat().st_mode) == 0o700


def test_a_secret_missing_from_the_environment_is_that_scenarios_error(tmp_path: Path) -> None:
    from vlagent.evaluate import EvalConfig, evaluate
    from vlagent.scenario import load_scenario

    (tmp_path / "secret.yaml").write_text(_SCENARIO.replace("[PIN]", "[NOT_SET_ANYWHERE_PIN]"), encoding="utf-8")
    result = evaluate([load_scenario(tmp_path / "secret.yaml")], EvalConfig(out=tmp_path / "ev"))
    assert result.results[0].errored and "NOT_SET_ANYWHERE_PIN" in (result.results[0].error or "")
    assert (tmp_path / "ev" / "results.json").exists() and (tmp_path / "ev" / "junit.xml").exists()


def test_credentials_in_urls_are_blanked_wherever_shown(tmp_path: Path) -> None:
    assert scrub_url("http://user:TOPKEY@host:8000/v1") == "http://***@host:8000/v1"
    assert scrub_url("https://TOPKEY@h/v1?x=1") == "https://***@h/v1?x=1"
    assert scrub_url("http://h/v1?api_key=TOPKEY&x=1") == "http://h/v1?api_key=***&x=1"
    assert scrub_url("mail me at a@b.c") == "mail me at a@b.c"
    result = subprocess.run(
        [sys.executable, "-m", "vlagent.cli", "-vv", "run", "x", "--policy", "openai", "--model", "m",
         "--base-url", "http://user:TOPKEY@127.0.0.1:9/v1", "--out", "runs"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
        env={**os.environ, "ADBUTILS_ADB_PATH": "/bin/false"},
    )  # fmt: skip
    assert result.returncode in (1, 2) and "Traceback" not in result.stderr
    assert "TOPKEY" not in result.stdout + result.stderr
    assert not any(b"TOPKEY" in p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())


def test_secret_declarations_are_checked() -> None:
    with pytest.raises(ConfigError, match="empty"):
        Secrets({"PIN": ""})
    with pytest.raises(ConfigError, match="secret name"):
        Secrets({"no-dash": "x"})
    with pytest.raises(ConfigError, match="NOT_SET_ANYWHERE"):
        Secrets.from_env(["NOT_SET_ANYWHERE"], environ={})
    vault = Secrets({"PIN": "1234", "LONG": "abc1234"})
    with vault.active():
        assert scrub("pin 1234 long abc1234") == "pin {{PIN}} long {{LONG}}"
    assert scrub("pin 1234") == "pin 1234"  # only while the episode that declared it runs
    assert repr(vault) == "Secrets(LONG, PIN)"


def test_episode_detail_never_holds_the_value() -> None:
    class Echo:
        name = "echo"

        def decide(self, observation: Observation) -> Decision:
            raise RuntimeError(f"backend echoed {SECRET}")

    with SimDriver() as sim:
        episode: Episode = run_episode("t", sim, Echo(), secrets={"PIN": SECRET})
    assert episode.end is EndReason.ERROR and SECRET not in episode.detail and "{{PIN}}" in episode.detail
