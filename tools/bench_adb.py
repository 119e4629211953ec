"""Per-step latency of the phone over adb against the in-process simulated phone.

Serves one SimPhone over the real adb protocol on loopback (in a separate process, like a
phone) and measures, in one run:
screen capture by raw ``screencap`` and by ``screencap -p`` through AdbDriver, a tap and a
short text through AdbDriver, and the same operations through the in-process SimDriver.
Prints medians and ratios. Usage: ``python tools/bench_adb.py [--repeat 30]``.

Loopback numbers isolate vlagent's own cost (protocol, quoting, encoding/decoding); on a
real phone add the device's time (screencap -p ~2 s, raw ~0.7 s, input tap 0.2-1 s).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

from vlagent.actions import Click, Type
from vlagent.drivers.android import AdbConfig, AdbDriver
from vlagent.drivers.sim import SimDriver, SimPhone


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm caches and connections
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


@contextlib.contextmanager
def _server_process() -> Iterator[int]:
    """The simulated adb server in its own process, as a phone is: no shared interpreter lock."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    code = f"from vlagent.drivers.sim.adb_server import serve_forever; serve_forever({port}, ['sim-0'], 0, 0.0)"
    process = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the simulated adb server did not start") from None
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    # Never let adbutils start a real adb server while benchmarking the simulated one.
    os.environ.setdefault("ADBUTILS_ADB_PATH", shutil.which("false") or "false")

    sim = SimDriver(SimPhone(serial="local"))
    blank = (1060, 300)  # a spot with no element: the screen does not change between captures
    with _server_process() as port:
        raw = AdbDriver("sim-0", AdbConfig(port=port, screencap="raw"))
        png = AdbDriver("sim-0", AdbConfig(port=port, screencap="png"))
        rows = [
            ("capture", median_ms(sim.screenshot, args.repeat), median_ms(raw.screenshot, args.repeat)),
            ("capture (png)", None, median_ms(png.screenshot, args.repeat)),
            (
                "tap",
                median_ms(lambda: sim.execute(Click(x=blank[0], y=blank[1])), args.repeat),
                median_ms(lambda: raw.execute(Click(x=blank[0], y=blank[1])), args.repeat),
            ),
            (
                "type 12 chars",
                median_ms(lambda: sim.execute(Type(text="hello world!")), args.repeat),
                median_ms(lambda: raw.execute(Type(text="hello world!")), args.repeat),
            ),
        ]
    sim_capture = rows[0][1]
    header = f"{'operation':<16}{'sim in-process ms':>19}{'adb loopback ms':>17}{'ratio':>8}"
    print(header)
    print("-" * len(header))
    for name, local, remote in rows:
        base = local if local is not None else sim_capture
        local_text = f"{local:.2f}" if local is not None else "-"
        ratio = remote / base if base else float("nan")
        print(f"{name:<16}{local_text:>19}{remote:>17.2f}{ratio:>7.1f}x")
    raw_ms, png_ms = rows[0][2], rows[1][2]
    print(f"\npng / raw capture over adb: {png_ms / raw_ms:.1f}x  (repeat={args.repeat}, 1080x2400 screen)")


if __name__ == "__main__":
    main()
