"""Per-step framework overhead on the simulated phone (no model).

Measures, in one run and on the same scripted actions:
  bare      driver.screenshot() + driver.execute(action) in a plain for-loop
  loop      run_episode (observation, memory selection, hooks) without recording
  recorded  run_episode with the crash-safe Recorder (PNG frames, fsync per line)
and prints milliseconds per step and the ratio to the bare baseline. With ``--model-ms N``
the two episode cases also run with a policy that thinks for N ms per step, showing how
much of the recorder's frame encoding is hidden behind the model (it runs on a worker
thread from capture until the step line is written).

    python tools/bench_loop.py [--steps 100] [--model-ms 150]
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
from vlagent.policies.base import Observation
from vlagent.policies.scripted import ScriptedPolicy, ScriptItem
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


def _thinking(action: Action, seconds: float) -> Callable[[Observation], Action]:
    def item(obs: Observation) -> Action:
        time.sleep(seconds)
        return action

    return item


def _episode(steps: int, record: bool, model_s: float = 0.0) -> float:
    driver = SimDriver()
    driver.phone.open_app("Settings")
    script: list[ScriptItem] = [_thinking(a, model_s) if model_s else a for a in _script(steps)]
    with tempfile.TemporaryDirectory() as tmp:
        hooks = [Recorder(tmp)] if record else []
        t0 = time.perf_counter()
        episode = run_episode("bench", driver, ScriptedPolicy(script), max_steps=steps, hooks=hooks)
        elapsed = time.perf_counter() - t0
    assert len(episode.steps) == steps
    return elapsed / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model-ms", type=float, default=0.0, help="also run with a policy thinking this long")
    args = parser.parse_args()
    cases: dict[str, Callable[[], float]] = {
        "bare": lambda: _bare(args.steps),
        "loop": lambda: _episode(args.steps, record=False),
        "recorded": lambda: _episode(args.steps, record=True),
    }
    if args.model_ms:
        think = args.model_ms / 1000
        cases["loop+model"] = lambda: _episode(args.steps, record=False, model_s=think)
        cases["rec+model"] = lambda: _episode(args.steps, record=True, model_s=think)
    results = {name: statistics.median(fn() for _ in range(args.repeats)) for name, fn in cases.items()}
    base = results["bare"]
    print(f"per-step time on the simulated phone, {args.steps} steps, median of {args.repeats}")
    print(f"{'case':<11} {'ms/step':>9} {'x bare':>8}")
    for name, seconds in results.items():
        print(f"{name:<11} {seconds * 1000:9.2f} {seconds / base:8.2f}")
    if args.model_ms:
        hidden = results["rec+model"] - results["loop+model"]
        print(
            f"recorder cost with a {args.model_ms:g} ms model: {hidden * 1000:.2f} ms/step "
            f"(without a model: {(results['recorded'] - results['loop']) * 1000:.2f} ms/step)"
        )


if __name__ == "__main__":
    main()
