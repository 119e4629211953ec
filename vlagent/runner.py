"""Assembling a run: device + policy + memory + hooks -> a recorded episode.

This is the glue behind ``vlagent run`` and ``vlagent demo`` (and usable from Python): it
opens the driver, chooses the policy, resolves built-in task names
(:data:`vlagent.tasks.BUILTIN_TASKS`: the device is brought to the task's start state and
success is judged by the task's checks from the device's own state, never from the model's
word; on the simulated phone or any phone over adb), attaches the recorder, and runs the
loop. It owns no behaviour of its own beyond that choice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vlagent.agent import Episode, EpisodeHook, run_episode
from vlagent.confirm import Confirm
from vlagent.drivers.base import Driver
from vlagent.drivers.registry import available_drivers, open_driver
from vlagent.effects import FrameChange, Settle
from vlagent.errors import ConfigError, VlagentError
from vlagent.memory import TrajectoryMemory, memory_config
from vlagent.policies.base import Policy
from vlagent.policies.registry import open_policy
from vlagent.recorder import Recorder, new_run_dir
from vlagent.secrets import Secrets
from vlagent.tasks import BUILTIN_TASKS, CheckResult, StatePreparer, StateReader, StateUnavailable, Task
from vlagent.watchers import LoopConfig, LoopDetector

__all__ = ["DEFAULT_MODEL", "RunRequest", "RunResult", "demo_policy_name", "list_devices", "run_task"]

log = logging.getLogger(__name__)

DEFAULT_MODEL = "Qwen/Qwen2-VL-2B-Instruct"


@dataclass(frozen=True)
class RunRequest:
    """What the user asked for."""

    task: str
    device: str = "sim"
    policy: str = "auto"
    max_steps: int = 20
    out: Path = Path("runs")
    options: Mapping[str, object] = field(default_factory=dict)
    settle_timeout: float = 3.0
    """Wait up to this long for the screen to stop changing after an action (0: no waiting)."""
    settle_stable: float = 0.3
    """The screen must stay unchanged this long to count as settled."""
    on_stuck: str = "stop"
    """``stop`` ends a looping episode as ``stuck``; ``hint`` tells the model and carries on."""
    record_nodes: bool | None = None
    """Record the UI element each tap aims at (for replay healing); None: only where it is free (the sim)."""
    secrets: Secrets = field(default_factory=Secrets)
    """Values the task types as ``{{NAME}}``; they reach only the device (see :mod:`vlagent.secrets`)."""
    confirm: Confirm | None = None
    """A person confirms sensitive actions and can be handed the device (see :mod:`vlagent.confirm`)."""
    seed: int | None = None
    """Sampling seed, so a model decoding with a temperature above 0 repeats its draws."""


@dataclass(frozen=True)
class RunResult:
    episode: Episode
    run_dir: Path
    judged_success: bool | None
    """Success judged from device state (built-in tasks), None when no check exists."""
    checks: tuple[CheckResult, ...] = ()
    """The built-in task's checks as judged after the episode."""

    @property
    def ok(self) -> bool:
        """Success judged from device state where a check exists, else the agent's own ``done(success)``."""
        if self.judged_success is not None:
            return self.judged_success
        return self.episode.claimed_success

    @property
    def summary(self) -> str:
        """One line (plus the failed checks) saying how the run was judged."""
        end = self.episode.end.value if self.episode.end else "error"
        detail = f" ({self.episode.detail})" if self.episode.detail else ""
        if self.judged_success is None:
            return f"episode ended: {end}{detail}; no state check for this task"
        state = "SUCCESS" if self.judged_success else "FAILED"
        failed = "".join(f"\n  {r.describe()}" for r in self.checks if not r.passed)
        return f"{state} judged from device state; episode ended: {end}{detail}{failed}"


def _local_weights(model: str) -> bool:
    if Path(model).is_dir():
        return True
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    found = try_to_load_from_cache(model, "config.json")
    return isinstance(found, str)


def demo_policy_name(model: str | None) -> str:
    """The best policy available here: Qwen2-VL when weights are present, else the sim oracle script."""
    if model:
        return "qwen2vl"
    try:
        import transformers  # noqa: F401
    except ImportError:
        return "oracle"
    return "qwen2vl" if _local_weights(DEFAULT_MODEL) else "oracle"


def _builtin_task(driver: Driver, name: str) -> Task | None:
    """The built-in task called ``name``, with ``driver`` brought to its start; None for any other task."""
    task = BUILTIN_TASKS.get(name)
    if task is None:
        return None
    if not isinstance(driver, StatePreparer) or not isinstance(driver, StateReader):
        raise ConfigError(
            f"the built-in task {name!r} runs on a phone that can be set up and read (sim, adb:SERIAL); "
            f"the {driver.name} device cannot; describe the task in words instead"
        )
    try:
        driver.prepare(task.start)
    except StateUnavailable as exc:
        raise ConfigError(
            f"the {driver.name} device cannot start the task {name!r} ({task.start.describe()}): {exc}"
        ) from exc
    return task


def _choose_policy(request: RunRequest, driver: Driver, task: Task | None) -> Policy:
    options = {k: v for k, v in request.options.items() if v is not None and k not in ("max_images", "max_tokens")}
    name = request.policy
    if name == "auto":
        if options.get("base_url"):
            name = "openai"
        elif options.get("model"):
            name = "qwen2vl"
        elif options.get("script"):
            name = "scripted"
        elif task is not None:
            name = "oracle"
        else:
            raise ConfigError(
                "no policy can run this task: pass --model (Qwen2-VL weights), --base-url (a served model), "
                "--script (a list of actions), or use a built-in task name (see 'vlagent devices')"
            )
    if name == "oracle":
        if task is None or not isinstance(driver, StateReader):
            raise ConfigError("the oracle policy only plays built-in tasks (e.g. 'wifi', 'dark_mode')")
        from vlagent.policies.scripted import ScriptedPolicy
        from vlagent.policies.task_scripts import task_script, ui_locator

        policy = ScriptedPolicy(task_script(task, ui_locator(driver)))
        policy.name = "oracle"
        return policy
    if name == "qwen2vl" and "model" not in options:
        options["model"] = DEFAULT_MODEL
    return open_policy(name, **options)


def _memory(options: Mapping[str, object]) -> TrajectoryMemory:
    return TrajectoryMemory(memory_config(options))


def _loop_detector(on_stuck: str) -> LoopDetector:
    if on_stuck not in ("stop", "hint"):
        raise ConfigError(f"--on-stuck must be 'stop' or 'hint', got {on_stuck!r}")
    return LoopDetector(LoopConfig(on_stuck="stop" if on_stuck == "stop" else "hint"))


def _record_nodes(request: RunRequest, driver: Driver) -> bool:
    if request.record_nodes is not None:
        return request.record_nodes
    return driver.name == "sim"  # a dump per tap is free in process; ~1-2 s on a real phone


def run_task(
    request: RunRequest,
    *,
    progress: EpisodeHook | None = None,
    extra_hooks: Sequence[EpisodeHook] = (),
    policy_factory: Callable[[Driver], Policy] | None = None,
) -> RunResult:
    """Open the device, run the episode with recording; a built-in task starts from its start state
    and is judged by its checks from the device's state."""
    driver = open_driver(request.device)
    try:
        task = _builtin_task(driver, request.task)
        instruction = task.instruction if task else request.task
        policy = policy_factory(driver) if policy_factory else _choose_policy(request, driver, task)
        run_dir = new_run_dir(request.out, task.name if task else request.task)
        hooks: list[EpisodeHook] = [
            Recorder(
                run_dir,
                meta={"device_spec": request.device} | ({} if request.seed is None else {"seed": str(request.seed)}),
                ui_nodes=_record_nodes(request, driver),
            ),
            _loop_detector(request.on_stuck),
            *extra_hooks,
        ]
        if progress is not None:
            hooks.append(progress)
        settle = (
            Settle(timeout=request.settle_timeout, stable_for=request.settle_stable) if request.settle_timeout else None
        )
        episode = run_episode(
            instruction,
            driver,
            policy,
            max_steps=request.max_steps,
            memory=_memory(request.options),
            hooks=hooks,
            settle=settle,
            effect=FrameChange(),
            secrets=request.secrets,
            confirm=request.confirm,
            seed=request.seed,
        )
        if task is None or not isinstance(driver, StateReader):
            return RunResult(episode, run_dir, None)
        checks = tuple(task.judge(driver.state()))
        return RunResult(episode, run_dir, all(r.passed for r in checks), checks)
    finally:
        driver.close()


def list_devices() -> list[str]:
    """Human-readable lines: registered device kinds, built-in tasks, adb devices found."""
    lines = ["device kinds: " + ", ".join(sorted(available_drivers()))]
    lines.append("built-in tasks (sim, adb): " + ", ".join(sorted(BUILTIN_TASKS)))
    try:
        from vlagent.drivers.android import list_serials

        serials = list_serials()
        lines.append("adb devices: " + (", ".join(serials) if serials else "none found"))
    except (ImportError, VlagentError) as exc:
        lines.append(f"adb devices: unavailable ({exc})")
    return lines
