"""Shared fixtures: a private Xvfb screen for the whole session, and the sample desktop app.

The X screen is session-wide because pyautogui connects to ``$DISPLAY`` once, at import;
every desktop test in the process must therefore use the same display.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from vlagent.drivers.xvfb import VirtualDisplay, applied_env, xvfb_available

# CI runs property tests on a fixed seed so a run's result does not depend on luck; locally
# every run explores new examples (run with HYPOTHESIS_PROFILE=ci to reproduce CI).
settings.register_profile("ci", derandomize=True, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

SCREEN = (1280, 800)


@pytest.fixture(scope="session")
def xvfb_display() -> Iterator[str]:
    """Start ``Xvfb -screen 0 1280x800x24`` on a free display; set DISPLAY for this process."""
    if not xvfb_available():
        pytest.skip("Xvfb is not installed (apt-get install xvfb)")
    with VirtualDisplay(*SCREEN, 24) as display, applied_env(display.env):
        assert display.display is not None
        yield display.display


class SampleApp:
    """A running ``vlagent.apps.sample_desktop`` and its state file."""

    def __init__(self, proc: subprocess.Popen[bytes], state_path: Path) -> None:
        self.proc = proc
        self.state_path = state_path

    def state(self) -> dict[str, Any]:
        return json.loads(self.state_path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0) -> dict[str, Any]:
        """The first state satisfying ``predicate``; fails the test with the last state after ``timeout``."""
        deadline = time.monotonic() + timeout
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            if self.state_path.exists():
                state = self.state()
                if predicate(state):
                    return state
            if self.proc.poll() is not None:
                pytest.fail(f"sample app exited with {self.proc.returncode}")
            time.sleep(0.02)
        pytest.fail(f"app state did not reach the expected value in {timeout} s; last state: {state}")

    def settle(self, seconds: float = 0.3) -> dict[str, Any]:
        """State after the app had time to handle anything already sent (for 'nothing changed' checks)."""
        time.sleep(seconds)
        return self.state()

    def center(self, widget: str) -> tuple[int, int]:
        """Screen centre of a named widget (screen pixels: logical pixels at scale 1)."""
        x, y, w, h = self.state()["widgets"][widget]
        return x + w // 2, y + h // 2

    def row_center(self, item: str) -> tuple[int, int]:
        """Screen point on a visible list row."""
        for name, x, y, _w, h in self.state()["rows"]:
            if name == item:
                return x + 10, y + h // 2
        raise AssertionError(f"{item!r} is not a visible row")


@pytest.fixture
def sample_app(xvfb_display: str, tmp_path: Path) -> Iterator[SampleApp]:
    """The sample Tk app at (0, 0) on the test screen, ready and with a fresh state file."""
    state_path = tmp_path / "state.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vlagent.apps.sample_desktop", "--state", str(state_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    app = SampleApp(proc, state_path)
    try:
        app.wait_for(lambda s: bool(s.get("ready")), timeout=15)
        yield app
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
