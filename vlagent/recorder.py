"""Crash-safe recording of episodes: ``trajectory.jsonl`` plus one image file per frame.

A run directory holds::

    trajectory.jsonl   one JSON object per line: start, step, result, end
    frame_0000.png     the screen the model saw at step 0, ...

Ordering makes a killed process leave a valid prefix: a frame image is written to a
temporary name and renamed before the step line that names it, and each line is flushed
and fsynced before the action it describes is executed. The loader ignores a torn last
line. This module must not decide anything about the episode; it only writes and reads.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from vlagent.actions import Action
from vlagent.agent import Episode, StepRecord
from vlagent.drivers.base import Driver
from vlagent.errors import UserError
from vlagent.frames import Frame
from vlagent.outcome import ActionOutcome
from vlagent.policies.base import Policy

__all__ = [
    "RecordedStep",
    "Recorder",
    "Trajectory",
    "TrajectoryEnd",
    "TrajectoryStart",
    "load_trajectory",
    "new_run_dir",
]

log = logging.getLogger(__name__)

TRAJECTORY_FILE = "trajectory.jsonl"
FORMAT_VERSION = 1


class _Line(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class TrajectoryStart(_Line):
    type: Literal["start"] = "start"
    version: int = FORMAT_VERSION
    task: str
    device: str
    policy: str
    started: float
    meta: dict[str, str] = Field(default_factory=dict)


class RecordedStep(_Line):
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
    selection: dict[str, object] | None = None
    """What memory sent with the prompt: budget, total_tokens, dropped, images (step, size, tokens)."""
    timestamp: float
    # filled from the matching "result" line when the action was executed
    execute_s: float | None = None
    change: float | None = None
    effect: str | None = None
    outcome: ActionOutcome | None = None
    """What the driver learned performing the action (typing read back: verified, retried, ...)."""


class StepResult(_Line):
    type: Literal["result"] = "result"
    index: int
    execute_s: float
    change: float | None = None
    effect: str | None = None
    outcome: ActionOutcome | None = None


class TrajectoryEnd(_Line):
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


def new_run_dir(root: Path | str, task: str) -> Path:
    """A fresh, sortable run directory under ``root`` named after the time and task."""
    slug = re.sub(r"[^a-z0-9]+", "-", task.lower()).strip("-")[:40] or "run"
    base = Path(root) / f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path


class Recorder:
    """Episode hook that writes a run directory as the episode happens."""

    def __init__(
        self,
        run_dir: Path | str,
        *,
        image_format: Literal["png", "jpeg"] = "png",
        meta: Mapping[str, str] | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.image_format = image_format
        self.meta = dict(meta or {})
        self._file: IO[str] | None = None
        # Frames are encoded on a worker thread from the moment they are captured, so the
        # encoding overlaps the model's thinking; the step line still waits for the file.
        self._encoder: ThreadPoolExecutor | None = None
        self._pending: dict[int, Future[str]] = {}

    @property
    def trajectory_path(self) -> Path:
        return self.run_dir / TRAJECTORY_FILE

    # -- hooks --------------------------------------------------------------------
    def on_start(self, episode: Episode, driver: Driver, policy: Policy) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._file = self.trajectory_path.open("a", encoding="utf-8")
        self._write(
            TrajectoryStart(
                task=episode.task, device=driver.name, policy=policy.name, started=episode.started, meta=self.meta
            )
        )

    def on_observe(self, episode: Episode, index: int, frame: Frame) -> None:
        if self._encoder is None:
            self._encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vlagent-recorder")
        self._pending[index] = self._encoder.submit(self._save_frame, index, frame)

    def on_decision(self, episode: Episode, record: StepRecord) -> None:
        pending = self._pending.pop(record.index, None)
        frame_name = pending.result() if pending is not None else self._save_frame(record.index, record.frame)
        usage = {k: float(v) for k, v in record.decision.usage.items()}
        self._write(
            RecordedStep(
                task=episode.task,
                index=record.index,
                thought=record.decision.step.thought,
                action=record.action,
                raw=record.decision.raw,
                frame=frame_name,
                frame_size=record.frame.size,
                device=dict(record.frame.device),
                capture_s=record.capture_s,
                model_s=record.model_s,
                invalid_outputs=record.invalid_outputs,
                usage=usage,
                selection=record.selection,
                timestamp=record.frame.timestamp,
            )
        )

    def on_step(self, episode: Episode, record: StepRecord, after: Frame) -> None:
        self._write(
            StepResult(
                index=record.index,
                execute_s=record.execute_s,
                change=record.change,
                effect=record.effect,
                outcome=record.outcome,
            )
        )

    def on_end(self, episode: Episode) -> None:
        if self._encoder is not None:
            self._encoder.shutdown(wait=True)  # frames of undecided steps still land on disk
            self._encoder, self._pending = None, {}
        if self._file is None:
            return
        self._write(
            TrajectoryEnd(
                reason=episode.end.value if episode.end else "error",
                detail=episode.detail,
                steps=len(episode.steps),
                duration_s=episode.duration_s,
                invalid_outputs=episode.invalid_outputs,
                device_retries=episode.device_retries,
            )
        )
        self._file.close()
        self._file = None
        log.info("trajectory written to %s", self.run_dir)

    # -- internals ----------------------------------------------------------------
    def _save_frame(self, index: int, frame: Frame) -> str:
        ext = "png" if self.image_format == "png" else "jpg"
        name = f"frame_{index:04d}.{ext}"
        tmp = self.run_dir / f".{name}.tmp"
        if self.image_format == "png":
            frame.image.save(tmp, format="PNG", compress_level=1)
        else:
            frame.image.save(tmp, format="JPEG", quality=90)
        os.replace(tmp, self.run_dir / name)
        return name

    def _write(self, line: _Line) -> None:
        if self._file is None:
            raise RuntimeError("Recorder used before on_start")
        self._file.write(line.model_dump_json() + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with path.open("r", encoding="utf-8") as handle:
        yield from enumerate(handle, start=1)


def load_trajectory(path: Path | str) -> Trajectory:
    """Load a run directory (or its ``trajectory.jsonl``) into typed steps.

    A torn last line (a process killed while writing) is skipped and counted in
    ``torn_lines``; a malformed line elsewhere is a UserError naming the line.
    """
    path = Path(path)
    file = path if path.is_file() else path / TRAJECTORY_FILE
    if not file.exists():
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
