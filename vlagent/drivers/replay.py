"""ReplayDriver: serves the recorded frames of a run, so a policy can be re-run offline.

``open_driver("replay:RUN_DIR")`` shows the frame recorded at step 0; every executed
action is kept in ``executed`` and moves on to the next recorded frame (the last one stays
on screen after the run's end). Nothing is really performed: this answers "what would this
policy have done on these screens?" and feeds step-level scoring without a device.

This module must not change the run directory.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PIL import Image

from vlagent.actions import Action
from vlagent.drivers.base import DESKTOP_CAPABILITIES, PHONE_CAPABILITIES, BaseDriver, Capabilities
from vlagent.errors import ConfigError
from vlagent.frames import Frame
from vlagent.trajectory import RecordedStep, Trajectory, load_trajectory

__all__ = ["ReplayDriver", "create_driver"]

log = logging.getLogger(__name__)


class ReplayDriver(BaseDriver):
    """A driver over a recorded trajectory."""

    name = "replay"

    def __init__(self, trajectory: Trajectory) -> None:
        if not trajectory.steps:
            raise ConfigError(f"{trajectory.path}: the run has no recorded steps to replay")
        self.trajectory = trajectory
        self.position = 0
        self.executed: list[Action] = []
        device = trajectory.start.device if trajectory.start else ""
        self._capabilities: Capabilities = DESKTOP_CAPABILITIES if device.startswith("desktop") else PHONE_CAPABILITIES

    @property
    def step(self) -> RecordedStep:
        """The recorded step whose frame is on screen."""
        return self.trajectory.steps[min(self.position, len(self.trajectory.steps) - 1)]

    @property
    def finished(self) -> bool:
        return self.position >= len(self.trajectory.steps)

    def screen_size(self) -> tuple[int, int]:
        return self.step.frame_size

    def screenshot(self) -> Frame:
        step = self.step
        with Image.open(self.trajectory.frame_path(step)) as image:
            rgb = image.convert("RGB")
        width, height = step.frame_size
        return Frame(image=rgb, width=width, height=height, device=dict(step.device))

    def execute(self, action: Action) -> None:
        self.ensure_supported(action)
        self.executed.append(action)
        self.position += 1
        log.debug("replay: %s recorded as step %d", action.action, len(self.executed))


def create_driver(arg: str | None = None, **options: object) -> ReplayDriver:
    """Factory for ``open_driver("replay:RUN_DIR")``."""
    if not arg:
        raise ConfigError("the replay device needs a run directory: replay:PATH")
    if options:
        raise ConfigError(f"the replay device takes no options, got {', '.join(sorted(options))}")
    return ReplayDriver(load_trajectory(Path(arg)))
