"""Helpers shared by the policy tests: random screens, episodes in lockstep, and the type of the
``tiny_policy`` fixture.

Imported as a top-level module (``from policy_helpers import ...``): pytest's default import mode
puts this folder on ``sys.path``, as it puts ``tests/`` there for ``sim_serve``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from PIL import Image, ImageDraw

from vlagent.drivers.base import DESKTOP_CAPABILITIES, PHONE_CAPABILITIES
from vlagent.frames import Frame
from vlagent.policies.base import Decision, Observation

if TYPE_CHECKING:
    from vlagent.errors import ModelError
    from vlagent.memory import TrajectoryMemory
    from vlagent.policies.qwen2vl import Qwen2VLPolicy

BUDGET = 96 * 28 * 28
"""The ``tiny_policy`` default ``max_pixels``: 96 visual tokens a screen."""
SIZES = ((1080, 2400), (1280, 800), (720, 1280), (1920, 1080))
TASKS = ("open settings", "turn on wifi", "write a note saying hi", "call Bob")


class PolicyFactory(Protocol):
    """What the ``tiny_policy`` fixture returns: keyword options of ``QwenPolicyConfig`` in, a policy out."""

    def __call__(self, **options: Any) -> Qwen2VLPolicy: ...


def random_screen(size: tuple[int, int], seed: int, rectangles: int = 8) -> Image.Image:
    """A varied screenshot-like image (a random background, ``rectangles`` random boxes), so that screens differ."""
    width, height = size
    rng = random.Random(seed)
    image = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(rectangles):
        x, y = rng.randrange(width - 40), rng.randrange(height - 40)
        draw.rectangle((x, y, x + rng.randrange(20, 300), y + rng.randrange(20, 120)), fill=rng.randrange(0xFFFFFF))
    return image


def lockstep_step(
    policy: Qwen2VLPolicy, memories: Sequence[TrajectoryMemory], step: int
) -> tuple[list[Observation], list[Decision | ModelError]]:
    """Step ``step`` of episodes in lockstep, one per memory (at most 4), decided in one batch (or
    alone, for one episode): episode ``n`` works on ``TASKS[n]``, on a phone for even ``n`` and a
    desktop for odd, and sees a random screen of ``SIZES[n]``; its memory chooses the prompt's images."""
    observations = []
    for n, memory in enumerate(memories):
        frame = Frame.of(random_screen(SIZES[n % 4], 1000 * n + step))
        caps = PHONE_CAPABILITIES if n % 2 == 0 else DESKTOP_CAPABILITIES
        observations.append(Observation(TASKS[n], frame, caps, step, memory.history, choice=memory.lazy_choice(frame)))
    if len(observations) > 1:
        return observations, policy.decide_batch(observations)
    return observations, [policy.decide(observations[0])]
