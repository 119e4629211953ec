"""Render a vlagent HTML report in headless Chromium and save a PNG screenshot.

    python tools/screenshot_report.py runs/eval/report.html out.png [--size 1280,900]

Uses Debian's ``chromium`` (``apt-get install -y chromium``) with a throw-away profile and
no network activity of its own. Exits non-zero when Chromium is missing or writes nothing.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def screenshot(page: Path, out: Path, size: str = "1280,900", timeout: float = 60.0) -> Path:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        raise SystemExit("chromium is not installed: apt-get install -y chromium")
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            f"--user-data-dir={profile}",
            f"--screenshot={out.resolve()}",
            f"--window-size={size}",
            page.resolve().as_uri(),
        ]
        subprocess.run(cmd, check=False, timeout=timeout, capture_output=True)
    if not out.exists() or out.stat().st_size == 0:
        raise SystemExit(f"chromium wrote no screenshot for {page}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("page", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", default="1280,900")
    args = parser.parse_args(argv)
    print(screenshot(args.page, args.out, args.size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
