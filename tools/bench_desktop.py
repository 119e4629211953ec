"""Desktop driver overhead per step: capture, click, type, and pyautogui's defaults vs ours.

Usage: ``python tools/bench_desktop.py [--repeat N]``. Starts its own Xvfb (1280x800x24)
when DISPLAY is unset. Prints milliseconds per operation (median) and ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from contextlib import ExitStack


def _median_ms(fn: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    with ExitStack() as stack:
        if not os.environ.get("DISPLAY"):
            from vlagent.drivers.xvfb import VirtualDisplay

            os.environ.update(stack.enter_context(VirtualDisplay(1280, 800, 24)).env)
        from vlagent.actions import Click, Key, Type
        from vlagent.drivers import open_driver

        ours = stack.enter_context(open_driver("desktop"))
        n = args.repeat
        rows: dict[str, float] = {}
        rows["screenshot (1280x800 -> Frame)"] = _median_ms(ours.screenshot, n)
        rows["click, ours (PAUSE 0)"] = _median_ms(lambda: ours.execute(Click(x=700, y=500)), n)
        rows["key, ours"] = _median_ms(lambda: ours.execute(Key(key="escape")), n)
        rows["type 10 ASCII chars, ours"] = _median_ms(lambda: ours.execute(Type(text="abcdefghij")), max(3, n // 5))
        defaults = stack.enter_context(open_driver("desktop", pause=0.1, failsafe=True))
        rows["click, pyautogui defaults (PAUSE 0.1)"] = _median_ms(
            lambda: defaults.execute(Click(x=700, y=500)), max(3, n // 5)
        )
        rows["type 10 ASCII chars, pyautogui defaults"] = _median_ms(
            lambda: defaults.execute(Type(text="abcdefghij")), 3
        )
        dry = stack.enter_context(open_driver("desktop", dry_run=True))
        rows["click, dry run"] = _median_ms(lambda: dry.execute(Click(x=700, y=500)), n)
        for name, ms in rows.items():
            print(f"{name:45s} {ms:9.2f} ms")
        ratio_click = rows["click, pyautogui defaults (PAUSE 0.1)"] / rows["click, ours (PAUSE 0)"]
        ratio_type = rows["type 10 ASCII chars, pyautogui defaults"] / rows["type 10 ASCII chars, ours"]
        step_ours = rows["screenshot (1280x800 -> Frame)"] * 2 + rows["click, ours (PAUSE 0)"]
        step_default = rows["screenshot (1280x800 -> Frame)"] * 2 + rows["click, pyautogui defaults (PAUSE 0.1)"]
        print(f"click: defaults / ours = {ratio_click:.0f}x; type 10 chars: {ratio_type:.1f}x")
        print(f"per click step (2 captures + click): ours {step_ours:.1f} ms, defaults {step_default:.1f} ms")


if __name__ == "__main__":
    main()
