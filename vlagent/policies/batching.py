"""BatchingPolicy: many episodes on threads, one model call per batch.

Concurrent episodes (``vlagent eval --jobs N``, UI suites) each call ``decide`` from their
own thread. This wrapper gathers the observations that arrive together and hands them to
the inner policy's ``decide_batch`` in one call, so an in-process model runs one batched
generate instead of N interleaved ones (which would also race on its caches). It adds no
behaviour of its own: answers and errors are the inner policy's, row by row.

Work ahead (``prefetch``, called by the agent loop while a device acts) joins the same
batches when the inner policy can work ahead for several observations at once
(``prefetch_batch``): in a batch, the decisions are made first, so an episode waiting for
its answer never waits behind another episode's work ahead.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Protocol, runtime_checkable

from vlagent.errors import ModelError
from vlagent.policies.base import Decision, Observation, Policy

__all__ = ["BatchingPolicy"]

log = logging.getLogger(__name__)


@runtime_checkable
class _BatchPrefetcher(Protocol):
    def prefetch_batch(self, observations: Sequence[Observation]) -> list[int]: ...


class BatchingPolicy:
    """Wraps ``inner``; ``decide`` blocks until the batch its observation joined is answered.

    A batch is sent when ``max_batch`` observations are waiting or ``window`` seconds have
    passed since the first one arrived, whichever comes first.
    """

    def __init__(self, inner: Policy, *, max_batch: int = 8, window: float = 0.05) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.inner = inner
        self.name = inner.name
        self.max_batch = max_batch
        self.window = window
        self.batch_sizes: list[int] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._waiting: list[tuple[Observation, Future[Decision | ModelError]]] = []
        self._ahead: list[tuple[Observation, Future[int]]] = []
        """Work-ahead requests waiting; they ride with the next batch, after its decisions."""
        self._leader = False
        self._model = threading.Lock()  # one call into the inner policy at a time

    def decide(self, observation: Observation) -> Decision:
        future: Future[Decision | ModelError] = Future()
        self._join(lambda: self._waiting.append((observation, future)))
        result = future.result()
        if isinstance(result, ModelError):
            raise result
        return result

    def prefetch(self, observation: Observation) -> int:
        """The inner policy's work ahead for ``observation``, batched with what arrives with it
        (0 at once when the inner policy cannot work ahead for a batch)."""
        if not isinstance(self.inner, _BatchPrefetcher):
            return 0
        future: Future[int] = Future()
        self._join(lambda: self._ahead.append((observation, future)))
        return future.result()

    def _join(self, enqueue: Callable[[], None]) -> None:
        """Queue a request; the first to arrive while no batch is forming leads the next one."""
        with self._arrived:
            enqueue()
            self._arrived.notify_all()
            lead = not self._leader
            if lead:
                self._leader = True
        if lead:
            self._lead()

    def decide_batch(self, observations: Sequence[Observation]) -> list[Decision | ModelError]:
        with self._model:
            return self.inner.decide_batch(observations)

    def _lead(self) -> None:
        """The first caller of a batch waits for company, then runs the batch for everyone."""
        with self._arrived:
            self._arrived.wait_for(lambda: len(self._waiting) >= self.max_batch, timeout=self.window)
            batch, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch :]
            room = max(0, self.max_batch - len(batch)) if batch else self.max_batch
            ahead, self._ahead = self._ahead[:room], self._ahead[room:]
            self._leader = False
            if self._waiting or self._ahead:  # the rest start a new batch with a new leader
                self._leader = True
                threading.Thread(target=self._lead, name="vlagent-batch", daemon=True).start()
        if batch:
            self._decide(batch)
            if ahead:  # the leader may be an episode waiting for its answer: let it go on
                threading.Thread(target=self._prefetch, args=(ahead,), name="vlagent-batch", daemon=True).start()
        elif ahead:
            self._prefetch(ahead)

    def _decide(self, batch: list[tuple[Observation, Future[Decision | ModelError]]]) -> None:
        self.batch_sizes.append(len(batch))
        log.debug("deciding a batch of %d", len(batch))
        try:
            results = self.decide_batch([obs for obs, _ in batch])
        except BaseException as exc:  # hand the failure to every waiting episode
            for _, future in batch:
                future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            future.set_result(result)

    def _prefetch(self, batch: list[tuple[Observation, Future[int]]]) -> None:
        assert isinstance(self.inner, _BatchPrefetcher)
        log.debug("working ahead for a batch of %d", len(batch))
        try:
            with self._model:
                done = self.inner.prefetch_batch([obs for obs, _ in batch])
        except BaseException as exc:  # each episode's loop logs it; work ahead only saves time
            for _, future in batch:
                future.set_exception(exc)
            return
        for (_, future), n in zip(batch, done, strict=True):
            future.set_result(n)
