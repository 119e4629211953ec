"""Step-level evaluation on published phone datasets (AITW, AndroidControl), teacher-forced.

``evaluate_steps(config)`` reads a dataset's TFRecord files (:mod:`vlagent.datasets`), asks
the policy for every step of every episode, and scores each answer by the dataset's
reference rules. Each step is asked on the dataset's own screenshot with the *gold* history
before it (the earlier gold actions as :class:`~vlagent.memory.HistoryEntry` lines and
memory's choice of earlier screenshots), whatever the policy answered before: the numbers
are per step, as the published AITW and AndroidControl tables are. Each step is asked once;
an answer that does not parse counts as wrong, as in those tables.

The task shown is the episode's goal; with ``level="low"`` (AndroidControl) the step's own
instruction follows it on a second line (``Current step: ...``). The ``gold`` policy answers
the gold action itself (it must score 100%: a check of the reading and the scoring). Writes
into ``out``::

    results.json   summary per convention and per gold action type, episodes, pinned configuration
    steps.jsonl    one line per step: gold, prediction, match per convention, raw answer
    report.html    the summary and the steps, one page

This module must not parse dataset files or compare actions itself.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import IO, Literal

from vlagent.capabilities import PHONE_CAPABILITIES
from vlagent.datasets import (
    DATASETS,
    MAX_RECORD_BYTES,
    DatasetEpisode,
    DatasetName,
    DatasetStep,
    conventions_of,
    read_dataset,
)
from vlagent.errors import ConfigError, ModelError, OutputError
from vlagent.evaluate import EvalConfig, write_text_atomically
from vlagent.memory import HistoryEntry, MemoryConfig, TrajectoryMemory
from vlagent.memory import memory_config as _options_memory
from vlagent.pinned import pinned_config
from vlagent.policies.base import Decision, Observation, Policy
from vlagent.policies.scripted import ScriptedPolicy
from vlagent.report import write_steps_report
from vlagent.scoring import Convention, StepScore, summarize
from vlagent.secrets import scrub

__all__ = ["GOLD_POLICIES", "Level", "StepEvalConfig", "StepEvalResult", "StepOutcome", "evaluate_steps"]

log = logging.getLogger(__name__)

Level = Literal["high", "low"]
#: Policy names that answer each step's gold action (``auto``: the default of ``eval-steps``).
GOLD_POLICIES = ("gold", "oracle", "auto")
_OUTPUTS = ("results.json", "steps.jsonl", "report.html")

PolicyFactory = Callable[[DatasetEpisode], Policy]


@dataclass(frozen=True)
class StepEvalConfig:
    """What to evaluate on which files, with which policy, written where."""

    dataset: DatasetName
    files: Sequence[Path]
    out: Path
    policy: str = "gold"
    policy_options: Mapping[str, object] = field(default_factory=dict)
    level: Level = "high"
    max_episodes: int | None = None
    episode_ids: frozenset[str] | None = None
    """Only these episodes (e.g. a published split's test ids, :func:`~vlagent.datasets.read_split`)."""
    batch: int = 1
    """Steps of one episode asked in one ``decide_batch`` call."""
    overwrite: bool = False
    policy_factory: PolicyFactory | None = None
    """Build the policy per episode (overrides ``policy``), e.g. for tests."""
    max_record_bytes: int = MAX_RECORD_BYTES

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ConfigError(f"unknown dataset {self.dataset!r}: use one of {', '.join(DATASETS)}")
        if self.level not in ("high", "low"):
            raise ConfigError(f"--level must be high or low, got {self.level!r}")
        if self.level == "low" and self.dataset != "androidcontrol":
            raise ConfigError("--level low needs step instructions, which only AndroidControl has")
        if not self.files:
            raise ConfigError("no dataset files given")
        if self.batch < 1:
            raise ConfigError(f"--batch must be at least 1, got {self.batch}")
        if self.max_episodes is not None and self.max_episodes < 1:
            raise ConfigError(f"--max-episodes must be at least 1, got {self.max_episodes}")

    @property
    def conventions(self) -> tuple[Convention, ...]:
        return conventions_of(self.dataset)


@dataclass(frozen=True)
class StepOutcome:
    """One asked and scored step: a line of steps.jsonl."""

    step: DatasetStep
    decision: Decision | None
    error: str | None
    scores: Mapping[Convention, StepScore]
    model_s: float

    def as_dict(self, level: Level) -> dict[str, object]:
        step, action = self.step, self.decision.action if self.decision else None
        raw = self.decision.raw if self.decision else self.error or ""
        return {
            "episode": step.episode_id,
            "step": step.index,
            "source": step.source,
            "kind": step.kind,
            "goal": step.goal,
            "instruction": step.instruction if level == "low" else None,
            "gold": step.native(),
            "gold_action": step.gold.model_dump(mode="json"),
            "predicted": action.model_dump(mode="json") if action is not None else None,
            "predicted_native": step.predicted_native(action) if action is not None else None,
            "thought": self.decision.step.thought if self.decision else None,
            "match": {c: _match(s) for c, s in self.scores.items()},
            "raw": raw,
            "error": self.error,
            "model_s": round(self.model_s, 4),
            "usage": dict(self.decision.usage) if self.decision else {},
        }


def _match(score: StepScore) -> dict[str, object]:
    return {
        "type": score.type_match,
        "grounding": score.grounding,
        "text": score.text_match,
        "success": score.success,
        "detail": score.detail,
    }


@dataclass
class StepEvalResult:
    """What ``evaluate_steps`` wrote: the summary of results.json and where it is."""

    out: Path
    summary: dict[str, object]
    outcomes: int


def _gold_policy(episode: DatasetEpisode) -> Policy:
    policy = ScriptedPolicy([step.gold for step in episode.steps])
    policy.name = "gold"
    return policy


def _memory_config(options: Mapping[str, object]) -> MemoryConfig:
    return _options_memory(options)


def _task(step: DatasetStep, level: Level) -> str:
    if level == "high":
        return step.goal
    if step.instruction is None:
        raise ConfigError(f"{step.source}: --level low needs step_instructions, and this episode has none")
    return f"{step.goal}\nCurrent step: {step.instruction}"


class _Tally:
    """Scores as they come, for the summary."""

    def __init__(self, conventions: Sequence[Convention]) -> None:
        self.conventions = conventions
        self.scores: dict[Convention, list[StepScore]] = {c: [] for c in conventions}
        self.by_kind: dict[Convention, dict[str, list[StepScore]]] = {c: {} for c in conventions}
        self.episodes: list[dict[str, object]] = []
        self.whole: dict[Convention, int] = dict.fromkeys(conventions, 0)
        """Episodes whose every step matched, per convention."""
        self.invalid = 0
        self.model_s = 0.0
        self.tokens: dict[str, float] = {}

    def add(self, outcome: StepOutcome) -> None:
        for convention, score in outcome.scores.items():
            self.scores[convention].append(score)
            self.by_kind[convention].setdefault(outcome.step.kind, []).append(score)
        self.invalid += outcome.decision is None
        self.model_s += outcome.model_s
        for key, value in outcome.decision.usage.items() if outcome.decision else ():
            if key.endswith("tokens"):
                self.tokens[key] = self.tokens.get(key, 0.0) + float(value)

    def episode(self, episode: DatasetEpisode, outcomes: Sequence[StepOutcome]) -> None:
        matched = {c: sum(o.scores[c].success for o in outcomes) for c in self.conventions}
        for c in self.conventions:
            self.whole[c] += matched[c] == len(outcomes)
        self.episodes.append(
            {
                "episode_id": episode.episode_id,
                "goal": episode.goal,
                "source": episode.source,
                "steps": len(outcomes),
                "matched": matched,
            }
        )

    def summary(self) -> dict[str, object]:
        episodes = len(self.episodes)
        return {
            "episodes": episodes,
            "steps": len(self.scores[self.conventions[0]]),
            "invalid_answers": self.invalid,
            "model_s": round(self.model_s, 3),
            "tokens": self.tokens,
            "conventions": list(self.conventions),
            "scores": {
                c: {
                    **summarize(self.scores[c]).as_dict(),
                    "episodes": episodes,
                    "episode_success_rate": self.whole[c] / episodes if episodes else 0.0,
                }
                for c in self.conventions
            },
            "per_action_type": {
                c: {kind: summarize(items).as_dict() for kind, items in sorted(self.by_kind[c].items())}
                for c in self.conventions
            },
        }


def _ask(policy: Policy, pending: Sequence[tuple[DatasetStep, Observation]]) -> Iterator[StepOutcome]:
    started = time.perf_counter()
    try:
        answers: list[Decision | ModelError] = policy.decide_batch([obs for _, obs in pending])
    except ModelError as exc:  # the whole call failed: every step of it has no answer
        answers = [exc] * len(pending)
    each = (time.perf_counter() - started) / len(pending)
    if len(answers) != len(pending):
        raise ModelError(f"policy {policy.name!r} answered {len(answers)} of {len(pending)} steps")
    for (step, _), answer in zip(pending, answers, strict=True):
        if isinstance(answer, ModelError):
            raw = getattr(answer, "raw", "") or ""
            error = f"{type(answer).__name__}: {answer}" + (f"\nraw answer: {raw}" if raw else "")
            yield StepOutcome(step, None, error, step.score(None), each)
        else:
            yield StepOutcome(step, answer, None, step.score(answer.action), each)


def _episode_outcomes(
    episode: DatasetEpisode, policy: Policy, config: StepEvalConfig, memory_config: MemoryConfig
) -> Iterator[StepOutcome]:
    """Ask every step of ``episode`` with the gold history before it, ``config.batch`` steps a call."""
    memory = TrajectoryMemory(memory_config)
    pending: list[tuple[DatasetStep, Observation]] = []
    for step in episode.steps:
        frame = step.frame()
        choice = memory.lazy_choice(frame)
        task = _task(step, config.level)
        obs = Observation(task, frame, PHONE_CAPABILITIES, step.index, memory.history, choice=choice)
        if config.batch > 1 and policy.name != "gold":
            choice.frames()  # memory chooses now: the next steps are added to it before this one is asked
        pending.append((step, obs))
        if len(pending) >= config.batch:
            yield from _ask(policy, pending)
            pending = []
        memory.add(HistoryEntry(step.index, step.gold), frame)
    if pending:
        yield from _ask(policy, pending)


def _chosen(episodes: Iterator[DatasetEpisode], config: StepEvalConfig) -> Iterator[DatasetEpisode]:
    """The episodes to ask: those of ``episode_ids`` when given, and only those with steps."""
    for episode in episodes:
        if config.episode_ids is not None and episode.episode_id not in config.episode_ids:
            continue
        if not episode.steps:
            log.warning("%s: episode %s has no steps; skipped", episode.source, episode.episode_id)
            continue
        yield episode


def _refuse_taken(config: StepEvalConfig) -> None:
    taken = [name for name in _OUTPUTS if (config.out / name).exists()]
    if taken and not config.overwrite:
        raise OutputError(
            f"{config.out} already holds {', '.join(taken)}; --overwrite replaces it, or choose another --out"
        )
    try:
        config.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write into {config.out}: {exc.strerror or exc}") from exc


def _open_policy(config: StepEvalConfig) -> tuple[PolicyFactory, Policy | None, str]:
    """The per-episode policy factory, the shared model policy (None for gold and factories) and its name."""
    if config.policy_factory is not None:
        return config.policy_factory, None, "custom"
    if config.policy in GOLD_POLICIES:
        return _gold_policy, None, "gold"
    from vlagent.policies.registry import open_policy

    options = {k: v for k, v in config.policy_options.items() if v is not None}
    shared = open_policy(config.policy, **options)
    return (lambda _episode: shared), shared, config.policy


def evaluate_steps(config: StepEvalConfig, *, on_step: Callable[[StepOutcome], None] | None = None) -> StepEvalResult:
    """Ask and score every step of the dataset's episodes; write results.json, steps.jsonl, report.html.

    On Ctrl-C the steps so far are written, with ``"interrupted": true`` in the summary, and
    the KeyboardInterrupt goes on up. A broken file raises DatasetError (a UserError) after
    the steps read before it are written.
    """
    factory, shared, name = _open_policy(config)  # a wrong policy or model fails before anything is written
    memory_config = _memory_config(config.policy_options)
    _refuse_taken(config)
    tally = _Tally(config.conventions)
    started = time.perf_counter()
    interrupted, stopped_by = False, None
    outcomes = 0
    episodes = read_dataset(config.dataset, config.files, max_record_bytes=config.max_record_bytes)
    try:
        with (config.out / "steps.jsonl").open("w", encoding="utf-8") as lines:
            for episode in islice(_chosen(episodes, config), config.max_episodes):
                done: list[StepOutcome] = []
                policy = factory(episode)
                for outcome in _episode_outcomes(episode, policy, config, memory_config):
                    _write_line(lines, outcome.as_dict(config.level))
                    tally.add(outcome)
                    done.append(outcome)
                    outcomes += 1
                    if on_step is not None:
                        on_step(outcome)
                tally.episode(episode, done)
                lines.flush()
    except KeyboardInterrupt:
        interrupted = True
        log.warning("interrupted: writing the steps scored so far")
    except Exception as exc:  # a broken file, a failing model: what was scored is still written
        stopped_by = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        summary = {
            "dataset": config.dataset,
            "level": config.level,
            **tally.summary(),
            "duration_s": round(time.perf_counter() - started, 3),
            "interrupted": interrupted,
            "stopped_by": stopped_by,
        }
        _write_results(config, summary, tally, pinned_config(_pin_config(config, name), shared))
    if interrupted:
        raise KeyboardInterrupt
    log.info("%d steps of %d episodes scored; results in %s", outcomes, len(tally.episodes), config.out)
    return StepEvalResult(config.out, summary, outcomes)


def _pin_config(config: StepEvalConfig, name: str) -> EvalConfig:
    return EvalConfig(out=config.out, policy=name, policy_options=dict(config.policy_options))


def _write_results(config: StepEvalConfig, summary: dict[str, object], tally: _Tally, pin: dict[str, object]) -> None:
    pin.update(
        scoring=list(config.conventions),
        dataset=config.dataset,
        level=config.level,
        files=[str(p) for p in config.files],
        max_episodes=config.max_episodes,
        episode_ids=len(config.episode_ids) if config.episode_ids is not None else None,
        batch=config.batch,
    )
    payload = {"summary": summary, "config": pin, "episodes": tally.episodes}
    write_text_atomically(config.out / "results.json", json.dumps(payload, indent=1, ensure_ascii=False))
    write_steps_report(config.out)


def _write_line(handle: IO[str], data: Mapping[str, object]) -> None:
    handle.write(scrub(json.dumps(data, ensure_ascii=False)) + "\n")
