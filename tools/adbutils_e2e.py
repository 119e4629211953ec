"""Run adbutils' own device tests (``e2etests/`` of its source distribution) against ``vlagent sim serve``.

    python tools/adbutils_e2e.py            # exit status 0: every test passed or failed as listed
    python tools/adbutils_e2e.py -- -k sync # extra arguments after -- go to pytest

Downloads the sdist of the installed adbutils version into the clone's ``.cache/`` (once; pip
from the package index, nothing else), extracts ``e2etests/``, serves one simulated phone on a
free loopback port, and runs pytest on the tests with ``ANDROID_ADB_SERVER_PORT`` pointing at
it. Tests named in ``tools/adbutils_e2e_known_failures.txt`` are marked xfail(strict=True) with
the reason given there (:mod:`adbutils_e2e_plugin`), so a listed test that starts passing fails
the run too: the list must stay true. adbutils' code is never copied into this repository.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "adbutils-e2e"
KNOWN = Path(__file__).resolve().parent / "adbutils_e2e_known_failures.txt"
SERIAL = "sim-0"


def _sdist(version: str) -> Path:
    archive = CACHE / f"adbutils-{version}.tar.gz"
    if not archive.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
             "--no-binary", ":all:", f"adbutils=={version}", "-d", str(CACHE)],
            check=True,
        )  # fmt: skip
    return archive


def _extract(archive: Path, version: str) -> Path:
    """``e2etests/`` (and nothing else) of the sdist, under ``.cache/``."""
    top = f"adbutils-{version}"
    target = CACHE / top
    if not (target / "e2etests" / "conftest.py").exists():
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(f"{top}/e2etests/") and m.isfile()]
            tar.extractall(CACHE, members=members, filter="data")
    # An empty config of its own, so pytest does not climb up to this repository's settings.
    (target / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    return target


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, server: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"vlagent sim serve exited with status {server.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"vlagent sim serve did not listen on port {port} within {timeout:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    version = importlib.metadata.version("adbutils")
    tests = _extract(_sdist(version), version)
    port = _free_port()
    env = {
        **os.environ,
        "ANDROID_ADB_SERVER_PORT": str(port),
        "ANDROID_SERIAL": SERIAL,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")])),
        "ADBUTILS_E2E_KNOWN": str(KNOWN),
    }
    adb = shutil.which("adb")
    if adb is None:  # test_pull_push_dirs runs `adb push`; without the CLI it cannot pass
        print("adbutils_e2e: no adb CLI on PATH (apt-get install adb): test_pull_push_dirs will fail", file=sys.stderr)
    else:
        env["ADBUTILS_ADB_PATH"] = adb
    server = subprocess.Popen(
        [sys.executable, "-c", "from vlagent.cli import main; main()", "sim", "serve", "--port", str(port),
         "--serial", SERIAL],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_listening(port, server)
        command = [
            # vlagent's own pytest plugin stays out: these are adbutils' tests, not vlagent's.
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:vlagent",
            "-p", "adbutils_e2e_plugin", "--rootdir", str(tests), "-rxXfE", "e2etests", *args.pytest_args,
        ]  # fmt: skip
        print(f"adbutils_e2e: adbutils {version} e2etests against vlagent sim serve on port {port}", flush=True)
        return subprocess.run(command, cwd=tests, env=env, check=False, timeout=300).returncode
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    sys.exit(main())
