"""Every usage mistake a user can make on the command line is one line on stderr and exit 2.

Each case runs the real ``vlagent`` command in a subprocess; a traceback, a hang or another
exit code fails the case.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

_SCRIPT = "- {action: wait, seconds: 0}\n- {action: done}\n"


def vlagent(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "ADBUTILS_ADB_PATH": "/bin/false", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "vlagent.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
    )


def _binary(path: Path) -> Path:
    path.write_bytes(bytes(range(256)) * 8)
    return path


def _script(tmp: Path) -> str:
    (tmp / "script.yaml").write_text(_SCRIPT, encoding="utf-8")
    return str(tmp / "script.yaml")


def _busy_port() -> tuple[socket.socket, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock, sock.getsockname()[1]


Case = Callable[[Path], list[str]]

CASES: dict[str, tuple[Case, str]] = {
    "port out of range": (lambda t: ["sim", "serve", "--port", "99999"], "99999"),
    "negative transition delay": (lambda t: ["sim", "serve", "--transition-delay", "-1"], "transition-delay"),
    "NaN transition delay": (lambda t: ["sim", "serve", "--transition-delay", "nan"], "transition-delay"),
    "duplicate serial": (lambda t: ["sim", "serve", "--serial", "a", "--serial", "a"], "given twice: a"),
    "config that is not a mapping per command": (
        lambda t: ["--config", str(_write(t / "c.yaml", "run: 5\n")), "run", "x"],
        "must map option names",
    ),
    "config that is not UTF-8": (lambda t: ["--config", str(_binary(t / "c.yaml")), "run", "x"], "not UTF-8"),
    "out in an unwritable place": (
        lambda t: ["run", "x", "--script", _script(t), "--out", str(_write(t / "file", "x") / "runs")],
        "cannot",
    ),
    "out is a file": (lambda t: ["run", "x", "--script", _script(t), "--out", str(_write(t / "f", "x"))], "f"),
    "show on a binary file": (lambda t: ["show", str(_binary(t / "b.bin"))], "not UTF-8"),
    "show on a binary trajectory": (lambda t: ["show", str(_binary_run(t))], "not UTF-8"),
    "report on a binary trajectory": (lambda t: ["report", str(_binary_run(t))], "not UTF-8"),
    "replay a binary run": (lambda t: ["replay", str(_binary_run(t)), "--out", str(t / "r")], "not UTF-8"),
    "replay a binary scenario": (lambda t: ["replay", str(_binary(t / "s.yaml")), "--out", str(t / "r")], "UTF-8"),
    "non-UTF-8 script": (lambda t: ["run", "x", "--script", str(_binary(t / "s.yaml"))], "not UTF-8"),
    "settle timeout NaN": (lambda t: ["run", "x", "--script", _script(t), "--settle-timeout", "nan"], "nan"),
    "settle timeout infinite": (lambda t: ["run", "x", "--script", _script(t), "--settle-timeout", "inf"], "inf"),
    "NaN temperature": (lambda t: ["run", "x", "--script", _script(t), "--temperature", "nan"], "temperature"),
    "negative sampling seed": (lambda t: ["eval", str(t), "--seed", "-1"], "seed"),
    "settle stable negative": (lambda t: ["run", "x", "--script", _script(t), "--settle-stable", "-0.5"], "-0.5"),
    "zero max pixels": (lambda t: ["run", "x", "--script", _script(t), "--max-pixels", "0"], "max-pixels"),
    "secret not in the environment": (
        lambda t: ["run", "type {{NOPE_NOT_SET}}", "--script", _script(t), "--secret", "NOPE_NOT_SET"],
        "NOPE_NOT_SET",
    ),
    "secret with a bad name": (lambda t: ["run", "x", "--script", _script(t), "--secret", "A-B"], "secret name"),
    "resume and overwrite together": (
        lambda t: ["eval", str(_binary(t / "s.yaml")), "--resume", "--overwrite"],
        "exclude each other",
    ),
    "unknown device": (lambda t: ["run", "x", "--script", _script(t), "--device", "toaster"], "toaster"),
}


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _binary_run(tmp: Path) -> Path:
    run = tmp / "run"
    run.mkdir()
    _binary(run / "trajectory.jsonl")
    return run


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_usage_mistake_is_one_line_and_exit_2(tmp_path: Path, name: str) -> None:
    make_args, needle = CASES[name]
    result = vlagent(*make_args(tmp_path), cwd=tmp_path)
    assert result.returncode == 2, f"{name}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert needle in result.stderr, result.stderr
    # click's usage errors come as "Usage: ... / Try ... / Error: ..."; ours as one "error: ..." line
    assert len(lines) <= 3, result.stderr


def test_a_port_in_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    sock, port = _busy_port()
    with sock:
        result = vlagent("sim", "serve", "--port", str(port), cwd=tmp_path, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and str(port) in result.stderr
