"""The observe -> think -> act loop.

``run_episode`` is deliberately small: capture, ask the policy (feeding validation errors
back), execute, observe the effect, let hooks look. Recording, progress, memory policy,
loop detection and telemetry live in hooks and collaborators, not in flags here.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from vlagent.actions import Action, CallUser, Done
from vlagent.confirm import Confirm
from vlagent.drivers.base import Driver
from vlagent.errors import (
    ActionNotSupportedError,
    DeviceError,
    DeviceLockedError,
    InvalidModelOutput,
    UserError,
)
from vlagent.frames import Frame
from vlagent.memory import HistoryEntry, TrajectoryMemory
from vlagent.outcome import ActionOutcome
from vlagent.policies.base import Decision, Observation, Policy, Prefetcher
from vlagent.secrets import Secrets, scrub

__all__ = ["Effect", "EndReason", "Episode", "EpisodeHook", "Hook", "StepRecord", "Verdict", "run_episode"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class Effect(enum.StrEnum):
    """What the loop noticed about an action's effect (shown to the model in the history)."""

    NO_VISIBLE_CHANGE = "no visible change"
    TEXT_NOT_TYPED = "the typed text did not arrive as meant"


class EndReason(enum.StrEnum):
    """Why an episode ended."""

    DONE_SUCCESS = "done_success"
    DONE_FAILURE = "done_failure"
    STEP_LIMIT = "step_limit"
    STUCK = "stuck"
    ERROR = "error"
    INTERRUPTED = "interrupted"
    """Stopped from outside: Ctrl-C, SIGTERM, or the ``stop`` event (an evaluation being cancelled)."""


@dataclass
class StepRecord:
    """One step as it happened. ``action`` is in device pixels."""

    index: int
    frame: Frame
    decision: Decision
    capture_s: float
    model_s: float
    execute_s: float = 0.0
    invalid_outputs: int = 0
    effect: Effect | None = None
    """Set when the action changed nothing on screen, or typed text did not arrive."""
    change: float | None = None
    """Fraction of the screen (around the action) that changed, 0-1; None if unmeasured."""
    selection: dict[str, object] | None = None
    """What memory sent with the prompt (images, tokens), when the policy looked at images."""
    outcome: ActionOutcome | None = None
    """What the driver learned performing the action (e.g. whether typed text arrived)."""

    @property
    def action(self) -> Action:
        return self.decision.action


@dataclass
class Episode:
    """A finished (or running) episode."""

    task: str
    steps: list[StepRecord] = field(default_factory=list)
    end: EndReason | None = None
    detail: str = ""
    invalid_outputs: int = 0
    device_retries: int = 0
    started: float = field(default_factory=time.time)
    duration_s: float = 0.0

    @property
    def claimed_success(self) -> bool:
        """True when the agent said done(success): its claim, not a judgement of device state."""
        return self.end is EndReason.DONE_SUCCESS


@dataclass(frozen=True)
class Verdict:
    """What a hook may say after a step: stop the episode, or tell the model something."""

    stop: EndReason | None = None
    hint: str | None = None
    detail: str = ""


class EpisodeHook(Protocol):
    """Observers of the loop, called in this order; ``on_step`` may return a Verdict.

    Subclass :class:`Hook` and override only what you need.
    """

    def on_start(self, episode: Episode, driver: Driver, policy: Policy) -> None:
        """The episode begins (nothing captured yet)."""

    def on_observe(self, episode: Episode, index: int, frame: Frame) -> None:
        """Step ``index``'s screen was captured; the policy is about to look at it."""

    def on_decision(self, episode: Episode, record: StepRecord) -> None:
        """The policy chose; called before the action runs (a recorder writes here: crash-safe)."""

    def on_step(self, episode: Episode, record: StepRecord, after: Frame) -> Verdict | None:
        """The action ran and ``after`` is the screen it left; a Verdict may stop the episode or hint."""

    def on_end(self, episode: Episode) -> None:
        """The episode ended, for any reason (also when an exception is propagating)."""


class Hook:
    """An EpisodeHook that does nothing: the base for hooks that care about a few events."""

    def on_start(self, episode: Episode, driver: Driver, policy: Policy) -> None:
        return None

    def on_observe(self, episode: Episode, index: int, frame: Frame) -> None:
        return None

    def on_decision(self, episode: Episode, record: StepRecord) -> None:
        return None

    def on_step(self, episode: Episode, record: StepRecord, after: Frame) -> Verdict | None:
        return None

    def on_end(self, episode: Episode) -> None:
        return None


Settle = Callable[[Driver], Frame]
EffectCheck = Callable[[Frame, Frame, Action], float | None]


def run_episode(
    task: str,
    driver: Driver,
    policy: Policy,
    *,
    max_steps: int = 20,
    memory: TrajectoryMemory | None = None,
    hooks: Sequence[EpisodeHook] = (),
    max_invalid: int = 3,
    device_attempts: int = 3,
    settle: Settle | None = None,
    effect: EffectCheck | None = None,
    secrets: Secrets | Mapping[str, str] | None = None,
    stop: threading.Event | None = None,
    confirm: Confirm | None = None,
    seed: int | None = None,
) -> Episode:
    """Run one task until the policy says done, a hook stops it, or ``max_steps`` pass.

    Whatever a model, a device, a hook or the disk raises ends the episode with reason
    ``error`` and the exception in ``detail`` (hooks still see the end, so the trajectory is
    kept); only a :class:`~vlagent.errors.UserError` (something the caller must fix) and
    Ctrl-C (reason ``interrupted``) propagate after that. ``secrets``: values the model types
    as ``{{NAME}}``; they reach only the driver (see :mod:`vlagent.secrets`). ``stop``: set it
    from another thread to end the episode as ``interrupted`` before its next action.
    ``device_attempts`` is ignored for drivers that retry device errors themselves. ``confirm``:
    a person confirms sensitive actions first (a refusal is fed back to the model) and, while
    one is at hand, the model may ``call_user`` to hand them the device (see :mod:`vlagent.confirm`).
    ``seed``: the sampling seed every observation carries, so a sampling model repeats its draws.
    """
    memory = memory if memory is not None else TrajectoryMemory()
    vault = Secrets.of(secrets)
    episode = Episode(task=task)
    attempts = 1 if getattr(driver, "retries_device_errors", False) else device_attempts
    capabilities = driver.capabilities
    if confirm is not None and confirm.person.present:
        capabilities = dataclasses.replace(capabilities, actions=capabilities.actions | {"call_user"})
    device = _DeviceCalls(episode, attempts)
    hint: str | None = None
    prompt_task = (
        task
        if not vault
        else f"{task}\n(Secrets to type as written, their values stay hidden: "
        + (", ".join("{{" + name + "}}" for name in vault.names) + ")")
    )
    ahead: threading.Thread | None = None
    with vault.active():
        for hook in hooks:
            hook.on_start(episode, driver, policy)
        try:
            t0 = time.perf_counter()
            frame = device.run(driver.screenshot)
            for index in range(max_steps):
                if stop is not None and stop.is_set():
                    episode.end, episode.detail = EndReason.INTERRUPTED, "stopped before step " + str(index + 1)
                    break
                capture_s = time.perf_counter() - t0
                for hook in hooks:
                    hook.on_observe(episode, index, frame)  # e.g. start encoding the frame while the model thinks
                t1 = time.perf_counter()
                choice = memory.lazy_choice(frame)
                obs = Observation(
                    prompt_task, frame, capabilities, index, memory.history, choice=choice, hint=hint, seed=seed
                )
                decision, invalid = _decide(policy, obs, max_invalid, episode, _Gate(vault, confirm, driver))
                record = StepRecord(
                    index, frame, decision, capture_s, time.perf_counter() - t1, invalid_outputs=invalid
                )
                record.selection = choice.selection.as_dict() if choice.selection else None
                episode.steps.append(record)
                for hook in hooks:
                    hook.on_decision(episode, record)  # recorded before acting: crash-safe
                if isinstance(record.action, Done):
                    episode.end = (
                        EndReason.DONE_SUCCESS if record.action.status == "success" else EndReason.DONE_FAILURE
                    )
                    episode.detail = scrub(record.action.answer or "")
                    break
                if stop is not None and stop.is_set():
                    episode.end, episode.detail = (
                        EndReason.INTERRUPTED,
                        f"stopped before the action of step {index + 1}",
                    )
                    break
                t2 = time.perf_counter()
                if index + 1 < max_steps:
                    ahead = _work_ahead(policy, memory, obs, HistoryEntry(index, record.action, decision.step.thought))
                if isinstance(record.action, CallUser) and confirm is not None:
                    confirm.person.hand_over(record.action.reason)  # the person works the device; then we look again
                    outcome = None
                else:
                    outcome = device.run(driver.execute, vault.reveal_action(record.action))
                # drivers of old return None; what a driver read back never holds a secret's value
                record.outcome = vault.redact_outcome(outcome) if isinstance(outcome, ActionOutcome) else None
                after = device.run(settle, driver) if settle else device.run(driver.screenshot)
                if ahead is not None:
                    ahead.join()  # before memory changes: the work ahead reads the screens it holds
                    ahead = None
                record.execute_s = time.perf_counter() - t2
                t0 = time.perf_counter()
                record.change = effect(frame, after, record.action) if effect else None
                problem = record.outcome.problem if record.outcome else None
                record.effect = Effect.NO_VISIBLE_CHANGE if record.change == 0.0 else None
                record.effect = Effect.TEXT_NOT_TYPED if problem else record.effect
                memory.add(HistoryEntry(index, record.action, decision.step.thought, problem or record.effect), frame)
                verdicts = [v for v in (hook.on_step(episode, record, after) for hook in hooks) if v is not None]
                hint = next((v.hint for v in verdicts if v.hint), None)
                stopped = next((v for v in verdicts if v.stop is not None), None)
                if stopped is not None:
                    episode.end, episode.detail = stopped.stop, stopped.detail
                    break
                frame = after
            else:
                episode.end, episode.detail = EndReason.STEP_LIMIT, f"no 'done' within {max_steps} steps"
        except UserError as exc:
            episode.end, episode.detail = EndReason.ERROR, scrub(f"{type(exc).__name__}: {exc}")
            raise
        except KeyboardInterrupt:
            episode.end, episode.detail = EndReason.INTERRUPTED, "interrupted (Ctrl-C or a termination signal)"
            raise
        except Exception as exc:  # a model, a device, a hook or the disk: the episode ends, the run does not crash
            episode.end, episode.detail = EndReason.ERROR, scrub(f"{type(exc).__name__}: {exc}")
            log.warning("episode ended by %s", episode.detail)
            log.debug("the exception that ended the episode", exc_info=True)
        finally:
            if ahead is not None:
                ahead.join()
            episode.duration_s = time.time() - episode.started
            if episode.end is None:  # SystemExit or another BaseException is propagating
                episode.end, episode.detail = EndReason.INTERRUPTED, "interrupted"
            _end_hooks(hooks, episode)
    return episode


def _work_ahead(
    policy: Policy, memory: TrajectoryMemory, obs: Observation, entry: HistoryEntry
) -> threading.Thread | None:
    """Start the policy's work for the next step on a thread, while the device acts and settles
    (:class:`~vlagent.policies.base.Prefetcher`); None when the policy has none."""
    if not isinstance(policy, Prefetcher):
        return None
    upcoming = memory.preview(entry, obs.frame)
    following = dataclasses.replace(
        obs,
        step_index=obs.step_index + 1,
        history=upcoming.history,
        images=(),
        choice=upcoming.lazy_choice(obs.frame, stand_in=True),
        feedback=None,
        hint=None,
    )

    def work() -> None:
        try:
            policy.prefetch(following)
        except Exception:  # work ahead only saves time: a failure costs the next step that time, no more
            log.warning("working ahead for step %d failed", following.step_index + 1, exc_info=True)

    thread = threading.Thread(target=work, name="vlagent-ahead", daemon=True)
    thread.start()
    return thread


def _end_hooks(hooks: Sequence[EpisodeHook], episode: Episode) -> None:
    """Every hook sees the end, even when one of them fails (a full disk must not hide the others)."""
    for hook in hooks:
        try:
            hook.on_end(episode)
        except Exception as exc:
            log.warning("%s could not finish: %s", type(hook).__name__, scrub(f"{type(exc).__name__}: {exc}"))
            log.debug("the exception from on_end", exc_info=True)


@dataclass(frozen=True)
class _Gate:
    """What may refuse a decision besides the device's capabilities: secrets and a person."""

    secrets: Secrets
    confirm: Confirm | None
    driver: Driver

    def refusal(self, action: Action) -> str | None:
        problem = self.secrets.problem(action)
        if problem is None and self.confirm is not None and not isinstance(action, Done):
            problem = self.confirm.review(action, self.driver)
        return problem


def _decide(policy: Policy, obs: Observation, max_invalid: int, episode: Episode, gate: _Gate) -> tuple[Decision, int]:
    """Ask the policy; on invalid output feed the message back, up to ``max_invalid`` times."""
    feedback: list[str] = []
    while True:
        try:
            decision = policy.decide(obs)
            # decisions are in device pixels: a point off the screen is refused here, not sent
            refusal = obs.capabilities.refusal(decision.action, screen=obs.frame.size) or gate.refusal(decision.action)
            if refusal is not None:
                raise InvalidModelOutput(refusal, decision.raw)
            return decision, len(feedback)
        except InvalidModelOutput as exc:
            episode.invalid_outputs += 1
            feedback.append(exc.feedback)
            log.info("invalid model output (%d/%d): %s", len(feedback), max_invalid, exc.feedback)
            if len(feedback) > max_invalid:
                raise
            obs = dataclasses.replace(obs, feedback=exc.feedback)


def _transient(exc: BaseException) -> bool:
    # A refused action or a locked phone fails the same way on every try.
    return isinstance(exc, DeviceError) and not isinstance(exc, (ActionNotSupportedError, DeviceLockedError))


class _DeviceCalls:
    """Retries transient device errors with backoff, counting retries on the episode.

    The retrying object never refers back to the episode (nor to this object): a reference
    cycle through it would keep every frame of a finished episode alive until the garbage
    collector's next full pass, which in a long evaluation is gigabytes."""

    def __init__(self, episode: Episode, attempts: int) -> None:
        self._episode = episode
        self._retries = [0]
        retries = self._retries

        def count(state: RetryCallState) -> None:
            retries[0] += 1
            error = state.outcome.exception() if state.outcome is not None else None
            log.warning("device call failed, retrying: %s", error)

        self._retrying = Retrying(
            stop=stop_after_attempt(max(1, attempts)),
            wait=wait_exponential(multiplier=0.2, max=2.0),
            retry=retry_if_exception(_transient),
            before_sleep=count,
            reraise=True,
        )

    def run(self, fn: Callable[..., T], *args: object) -> T:
        try:
            return self._retrying(fn, *args)
        finally:
            self._episode.device_retries = self._retries[0]
