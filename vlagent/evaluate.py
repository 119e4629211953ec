"""Evaluation: run scenarios, judge them from device state, score steps, write the results.

``evaluate(scenarios, config)`` runs every scenario in a thread pool (``jobs`` at a time;
the simulated phone is thread-safe, desktop scenarios share one screen and run one at a
time, and phone scenarios moved onto given ``devices`` each take a free one of them, see
:mod:`vlagent.pool`), records each
episode, judges success from the device's state after the episode, scores each step
against the scenario's gold steps by every convention of :mod:`vlagent.scoring`, and
writes into ``out``::

    results.json   per scenario: success, end reason, steps, timings, tokens, step scores
    junit.xml      one testcase per scenario, for CI systems
    report.html    an index linking each run's own report page
    <scenario>/    the run: trajectory.jsonl, frames, report.html, divergence report if any

With the ``scripted`` policy each scenario plays its own gold steps through a
ReplayPolicy: exact where the screen is unchanged, self-healed by ``heal`` or stopped with a
divergence report where it is not. This module must not parse scenario files itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import logging
import os
import shutil
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from vlagent.agent import EndReason, Episode, Hook, StepRecord, run_episode
from vlagent.errors import ConfigError, OutputError, PoolEmptyError, VlagentError
from vlagent.frames import Frame
from vlagent.memory import MemoryConfig, TrajectoryMemory, memory_config
from vlagent.pinned import pinned_config
from vlagent.policies.base import Policy
from vlagent.policies.batching import BatchingPolicy
from vlagent.pool import DevicePool
from vlagent.recorder import Recorder
from vlagent.repeats import pooled, repeat_stats
from vlagent.replay import ReplayPolicy
from vlagent.scenario import SAMPLE_DESKTOP, DeviceSpec, Scenario, ScenarioDevice, open_scenario_device
from vlagent.scoring import CONVENTIONS, Box, StepScore, score_step, summarize
from vlagent.secrets import Secrets, scrub
from vlagent.tasks import CheckResult
from vlagent.tasks.state import StateReader

__all__ = [
    "EvalConfig",
    "EvalJob",
    "EvalResult",
    "EvalRunner",
    "Executor",
    "ScenarioResult",
    "ThreadExecutor",
    "evaluate",
    "write_junit",
    "write_text_atomically",
]

log = logging.getLogger(__name__)

PolicyFactory = Callable[[Scenario], Policy]
_BROKEN = (EndReason.ERROR, EndReason.INTERRUPTED)


@dataclass(frozen=True)
class EvalConfig:
    """How to evaluate: which policy, how many at once, where to write, what to change."""

    out: Path
    policy: str = "scripted"
    policy_options: dict[str, Any] = field(default_factory=dict)
    jobs: int = 1
    layout_seed: int | None = None
    """Override the simulated phone's layout seed of every sim scenario (robustness runs)."""
    heal: Policy | Callable[[ScenarioDevice], Policy] | None = None
    """With the scripted policy: re-locate changed targets with this policy (or a factory
    given each scenario's opened device, e.g. a locator reading the simulated phone)."""
    policy_factory: PolicyFactory | None = None
    """Build the policy per scenario (overrides ``policy``), e.g. for tests."""
    device: str | None = None
    """Run every phone scenario on this device (``adb:SERIAL``, ``sim:3``...); desktop scenarios keep theirs."""
    devices: tuple[str, ...] = ()
    """Run the phone scenarios on these devices, each scenario on a free one (a pool, see
    :mod:`vlagent.pool`: ``adb:*`` is every phone listed, ``adb:HOST:PORT`` joins with adb connect).
    One device is the same as ``device``."""
    existing: Literal["refuse", "resume", "overwrite"] = "refuse"
    """When ``out`` already holds an evaluation: refuse; ``resume`` keeps the scenarios that
    finished and runs the rest; ``overwrite`` runs them all again (their old runs are removed)."""
    secrets: Secrets = field(default_factory=Secrets)
    """Secrets every scenario may type as ``{{NAME}}`` (a scenario's own ``secrets:`` come from the environment)."""
    repeats: int = 1
    """Run each scenario this many times; on the simulated phone repeat ``r`` uses layout seed base + r."""
    sampling_seed: int = 0
    """Repeat ``r`` of every scenario samples on seed ``sampling_seed + r`` (a model policy with a
    temperature above 0 then repeats its draws; greedy decoding does not depend on it)."""

    def __post_init__(self) -> None:
        if not 1 <= self.repeats <= 1000:
            raise ConfigError(f"--repeats must be 1..1000, got {self.repeats}")
        if self.existing not in ("refuse", "resume", "overwrite"):
            raise ConfigError(f"existing must be refuse, resume or overwrite, got {self.existing!r}")
        if self.jobs < 1:
            raise ConfigError(f"--jobs must be at least 1, got {self.jobs}")
        if self.device is not None and self.devices and tuple(self.devices) != (self.device,):
            raise ConfigError("give the device override as device or as devices, not both")
        devices = tuple(self.devices) or ((self.device,) if self.device is not None else ())
        object.__setattr__(self, "devices", devices)
        object.__setattr__(self, "device", devices[0] if len(devices) == 1 else None)
        for device in devices:
            if not DeviceSpec(kind=device).is_phone:
                raise ConfigError(f"--device replaces the phone of phone scenarios; {device!r} is not a phone")


@dataclass
class ScenarioResult:
    """The outcome of one scenario (the JSON of results.json, one entry)."""

    name: str
    source: str | None
    task: str
    device: str
    success: bool
    end_reason: str
    detail: str
    steps: int
    checks: list[dict[str, Any]]
    timings: dict[str, float]
    tokens: dict[str, float]
    scores: dict[str, dict[str, Any]]
    replay: dict[str, Any] | None
    run_dir: str
    error: str | None = None
    scenario: str | None = None
    """The scenario's own name (``name`` is ``<scenario>.r<N>`` when it runs several times)."""
    repeat: int = 0
    seed: int | None = None
    """The simulated phone's layout seed of this run."""
    sampling_seed: int | None = None
    """The sampling seed of this run (see ``EvalConfig.sampling_seed``)."""
    node: str | None = None
    """Which machine ran the episode: the Ray node id on a cluster (``--ray``), None in this process."""
    host: str | None = None
    """That node's IP address (None in this process)."""

    @property
    def errored(self) -> bool:
        return self.error is not None or self.end_reason == EndReason.ERROR.value


@dataclass
class EvalResult:
    results: list[ScenarioResult]
    out: Path
    duration_s: float

    @property
    def passed(self) -> int:
        return sum(r.success for r in self.results)

    @property
    def success_rate(self) -> float:
        return self.passed / len(self.results) if self.results else 0.0

    def summary(self) -> dict[str, Any]:
        scores: dict[str, Any] = {}
        for convention in CONVENTIONS:
            per = [r.scores[convention] for r in self.results if convention in r.scores]
            steps = sum(p["steps"] for p in per)
            scores[convention] = {
                "steps": steps,
                "type_accuracy": _weighted(per, "type_accuracy", "steps"),
                "grounding_accuracy": _weighted(per, "grounding_accuracy", "grounded_steps"),
                "step_success_rate": _weighted(per, "step_success_rate", "steps"),
            }
        groups: dict[str, list[bool]] = {}
        for r in self.results:
            groups.setdefault(r.scenario or r.name, []).append(r.success)
        overall = pooled(groups.values())
        summary: dict[str, Any] = {
            "scenarios": len(self.results),
            "passed": self.passed,
            "failed": len(self.results) - self.passed,
            "errors": sum(r.errored for r in self.results),
            "success_rate": self.success_rate,
            "interval_95": list(overall.interval),
            "duration_s": self.duration_s,
            "scores": scores,
        }
        if any(len(g) > 1 for g in groups.values()):
            summary["repeats"] = {
                "pooled": overall.as_dict(),
                "per_scenario": {name: repeat_stats(g).as_dict() for name, g in groups.items()},
            }
        return summary


def _weighted(items: list[dict[str, Any]], key: str, weight: str) -> float | None:
    pairs = [(i[key], i[weight]) for i in items if i.get(key) is not None and i.get(weight)]
    total = sum(w for _, w in pairs)
    return sum(v * w for v, w in pairs) / total if total else None


# --- one scenario -------------------------------------------------------------------------


def _device_name(scenario: Scenario, override: str | None) -> str:
    return override if override is not None and scenario.device.is_phone else scenario.device.kind


def _check_data(result: CheckResult) -> dict[str, Any]:
    """One check's verdict in results.json: what was asked, the status, what was seen and where."""
    return {
        "check": result.check.describe(),
        "passed": result.passed,
        "status": result.status,
        "detail": result.detail,
        "source": result.source,
    }


def _with_seed(scenario: Scenario, seed: int | None) -> Scenario:
    if seed is None or scenario.device.kind != "sim":
        return scenario
    device = scenario.device.model_copy(update={"options": {**scenario.device.options, "seed": seed}})
    return scenario.model_copy(update={"device": device})


@dataclass(frozen=True)
class _Job:
    """One run of one scenario: its repeat number and (on the simulated phone) its layout seed."""

    scenario: Scenario
    base: str
    repeat: int
    seed: int | None
    sampling_seed: int = 0


def _jobs(scenarios: Sequence[Scenario], config: EvalConfig) -> list[_Job]:
    """Each scenario ``repeats`` times; repeat r of a sim scenario on layout seed (override or own) + r."""
    jobs: list[_Job] = []
    for scenario in scenarios:
        own = scenario.device.options.get("seed", 0) if scenario.device.kind == "sim" else None
        base_seed = config.layout_seed if config.layout_seed is not None and own is not None else own
        for repeat in range(config.repeats):
            seed = base_seed + repeat if isinstance(base_seed, int) else None
            run = _with_seed(scenario, seed if (config.layout_seed is not None or repeat) else None)
            if config.repeats > 1:
                run = run.model_copy(update={"name": f"{scenario.name}.r{repeat}"})
            jobs.append(_Job(run, scenario.name, repeat, seed, config.sampling_seed + repeat))
    return jobs


def _step_scores(scenario: Scenario, episode: Episode) -> dict[str, dict[str, Any]]:
    if not scenario.gold:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for convention in CONVENTIONS:
        scores: list[StepScore] = []
        for index, gold in enumerate(scenario.gold):
            if index >= len(episode.steps):
                break
            record = episode.steps[index]
            size = record.frame.size
            pixels = gold.annotations if convention == "aitw" and gold.annotations else [gold.box] if gold.box else []
            boxes = [Box.from_pixels(*b, size[0], size[1]) for b in pixels]
            scores.append(score_step(record.action, gold.action, size, boxes=boxes, convention=convention))
        summary = summarize(scores).as_dict()
        # Missing steps (the episode stopped early) count as wrong: divide by the gold length.
        summary["gold_steps"] = len(scenario.gold)
        summary["matched_steps"] = sum(s.success for s in scores)
        out[convention] = summary
    return out


def _totals(episode: Episode) -> tuple[dict[str, float], dict[str, float]]:
    timings = {
        "duration_s": episode.duration_s,
        "capture_s": sum(s.capture_s for s in episode.steps),
        "model_s": sum(s.model_s for s in episode.steps),
        "execute_s": sum(s.execute_s for s in episode.steps),
    }
    tokens: dict[str, float] = {}
    for step in episode.steps:
        for key, value in step.decision.usage.items():
            if key.endswith("tokens"):
                tokens[key] = tokens.get(key, 0.0) + float(value)
    return timings, tokens


class _LetFramesGo(Hook):
    """The last hook of an evaluated episode: once every hook has seen a step (the recorder has put its
    frame on disk), the step's record keeps a thumbnail of its screen instead of the screen itself.

    An evaluation reads only a finished step's action and logical size; a phone screen is ~10 MB, and
    eight long episodes each holding all of theirs were most of the memory of ``-j 8``. The screens the
    model may still be shown stay, held by the episode's memory."""

    side = 128

    def on_step(self, episode: Episode, record: StepRecord, after: Frame) -> None:
        image = record.frame.image
        factor = max(1, -(-max(image.size) // self.side))
        record.frame = dataclasses.replace(record.frame, image=image.reduce(factor))


class _Runner:
    def __init__(self, config: EvalConfig) -> None:
        self.config = config
        self.stop = threading.Event()
        self._desktop = threading.Lock()
        self.pool: DevicePool | None = None
        """The devices phone scenarios take turns on (``config.devices``); None: each scenario's own."""
        self._shared: Policy | None = None
        self._shared_lock = threading.Lock()

    def policy_for(self, scenario: Scenario, run_dir: Path, device: ScenarioDevice) -> Policy:
        config = self.config
        if config.policy_factory is not None:
            return config.policy_factory(scenario)
        if config.policy == "scripted":
            if not scenario.gold:
                raise ConfigError(f"{scenario.source}: the scripted policy needs gold steps in the scenario")
            heal = config.heal
            if heal is not None and not isinstance(heal, Policy):
                heal = heal(device)
            ui = device.driver if isinstance(device.driver, StateReader) else None
            return ReplayPolicy(
                scenario.gold,
                heal=heal,
                report_dir=run_dir / "divergence",
                expected_frames=scenario.frames_dir,
                ui=ui,
            )
        self.open_shared()
        assert self._shared is not None
        return self._shared

    def secrets_for(self, scenario: Scenario) -> Secrets:
        own = Secrets.from_env(n for n in scenario.secrets if n not in self.config.secrets.names)
        return self.config.secrets.merged(own)

    @property
    def shared(self) -> Policy | None:
        """The one model policy every scenario shares (None with the scripted policy or a factory)."""
        return self._shared

    def open_shared(self) -> None:
        """Load the shared model policy now, so a wrong name or model fails once, before any scenario."""
        config = self.config
        if config.policy_factory is None and config.policy != "scripted":
            with self._shared_lock:
                if self._shared is None:
                    from vlagent.policies.registry import open_policy

                    policy = open_policy(config.policy, **config.policy_options)
                    # concurrent episodes share one model: gather their steps into batched calls
                    self._shared = BatchingPolicy(policy, max_batch=config.jobs) if config.jobs > 1 else policy

    def _memory(self, policy: Policy | None = None) -> TrajectoryMemory | None:
        """A fresh memory per episode; None: the default one."""
        if isinstance(policy, ReplayPolicy):
            # A replay never shows the model earlier screens (nor does its heal policy, asked about the
            # current screen alone): keeping the last three (~10 MB each) would only cost memory.
            return TrajectoryMemory(MemoryConfig(max_images=1))
        # --max-images, --max-tokens, --max-pixels, --history, --no-history-reuse
        return TrajectoryMemory(memory_config(self.config.policy_options))

    def run(self, job: _Job) -> ScenarioResult:
        try:
            if self.pool is None or not job.scenario.device.is_phone:
                # no pool: a phone scenario on the one given device (a cluster node's), else its own
                return self._run(job, self.config.device if job.scenario.device.is_phone else None)
            with self.pool.lease(self.stop) as lease:  # waits for a free device; PoolEmptyError when none is left
                if lease.device is None:
                    return self._not_run(job, "stopped while waiting for a free device")
                result = self._run(job, lease.device)
                lease.failed, lease.error = result.errored, f"{result.name}: {result.error or result.detail}"
                return result
        except PoolEmptyError as exc:
            log.warning("scenario %s could not run: %s", job.scenario.name, exc)
            return self._failed(job, "pool", str(exc), time.time())
        finally:
            # A finished episode's frames must leave memory now, not at the collector's next full
            # pass: objects in reference cycles (a phone's screens and their handlers) wait for it.
            gc.collect()

    def _not_run(self, job: _Job, detail: str) -> ScenarioResult:
        """A scenario stopped before it began: interrupted (a resumed evaluation runs it)."""
        result = self._failed(job, _device_name(job.scenario, None), detail, time.time())
        result.end_reason, result.error = EndReason.INTERRUPTED.value, None
        return result

    def _failed(self, job: _Job, device_name: str, error: str, started: float) -> ScenarioResult:
        scenario = job.scenario
        return ScenarioResult(
            scenario.name, scenario.source, scenario.task, device_name, False, EndReason.ERROR.value,
            error, 0, [], {"duration_s": time.time() - started}, {}, {}, None, str(self.config.out / scenario.name),
            error=error, scenario=job.base, repeat=job.repeat, seed=job.seed, sampling_seed=job.sampling_seed,
        )  # fmt: skip

    def _run(self, job: _Job, override: str | None) -> ScenarioResult:
        """One scenario; ``override`` is the device taken from the pool for a phone scenario."""
        scenario = job.scenario
        run_dir = self.config.out / scenario.name
        device_name = _device_name(scenario, override)
        lock: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
        if scenario.device.kind == SAMPLE_DESKTOP:
            lock = self._desktop
        started = time.time()
        try:
            secrets = self.secrets_for(scenario)
            with lock, open_scenario_device(scenario, run_dir / "device", override) as device:
                policy = self.policy_for(scenario, run_dir, device)
                recorder = Recorder(run_dir, image_format="jpeg", meta={"scenario": scenario.name})
                episode = run_episode(
                    scenario.task,
                    device.driver,
                    policy,
                    max_steps=scenario.max_steps,
                    memory=self._memory(policy),
                    hooks=[recorder, _LetFramesGo()],  # last: every other hook sees the whole screen
                    secrets=secrets,
                    stop=self.stop,
                    seed=job.sampling_seed,
                )
                checks = device.judge(scenario.success) if episode.end is not EndReason.INTERRUPTED else []
        except Exception as exc:  # whatever one scenario does, the others and the results file go on
            error = scrub(str(exc) if isinstance(exc, VlagentError) else f"{type(exc).__name__}: {exc}")
            log.warning("scenario %s could not run: %s", scenario.name, error)
            log.debug("the exception that stopped scenario %s", scenario.name, exc_info=True)
            return self._failed(job, device_name, error, started)
        timings, tokens = _totals(episode)
        replay = None
        if isinstance(policy, ReplayPolicy):
            result = policy.result
            replay = {
                "status": result.status,
                "healed": result.healed,
                "outcomes": [
                    {"step": o.index, "status": o.status, "distance": o.distance, "detail": o.detail}
                    for o in result.outcomes
                    if o.status != "exact" or o.distance is not None
                ],
                "divergence_report": str(result.report.relative_to(self.config.out)) if result.report else None,
            }
        return ScenarioResult(
            name=scenario.name,
            source=scenario.source,
            task=scenario.task,
            device=device_name,
            # a crashed or stopped episode never passes, even where the state happens to match
            success=bool(checks) and all(c.passed for c in checks) and episode.end not in _BROKEN,
            end_reason=episode.end.value if episode.end else EndReason.ERROR.value,
            detail=episode.detail,
            steps=len(episode.steps),
            checks=[_check_data(c) for c in checks],
            timings=timings,
            tokens=tokens,
            scores=_step_scores(scenario, episode),
            replay=replay,
            run_dir=str(run_dir),
            scenario=job.base,
            repeat=job.repeat,
            seed=job.seed,
            sampling_seed=job.sampling_seed,
        )


@contextlib.contextmanager
def _display_for(scenarios: Sequence[Scenario]) -> Iterator[None]:
    """A private Xvfb screen when desktop scenarios must run and no display is set."""
    if os.environ.get("DISPLAY") or not any(s.device.kind == SAMPLE_DESKTOP for s in scenarios):
        yield
        return
    from vlagent.drivers.xvfb import VirtualDisplay, xvfb_available

    if not xvfb_available():
        yield  # the desktop scenarios will report the missing display as their error
        return
    display = VirtualDisplay(1280, 800, 24).start()
    saved = {key: os.environ.get(key) for key in display.env}
    os.environ.update(display.env)
    try:
        yield
    finally:
        display.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


EvalJob = _Job
"""One run of one scenario (what an :class:`Executor` is handed)."""
EvalRunner = _Runner
"""Runs one :data:`EvalJob` in this process (``runner.run(job)``); ``runner.stop`` ends running episodes."""


class Executor(Protocol):
    """Where the episodes run: threads of this process (:class:`ThreadExecutor`) or elsewhere, e.g. a
    Ray cluster (:mod:`vlagent.distributed`).

    ``execute`` runs every job and hands each result to ``deliver`` in the calling thread as soon as
    it is there, its run directory already under ``runner.config.out``. On KeyboardInterrupt it ends
    or abandons the running episodes, delivers those that finished and raises KeyboardInterrupt."""

    def execute(
        self, jobs: Sequence[EvalJob], runner: EvalRunner, deliver: Callable[[ScenarioResult], None]
    ) -> None: ...


class ThreadExecutor:
    """``runner.config.jobs`` episodes at a time on threads of this process (the default)."""

    def execute(self, jobs: Sequence[EvalJob], runner: EvalRunner, deliver: Callable[[ScenarioResult], None]) -> None:
        pool = ThreadPoolExecutor(max_workers=runner.config.jobs, thread_name_prefix="eval")
        futures = [pool.submit(runner.run, job) for job in jobs]
        interrupted = False
        delivered = 0
        try:
            for future in futures:
                deliver(future.result())
                delivered += 1
        except KeyboardInterrupt:
            interrupted = True
            runner.stop.set()  # running episodes end before their next action
            log.warning("interrupted: stopping the running scenarios and writing the results so far")
            pool.shutdown(wait=True, cancel_futures=True)
            for future in futures[delivered:]:
                if future.done() and not future.cancelled() and future.exception() is None:
                    deliver(future.result())
            raise
        finally:
            pool.shutdown(wait=not interrupted, cancel_futures=True)


_WRITE_EVERY_S = 2.0
"""results.json and junit.xml are rewritten at most this often while results arrive (and at the end)."""


def evaluate(
    scenarios: Sequence[Scenario],
    config: EvalConfig,
    *,
    on_result: Callable[[ScenarioResult], None] | None = None,
    executor: Executor | None = None,
) -> EvalResult:
    """Run ``scenarios`` and write results.json, junit.xml and report.html into ``config.out``.

    One evaluation writes into ``out`` at a time (a second one is refused while the first runs).
    Every scenario started gets an entry, whatever it raised. On Ctrl-C (KeyboardInterrupt) the
    running episodes stop before their next action, the results so far are written with
    ``"interrupted": true`` in the summary, and the KeyboardInterrupt goes on up.
    """
    runner = _Runner(config)
    if not getattr(executor, "serves_policy", False):  # an executor may load the model where it runs it
        runner.open_shared()  # raises a ConfigError/ModelError before anything is written
    if config.devices and any(s.device.is_phone for s in scenarios):
        if executor is None or isinstance(executor, ThreadExecutor):
            runner.pool = DevicePool.open(config.devices)  # adb:* listed, adb:HOST:PORT joined: or a ConfigError now
        elif config.device is None or config.device.startswith("adb:*"):
            raise ConfigError(
                "on a cluster, phone scenarios run on one --device adb:SERIAL (the node that advertises it); "
                "a pool of several phones or adb:* is for a run on this machine"
            )
    jobs = _jobs(scenarios, config)
    runs = [job.scenario for job in jobs]
    with contextlib.ExitStack() as held:
        held.enter_context(_claim(config.out))
        kept = _previous_results(runs, config)
        started = time.perf_counter()
        results: dict[str, ScenarioResult] = dict(kept)
        todo = [job for job in jobs if job.scenario.name not in kept]
        held.enter_context(_display_for([job.scenario for job in todo]))
        interrupted = False
        written = time.monotonic()

        def outputs(final: bool = True) -> EvalResult:
            ordered = [results[s.name] for s in runs if s.name in results]
            evaluation = EvalResult(ordered, config.out, time.perf_counter() - started)
            summary = evaluation.summary()
            summary["interrupted"] = interrupted
            summary["not_run"] = [s.name for s in runs if s.name not in results]
            if not final:
                summary["in_progress"] = True  # written while the rest runs; the last write drops it
            payload = {
                "summary": summary,
                "config": pinned_config(config, runner.shared),
                "scenarios": [asdict(r) for r in ordered],
            }
            if runner.pool is not None:
                payload["pool"] = runner.pool.report()
            write_text_atomically(config.out / "results.json", json.dumps(payload, indent=1, ensure_ascii=False))
            write_junit(evaluation, config.out / "junit.xml")
            return evaluation

        def deliver(result: ScenarioResult) -> None:
            nonlocal written
            results[result.name] = result
            if on_result is not None:
                on_result(result)
            if time.monotonic() - written >= _WRITE_EVERY_S:  # what finished is on disk while the rest runs
                outputs(final=False)
                written = time.monotonic()

        try:
            (executor or ThreadExecutor()).execute(todo, runner, deliver)
        except KeyboardInterrupt:
            interrupted = True
        evaluation = outputs()
        from vlagent.report import write_eval_report

        write_eval_report(config.out)
    log.info("%d/%d scenarios passed; results in %s", evaluation.passed, len(evaluation.results), config.out)
    if interrupted:
        raise KeyboardInterrupt
    return evaluation


_LOCK_FILE = ".vlagent-eval.lock"
_OUTPUTS = ("results.json", "junit.xml", "report.html")


@contextlib.contextmanager
def _claim(out: Path) -> Iterator[None]:
    """Hold ``out`` for one evaluation: a lock the kernel drops when this process ends, however it ends."""
    import fcntl

    try:
        out.mkdir(parents=True, exist_ok=True, mode=0o700)
        handle = (out / _LOCK_FILE).open("a+", encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot write the evaluation into {out}: {exc.strerror or exc}") from exc
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise OutputError(f"{out} is being written by another evaluation ({holder}); use another --out") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _previous_results(scenarios: Sequence[Scenario], config: EvalConfig) -> dict[str, ScenarioResult]:
    """What ``out`` already holds, as ``config.existing`` says to treat it; the finished results to keep."""
    out = config.out
    taken = [s.name for s in scenarios if (out / s.name).exists() and any((out / s.name).iterdir())]
    earlier = [name for name in _OUTPUTS if (out / name).exists()]
    if not taken and not earlier:
        return {}
    if config.existing == "refuse":
        what = f"runs of {', '.join(taken[:3])}{' ...' if len(taken) > 3 else ''}" if taken else ", ".join(earlier)
        raise OutputError(
            f"{out} already holds an evaluation ({what}); --resume finishes it, --overwrite replaces it, "
            "or choose another --out"
        )
    kept: dict[str, ScenarioResult] = {}
    if config.existing == "resume":
        kept = {name: r for name, r in _load_results(out / "results.json").items() if name in taken}
    for name in taken:
        if name not in kept:
            shutil.rmtree(out / name)
    log.info("%s: keeping %d finished scenario(s), running %d", out, len(kept), len(scenarios) - len(kept))
    return kept


def _load_results(path: Path) -> dict[str, ScenarioResult]:
    """The finished (not interrupted) scenario results of an earlier results.json; {} when unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        items = data["scenarios"]
        results = [ScenarioResult(**item) for item in items]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s cannot be resumed from (%s); its scenarios run again", path, exc)
        return {}
    return {r.name: r for r in results if r.end_reason != EndReason.INTERRUPTED.value}


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` scrubbed of secrets, atomically: a reader (or a full disk) never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        tmp.write_text(scrub(text), encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _check_line(check: dict[str, Any]) -> str:
    """``check (status: detail) [source]``, for JUnit messages."""
    status = check.get("status") or ("passed" if check["passed"] else "failed")
    detail = f"{status}: {check['detail']}" if check["detail"] else status
    source = f" [{check['source']}]" if check.get("source") else ""
    return f"{check['check']} ({detail}){source}"


def write_junit(evaluation: EvalResult, path: Path) -> None:
    """JUnit XML: one testcase per scenario; a failed check is a failure, a run that broke an error."""
    failures = sum(not r.success and not r.errored for r in evaluation.results)
    errors = sum(not r.success and r.errored for r in evaluation.results)
    attrs = {
        "name": "vlagent-eval",
        "tests": str(len(evaluation.results)),
        "failures": str(failures),
        "errors": str(errors),
        "skipped": "0",
        "time": f"{evaluation.duration_s:.3f}",
    }
    suites = ET.Element("testsuites", attrs)
    suite = ET.SubElement(suites, "testsuite", attrs)
    for r in evaluation.results:
        case = ET.SubElement(
            suite,
            "testcase",
            {"classname": f"scenarios.{r.device}", "name": r.name, "time": f"{r.timings.get('duration_s', 0.0):.3f}"},
        )
        if r.success:
            continue
        failed = [_check_line(c) for c in r.checks if not c["passed"]]
        text = "\n".join([f"end: {r.end_reason} {r.detail}".strip(), *failed])
        kind = "error" if r.errored else "failure"
        message = r.error or (f"{len(failed)} check(s) failed: " + "; ".join(failed))
        ET.SubElement(case, kind, {"message": message[:500], "type": r.end_reason}).text = text
        ET.SubElement(case, "system-out").text = f"run: {r.run_dir}"
    ET.indent(suites)
    write_text_atomically(path, "<?xml version='1.0' encoding='utf-8'?>\n" + ET.tostring(suites, encoding="unicode"))
