"""An opt-in cache of resolved actions, so a passing UI test re-runs without the model.

After ``Agent.act(instruction)`` ends with ``done(success)``, every step is stored under
the instruction, its step number and a fingerprint of the screen the step was decided on.
The next run of the same instruction plays a stored step whenever the screen at that step
has the same fingerprint, and asks the model from the first step whose screen differs: a
changed UI costs model calls only where it changed. A run that used the cache and then
failed drops the instruction's entries, so a stale cache cannot keep a test red.

``Agent.locate`` answers are cached too: a description found on a screen is answered from
the cache on a screen with the same fingerprint. Assertions and queries are never cached:
they are what a test checks, so the model judges them on every run.

Fingerprints come from :mod:`vlagent.replay` (the machinery scenario replay uses). The file
is plain JSON (actions in device pixels), meant to be committed or kept as a CI artifact.
This module must not judge success itself (it trusts the episode's end) and must
not import heavy libraries.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vlagent.actions import Step
from vlagent.agent import EndReason, Episode
from vlagent.errors import ConfigError, ModelError
from vlagent.frames import Frame
from vlagent.policies.base import Decision, Observation, Policy, decide_each
from vlagent.replay import fingerprint, fingerprint_distance

__all__ = ["ActionCache", "CachedPolicy", "fingerprint_distance", "screen_fingerprint"]

log = logging.getLogger(__name__)

CACHE_VERSION = 1
#: Screens remembered per located description: enough for a few app states, bounded so a
#: screen with a clock or a counter cannot grow the file forever.
MAX_SCREENS_PER_LOCATION = 8


def screen_fingerprint(frame: Frame) -> str:
    """Fingerprint of the whole screen, with the replay machinery's ``fingerprint`` (a perceptual
    hash plus a strict digest: equal digests mean the screen is unchanged, a flipped toggle included)."""
    return fingerprint(frame.image, (0, 0, frame.image.width, frame.image.height))


class _Entry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    fingerprint: str
    step: Step


class _Located(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    fingerprint: str
    x: int
    y: int


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = CACHE_VERSION
    instructions: dict[str, list[_Entry]] = Field(default_factory=dict)
    #: description -> where it was found, one entry per distinct screen (newest last).
    locations: dict[str, list[_Located]] = Field(default_factory=dict)


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0


class ActionCache:
    """Steps of passing ``act`` calls keyed by instruction, step number and screen fingerprint.

    ``threshold`` is the largest fingerprint distance still counted as the same screen: 0
    (default) demands equal digests; raise it (e.g. 0.02) for screens with shimmering
    pixels such as a blinking cursor. ``read_only`` uses the file without updating it.
    """

    def __init__(self, path: Path | str, *, threshold: float = 0.0, read_only: bool = False) -> None:
        if not 0.0 <= threshold < 1.0:
            raise ConfigError(f"cache threshold must be in [0, 1), got {threshold}")
        self.path = Path(path)
        self.threshold = threshold
        self.read_only = read_only
        self.stats = CacheStats()
        self._data = self._load()

    def _load(self) -> _File:
        if not self.path.exists():
            return _File()
        try:
            data = _File.model_validate_json(self.path.read_text(encoding="utf-8"))
        except (OSError, ValidationError, ValueError) as exc:
            raise ConfigError(f"cannot read the action cache {self.path}: {exc}; delete it to start afresh") from exc
        if data.version != CACHE_VERSION:
            log.warning(
                "action cache %s has format %d, expected %d; starting empty", self.path, data.version, CACHE_VERSION
            )
            return _File()
        return data

    def __len__(self) -> int:
        """Number of cached instructions (located descriptions are not counted)."""
        return len(self._data.instructions)

    def instructions(self) -> list[str]:
        return sorted(self._data.instructions)

    def steps(self, instruction: str) -> list[Step]:
        return [entry.step for entry in self._data.instructions.get(instruction, [])]

    def lookup(self, instruction: str, index: int, frame: Frame) -> Step | None:
        """The stored step ``index`` of ``instruction`` when ``frame`` matches its screen, else None."""
        entries = self._data.instructions.get(instruction)
        if entries is None or index >= len(entries):
            self.stats.misses += 1
            return None
        entry = entries[index]
        distance = fingerprint_distance(screen_fingerprint(frame), entry.fingerprint)
        if distance > self.threshold:
            self.stats.misses += 1
            log.info("cache miss for %r step %d: the screen changed (distance %.3f)", instruction, index + 1, distance)
            return None
        self.stats.hits += 1
        return entry.step

    def store(self, instruction: str, steps: Sequence[tuple[Frame, Step]]) -> None:
        """Replace the entries of ``instruction`` with ``steps`` (the screen each step was decided on)."""
        self._data.instructions[instruction] = [
            _Entry(fingerprint=screen_fingerprint(frame), step=step) for frame, step in steps
        ]
        self.save()

    def forget(self, instruction: str) -> None:
        if self._data.instructions.pop(instruction, None) is not None:
            self.save()

    def learn(self, episode: Episode) -> None:
        """Store a passing episode's steps; drop the instruction when a cached run failed."""
        if episode.end is EndReason.DONE_SUCCESS:
            self.store(episode.task, [(record.frame, record.decision.step) for record in episode.steps])
        elif any(record.decision.usage.get("cached") for record in episode.steps):
            log.warning("a run of %r that used the cache failed; dropping its cached steps", episode.task)
            self.forget(episode.task)

    def lookup_location(self, description: str, frame: Frame) -> tuple[int, int] | None:
        """Where ``description`` was found on a screen matching ``frame``, else None."""
        entries = self._data.locations.get(description, [])
        if entries:
            mine = screen_fingerprint(frame)
            for entry in reversed(entries):
                if fingerprint_distance(mine, entry.fingerprint) <= self.threshold:
                    self.stats.hits += 1
                    return entry.x, entry.y
        self.stats.misses += 1
        return None

    def store_location(self, description: str, frame: Frame, point: tuple[int, int]) -> None:
        """Remember that ``description`` was found at ``point`` on ``frame``'s screen."""
        mine = screen_fingerprint(frame)
        entries = [e for e in self._data.locations.get(description, []) if e.fingerprint != mine]
        entries.append(_Located(fingerprint=mine, x=point[0], y=point[1]))
        self._data.locations[description] = entries[-MAX_SCREENS_PER_LOCATION:]
        self.save()

    def save(self) -> None:
        """Write the file atomically (temporary file + rename)."""
        if self.read_only:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = self._data.model_dump_json(indent=1)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class CachedPolicy:
    """Answers from an ActionCache where the screen matches, from ``inner`` elsewhere.

    A step played from the cache has ``usage["cached"] == 1``; ``inner`` is not called for
    it (so a lazily loaded model is never loaded when every step hits).
    """

    def __init__(self, inner: Policy, cache: ActionCache) -> None:
        self.inner = inner
        self.cache = cache
        self.name = getattr(inner, "name", "policy")

    def decide(self, observation: Observation) -> Decision:
        # Hits only for a first try: feedback means the cached step was just rejected.
        if observation.feedback is None:
            step = self.cache.lookup(observation.task, observation.step_index, observation.frame)
            if step is not None:
                return Decision(
                    step=step, raw=step.model_dump_json(exclude_none=True), usage=MappingProxyType({"cached": 1.0})
                )
        return self.inner.decide(observation)

    def decide_batch(self, observations: Sequence[Observation]) -> list[Decision | ModelError]:
        return decide_each(self, observations)
