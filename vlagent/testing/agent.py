"""UI-testing API: ``Agent.act / assert_ / query / wait_until / locate`` on top of the loop.

A test talks to the screen in sentences. ``act`` runs an episode through the policy and
fails the test unless the policy ends with ``done(success)``; the other calls ask the model
a question about the current screen and read a small, validated pydantic answer
(structured extraction). ``assert_``, ``check`` and ``wait_until`` also take a
:data:`vlagent.tasks.Check` (or its mapping, ``{"toggle": "wifi"}``): that is decided from
the device's own state (``driver.state()``), with no model, on any device that has one.
Questions go to a ``Querier``: anything with ``ask(query, schema) -> schema instance``.
The simulated-phone oracle answers from phone state; the in-process Qwen2-VL and the
OpenAI-compatible policies get queriers in :mod:`vlagent.testing.queriers`, under the same
constrained decoding as their steps.

Every call writes its own run directory (``NN-kind-slug/``) with the recorder's format,
so a failing test leaves the frames the model saw and what it said. Failures raise
``AssertionError`` subclasses whose message is written for the person reading the test
report.

This module must not import heavy libraries, and must not decide what is on screen by
itself: only the policy and the querier look at frames (a Check reads device state).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from vlagent.actions import Action, Done, Step, Wait, describe_action
from vlagent.agent import EndReason, Episode, EpisodeHook, StepRecord, run_episode
from vlagent.coords import Relative
from vlagent.drivers.base import Driver
from vlagent.effects import frame_change
from vlagent.errors import ConfigError, InvalidModelOutput
from vlagent.frames import Frame
from vlagent.memory import MemoryConfig, TrajectoryMemory
from vlagent.policies.base import Decision, Policy
from vlagent.recorder import Recorder
from vlagent.tasks import Check, CheckResult, StateReader, parse_check
from vlagent.testing.queriers import querier_for
from vlagent.testing.query import LOCATE_GRID, REASON_CHARS, Judgement, Location, Querier, Query, QueryKind

__all__ = [
    "ActFailed",
    "Agent",
    "AssertionFailed",
    "CallRecord",
    "Judgement",
    "LocateFailed",
    "Location",
    "Querier",
    "Query",
    "QueryKind",
    "Statement",
    "WaitTimeout",
    "querier_for",
]

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
#: What assert_/check/wait_until take: a sentence for the model, or a Check (or its mapping) for the device state.
Statement = str | Check | Mapping[str, object]


@dataclass
class CallRecord:
    """One Agent call as the test report shows it."""

    kind: str
    text: str
    run_dir: Path
    outcome: str = ""
    frames: list[Path] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    """The model's thoughts, reasons and actions, in order."""
    passed: bool | None = None


class ActFailed(AssertionError):
    """``act`` ended without ``done(success)``."""

    def __init__(self, message: str, episode: Episode, run_dir: Path) -> None:
        self.episode = episode
        self.run_dir = run_dir
        super().__init__(message)


class AssertionFailed(AssertionError):
    """The model judged a statement about the screen false (or a check failed on the device state)."""

    def __init__(self, message: str, judgement: Judgement, run_dir: Path, result: CheckResult | None = None) -> None:
        self.judgement = judgement
        self.run_dir = run_dir
        self.result = result
        """The check's verdict (what was seen, and where) when a Check was asserted."""
        super().__init__(message)


class WaitTimeout(AssertionError):
    """A statement did not become true in time."""

    def __init__(
        self, message: str, judgement: Judgement | None, run_dir: Path, result: CheckResult | None = None
    ) -> None:
        self.judgement = judgement
        self.run_dir = run_dir
        self.result = result
        """The check's last verdict when a Check was awaited."""
        super().__init__(message)


class LocateFailed(AssertionError):
    """The model did not find the described element."""

    def __init__(self, message: str, location: Location, run_dir: Path) -> None:
        self.location = location
        self.run_dir = run_dir
        super().__init__(message)


def _as_check(statement: Statement) -> Check | None:
    """The Check a statement stands for (None: a sentence for the model); ConfigError when invalid."""
    if isinstance(statement, str):
        return None
    try:
        return parse_check(statement)
    except ValidationError as exc:
        raise ConfigError(f"not a valid check {statement!r}: {exc.errors()[0]['msg']}") from exc


def _reason(result: CheckResult) -> str:
    """What the device showed, and where it was read: the reason of a check's Judgement."""
    text = (result.detail or result.status) + (f" [{result.source}]" if result.source else "")
    return text[:REASON_CHARS]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower())[:40].strip("-") or "call"


def _device_word(driver: Driver) -> str:
    return "phone" if driver.capabilities.is_phone else "computer"


class _CallPolicy:
    """Stands for the querier in a recorded trajectory (the recorder names the policy)."""

    def __init__(self, name: str) -> None:
        self.name = name


class Agent:
    """A screen under test, driven and judged by a model.

    ``out_dir`` receives one run directory per call. ``memory`` sets the visual-token
    budget of ``act`` prompts; ``cache`` (an ActionCache) replays actions that passed before
    on unchanged screens without asking the model, and answers ``locate`` for a description
    already found on the same screen; ``querier`` answers assert_/query/
    wait_until/locate (default: derived from ``policy``).
    """

    def __init__(
        self,
        driver: Driver,
        policy: Policy,
        *,
        out_dir: Path | str,
        memory: MemoryConfig | None = None,
        cache: object | None = None,
        querier: Querier | None = None,
        max_invalid: int = 3,
        settle: Callable[[Driver], Frame] | None = None,
        hooks: Sequence[EpisodeHook] = (),
    ) -> None:
        from vlagent.testing.cache import ActionCache

        if cache is not None and not isinstance(cache, ActionCache):
            raise ConfigError(f"cache must be a vlagent.testing.ActionCache, got {type(cache).__name__}")
        self.driver = driver
        self.policy = policy
        self.out_dir = Path(out_dir)
        self.memory = memory
        self.cache: ActionCache | None = cache
        self._querier = querier
        self.max_invalid = max_invalid
        self.settle = settle
        self.hooks = tuple(hooks)
        self.calls: list[CallRecord] = []
        self._open: dict[Path, tuple[Recorder, Episode]] = {}

    # ------------------------------------------------------------------ acting

    def act(self, instruction: str, max_steps: int = 10) -> Episode:
        """Carry out ``instruction``; raise ActFailed unless the policy ends with done(success)."""
        __tracebackhide__ = True  # pytest shows the test line, not this method
        if not instruction.strip():
            raise ConfigError("act() needs a non-empty instruction")
        call = self._begin("act", instruction)
        policy: Policy = self.policy
        if self.cache is not None:
            from vlagent.testing.cache import CachedPolicy

            policy = CachedPolicy(self.policy, self.cache)
        recorder = Recorder(call.run_dir, meta={"call": "act"}, overwrite=True)  # a rerun of the test replaces it
        memory = TrajectoryMemory(self.memory) if self.memory is not None else None
        episode = run_episode(
            instruction,
            self.driver,
            policy,
            max_steps=max_steps,
            memory=memory,
            hooks=[recorder, *self.hooks],
            max_invalid=self.max_invalid,
            settle=self.settle,
            effect=frame_change,
        )
        for record in episode.steps:
            call.frames.append(call.run_dir / f"frame_{record.index:04d}.png")
            call.reasoning.append(_render_step(record))
        call.passed = episode.end is EndReason.DONE_SUCCESS
        end = episode.end.value if episode.end else "error"
        call.outcome = f"{end} after {len(episode.steps)} step(s)" + (f": {episode.detail}" if episode.detail else "")
        if self.cache is not None:
            self.cache.learn(episode)
        if not call.passed:
            raise ActFailed(self._act_message(instruction, episode, call), episode, call.run_dir)
        return episode

    def _act_message(self, instruction: str, episode: Episode, call: CallRecord) -> str:
        end = episode.end.value if episode.end else "error"
        lines = [
            f"act({instruction!r}) did not succeed: the episode ended with {end} after {len(episode.steps)} step(s)"
        ]
        if episode.detail:
            lines[0] += f" ({episode.detail})"
        if call.reasoning:
            lines.append("last steps:")
            lines.extend(f"  {line}" for line in call.reasoning[-5:])
        if call.frames:
            lines.append(f"last frame: {call.frames[-1]}")
        lines.append(f"recorded in: {call.run_dir}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ questions

    @property
    def querier(self) -> Querier:
        if self._querier is None:
            self._querier = querier_for(self.policy)
        if self._querier is None:
            raise ConfigError(
                f"the policy '{getattr(self.policy, 'name', type(self.policy).__name__)}' cannot answer questions "
                "about the screen; pass querier=... (e.g. SimOracle for the simulated phone) or use the qwen2vl "
                "or openai policy"
            )
        return self._querier

    def _judge_name(self) -> str:
        """Who answered: 'the model', or the named oracle (which reads device state, not pixels)."""
        querier = self._querier
        name = type(querier).__name__ if querier is not None else ""
        return f"the {name}" if "Oracle" in name else "the model"

    def check(self, statement: Statement) -> Judgement:
        """The yes/no judgement of ``statement`` about the current screen (never raises on 'no').

        A sentence is judged by the model; a Check (or its mapping) from the device's state."""
        check = _as_check(statement)
        call = self._begin("check", check.describe() if check is not None else str(statement))
        judgement, _ = self._judge(call, statement, check, 0)
        self._finish(call, judgement.verdict)
        return judgement

    def assert_(self, statement: Statement) -> str:
        """Fail (AssertionFailed) unless ``statement`` holds; returns the reason given.

        ``statement`` is either a sentence about the screen, judged by the model ("Wi-Fi is
        on"), or a :data:`vlagent.tasks.Check` (``ToggleCheck(toggle="wifi")``) or its mapping
        (``{"toggle": "wifi"}``, ``{"text": "Saved"}``, ``{"element": "Wi-Fi", "checked": True}``),
        decided from the device's own state (``driver.state()``: the simulated phone, a phone
        over adb...) with no model. A failing check's message names the check, what was seen
        and where it was read (the CheckResult, also on ``AssertionFailed.result``); a check the
        device cannot judge fails as ``unknown``. ConfigError when the driver has no ``state()``.
        """
        __tracebackhide__ = True  # pytest shows the test line, not this method
        check = _as_check(statement)
        call = self._begin("assert", check.describe() if check is not None else str(statement))
        judgement, result = self._judge(call, statement, check, 0)
        self._finish(call, judgement.verdict)
        if not judgement.verdict:
            if result is not None:
                message = (
                    f"assert_({result.check.describe()!r}) failed: judged from the device state ({result.status}).\n"
                    f"seen: {result.detail or '(nothing)'}" + (f" [{result.source}]" if result.source else "") + "\n"
                )
            else:
                message = (
                    f"assert_({statement!r}) failed: {self._judge_name()} judged it false.\n"
                    f"reason given: {judgement.reason or '(none given)'}\n"
                )
            raise AssertionFailed(
                f"{message}screen: {call.frames[-1]}\nrecorded in: {call.run_dir}", judgement, call.run_dir, result
            )
        return judgement.reason

    def query(self, question: str, schema: type[M]) -> M:
        """Extract data from the current screen: an instance of the pydantic model ``schema``."""
        if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
            raise ConfigError(f"query() needs a pydantic model class as schema, got {schema!r}")
        call = self._begin("query", question)
        frame = self.driver.screenshot()
        fields = json.dumps(schema.model_json_schema(), ensure_ascii=False)
        prompt = (
            f"Look at the {_device_word(self.driver)} screen and answer: {question}\n"
            f"Answer with one JSON object that matches this JSON schema: {fields}"
        )
        answer = self._ask(Query("query", question, prompt, frame), schema)
        self._record(call, 0, frame, Done(answer=answer.model_dump_json()[:1000]), None, answer.model_dump_json())
        call.reasoning.append(f"answer: {answer.model_dump_json()}")
        self._finish(call, True)
        return answer

    def wait_until(self, statement: Statement, timeout: float = 10.0, interval: float = 0.5) -> Judgement:
        """Judge ``statement`` repeatedly until it is true; WaitTimeout after ``timeout`` seconds.

        As for ``assert_``, a sentence is judged by the model and a Check (or its mapping) from
        a fresh look at the device's state each time, with no model."""
        __tracebackhide__ = True
        if timeout < 0 or interval <= 0:
            raise ConfigError("wait_until needs timeout >= 0 and interval > 0")
        check = _as_check(statement)
        text = check.describe() if check is not None else str(statement)
        call = self._begin("wait", text)
        deadline = time.monotonic() + timeout
        index = 0
        while True:
            judgement, result = self._judge(call, statement, check, index, wait=interval)
            if judgement.verdict:
                self._finish(call, True)
                return judgement
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._finish(call, False)
                last = "last seen on the device" if result is not None else "model's last reason"
                raise WaitTimeout(
                    f"wait_until({text!r}) timed out after {timeout:g} s and {index + 1} check(s).\n"
                    f"{last}: {judgement.reason or '(none given)'}\n"
                    f"last screen: {call.frames[-1]}\nrecorded in: {call.run_dir}",
                    judgement,
                    call.run_dir,
                    result,
                )
            time.sleep(min(interval, remaining))
            index += 1

    def locate(self, description: str) -> tuple[int, int]:
        """Device-pixel centre of the element ``description`` names; LocateFailed when not found."""
        __tracebackhide__ = True
        call = self._begin("locate", description)
        frame = self.driver.screenshot()
        cached = self.cache.lookup_location(description, frame) if self.cache is not None else None
        if cached is not None:
            self._record(call, 0, frame, Done(answer=f"{cached[0]},{cached[1]}"), "from cache", "")
            call.reasoning.append(f"found at {cached} (from cache)")
            self._finish(call, True)
            return cached
        prompt = (
            f"Find on this {_device_word(self.driver)} screen: {description}\n"
            f"Give its centre as x and y on a 0-{LOCATE_GRID} grid (x from the left edge, y from the top), "
            'set "found" to false if it is not on the screen, and give a short reason.'
        )
        location = self._ask(Query("locate", description, prompt, frame), Location)
        point = Relative(LOCATE_GRID).to_device(location.x, location.y, frame.width, frame.height, out_of_range="clamp")
        self._record(call, 0, frame, Done(answer=f"{point[0]},{point[1]}"), location.reason, location.model_dump_json())
        call.reasoning.append(f"found={location.found} at {point}: {location.reason}")
        self._finish(call, location.found)
        if location.found and self.cache is not None:
            self.cache.store_location(description, frame, point)
        if not location.found:
            raise LocateFailed(
                f"locate({description!r}): the model did not find it.\nmodel's reason: {location.reason}\n"
                f"screen: {call.frames[-1]}\nrecorded in: {call.run_dir}",
                location,
                call.run_dir,
            )
        return point

    # ------------------------------------------------------------------ internals

    def _judge(
        self, call: CallRecord, statement: Statement, check: Check | None, index: int, wait: float | None = None
    ) -> tuple[Judgement, CheckResult | None]:
        """Judge a sentence with the querier, or a check on the device's state (with its CheckResult)."""
        result: CheckResult | None = None
        if check is not None:
            driver = self.driver
            if not isinstance(driver, StateReader):
                raise ConfigError(
                    f"checks are judged from the device's state, and the {driver.name} driver cannot report it "
                    "(use a sentence for the model instead, or a phone: sim, adb:SERIAL)"
                )
            result = check.evaluate(driver.state())
            frame = driver.screenshot()  # for the record: the screen the state was read with
            judgement = Judgement(verdict=result.passed, reason=_reason(result))
            by = "device state"
        else:
            frame = self.driver.screenshot()
            prompt = (
                f"Look at the {_device_word(self.driver)} screen. Is this statement true: {statement}\n"
                'Answer with one JSON object: "verdict" true or false, and a short "reason" saying what you see.'
            )
            judgement = self._ask(Query("assert", str(statement), prompt, frame), Judgement)
            by = None
        # A 'no' while waiting is recorded as the wait that follows it.
        action: Action = Done(status="success") if judgement.verdict else Done(status="failure")
        if not judgement.verdict and wait is not None:
            action = Wait(seconds=min(wait, 30.0))
        self._record(call, index, frame, action, judgement.reason, judgement.model_dump_json(), by=by)
        verdict = result.status if result is not None else ("true" if judgement.verdict else "false")
        call.reasoning.append(f"{verdict}: {judgement.reason}")
        return judgement, result

    def _ask(self, query: Query, schema: type[M]) -> M:
        querier = self.querier
        feedback: list[str] = []
        while True:
            try:
                answer = querier.ask(query, schema)
            except InvalidModelOutput as exc:
                feedback.append(exc.feedback)
                log.info(
                    "invalid answer to %s %r (%d/%d): %s", query.kind, query.text, len(feedback), self.max_invalid, exc
                )
                if len(feedback) > self.max_invalid:
                    raise
                query = Query(query.kind, query.text, query.prompt, query.frame, exc.feedback)
                continue
            if not isinstance(answer, schema):
                raise TypeError(f"{type(querier).__name__}.ask returned {type(answer).__name__}, not {schema.__name__}")
            return answer

    def _begin(self, kind: str, text: str) -> CallRecord:
        run_dir = self.out_dir / f"{len(self.calls) + 1:02d}-{kind}-{_slug(text)}"
        call = CallRecord(kind, text, run_dir)
        self.calls.append(call)
        return call

    def _record(
        self,
        call: CallRecord,
        index: int,
        frame: Frame,
        action: Action,
        thought: str | None,
        raw: str,
        *,
        by: str | None = None,
    ) -> None:
        """Write one question/answer as a trajectory step (the recorder's format, one file per call);
        ``by`` names who answered (default: the querier)."""
        if call.run_dir not in self._open:
            opened = (
                Recorder(call.run_dir, meta={"call": call.kind}, overwrite=True),
                Episode(task=f"{call.kind}: {call.text}"),
            )
            answerer = _CallPolicy(by or type(self.querier).__name__)
            opened[0].on_start(opened[1], self.driver, answerer)  # type: ignore[arg-type]
            self._open[call.run_dir] = opened
        rec, episode = self._open[call.run_dir]
        thought = thought[:1000] if thought else None
        record = StepRecord(index, frame, Decision(step=Step(thought=thought, action=action), raw=raw), 0.0, 0.0)
        episode.steps.append(record)
        rec.on_decision(episode, record)
        call.frames.append(call.run_dir / f"frame_{index:04d}.png")

    def _finish(self, call: CallRecord, passed: bool) -> None:
        call.passed = passed
        call.outcome = call.outcome or ("passed" if passed else "failed")
        entry = self._open.pop(call.run_dir, None)
        if entry is None:
            return
        rec, episode = entry
        episode.end = EndReason.DONE_SUCCESS if passed else EndReason.DONE_FAILURE
        episode.duration_s = time.time() - episode.started
        rec.on_end(episode)


def _render_step(record: StepRecord) -> str:
    text = f"{record.index + 1}. {describe_action(record.action)}"
    if record.decision.step.thought:
        text += f" - {record.decision.step.thought}"
    if record.effect:
        text += f" [{record.effect}]"
    if record.decision.usage.get("cached"):
        text += " (from cache)"
    return text
