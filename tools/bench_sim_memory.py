"""Memory of the simulated adb server over a long session: RSS while N shell commands run through adbutils.

Serves one SimPhone over the real adb protocol on loopback, in this process, and sends
``--commands`` shell commands through adbutils from ``--threads`` client threads, a mix of
what a long ``vlagent sim serve`` session sees: short ``echo``, ``echo`` with a 2 KB argument,
``log`` with a 2 KB message (logcat) and ``input text`` (no field has focus: a phone event).
Every answer is checked. Prints the process's RSS (VmRSS) at the start, every 10% and at
the end, the blocks Python's allocator holds, and what the phone keeps about past commands:
its command log and command lines (bounded by ``LOG_SIZE``), its logcat ring and its event
list. RSS is the whole process (client and server); what matters is that it levels off
instead of growing with the command count.

    python tools/bench_sim_memory.py [--commands 100000] [--threads 32] [--long 2000]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import count

import adbutils

from vlagent.drivers.sim.adb_server import SimAdbServer, serve_sim
from vlagent.drivers.sim.device import LOG_SIZE
from vlagent.drivers.sim.world import SimPhone


def rss_mb() -> float:
    """This process's resident set size in MB (VmRSS; the peak from getrusage where /proc is missing)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def command(i: int, long_text: str) -> tuple[list[str] | str, str | None]:
    """The i-th command of the mix and the output it must print (None: not checked)."""
    kind = i % 4
    if kind == 0:
        return f"echo short {i}", f"short {i}"
    if kind == 1:
        return f"echo {i} {long_text}", f"{i} {long_text}"
    if kind == 2:
        return ["log", "-t", "Bench", f"{i} {long_text}"], ""
    return ["input", "text", f"word{i}"], ""


def kept_kib(server: SimAdbServer) -> float:
    """Characters the phone keeps about past commands: command log, command lines, logcat ring, events."""
    dev = server["sim-0"]
    chars = sum(len(arg) for argv in dev.log for arg in argv) + sum(map(len, dev.lines))
    return (chars + dev.logcat.size + sum(map(len, dev.phone.events))) / 1024


def report(label: str, done: int, start: float, server: SimAdbServer) -> None:
    dev = server["sim-0"]
    print(
        f"{label:>5} {done:>8,} commands {time.monotonic() - start:>6.1f} s  RSS {rss_mb():>6.1f} MB  "
        f"Python blocks {sys.getallocatedblocks():>9,}  kept {kept_kib(server):>6.0f} KiB: "
        f"command log {len(dev.log):>5}, lines {len(dev.lines):>5}, logcat {len(dev.logcat.entries):>4}, "
        f"events {len(dev.phone.events):>3}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=100_000, help="shell commands to send (default 100,000)")
    parser.add_argument("--threads", type=int, default=32, help="client threads sending them (default 32)")
    parser.add_argument("--long", type=int, default=2000, help="characters of the long argument (default 2,000)")
    args = parser.parse_args()
    if args.commands < 1 or args.threads < 1 or args.long < 0:
        parser.error("--commands and --threads must be >= 1, --long >= 0")
    # Never let adbutils start a real adb server while benchmarking the simulated one.
    os.environ.setdefault("ADBUTILS_ADB_PATH", shutil.which("false") or "false")

    long_text = "x" * args.long
    with serve_sim([SimPhone(serial="sim-0")], port=0) as server:
        device = adbutils.AdbClient(port=server.port).device("sim-0")
        print(
            f"bench_sim_memory: {args.commands:,} shell commands through adbutils from {args.threads} threads "
            f"(long argument {args.long:,} characters; command log keeps {LOG_SIZE:,})",
            flush=True,
        )
        start = time.monotonic()
        before = rss_mb()
        report("start", 0, start, server)
        todo, done, wrong = count(), count(1), []
        lock = threading.Lock()
        marks = {args.commands * step // 10 for step in range(1, 10)} - {0}

        def client() -> None:
            """Send commands until all are sent (one at a time: the client holds nothing that grows)."""
            while True:
                with lock:
                    i = next(todo)
                if i >= args.commands:
                    return
                cmd, expected = command(i, long_text)
                output = device.shell(cmd, timeout=60)
                if expected is not None and output != expected:
                    wrong.append(i)
                with lock:
                    finished = next(done)
                    if finished in marks:
                        report(f"{finished * 100 // args.commands}%", finished, start, server)

        with ThreadPoolExecutor(args.threads) as pool:
            for future in [pool.submit(client) for _ in range(args.threads)]:
                future.result()
        elapsed = time.monotonic() - start
        report("end", args.commands, start, server)
        after = rss_mb()
        dev = server["sim-0"]
        print(
            f"\nRSS {before:.1f} MB -> {after:.1f} MB ({after - before:+.1f} MB) after {args.commands:,} commands "
            f"in {elapsed:.1f} s ({args.commands / elapsed:,.0f} commands/s); command log {len(dev.log):,} entries "
            f"(cap {LOG_SIZE:,}); wrong answers: {len(wrong)}"
        )
        if wrong:
            raise SystemExit(f"{len(wrong)} commands answered wrongly, e.g. command {wrong[0]}")


if __name__ == "__main__":
    main()
