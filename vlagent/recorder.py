"""Crash-safe recording of episodes: ``trajectory.jsonl`` plus one image file per frame.

A run directory holds::

    trajectory.jsonl   one JSON object per line: start, step, result, end
    frame_0000.png     the screen the model saw at step 0, ...

Ordering makes a killed process leave a valid prefix: a frame image is written to a
temporary name and renamed before the step line that names it, and each line is flushed
and fsynced before the action it describes is executed. The loader ignores a torn last
line (the format and its loader live in :mod:`vlagent.trajectory`). This module must not
decide anything about the episode; it only writes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Literal

from vlagent.actions import tap_point
from vlagent.agent import Episode, Hook, StepRecord
from vlagent.drivers.base import Driver
from vlagent.errors import DeviceError, OutputError
from vlagent.frames import Frame
from vlagent.policies.base import Policy
from vlagent.secrets import PLACEHOLDER, scrub
from vlagent.tasks.state import StateReader, StateUnavailable
from vlagent.tasks.uitree import NodeRef
from vlagent.trajectory import (
    TRAJECTORY_FILE,
    RecordedStep,
    StepResult,
    Trajectory,
    TrajectoryEnd,
    TrajectoryLine,
    TrajectoryStart,
    load_trajectory,
)

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


def new_run_dir(root: Path | str, task: str) -> Path:
    """A fresh, private (0700), sortable run directory under ``root`` named after the time and task.

    The name never holds more than a slug of the task with ``{{secret}}`` placeholders dropped; two
    processes asking at the same moment get two directories (creation is the claim)."""
    slug = re.sub(r"[^a-z0-9]+", "-", PLACEHOLDER.sub(" ", scrub(task)).lower()).strip("-")[:40] or "run"
    base = Path(root) / f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}"
    _make_dirs(Path(root))
    for n in range(1, 10_000):
        path = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            continue
        except OSError as exc:
            raise OutputError(f"cannot create a run directory in {root}: {exc.strerror or exc}") from exc
        return path
    raise OutputError(f"cannot create a run directory in {root}: too many runs named {base.name}")


def _make_dirs(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise OutputError(f"cannot write into {path}: {exc.strerror or exc}") from exc
    if not path.is_dir():
        raise OutputError(f"cannot write into {path}: not a directory")


def _holds_a_run(path: Path) -> bool:
    trajectory = path / TRAJECTORY_FILE
    return trajectory.is_file() and trajectory.stat().st_size > 0


class Recorder(Hook):
    """Episode hook that writes a run directory as the episode happens."""

    def __init__(
        self,
        run_dir: Path | str,
        *,
        image_format: Literal["png", "jpeg"] = "png",
        meta: Mapping[str, str] | None = None,
        ui_nodes: bool = False,
        overwrite: bool = False,
    ) -> None:
        """``ui_nodes``: also record the UI element each tap aims at, from the device's view hierarchy
        (one ``uiautomator dump`` per tap on a phone: ~1-2 s there, free on the simulated phone);
        replay then finds a moved target by it before asking a model.

        A directory that already holds a run is refused (:class:`~vlagent.errors.OutputError`)
        unless ``overwrite``: then its trajectory and frames are replaced. Runs never merge."""
        self.run_dir = Path(run_dir)
        self.overwrite = overwrite
        self.ui_nodes = ui_nodes
        self._driver: Driver | None = None
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
        _make_dirs(self.run_dir)
        if _holds_a_run(self.run_dir):
            if not self.overwrite:
                raise OutputError(f"{self.run_dir} already holds a run; choose another directory or overwrite it")
            for old in [self.trajectory_path, *self.run_dir.glob("frame_*.*"), *self.run_dir.glob(".frame_*.tmp")]:
                old.unlink(missing_ok=True)
        self._driver = driver
        try:
            # "x": the file is ours alone; a second writer racing for the same directory is refused.
            self._file = self.trajectory_path.open("x", encoding="utf-8")
        except FileExistsError as exc:
            raise OutputError(f"{self.run_dir} already holds a run (another process is writing it)") from exc
        except OSError as exc:
            raise OutputError(f"cannot write the run into {self.run_dir}: {exc.strerror or exc}") from exc
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
                target=self._target(record),
                timestamp=record.frame.timestamp,
            )
        )

    def _target(self, record: StepRecord) -> NodeRef | None:
        point = tap_point(record.action)
        if not self.ui_nodes or point is None or not isinstance(self._driver, StateReader):
            return None
        try:
            node = self._driver.state().ui_tree().value.node_at(*point)
        except (StateUnavailable, DeviceError) as exc:
            log.info("no UI node recorded for step %d: %s", record.index, exc)
            return None
        return NodeRef.of(node) if node is not None else None

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
        try:
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
        finally:
            file, self._file = self._file, None
            with contextlib.suppress(OSError):  # a full disk may refuse the flush too
                file.close()
            for tmp in self.run_dir.glob(f".frame_*.{os.getpid()}-*.tmp"):
                tmp.unlink(missing_ok=True)
        log.info("trajectory written to %s", self.run_dir)

    # -- internals ----------------------------------------------------------------
    def _save_frame(self, index: int, frame: Frame) -> str:
        ext = "png" if self.image_format == "png" else "jpg"
        name = f"frame_{index:04d}.{ext}"
        # A name of its own per process and thread: two writers never rename each other's file.
        tmp = self.run_dir / f".{name}.{os.getpid()}-{threading.get_ident()}.tmp"
        try:
            if self.image_format == "png":
                frame.image.save(tmp, format="PNG", compress_level=1)
            else:
                frame.image.save(tmp, format="JPEG", quality=90)
            os.replace(tmp, self.run_dir / name)
        except BaseException:
            tmp.unlink(missing_ok=True)  # a full disk leaves no half-written frame behind
            raise
        return name

    def _write(self, line: TrajectoryLine) -> None:
        if self._file is None:
            raise RuntimeError("Recorder used before on_start")
        self._file.write(scrub(line.model_dump_json()) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
