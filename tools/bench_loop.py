"""Per-step framework overhead on the simulated phone (no model).

Measures, in one run and on the same scripted actions:
  bare      driver.screenshot() + driver.execute(action) in a plain for-loop
  loop      run_episode (observation, memory selection, hooks) without recording
  recorded  run_episode with the crash-safe Recorder (PNG frames, fsync per line)
and prints milliseconds per step and the ratio to the bare baseline.

    python tools/bench_loop.py [--steps 100]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable

from vlagent.actions import Action, Scroll
from vlagent.agent import run_episode
from vlagent.drivers.sim import SimDriver
from vlagent.policies.scripted import ScriptedPolicy
from vlagent.recorder import Recorder


def _script(n: int) -> list[Action]:
    # alternate scrolls in Settings so every frame differs and must be rendered
    return [Scroll(direction="down" if i % 4 < 2 else "up") for i in range(n)]


def _bare(steps: int) -> float:
    driver = SimDriver()
    driver.phone.open_app("Settings")
    t0 = time.perf_counter()
    for action in _script(steps):
        driver.screenshot()
        driver.execute(action)
    return (time.perf_counter() - t0) / steps


def _episode(steps: int, record: bool) -> float:
    driver = SimDriver()
    driver.phone.open_app("Settings")
    with tempfile.TemporaryDirectory() as tmp:
        hooks = [Recorder(tmp)] if record else []
        t0 = time.perf_counter()
        episode = run_episode("bench", driver, ScriptedPolicy(_script(steps)), max_steps=steps, hooks=hooks)
        elapsed = time.perf_counter() - t0
    assert len(episode.steps) == steps
    return elapsed / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cases: dict[str, Callable[[], float]] = {
        "bare": lambda: _bare(args.steps),
        "loop": lambda: _episode(args.steps, record=False),
        "recorded": lambda: _episode(args.steps, record=True),
    }
    results = {name: statistics.median(fn() for _ in range(args.repeats)) for name, fn in cases.items()}
    base = results["bare"]
    print(f"per-step time on the simulated phone, {args.steps} steps, median of {args.repeats}")
    print(f"{'case':<10} {'ms/step':>9} {'x bare':>8}")
    for name, seconds in results.items():
        print(f"{name:<10} {seconds * 1000:9.2f} {seconds / base:8.2f}")


if __name__ == "__main__":
    main()
