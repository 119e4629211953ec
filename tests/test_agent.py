"""The episode loop on the simulated phone: end reasons, feedback of invalid output, device retries."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import pytest

from vlagent.actions import Action, Click, Done, Scroll, Step, Wait
from vlagent.agent import EndReason, Episode, Hook, Verdict, run_episode
from vlagent.drivers.sim import SimDriver
from vlagent.errors import DeviceError, InvalidModelOutput, ModelError
from vlagent.memory import MemoryConfig, TrajectoryMemory
from vlagent.policies.base import Decision, Observation, decide_each
from vlagent.policies.scripted import ScriptedPolicy


class _Grumpy:
    """A policy that answers badly ``bad`` times before answering ``done``; records the feedback it got."""

    name = "grumpy"

    def __init__(self, bad: int) -> None:
        self.bad = bad
        self.feedback: list[str | None] = []

    def decide(self, observation: Observation) -> Decision:
        self.feedback.append(observation.feedback)
        if len(self.feedback) <= self.bad:
            raise InvalidModelOutput(f"attempt {len(self.feedback)} was not JSON", raw="click the button")
        return Decision(step=Step(action=Done()))

    def decide_batch(self, observations: Sequence[Observation]) -> list[Decision | ModelError]:
        return decide_each(self, observations)


def test_done_success_and_failure() -> None:
    with SimDriver() as sim:
        ep = run_episode("x", sim, ScriptedPolicy([Wait(seconds=0), Done(status="success", answer="42")]))
    assert ep.end is EndReason.DONE_SUCCESS and ep.detail == "42" and len(ep.steps) == 2
    with SimDriver() as sim:
        assert run_episode("x", sim, ScriptedPolicy([Done(status="failure")])).end is EndReason.DONE_FAILURE


def test_step_limit() -> None:
    with SimDriver() as sim:
        ep = run_episode("x", sim, ScriptedPolicy([Wait(seconds=0)] * 10), max_steps=3)
    assert ep.end is EndReason.STEP_LIMIT and len(ep.steps) == 3


def test_invalid_output_is_fed_back_then_retried() -> None:
    policy = _Grumpy(bad=2)
    with SimDriver() as sim:
        ep = run_episode("x", sim, policy, max_invalid=3)
    assert ep.end is EndReason.DONE_SUCCESS
    assert policy.feedback == [None, "attempt 1 was not JSON", "attempt 2 was not JSON"]
    assert ep.invalid_outputs == 2 and ep.steps[0].invalid_outputs == 2


def test_too_many_invalid_outputs_end_with_error() -> None:
    with SimDriver() as sim:
        ep = run_episode("x", sim, _Grumpy(bad=10), max_invalid=2)
    assert ep.end is EndReason.ERROR and "not JSON" in ep.detail and ep.invalid_outputs == 3


def test_unsupported_action_is_fed_back_to_the_model() -> None:
    script = ScriptedPolicy([Click(x=5, y=5, button="right"), Done()])
    with SimDriver() as sim:
        ep = run_episode("x", sim, script)
    # the right click was refused before execution and counted as invalid output; the next answer ran
    assert ep.end is EndReason.DONE_SUCCESS and ep.invalid_outputs == 1


class _FlakyDriver(SimDriver):
    """The real simulated phone whose screenshot fails ``failures`` times (a flaky cable)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def screenshot(self):  # type: ignore[no-untyped-def]
        if self.failures > 0:
            self.failures -= 1
            raise DeviceError("device offline")
        return super().screenshot()


def test_device_errors_are_retried() -> None:
    ep = run_episode("x", _FlakyDriver(failures=2), ScriptedPolicy([Done()]), device_attempts=3)
    assert ep.end is EndReason.DONE_SUCCESS and ep.device_retries == 2


def test_device_lost_ends_with_error() -> None:
    ep = run_episode("x", _FlakyDriver(failures=99), ScriptedPolicy([Done()]), device_attempts=2)
    assert ep.end is EndReason.ERROR and "device offline" in ep.detail


class _StopAfter(Hook):
    def __init__(self, n: int) -> None:
        self.n = n

    def on_step(self, episode: object, record: object, after: object) -> Verdict | None:
        self.n -= 1
        return Verdict(stop=EndReason.STUCK, detail="watcher said so") if self.n == 0 else None


def test_hook_can_stop_the_episode() -> None:
    with SimDriver() as sim:
        ep = run_episode("x", sim, ScriptedPolicy([Wait(seconds=0)] * 5), hooks=[_StopAfter(2)])
    assert ep.end is EndReason.STUCK and ep.detail == "watcher said so" and len(ep.steps) == 2


def test_an_unexpected_exception_ends_the_episode_as_error_and_hooks_see_the_end() -> None:
    ends: list[object] = []

    class Ends(Hook):
        def on_end(self, episode: object) -> None:
            ends.append(getattr(episode, "end", None))

    def boom(obs: Observation) -> Done:
        raise RuntimeError("bug")

    with SimDriver() as sim:
        episode = run_episode("x", sim, ScriptedPolicy([boom]), hooks=[Ends()])
    assert ends == [EndReason.ERROR]
    assert episode.end is EndReason.ERROR and episode.detail == "RuntimeError: bug"


class _Looker:
    """Looks at the prompt images on its second try (the first answer is rejected), then clicks, then is done."""

    name = "looker"

    def __init__(self) -> None:
        self.calls = 0

    def decide(self, observation: Observation) -> Decision:
        self.calls += 1
        if self.calls == 1:
            raise InvalidModelOutput("not JSON", raw="?")
        if observation.step_index == 0:
            assert len(observation.prompt_images) == 1
            return Decision(step=Step(action=Click(x=540, y=1200)))
        assert len(observation.prompt_images) == 2  # the earlier screen and the current one
        return Decision(step=Step(action=Done()))

    def decide_batch(self, observations: Sequence[Observation]) -> list[Decision | ModelError]:
        return decide_each(self, observations)


def test_the_step_records_what_memory_sent_only_when_the_policy_looked() -> None:
    with SimDriver() as sim:
        looked = run_episode("x", sim, _Looker())
        blind = run_episode("x", sim, ScriptedPolicy([Wait(seconds=0), Done()]))
    first, second = (s.selection for s in looked.steps)
    assert first is not None and [i["step"] for i in first["images"]] == [None]
    assert second is not None and [i["step"] for i in second["images"]] == [0, None]
    assert [s.selection for s in blind.steps] == [None, None]


# --- work ahead (policies with ``prefetch``) ----------------------------------------------


def _episode(policy: ScriptedPolicy, steps: int) -> Episode:
    memory = TrajectoryMemory(MemoryConfig(max_tokens=4 * 160, max_images=4, min_history_tokens=4))
    return run_episode("open the settings", SimDriver(seed=3), policy, max_steps=steps, memory=memory)


class _FailingAhead(ScriptedPolicy):
    """A scripted policy whose work ahead always fails."""

    def __init__(self, script: list[Action]) -> None:
        super().__init__(script)
        self.calls: list[int] = []

    def prefetch(self, observation: Observation) -> int:
        self.calls.append(observation.step_index)
        observation.prompt_images  # noqa: B018 - memory's preview builds the next prompt's images
        raise RuntimeError("out of memory ahead")


def test_work_ahead_that_fails_costs_the_episode_nothing(caplog: pytest.LogCaptureFixture) -> None:
    script: list[Action] = [Scroll(direction="down"), Wait(seconds=0), Scroll(direction="up"), Done(status="success")]
    plain = _episode(ScriptedPolicy(list(script)), steps=6)
    failing = _FailingAhead(list(script))
    with caplog.at_level(logging.WARNING, logger="vlagent.agent"):
        episode = _episode(failing, steps=6)
    assert episode.end == plain.end and [s.action for s in episode.steps] == [s.action for s in plain.steps]
    assert failing.calls == [1, 2, 3]  # after each step but the last (done)
    assert "working ahead for step 2 failed" in caplog.text
    assert all(isinstance(s.decision, Decision) for s in episode.steps)


class _SlowAhead(ScriptedPolicy):
    """A scripted policy whose work ahead takes a while; records when it ends."""

    def __init__(self, script: list[Action]) -> None:
        super().__init__(script)
        self.finished = threading.Event()

    def prefetch(self, observation: Observation) -> int:
        time.sleep(0.3)
        self.finished.set()
        return 1


class _DyingPhone(SimDriver):
    """The simulated phone, gone for good once the first action is sent (an unplugged cable)."""

    def execute(self, action: Action) -> None:
        raise DeviceError("device offline")


def test_a_device_lost_while_working_ahead_ends_the_episode_with_nothing_left_running() -> None:
    policy = _SlowAhead([Scroll(direction="down"), Done(status="success")])
    with _DyingPhone(seed=3) as phone:
        episode = run_episode("x", phone, policy, max_steps=4, device_attempts=2)
    assert episode.end is EndReason.ERROR and "device offline" in episode.detail
    assert policy.finished.is_set()  # the episode waited for its work ahead before it returned
    assert not [t for t in threading.enumerate() if t.name == "vlagent-ahead"]
