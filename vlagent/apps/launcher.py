"""Start the sample desktop app in a child process and read its state file.

``SampleAppProcess.start(state_path)`` runs ``python -m vlagent.apps.sample_desktop`` and
returns once the app has written a ready state (its window is mapped and focused), so a
caller can screenshot and click at once. The state file is removed first: a state left by
an earlier run must never pass for this one.

This module must not import tkinter (the app runs in its own process) nor anything heavy;
it does not start an X server: the caller gives the environment with ``DISPLAY``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from vlagent.errors import DeviceError, DeviceTimeoutError

__all__ = ["SAMPLE_DESKTOP", "SampleAppProcess"]

log = logging.getLogger(__name__)

#: The device name of the sample app, in scenario files and for ``--vl-device``.
SAMPLE_DESKTOP = "sample_desktop"


class SampleAppProcess:
    """A running sample desktop app; ``state()`` is its latest state file, ``close()`` ends it."""

    def __init__(self, proc: subprocess.Popen[bytes], state_path: Path) -> None:
        self.proc = proc
        self.state_path = state_path

    @classmethod
    def start(
        cls, state_path: Path | str, *, env: Mapping[str, str] | None = None, timeout: float = 20.0
    ) -> SampleAppProcess:
        """Launch the app writing ``state_path``; DeviceError if it exits, DeviceTimeoutError if it is not
        ready within ``timeout`` seconds."""
        path = Path(state_path).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        proc = subprocess.Popen(
            [sys.executable, "-m", "vlagent.apps.sample_desktop", "--state", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
        )
        app = cls(proc, path)
        try:
            app._wait_ready(timeout)
        except BaseException:
            app.close()
            raise
        log.info("sample desktop app %d ready, state in %s", proc.pid, path)
        return app

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DeviceError(
                    f"the sample desktop app exited with code {self.proc.returncode} (is DISPLAY an X server "
                    "this process may use, and is python3-tk installed?)"
                )
            with contextlib.suppress(OSError, ValueError):
                if self.state().get("ready"):
                    return
            time.sleep(0.05)
        raise DeviceTimeoutError(f"the sample desktop app did not start within {timeout:g} s")

    def state(self) -> dict[str, Any]:
        """The app's latest state (OSError before the first write; the file is replaced atomically)."""
        return json.loads(self.state_path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]

    def close(self) -> None:
        """End the app (terminate, then kill after 5 s)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> SampleAppProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
