"""tools/bench_state.py runs end to end with its smallest settings and prints the figures a reader looks for.

The figures themselves are not asserted (speed is the script's business), only that the rows
and ratios are there, are numbers, and that the verdicts over adb agree with the in-process ones.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_state_prints_its_ratios_against_the_in_process_state() -> None:
    env = {**os.environ, "ADBUTILS_ADB_PATH": shutil.which("false") or "false"}
    env.pop("ANDROID_ADB_SERVER_PORT", None)
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "bench_state.py"), "--repeat", "1", "--nodes", "500"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
    )
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    out = result.stdout
    for pattern in (
        r"dump \+ parse / in-process look: ([\d.]+)x",
        r"judge over adb / in-process judge: ([\d.]+)x",
        r"parse_hierarchy of 500 nodes \([\d.]+ MB\): ([\d.]+) ms",
        r"parse_hierarchy / bare ElementTree: ([\d.]+)x",
    ):
        match = re.search(pattern, out)
        assert match and float(match[1]) > 0, f"no {pattern!r} in:\n{out}"
    assert "verdicts over adb agree with the in-process state: yes" in out
