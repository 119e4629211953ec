"""Assembling a run: device + policy + memory + hooks -> a recorded episode.

This is the glue behind ``vlagent run`` and ``vlagent demo`` (and usable from Python): it
opens the driver, chooses the policy, resolves built-in simulated-phone tasks (whose
success is judged from the phone's state, never from the model's word), attaches the
recorder, and runs the loop. It owns no behaviour of its own beyond that choice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from vlagent.agent import Episode, run_episode
from vlagent.drivers.base import Driver
from vlagent.drivers.registry import available_drivers, open_driver
from vlagent.effects import FrameChange, LoopConfig, LoopDetector, Settle
from vlagent.errors import ConfigError, VlagentError
from vlagent.memory import MemoryConfig, TrajectoryMemory
from vlagent.policies.base import Policy
from vlagent.policies.registry import open_policy
from vlagent.recorder import Recorder, new_run_dir

if TYPE_CHECKING:
    from vlagent.drivers.sim.tasks import SimTask
    from vlagent.drivers.sim.world import SimPhone

__all__ = ["DEFAULT_MODEL", "RunRequest", "RunResult", "demo_policy_name", "execute_run", "list_devices", "run_task"]

log = logging.getLogger(__name__)

DEFAULT_MODEL = "Qwen/Qwen2-VL-2B-Instruct"

_MEMORY_KEYS = ("max_pixels", "min_pixels", "max_images", "max_tokens")


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


@dataclass(frozen=True)
class RunResult:
    episode: Episode
    run_dir: Path
    judged_success: bool | None
    """Success judged from device state (sim tasks), None when no check exists."""

    @property
    def ok(self) -> bool:
        """Success judged from device state where a check exists, else the agent's own ``done(success)``."""
        if self.judged_success is not None:
            return self.judged_success
        return self.episode.success

    @property
    def verdict(self) -> str:
        end = self.episode.end.value if self.episode.end else "error"
        detail = f" ({self.episode.detail})" if self.episode.detail else ""
        if self.judged_success is None:
            return f"episode ended: {end}{detail}; no state check for this task"
        state = "SUCCESS" if self.judged_success else "FAILED"
        return f"{state} judged from device state; episode ended: {end}{detail}"


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


def _sim_task(device: str, task: str) -> SimTask | None:
    if not device.startswith("sim"):
        return None
    from vlagent.drivers.sim.tasks import SIM_TASKS

    return SIM_TASKS.get(task)


def _phone(driver: Driver) -> SimPhone:
    """The simulated phone behind a sim driver (built-in tasks only run there)."""
    from vlagent.drivers.sim.driver import SimDriver

    assert isinstance(driver, SimDriver), "built-in sim tasks run on the sim driver"
    return driver.phone


def _choose_policy(request: RunRequest, driver: Driver, sim_task: SimTask | None) -> Policy:
    options = {k: v for k, v in request.options.items() if v is not None and k not in ("max_images", "max_tokens")}
    name = request.policy
    if name == "auto":
        if options.get("base_url"):
            name = "openai"
        elif options.get("model"):
            name = "qwen2vl"
        elif options.get("script"):
            name = "scripted"
        elif sim_task is not None:
            name = "oracle"
        else:
            raise ConfigError(
                "no policy can run this task: pass --model (Qwen2-VL weights), --base-url (a served model), "
                "--script (a list of actions), or use a built-in sim task name (see 'vlagent devices')"
            )
    if name == "oracle":
        if sim_task is None:
            raise ConfigError("the oracle policy only plays built-in simulated-phone tasks (e.g. 'wifi', 'dark_mode')")
        from vlagent.policies.scripted import ScriptedPolicy

        policy = ScriptedPolicy(sim_task.oracle(_phone(driver)))
        policy.name = "oracle"
        return policy
    if name == "qwen2vl" and "model" not in options:
        options["model"] = DEFAULT_MODEL
    return open_policy(name, **options)


def _memory(options: Mapping[str, object]) -> TrajectoryMemory:
    values = {k: options[k] for k in _MEMORY_KEYS if options.get(k) is not None}
    try:
        return TrajectoryMemory(MemoryConfig(**values))  # type: ignore[arg-type]
    except TypeError as exc:
        raise ConfigError(f"memory option not supported: {exc}") from exc


def _loop_detector(on_stuck: str) -> LoopDetector:
    if on_stuck not in ("stop", "hint"):
        raise ConfigError(f"--on-stuck must be 'stop' or 'hint', got {on_stuck!r}")
    return LoopDetector(LoopConfig(on_stuck="stop" if on_stuck == "stop" else "hint"))


def run_task(
    request: RunRequest,
    *,
    progress: object | None = None,
    extra_hooks: Sequence[object] = (),
    policy_factory: Callable[[Driver], Policy] | None = None,
) -> RunResult:
    """Open the device, run the episode with recording, judge sim tasks from state."""
    driver = open_driver(request.device)
    try:
        sim_task = _sim_task(request.device, request.task)
        instruction = sim_task.instruction if sim_task else request.task
        if sim_task is not None:
            sim_task.prepare(_phone(driver))
        policy = policy_factory(driver) if policy_factory else _choose_policy(request, driver, sim_task)
        run_dir = new_run_dir(request.out, sim_task.name if sim_task else request.task)
        hooks: list[object] = [
            Recorder(run_dir, meta={"device_spec": request.device}),
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
        )
        judged = bool(sim_task.check(_phone(driver))) if sim_task is not None else None
        return RunResult(episode, run_dir, judged)
    finally:
        driver.close()


def execute_run(request: RunRequest, *, progress: object | None = None) -> RunResult:
    """``run_task`` for the CLI."""
    return run_task(request, progress=progress)


def list_devices() -> list[str]:
    """Human-readable lines: registered device kinds, built-in sim tasks, adb devices found."""
    lines = ["device kinds: " + ", ".join(sorted(available_drivers()))]
    try:
        from vlagent.drivers.sim.tasks import SIM_TASKS

        lines.append("sim tasks: " + ", ".join(sorted(SIM_TASKS)))
    except ImportError:
        pass
    try:
        from vlagent.drivers.android import list_serials

        serials = list_serials()
        lines.append("adb devices: " + (", ".join(serials) if serials else "none found"))
    except (ImportError, VlagentError) as exc:
        lines.append(f"adb devices: unavailable ({exc})")
    return lines
