"""A private virtual X screen (Xvfb) for headless desktop automation, tests and benchmarks.

``VirtualDisplay`` starts ``Xvfb -displayfd`` so the server itself picks a free display
number and tells us when it accepts connections (no guessing, no polling of lock files),
and stops it on exit. It gives the environment a client needs (``DISPLAY``, plus an empty
``XAUTHORITY`` file: python3-xlib 0.15, which pyautogui installs, refuses to connect when
``~/.Xauthority`` is missing even though Xvfb needs no cookie).

This module must not change ``os.environ`` by itself; callers choose to apply ``env``
(``applied_env`` does it for a block and restores what was there).
It must not import pyautogui, mss or Xlib.
"""

from __future__ import annotations

import logging
import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from vlagent.errors import DeviceTimeoutError, UserError

__all__ = ["VirtualDisplay", "applied_env", "xvfb_available"]

log = logging.getLogger(__name__)


def xvfb_available() -> bool:
    """True when the ``Xvfb`` binary is on PATH (Debian/Ubuntu package ``xvfb``)."""
    return shutil.which("Xvfb") is not None


@contextmanager
def applied_env(env: Mapping[str, str]) -> Iterator[None]:
    """Set ``env`` in ``os.environ`` for the block, then restore each variable (or remove it)."""
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class VirtualDisplay:
    """``with VirtualDisplay(1280, 800) as vd: subprocess.run(cmd, env={**os.environ, **vd.env})``."""

    def __init__(self, width: int = 1280, height: int = 800, depth: int = 24, *, timeout: float = 10.0) -> None:
        if width <= 0 or height <= 0 or depth not in (8, 16, 24):
            raise UserError(f"bad virtual screen {width}x{height}x{depth}: sizes must be positive, depth 8/16/24")
        self.width, self.height, self.depth = width, height, depth
        self.timeout = timeout
        self.display: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._log_path = Path(os.devnull)

    @property
    def env(self) -> dict[str, str]:
        """Variables a client of this screen needs."""
        if self.display is None or self._tmp is None:
            raise RuntimeError("VirtualDisplay is not started")
        return {"DISPLAY": self.display, "XAUTHORITY": str(Path(self._tmp.name) / "Xauthority")}

    def start(self) -> VirtualDisplay:
        binary = shutil.which("Xvfb")
        if binary is None:
            raise UserError("Xvfb is not installed; install it with: sudo apt-get install xvfb")
        self._tmp = tempfile.TemporaryDirectory(prefix="vlagent-xvfb-")
        (Path(self._tmp.name) / "Xauthority").touch()
        read_fd, write_fd = os.pipe()
        cmd = [binary, "-displayfd", str(write_fd), "-screen", "0", f"{self.width}x{self.height}x{self.depth}"]
        cmd += ["-nolisten", "tcp", "-noreset"]
        # Its messages go to a file: a pipe nobody reads could fill up and stall the server.
        self._log_path = Path(self._tmp.name) / "Xvfb.log"
        try:
            with self._log_path.open("wb") as log_file:
                self._proc = subprocess.Popen(
                    cmd, pass_fds=(write_fd,), stdout=log_file, stderr=log_file, start_new_session=True
                )
        finally:
            os.close(write_fd)
        try:
            number = self._read_display_number(read_fd)
        except BaseException:
            self.stop()
            raise
        finally:
            os.close(read_fd)
        self.display = f":{number}"
        log.info(
            "Xvfb started on %s (%dx%dx%d, pid %d)", self.display, self.width, self.height, self.depth, self._proc.pid
        )
        return self

    def _read_display_number(self, fd: int) -> int:
        # Xvfb writes the number followed by a newline once it accepts connections.
        deadline = time.monotonic() + self.timeout
        data = b""
        while not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeviceTimeoutError(f"Xvfb did not start within {self.timeout:g} s")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 16)
            if not chunk:
                err = self._log_path.read_text(errors="replace")
                raise UserError(f"Xvfb exited during start-up: {err.strip()[-500:]}")
            data += chunk
        return int(data.strip())

    def stop(self) -> None:
        """Stop the server; calling it twice is harmless."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
            log.info("Xvfb on %s stopped", self.display)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        self.display = None

    def __enter__(self) -> VirtualDisplay:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
