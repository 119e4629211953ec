"""The in-process model served from Ray actors, one per GPU, batching the steps of the episodes it serves.

``--ray ADDRESS --model-actors N``: instead of every episode task loading the model, N actors
(``num_gpus=1`` each where the cluster has GPUs) each load it once and answer ``decide``
calls from any node; concurrent calls gather into batched ``decide_batch`` calls
(:class:`~vlagent.policies.batching.BatchingPolicy`). An episode's policy is a thin
:class:`ActorPolicy` that resolves memory's image choice on its own node and sends the
observation to the actors in turn.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
from collections.abc import Sequence
from typing import Any

from vlagent.errors import ModelError, PolicyBackendError
from vlagent.policies.base import Decision, Observation, decide_each

__all__ = ["ActorFactory", "ActorPolicy", "ModelServer"]


class ModelServer:
    """A Ray actor's body: one loaded policy behind a BatchingPolicy; counts what it served."""

    def __init__(self, policy: str, options: dict[str, object], max_batch: int) -> None:
        from vlagent.policies.batching import BatchingPolicy
        from vlagent.policies.registry import open_policy

        self.policy = BatchingPolicy(open_policy(policy, **options), max_batch=max_batch)
        self.calls = 0
        self._lock = threading.Lock()

    def ready(self) -> str:
        return self.policy.name

    def decide(self, observation: Observation) -> Decision:
        with self._lock:
            self.calls += 1
        return self.policy.decide(observation)

    def stats(self) -> dict[str, object]:
        return {"calls": self.calls, "batch_sizes": list(self.policy.batch_sizes)}


class ActorPolicy:
    """A policy whose every decision is made by one of ``actors`` (Ray actor handles of ModelServer)."""

    def __init__(self, actors: Sequence[Any], name: str) -> None:
        if not actors:
            raise ValueError("ActorPolicy needs at least one actor")
        self.actors = list(actors)
        self.name = name
        self._turn = itertools.count()

    def decide(self, observation: Observation) -> Decision:
        import ray

        # memory's choice holds this process's memory: resolve it here, send plain frames
        sent = dataclasses.replace(observation, images=observation.prompt_images, choice=None)
        actor = self.actors[next(self._turn) % len(self.actors)]
        try:
            decision: Decision = ray.get(actor.decide.remote(sent))
        except ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, ModelError):
                raise exc.cause from None
            raise PolicyBackendError(f"the model actor failed: {type(exc.cause).__name__}: {exc.cause}") from None
        except ray.exceptions.RayError as exc:  # the actor or its node died
            raise PolicyBackendError(f"the model actor is gone: {type(exc).__name__}") from None
        return decision

    def decide_batch(self, observations: Sequence[Observation]) -> list[Decision | ModelError]:
        return decide_each(self, observations)  # the actor batches across episodes; one call per step here


@dataclasses.dataclass(frozen=True)
class ActorFactory:
    """``policy_factory`` of an evaluation whose model lives in ``actors``."""

    actors: tuple[Any, ...]
    name: str

    def __call__(self, scenario: object) -> ActorPolicy:
        return ActorPolicy(self.actors, self.name)
