"""Test helper: ``vlagent sim serve`` as a real process on a free loopback port."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def sim_serve(*options: str, port: int | None = None) -> Iterator[int]:
    """Run ``vlagent sim serve --port PORT OPTIONS...`` until the block ends; yields the port once
    it accepts connections (the test fails, with the server's stderr, if it does not in 30 s)."""
    port = port or free_port()
    argv = [sys.executable, "-m", "vlagent.cli", "sim", "serve", "--port", str(port), *options]
    server = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    server.kill()
                    _, err = server.communicate(timeout=10)
                    pytest.fail(f"vlagent sim serve did not start: {err}")
                time.sleep(0.2)
        yield port
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        if server.stderr is not None:
            server.stderr.close()
