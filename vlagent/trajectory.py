"""The trajectory format: what ``trajectory.jsonl`` holds, and its loader.

A run directory holds ``trajectory.jsonl`` (one JSON object per line: start, step, result,
end) and one image file per frame. :class:`~vlagent.recorder.Recorder` writes it while an
episode runs; replays, reports and the replay driver read it with :func:`load_trajectory`.
This module only describes and reads: it must not import the loop, drivers or policies.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from vlagent.actions import Action
from vlagent.errors import UserError
from vlagent.outcome import ActionOutcome
from vlagent.tasks.uitree import NodeRef

__all__ = [
    "FORMAT_VERSION",
    "TRAJECTORY_FILE",
    "RecordedStep",
    "StepResult",
    "Trajectory",
    "TrajectoryEnd",
    "TrajectoryLine",
    "TrajectoryStart",
    "load_trajectory",
]

TRAJECTORY_FILE = "trajectory.jsonl"
FORMAT_VERSION = 1


class TrajectoryLine(BaseModel):
    """Any line of ``trajectory.jsonl``."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class TrajectoryStart(TrajectoryLine):
    type: Literal["start"] = "start"
    version: int = FORMAT_VERSION
    task: str
    device: str
    policy: str
    started: float
    meta: dict[str, str] = Field(default_factory=dict)


class RecordedStep(TrajectoryLine):
    """One step as recorded; ``action`` is in device pixels."""

    type: Literal["step"] = "step"
    task: str
    index: int
    thought: str | None = None
    action: Action
    raw: str = ""
    frame: str
    frame_size: tuple[int, int]
    device: dict[str, str] = Field(default_factory=dict)
    capture_s: float
    model_s: float
    invalid_outputs: int = 0
    usage: dict[str, float] = Field(default_factory=dict)
    target: NodeRef | None = None
    """The UI element the action aims at, read from the view hierarchy (``Recorder(ui_nodes=True)``)."""
    selection: dict[str, object] | None = None
    """What memory sent with the prompt: budget, total_tokens, dropped, images (step, size, tokens)."""
    timestamp: float
    # filled from the matching "result" line when the action was executed
    execute_s: float | None = None
    change: float | None = None
    effect: str | None = None
    outcome: ActionOutcome | None = None
    """What the driver learned performing the action (typing read back: verified, retried, ...)."""


class StepResult(TrajectoryLine):
    type: Literal["result"] = "result"
    index: int
    execute_s: float
    change: float | None = None
    effect: str | None = None
    outcome: ActionOutcome | None = None


class TrajectoryEnd(TrajectoryLine):
    type: Literal["end"] = "end"
    reason: str
    detail: str = ""
    steps: int
    duration_s: float
    invalid_outputs: int = 0
    device_retries: int = 0


_ANY_LINE: TypeAdapter[TrajectoryStart | RecordedStep | StepResult | TrajectoryEnd] = TypeAdapter(
    TrajectoryStart | RecordedStep | StepResult | TrajectoryEnd
)


@dataclass
class Trajectory:
    """A loaded run: what started it, its steps, and how it ended (None if it was killed)."""

    path: Path
    start: TrajectoryStart | None
    steps: list[RecordedStep] = field(default_factory=list)
    end: TrajectoryEnd | None = None
    torn_lines: int = 0

    @property
    def complete(self) -> bool:
        return self.end is not None

    def frame_path(self, step: RecordedStep) -> Path:
        return self.path / step.frame


_MAX_LINE = 64 * 1024 * 1024


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with handle:
        for number, raw in enumerate(handle, start=1):
            if len(raw) > _MAX_LINE:
                raise UserError(f"{path}:{number}: a line of {len(raw)} bytes is not a trajectory line")
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise UserError(
                    f"{path}:{number}: not UTF-8 text (byte {raw[exc.start]:#04x}): not a trajectory"
                ) from None


def load_trajectory(path: Path | str) -> Trajectory:
    """Load a run directory (or its ``trajectory.jsonl``) into typed steps.

    A torn last line (a process killed while writing) is skipped and counted in
    ``torn_lines``; a malformed line elsewhere is a UserError naming the line.
    """
    path = Path(path)
    file = path if path.is_file() else path / TRAJECTORY_FILE
    if not file.is_file():
        raise UserError(f"no trajectory at {file}: expected a run directory containing {TRAJECTORY_FILE}")
    traj = Trajectory(path=file.parent, start=None)
    by_index: dict[int, int] = {}
    raw_lines = list(_lines(file))
    for number, text in raw_lines:
        if not text.strip():
            continue
        try:
            line = _ANY_LINE.validate_python(json.loads(text))
        except (json.JSONDecodeError, ValidationError) as exc:
            if number == len(raw_lines) and not text.endswith("\n"):
                traj.torn_lines += 1
                continue
            raise UserError(f"{file}:{number}: not a valid trajectory line ({exc})") from exc
        if isinstance(line, TrajectoryStart):
            if traj.start is not None:
                raise UserError(
                    f"{file}:{number}: a second episode starts here: this file holds two runs merged "
                    "(two recordings into one directory); record each run into its own directory"
                )
            traj.start = line
        elif isinstance(line, RecordedStep):
            by_index[line.index] = len(traj.steps)
            traj.steps.append(line)
        elif isinstance(line, StepResult):
            position = by_index.get(line.index)
            if position is not None:
                traj.steps[position] = traj.steps[position].model_copy(
                    update={
                        "execute_s": line.execute_s,
                        "change": line.change,
                        "effect": line.effect,
                        "outcome": line.outcome,
                    }
                )
        else:
            traj.end = line
    return traj
