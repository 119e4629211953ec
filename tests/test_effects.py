"""Effect checks, settle-waiting and loop detection, on fake screens and on the simulated phone."""

from __future__ import annotations

import itertools
import statistics
import time

import pytest
from PIL import Image, ImageChops, ImageDraw

from vlagent.actions import Action, Click, Done, Key, OpenApp, Scroll, Swipe
from vlagent.agent import EndReason, run_episode
from vlagent.drivers.base import BaseDriver
from vlagent.drivers.sim import SimDriver, SimPhone
from vlagent.effects import (
    FrameChange,
    Settle,
    frame_change,
    frames_equal,
    hash_distance,
    screen_hash,
)
from vlagent.frames import Frame
from vlagent.memory import TrajectoryMemory
from vlagent.policies.base import Observation
from vlagent.policies.scripted import ScriptedPolicy
from vlagent.watchers import LoopConfig, LoopDetector


class FakeClock:
    """Time that moves only when someone sleeps: settle tests run instantly and exactly."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def page(width: int = 1080, height: int = 2400, lines: int = 30) -> Image.Image:
    image = Image.new("RGB", (width, height), (240, 240, 240))
    draw = ImageDraw.Draw(image)
    for i in range(lines):
        draw.text((40, 60 + i * 70), f"row {i}: some text on the screen", fill=(20, 20, 20))
    return image


def with_box(image: Image.Image, box: tuple[int, int, int, int], colour: tuple[int, int, int]) -> Image.Image:
    changed = image.copy()
    ImageDraw.Draw(changed).rectangle(box, fill=colour)
    return changed


# --- frame_change ----------------------------------------------------------------------


def test_no_change_is_exactly_zero_and_sensor_noise_does_not_count() -> None:
    base = page()
    # Gaussian noise (sigma 6 grey levels) on every pixel, like a lossy capture.
    noise = Image.effect_noise(base.size, 6).convert("RGB")
    noisy = ImageChops.add(base, noise, scale=1.0, offset=-128)
    assert noisy.tobytes() != base.tobytes()
    click = Click(x=540, y=1200)
    assert frame_change(Frame.of(base), Frame.of(base.copy()), click) == 0.0
    assert frame_change(Frame.of(base), Frame.of(noisy), click) == 0.0


def test_small_change_counts_near_the_action_but_not_as_far_away_noise() -> None:
    base = page()
    # A 3x3 highlight: too small to survive the whole-screen 8x8 averaging, clear in the action window.
    tiny = with_box(base, (600, 1500, 602, 1502), (140, 140, 140))
    near, far = Click(x=601, y=1501), Click(x=100, y=300)
    assert frame_change(Frame.of(base), Frame.of(tiny), near) > 0.0
    assert frame_change(Frame.of(base), Frame.of(tiny), far) == 0.0


def test_a_visible_change_anywhere_counts() -> None:
    base = page()
    dialog = with_box(base, (100, 100, 300, 300), (0, 90, 200))
    for action in (Click(x=900, y=2200), Key(key="back"), Swipe(x1=500, y1=2000, x2=500, y2=800)):
        assert 0.0 < frame_change(Frame.of(base), Frame.of(dialog), action) < 0.05
    rotated = Frame.of(base.transpose(Image.Transpose.ROTATE_90))
    assert frame_change(Frame.of(base), rotated, Key(key="back")) == 1.0


def test_hidpi_frames_look_around_the_physical_point() -> None:
    # A 2x capture of a 540x1200 logical screen: the action's logical point maps to 2x pixels.
    base = page()
    tiny = with_box(base, (1000, 2000, 1002, 2002), (140, 140, 140))
    before, after = Frame.of(base, scale=2.0), Frame.of(tiny, scale=2.0)
    assert frame_change(before, after, Click(x=500, y=1000)) > 0.0
    assert frame_change(before, after, Click(x=100, y=100)) == 0.0


def test_frame_change_is_fast_on_phone_screenshots() -> None:
    phone = SimPhone()
    frames = []
    for name in ("Settings", "Notes", "Contacts", "Clock") * 5:
        phone.open_app(name)
        frames.append(Frame.of(phone.render()))
    check = FrameChange()
    timings = []
    for before, after in itertools.pairwise(frames):
        start = time.perf_counter()
        assert check(before, after, Click(x=540, y=1200)) > 0.0
        timings.append(time.perf_counter() - start)
    # ~2 ms per step measured on 2 cores; the bound leaves room for a loaded machine.
    assert statistics.median(timings) < 0.010


# --- settle ----------------------------------------------------------------------------


class FakeAnimatedDriver(BaseDriver):
    """A fake screen: after each action it plays ``steps`` changing frames, one per ``frame_time``."""

    name = "fake-animated"

    def __init__(self, clock: FakeClock, steps: int = 5, frame_time: float = 0.05, forever: bool = False) -> None:
        self.clock, self.steps, self.frame_time, self.forever = clock, steps, frame_time, forever
        self.started = clock()
        self.captures = 0
        self.final = page(540, 1200, 10)

    def screen_size(self) -> tuple[int, int]:
        return 540, 1200

    def screenshot(self) -> Frame:
        self.captures += 1
        step = int((self.clock() - self.started) / self.frame_time)
        if self.forever or step < self.steps:
            y = 100 + (step % 40) * 25  # a panel sliding down the screen
            return Frame.of(with_box(self.final, (0, y, 540, y + 200), (30, 30, 90)))
        return Frame.of(self.final.copy())

    def execute(self, action: Action) -> None:
        self.started = self.clock()


def test_settle_waits_for_the_animation_to_end() -> None:
    clock = FakeClock()
    # Binary fractions keep the fake time exact.
    driver = FakeAnimatedDriver(clock, steps=8, frame_time=0.0625)
    settle = Settle(interval=0.0625, stable_for=0.125, sleep=clock.sleep, clock=clock)
    driver.execute(Click(x=10, y=10))
    frame = settle(driver)
    assert frames_equal(frame, Frame.of(driver.final))
    assert clock() - driver.started == 0.5 + 0.125  # the animation, then the quiet period


def test_settle_gives_up_after_the_timeout_with_the_latest_frame() -> None:
    clock = FakeClock()
    driver = FakeAnimatedDriver(clock, forever=True)
    frame = Settle(timeout=1.5, interval=0.1, sleep=clock.sleep, clock=clock)(driver)
    assert clock() - driver.started == pytest.approx(1.5)
    assert not frames_equal(frame, Frame.of(driver.final))
    assert driver.captures == 16


def test_settle_on_the_sim_phone_returns_the_screen_after_the_transition() -> None:
    clock = FakeClock()
    phone = SimPhone(transition_delay=0.25, clock=clock)
    driver = SimDriver(phone, sleep=clock.sleep)
    home = driver.screenshot()
    driver.execute(OpenApp(name="Settings"))
    immediate = driver.screenshot()
    assert phone.in_transition and "Loading…" not in phone.text_on_screen()
    settled = Settle(interval=0.1, stable_for=0.3, sleep=clock.sleep, clock=clock)(driver)
    clock.sleep(10)
    final = driver.screenshot()
    assert not phone.in_transition and phone.screen == "settings"
    assert frames_equal(settled, final)
    assert not frames_equal(settled, immediate) and not frames_equal(settled, home)


def test_two_equal_captures_alone_would_stop_on_a_static_loading_screen() -> None:
    # Why ``stable_for`` exists: the sim's transition frame does not move.
    clock = FakeClock()
    phone = SimPhone(transition_delay=0.25, clock=clock)
    driver = SimDriver(phone, sleep=clock.sleep)
    driver.execute(OpenApp(name="Settings"))
    early = Settle(interval=0.05, stable_for=0.0, sleep=clock.sleep, clock=clock)(driver)
    clock.sleep(10)
    assert not frames_equal(early, driver.screenshot())


# --- loop detection on the simulated phone ---------------------------------------------


def empty_point(phone: SimPhone) -> tuple[int, int]:
    """A point of the home screen, well away from anything that reacts to a tap."""
    boxes = [e.hit_box for e in phone.elements() if e.on_tap is not None or e.opaque]
    for y in range(300, phone.height - 300, 20):
        for x in range(40, phone.width - 40, 20):
            if not any(x0 - 30 <= x < x1 + 30 and y0 - 30 <= y < y1 + 30 for x0, y0, x1, y1 in boxes):
                return x, y
    raise AssertionError("no empty point on the home screen")


def run_sim(script: list, hooks: list, max_steps: int = 20):
    phone = SimPhone()
    driver = SimDriver(phone)
    policy = ScriptedPolicy(script)
    memory = TrajectoryMemory()
    episode = run_episode("test", driver, policy, max_steps=max_steps, memory=memory, hooks=hooks, effect=FrameChange())
    return phone, episode, memory


def test_tapping_an_empty_area_repeatedly_ends_stuck() -> None:
    x, y = empty_point(SimPhone())
    _, episode, memory = run_sim([Click(x=x, y=y)] * 10, [LoopDetector()])
    assert episode.end is EndReason.STUCK
    assert len(episode.steps) == 3
    assert "changed nothing on the screen 3 times" in episode.detail
    assert [e.effect for e in memory.history] == ["no visible change"] * 3


def test_nearby_taps_count_as_the_same_action_but_other_actions_reset_the_count() -> None:
    x, y = empty_point(SimPhone())
    jittered = [Click(x=x, y=y), Click(x=x + 5, y=y - 5)]
    _, episode, _ = run_sim([*jittered, Key(key="menu"), *jittered, Done()], [LoopDetector()])
    assert episode.end is EndReason.DONE_SUCCESS  # menu does nothing too, but it is a different action

    _, episode, _ = run_sim([*jittered, Click(x=x - 4, y=y + 3), Done()], [LoopDetector()])
    assert episode.end is EndReason.STUCK


def test_hint_mode_tells_the_model_and_stops_after_the_hints_run_out() -> None:
    x, y = empty_point(SimPhone())
    hints: list[str | None] = []

    def tap(obs: Observation) -> Action:
        hints.append(obs.hint)
        return Click(x=x, y=y)

    detector = LoopDetector(LoopConfig(on_stuck="hint", max_hints=1))
    _, episode, _ = run_sim([tap] * 10, [detector])
    assert hints[:3] == [None, None, None]
    assert hints[3] is not None and "changed nothing" in hints[3] and "try something else" in hints[3]
    assert hints[4] is None  # a hint is said once, not repeated every step
    assert episode.end is EndReason.STUCK and len(episode.steps) == 6
    assert detector.hints == 1


def test_going_back_and_forth_between_two_screens_ends_stuck() -> None:
    script = [OpenApp(name="Settings"), Key(key="back")] * 5
    _, episode, _ = run_sim(script, [LoopDetector()])
    assert episode.end is EndReason.STUCK
    assert len(episode.steps) == 5  # home, settings, home, settings, home, settings
    assert "cycle of 2 screens" in episode.detail


def test_purposeful_actions_are_not_a_loop() -> None:
    script = [
        OpenApp(name="Settings"),
        Scroll(direction="down"),
        Scroll(direction="down"),
        Key(key="home"),
        OpenApp(name="Notes"),
        Key(key="back"),
        OpenApp(name="Contacts"),
        Done(),
    ]
    _, episode, _ = run_sim(script, [LoopDetector()])
    assert episode.end is EndReason.DONE_SUCCESS, episode.detail


def test_screen_hash_separates_screens_and_matches_repeats() -> None:
    phone = SimPhone()
    home = Frame.of(phone.render())
    phone.open_app("Settings")
    settings = Frame.of(phone.render())
    assert hash_distance(screen_hash(home), screen_hash(Frame.of(home.image.copy()))) == 0
    assert hash_distance(screen_hash(home), screen_hash(settings)) > 40
