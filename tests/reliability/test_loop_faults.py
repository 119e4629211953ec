"""Whatever a model, a device, a hook or the disk raises, the episode ends with a reason and its
trajectory is kept; an evaluation writes results for every scenario it started.

The simulated phone is real; the faults are injected by small wrappers named as such.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from vlagent.actions import Action, Click, Done, Wait
from vlagent.agent import EndReason, Hook, StepRecord, run_episode
from vlagent.drivers.sim import SimDriver
from vlagent.errors import ConfigError
from vlagent.evaluate import EvalConfig, evaluate
from vlagent.frames import Frame
from vlagent.outcome import ActionOutcome
from vlagent.policies.base import Decision, Observation
from vlagent.policies.scripted import ScriptedPolicy
from vlagent.recorder import Recorder, load_trajectory
from vlagent.scenario import load_scenario


class _FaultyDriver(SimDriver):
    """Injected fault: the simulated phone raises ``exc`` on the ``when``-th call of ``method``."""

    def __init__(self, method: str, exc: BaseException, when: int = 2) -> None:
        super().__init__()
        self._method, self._exc, self._when, self._calls = method, exc, when, 0

    def _maybe_fail(self, method: str) -> None:
        if method == self._method:
            self._calls += 1
            if self._calls == self._when:
                raise self._exc

    def screenshot(self) -> Frame:
        self._maybe_fail("screenshot")
        return super().screenshot()

    def execute(self, action: Action) -> ActionOutcome | None:
        self._maybe_fail("execute")
        return super().execute(action)


FAULTS: dict[str, BaseException] = {
    "recursion": RecursionError("maximum recursion depth exceeded"),
    "overflow": OverflowError("int too large to convert"),
    "disk full": OSError(28, "No space left on device"),
    "value": ValueError("garbage from the device"),
    "memory": MemoryError(),
    "unicode": UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
}


@pytest.mark.parametrize("method", ["screenshot", "execute"])
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_driver_fault_ends_the_episode_as_error_with_the_trajectory_kept(
    tmp_path: Path, method: str, fault: str
) -> None:
    driver = _FaultyDriver(method, FAULTS[fault])
    with driver:
        episode = run_episode(
            "t", driver, ScriptedPolicy([Wait(seconds=0)] * 5), hooks=[Recorder(tmp_path)], device_attempts=1
        )
    assert episode.end is EndReason.ERROR
    assert type(FAULTS[fault]).__name__ in episode.detail
    traj = load_trajectory(tmp_path)
    assert traj.end is not None and traj.end.reason == "error" and traj.end.detail == episode.detail


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_policy_fault_ends_the_episode_as_error(tmp_path: Path, fault: str) -> None:
    def broken(obs: Observation) -> Decision:
        raise FAULTS[fault]

    with SimDriver() as sim:
        episode = run_episode("t", sim, ScriptedPolicy([Wait(seconds=0), broken]), hooks=[Recorder(tmp_path)])
    assert episode.end is EndReason.ERROR and len(episode.steps) == 1
    assert load_trajectory(tmp_path).end is not None


class _BrokenHook(Hook):
    """Injected fault: a hook that raises in ``on_step`` (and in ``on_end``)."""

    def on_step(self, episode: object, record: StepRecord, after: Frame) -> None:
        raise KeyError("hook bug")

    def on_end(self, episode: object) -> None:
        raise RuntimeError("hook cannot finish")


def test_a_hook_fault_ends_the_episode_and_the_other_hooks_still_finish(tmp_path: Path) -> None:
    with SimDriver() as sim:
        episode = run_episode("t", sim, ScriptedPolicy([Click(x=5, y=5)]), hooks=[_BrokenHook(), Recorder(tmp_path)])
    assert episode.end is EndReason.ERROR and "hook bug" in episode.detail
    traj = load_trajectory(tmp_path)
    assert traj.end is not None and traj.end.reason == "error"


def test_a_user_error_still_reaches_the_caller_after_the_end_line(tmp_path: Path) -> None:
    def misconfigured(obs: Observation) -> Decision:
        raise ConfigError("the model name is wrong")

    with SimDriver() as sim, pytest.raises(ConfigError):
        run_episode("t", sim, ScriptedPolicy([misconfigured]), hooks=[Recorder(tmp_path)])
    traj = load_trajectory(tmp_path)
    assert traj.end is not None and "the model name is wrong" in traj.end.detail


_SCENARIO = """\
name: {name}
task: Tap and finish.
device: {{kind: sim}}
success:
- {{app: Home}}
gold:
- action: {{action: wait, seconds: 0}}
- action: {{action: done}}
"""


def test_eval_writes_results_for_every_scenario_whatever_they_raise(tmp_path: Path) -> None:
    scenarios = []
    for name in ("fine", "policy-crash", "factory-crash"):
        (tmp_path / f"{name}.yaml").write_text(_SCENARIO.format(name=name), encoding="utf-8")
        scenarios.append(load_scenario(tmp_path / f"{name}.yaml"))

    def factory(scenario: object) -> ScriptedPolicy:
        name = getattr(scenario, "name", "")
        if name == "factory-crash":
            raise RuntimeError("cannot build the policy")

        def crash(obs: Observation) -> Decision:
            raise OverflowError("400-digit coordinate")

        return ScriptedPolicy([crash] if name == "policy-crash" else [Wait(seconds=0), Done()])

    out = tmp_path / "ev"
    result = evaluate(scenarios, EvalConfig(out=out, policy_factory=factory, jobs=2))
    by_name = {r.name: r for r in result.results}
    assert by_name["fine"].success
    assert by_name["policy-crash"].end_reason == "error" and "OverflowError" in by_name["policy-crash"].detail
    assert by_name["factory-crash"].errored and "cannot build the policy" in (by_name["factory-crash"].error or "")
    data = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert [s["name"] for s in data["scenarios"]] == ["fine", "policy-crash", "factory-crash"]
    suite = ET.parse(out / "junit.xml").getroot()
    assert suite.get("tests") == "3" and suite.get("errors") == "2"
    assert (out / "report.html").exists()
