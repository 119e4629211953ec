"""Reports: external JPEG thumbnails with the action drawn, fast for long runs."""

from __future__ import annotations

import time
from pathlib import Path

from PIL import Image

from vlagent.actions import Click, Scroll, Step
from vlagent.agent import Episode, StepRecord
from vlagent.frames import Frame
from vlagent.policies.base import Decision
from vlagent.recorder import Recorder
from vlagent.report import draw_action, write_report


def fake_run(run_dir: Path, steps: int) -> None:
    recorder = Recorder(run_dir, image_format="jpeg")
    episode = Episode(task="a long run")

    class Named:
        name = "fake"

    recorder.on_start(episode, Named(), Named())  # type: ignore[arg-type]
    for i in range(steps):
        frame = Frame.of(Image.new("RGB", (270, 600), (i % 255, 90, 160)))
        action = Click(x=100, y=200) if i % 2 else Scroll(direction="down")
        record = StepRecord(i, frame, Decision(Step(thought=f"step <{i}>", action=action)), 0.01, 0.02)
        episode.steps.append(record)
        recorder.on_decision(episode, record)
    recorder.on_end(episode)


def test_run_report_has_external_thumbnails_and_is_fast(tmp_path: Path) -> None:
    fake_run(tmp_path, 1000)
    started = time.perf_counter()
    page_path = write_report(tmp_path)
    first = time.perf_counter() - started
    page = page_path.read_text(encoding="utf-8")
    assert page.count('<img loading="lazy" src="thumbs/step_') == 1000
    assert "base64" not in page and "data:image" not in page
    assert "step &lt;999&gt;" in page  # thoughts are escaped
    assert len(list((tmp_path / "thumbs").glob("*.jpg"))) == 1000
    assert len(page) < 1000 * 800  # a light page: under 800 bytes a step
    assert first < 30
    started = time.perf_counter()
    write_report(tmp_path)  # thumbnails are reused
    assert time.perf_counter() - started < first / 2 + 0.5


def test_click_marker_and_swipe_arrow_are_drawn() -> None:
    blank = Image.new("RGB", (540, 1200), (255, 255, 255))
    clicked = draw_action(blank, Click(x=540, y=1200), (1080, 2400))
    assert clicked.getpixel((270, 600)) == (229, 57, 53)
    scrolled = draw_action(blank, Scroll(direction="down"), (1080, 2400))
    # scrolling down: the finger moves up from the centre
    assert scrolled.getpixel((270, 500)) == (30, 136, 229)
    assert blank.getpixel((270, 600)) == (255, 255, 255)  # the input is not modified
