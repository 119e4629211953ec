"""Benchmark the simulated phone: render times (cold, after a change, cached) and driver steps/s.

Usage: python tools/bench_sim.py [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from vlagent.actions import Click
from vlagent.drivers.sim import SimDriver, SimPhone


def _ms(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), max(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()

    t0 = time.perf_counter()
    phone = SimPhone()
    phone.render()
    print(f"first render in a fresh process (loads fonts): {(time.perf_counter() - t0) * 1000:.1f} ms")

    for screen in ("Settings", "Notes", "Contacts", "Camera"):
        phone.open_app(screen)

        def changed(phone: SimPhone = phone) -> None:
            phone.set_toggle("nfc", not phone.toggles["nfc"])  # a new state: the cache cannot help
            phone.render(copy=False)

        med, worst = _ms(changed, args.repeat)
        print(f"render after a state change, {screen:<9}: median {med:5.1f} ms, max {worst:5.1f} ms")
    phone.open_app("Notes")
    phone.tap(*(phone.locate("New note") or (0, 0)))
    phone.tap(*(phone.locate("Note text") or (0, 0)))
    med, worst = _ms(lambda: (phone.type_text("a"), phone.render(copy=False)), args.repeat)
    print(f"render after typing (editor + keyboard): median {med:5.1f} ms, max {worst:5.1f} ms")

    med, _ = _ms(lambda: phone.render(copy=False), args.repeat)
    print(f"cached render, no copy: median {med:.3f} ms")
    med, _ = _ms(phone.render, args.repeat)
    print(f"cached render, copy (default): median {med:.3f} ms")

    driver = SimDriver(SimPhone())
    driver.phone.open_app("Settings")
    x, y = driver.phone.locate("Wi-Fi") or (0, 0)
    steps = args.repeat * 4
    t0 = time.perf_counter()
    for _ in range(steps):
        driver.execute(Click(x=x, y=y))
        driver.screenshot()
    elapsed = time.perf_counter() - t0
    print(f"driver tap + screenshot: {steps / elapsed:.0f} steps/s ({elapsed / steps * 1000:.1f} ms/step)")


if __name__ == "__main__":
    main()
