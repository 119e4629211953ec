"""BatchingPolicy: concurrent episodes' steps reach the model as batches, answers go back row by row."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from policy_helpers import BUDGET, PolicyFactory

from vlagent.actions import Done, Step, Wait
from vlagent.agent import EndReason, Episode, run_episode
from vlagent.drivers.sim import SimDriver
from vlagent.errors import InvalidModelOutput, ModelError
from vlagent.memory import MemoryConfig, TrajectoryMemory
from vlagent.policies.base import Decision, Observation
from vlagent.policies.batching import BatchingPolicy


class _CountingModel:
    """Answers wait/done by step index and records the batches it was asked; refuses to be called concurrently."""

    name = "counting"

    def __init__(self, bad_task: str | None = None) -> None:
        self.batches: list[int] = []
        self.bad_task = bad_task
        self._busy = threading.Lock()

    def decide(self, observation: Observation) -> Decision:
        return self.decide_batch([observation])[0]  # type: ignore[return-value]

    def decide_batch(self, observations: Sequence[Observation]) -> list[Decision | ModelError]:
        assert self._busy.acquire(blocking=False), "called concurrently"
        try:
            self.batches.append(len(observations))
            out: list[Decision | ModelError] = []
            for obs in observations:
                if obs.task == self.bad_task and obs.feedback is None:
                    out.append(InvalidModelOutput("not JSON", raw="hmm"))
                else:
                    action = Done() if obs.step_index >= 2 else Wait(seconds=0)
                    out.append(Decision(step=Step(action=action)))
            return out
        finally:
            self._busy.release()


def _run_concurrently(policy: BatchingPolicy, tasks: list[str]) -> list[object]:
    episodes: list[object] = [None] * len(tasks)

    def one(i: int) -> None:
        with SimDriver() as sim:
            episodes[i] = run_episode(tasks[i], sim, policy, max_steps=5)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(tasks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return episodes


def test_concurrent_episodes_are_batched() -> None:
    model = _CountingModel()
    policy = BatchingPolicy(model, max_batch=4, window=0.5)
    episodes = _run_concurrently(policy, [f"task {i}" for i in range(4)])
    assert all(e.end is EndReason.DONE_SUCCESS and len(e.steps) == 3 for e in episodes)  # type: ignore[attr-defined]
    assert sum(model.batches) == 12 and max(model.batches) > 1
    assert len(model.batches) < 12


def test_an_invalid_answer_reaches_only_its_episode() -> None:
    model = _CountingModel(bad_task="task 1")
    episodes = _run_concurrently(BatchingPolicy(model, max_batch=3, window=0.5), ["task 0", "task 1", "task 2"])
    # task 1 gets its first answer of every step (3 steps) rejected, the others none
    assert [e.invalid_outputs for e in episodes] == [0, 3, 0]  # type: ignore[attr-defined]
    assert all(e.end is EndReason.DONE_SUCCESS for e in episodes)  # type: ignore[attr-defined]


def test_a_crash_in_the_model_reaches_every_waiting_episode() -> None:
    class Broken(_CountingModel):
        def decide_batch(self, observations: Sequence[Observation]) -> list[Decision | ModelError]:
            raise RuntimeError("out of memory")

    policy = BatchingPolicy(Broken(), max_batch=2, window=0.2)
    with SimDriver() as sim:
        episode = run_episode("x", sim, policy)
    assert episode.end is EndReason.ERROR and "out of memory" in episode.detail


class _AheadModel(_CountingModel):
    """Also works ahead for batches; records their sizes, and refuses to run beside a decision."""

    def __init__(self) -> None:
        super().__init__()
        self.ahead: list[list[int]] = []

    def prefetch_batch(self, observations: Sequence[Observation]) -> list[int]:
        assert self._busy.acquire(blocking=False), "called concurrently"
        try:
            self.ahead.append([obs.step_index for obs in observations])
            return [1] * len(observations)
        finally:
            self._busy.release()


def test_work_ahead_of_concurrent_episodes_is_batched_apart_from_decisions() -> None:
    model = _AheadModel()
    episodes = _run_concurrently(BatchingPolicy(model, max_batch=4, window=0.5), [f"task {i}" for i in range(4)])
    assert all(e.end is EndReason.DONE_SUCCESS and len(e.steps) == 3 for e in episodes)  # type: ignore[attr-defined]
    # After steps 1 and 2 of each episode (not after its last, done): the next step's observation.
    assert sorted(i for batch in model.ahead for i in batch) == [1] * 4 + [2] * 4
    assert max(len(batch) for batch in model.ahead) > 1 and sum(model.batches) == 12


def test_a_policy_that_cannot_work_ahead_in_batches_is_not_asked() -> None:
    model = _CountingModel()
    policy = BatchingPolicy(model, max_batch=2, window=0.1)
    with SimDriver() as sim:
        assert policy.prefetch(Observation("x", sim.screenshot(), sim.capabilities, 1)) == 0
    assert model.batches == []


@pytest.mark.model
def test_batched_episodes_of_the_tiny_model_compute_only_their_screen(tiny_policy: PolicyFactory) -> None:
    """Through BatchingPolicy, each episode's next prompt start is computed ahead in batches."""
    policy = BatchingPolicy(tiny_policy(max_pixels=BUDGET), max_batch=3, window=0.3)
    episodes: list[Episode] = []
    lock = threading.Lock()

    def one(seed: int) -> None:
        memory = TrajectoryMemory(
            MemoryConfig(max_pixels=BUDGET, max_tokens=4 * 96, max_images=4, min_history_tokens=4)
        )
        with SimDriver(seed=seed) as sim:
            episode = run_episode("open the settings", sim, policy, max_steps=4, memory=memory)
        with lock:
            episodes.append(episode)

    threads = [threading.Thread(target=one, args=(seed,)) for seed in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert len(episodes) == 3
    for episode in episodes:
        assert len(episode.steps) == 4, episode.detail
        for step in episode.steps[1:]:
            usage, selection = step.decision.usage, step.selection
            assert selection is not None and len(selection["images"]) >= 2
            assert usage["encoded_visual_tokens"] == selection["images"][-1]["tokens"]
            assert usage["history_tokens_reused"] > sum(i["tokens"] for i in selection["images"][:-1])


@pytest.mark.model
def test_eval_with_jobs_batches_the_tiny_model(tmp_path: Path, tiny_qwen2vl: Path) -> None:
    from vlagent.evaluate import EvalConfig, evaluate
    from vlagent.scenario import load_scenarios

    scenarios = Path(__file__).resolve().parents[2] / "scenarios"
    chosen = load_scenarios(sorted(scenarios.glob("sim-*.yaml"))[:3])
    options = {"model": str(tiny_qwen2vl), "max_pixels": 64 * 28 * 28, "max_thought_chars": 20, "max_string_chars": 12}
    result = evaluate(chosen, EvalConfig(out=tmp_path, policy="qwen2vl", policy_options=options, jobs=3))
    assert len(result.results) == 3
    for item in result.results:
        assert item.error is None, item.error
        assert item.steps >= 1
