"""Watchers: episode hooks that look at how an episode is going and may stop it or hint the model.

``LoopDetector`` stops (or warns) an agent that repeats an action which changes nothing, or
goes round a cycle of screens; it reads the effect measures of :mod:`vlagent.effects`. A
watcher only answers with a Verdict: it must not act on the device.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from PIL import Image

from vlagent.actions import Action, Wait, action_points, describe_action, map_points
from vlagent.agent import EndReason, Episode, Hook, StepRecord, Verdict
from vlagent.effects import hash_distance, screen_hash
from vlagent.frames import Frame

__all__ = ["LoopConfig", "LoopDetector"]

log = logging.getLogger(__name__)


def _origin(x: int, y: int) -> tuple[int, int]:
    return (0, 0)


@dataclass(frozen=True)
class LoopConfig:
    """When an agent counts as stuck, and what to do about it."""

    repeats: int = 3
    """The same action with no visible change this many times in a row is a loop."""
    cycle_repeats: int = 3
    """A cycle of screens (A, B, A, B, ...) gone round this many times is a loop."""
    max_period: int = 4
    """Longest cycle of screens looked for (2 = A, B, A, B)."""
    on_stuck: Literal["stop", "hint"] = "stop"
    """``stop`` ends the episode as STUCK; ``hint`` tells the model and carries on."""
    max_hints: int | None = 2
    """In hint mode, stop anyway at the next loop after this many hints (None: never stop)."""
    hash_distance: int = 8
    """Screens whose 256-bit hashes differ in at most this many bits are the same screen."""
    point_tolerance: float = 0.02
    """Points closer than this fraction of the screen's larger side count as the same point."""

    def __post_init__(self) -> None:
        if self.repeats < 2 or self.cycle_repeats < 2 or self.max_period < 2:
            raise ValueError("repeats, cycle_repeats and max_period must be >= 2")
        if self.on_stuck not in ("stop", "hint"):
            raise ValueError(f"on_stuck must be 'stop' or 'hint', got {self.on_stuck!r}")


class LoopDetector(Hook):
    """Episode hook: ends (or warns) an agent repeating a useless action or cycling screens.

    It reads ``StepRecord.change`` (set by the loop's effect check; without one, only screen
    cycles are detected) and hashes each step's frames.
    """

    def __init__(self, config: LoopConfig | None = None) -> None:
        self.config = config or LoopConfig()
        self.hints = 0
        self._same: list[Action] = []
        self._hashes: list[int] = []
        self._last_image: Image.Image | None = None

    def on_start(self, episode: Episode, driver: object, policy: object) -> None:
        self.hints = 0
        self._reset()

    def _reset(self) -> None:
        self._same = []
        self._hashes = []
        self._last_image = None

    def on_step(self, episode: Episode, record: StepRecord, after: Frame) -> Verdict | None:
        problem = self._useless_repeat(record) or self._screen_cycle(record.frame, after)
        if problem is None:
            return None
        detail, hint = problem
        self._reset()
        cfg = self.config
        if cfg.on_stuck == "hint" and (cfg.max_hints is None or self.hints < cfg.max_hints):
            self.hints += 1
            log.info("loop detected (hint %d): %s", self.hints, detail)
            return Verdict(hint=hint, detail=detail)
        log.info("loop detected, stopping: %s", detail)
        return Verdict(stop=EndReason.STUCK, detail=detail)

    def _same_action(self, a: Action, b: Action, frame: Frame) -> bool:
        if a.action != b.action:
            return False
        tolerance = self.config.point_tolerance * max(frame.width, frame.height)
        points_a, points_b = action_points(a), action_points(b)
        if len(points_a) != len(points_b):
            return False
        if any(
            abs(xa - xb) > tolerance or abs(ya - yb) > tolerance
            for (xa, ya), (xb, yb) in zip(points_a, points_b, strict=True)
        ):
            return False
        # Points were compared with a tolerance above; everything else must be equal.
        return map_points(a, _origin) == map_points(b, _origin)

    def _useless_repeat(self, record: StepRecord) -> tuple[str, str] | None:
        # A wait is meant to change nothing by itself; endless waiting is bounded by the step limit.
        if record.change != 0.0 or isinstance(record.action, Wait):
            self._same = []
            return None
        if self._same and not self._same_action(self._same[0], record.action, record.frame):
            self._same = []
        self._same.append(record.action)
        n = len(self._same)
        if n < self.config.repeats:
            return None
        what = describe_action(self._same[0])
        return (
            f"{what} changed nothing on the screen {n} times in a row",
            f"The last {n} actions ({what}) changed nothing on the screen. "
            "That element does not respond: try something else (another element, scroll, go back).",
        )

    def _screen_cycle(self, before: Frame, after: Frame) -> tuple[str, str] | None:
        if not self._hashes or self._last_image is not before.image:
            self._hashes = [screen_hash(before)]
        self._hashes.append(screen_hash(after))
        self._last_image = after.image
        cfg = self.config
        hashes = self._hashes[-cfg.max_period * cfg.cycle_repeats :]
        self._hashes = hashes

        def same(i: int, j: int) -> bool:
            return hash_distance(hashes[i], hashes[j]) <= cfg.hash_distance

        for period in range(2, cfg.max_period + 1):
            span = period * cfg.cycle_repeats
            if len(hashes) < span:
                break
            start = len(hashes) - span
            repeating = all(same(k, k + period) for k in range(start, len(hashes) - period))
            # A screen that never changes also "repeats"; that is the no-effect rule's business.
            distinct = not all(same(k, k + 1) for k in range(start, start + period - 1))
            if repeating and distinct:
                return (
                    f"the screen went round the same cycle of {period} screens {cfg.cycle_repeats} times",
                    f"You have gone back and forth between the same {period} screens {cfg.cycle_repeats} times. "
                    "Stop repeating these actions and try a different approach.",
                )
        return None
