"""The sample desktop app on its own: driven with xdotool, judged by its state file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from vlagent.apps.sample_desktop import ITEMS, PASSWORD, write_json_atomic

if TYPE_CHECKING:
    from tests.conftest import SampleApp

pytestmark = pytest.mark.xvfb


def xdotool(*args: str) -> None:
    subprocess.run(["xdotool", *args], check=True, timeout=10)


def test_initial_state_describes_window_and_widgets(sample_app: SampleApp) -> None:
    state = sample_app.state()
    assert state["window"] == [0, 0, 960, 560]
    assert state["visible_items"] == list(ITEMS)
    assert state["logged_in"] is False and state["note"] == ""
    for name in ("username", "password", "login_button", "dark_mode", "volume", "note", "search", "items"):
        x, y, w, h = state["widgets"][name]
        assert 0 <= x < x + w <= 960 and 0 <= y < y + h <= 560, name


def test_login_with_wrong_then_right_password(sample_app: SampleApp) -> None:
    xdotool("mousemove", *map(str, sample_app.center("username")), "click", "1")
    xdotool("type", "bob")
    xdotool("mousemove", *map(str, sample_app.center("password")), "click", "1")
    xdotool("type", "nope")
    xdotool("mousemove", *map(str, sample_app.center("login_button")), "click", "1")
    state = sample_app.wait_for(lambda s: s["login_attempts"] == 1)
    assert state["logged_in"] is False and state["login_error"]
    xdotool("mousemove", *map(str, sample_app.center("password")), "click", "1")
    xdotool("key", "ctrl+a", "ctrl+k")  # Tk entry: line start, delete to end
    xdotool("type", PASSWORD)
    xdotool("mousemove", *map(str, sample_app.center("login_button")), "click", "1")
    state = sample_app.wait_for(lambda s: s["login_attempts"] == 2)
    assert state["logged_in"] is True and state["user"] == "bob" and state["password_length"] == len(PASSWORD)


def test_search_filters_the_list(sample_app: SampleApp) -> None:
    xdotool("mousemove", *map(str, sample_app.center("search")), "click", "1")
    xdotool("type", "to")
    state = sample_app.wait_for(lambda s: s["search"] == "to")
    assert state["visible_items"] == [item for item in ITEMS if "to" in item.casefold()] == ["Tomatoes"]
    assert [row[0] for row in state["rows"]] == state["visible_items"]


def test_quit_after_and_missing_display(tmp_path: Path, xvfb_display: str) -> None:
    state = tmp_path / "s.json"
    done = subprocess.run(
        [sys.executable, "-m", "vlagent.apps.sample_desktop", "--state", str(state), "--quit-after", "0.5"],
        timeout=20,
        capture_output=True,
    )
    assert done.returncode == 0 and json.loads(state.read_text())["ready"] is True
    no_display = subprocess.run(
        [sys.executable, "-m", "vlagent.apps.sample_desktop", "--state", str(state)],
        env={"PATH": "/usr/bin:/bin"},
        timeout=20,
        capture_output=True,
        text=True,
    )
    assert no_display.returncode == 2 and "DISPLAY" in no_display.stderr


def test_state_file_is_replaced_atomically(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    write_json_atomic(path, {"a": "买牛奶"})
    write_json_atomic(path, {"a": "café"})
    assert json.loads(path.read_text(encoding="utf-8")) == {"a": "café"}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary files left behind
