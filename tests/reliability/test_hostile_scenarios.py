"""Malformed and hostile scenario files through ``vlagent eval``: each is one line naming the file,
exit 2, within seconds; nothing is written outside ``--out`` and no run starts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

_GOOD = "name: ok\ntask: t\ndevice: {kind: sim}\nsuccess:\n- {app: Home}\n"

HOSTILE: dict[str, bytes] = {
    "alias bomb": (
        b"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        b"e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
        b"name: bomb\ntask: t\nsuccess: [*f]\n"
    ),
    "recursive alias": b"name: r\ntask: t\nsuccess: &s [*s]\n",
    "not UTF-8": _GOOD.replace("task: t", "task: caf\xe9").encode("latin-1"),
    "complex key": b"name: k\ntask: t\n? [a, b]\n: 1\nsuccess:\n- {app: Home}\n",
    "notes of a number": _GOOD.replace("device: {kind: sim}", "device: {kind: sim, state: {notes: 5}}").encode(),
    "name of dots": _GOOD.replace("name: ok", 'name: ".."').encode(),
    "name with a slash": _GOOD.replace("name: ok", "name: ../../escape").encode(),
    "runaway task": _GOOD.replace("task: t", "task: " + "x" * 20_000).encode(),
    "file of 5 MB": (_GOOD + "#" + "x" * (5 * 1024 * 1024) + "\n").encode(),
    "deep nesting": ("name: n\ntask: t\nsuccess:\n- " + "[" * 200 + "]" * 200 + "\n").encode(),
    "click off the screen": (_GOOD + "gold:\n- action: {action: click, x: 5000, y: 9000}\n").encode(),
    "negative coordinate": (_GOOD + "gold:\n- action: {action: click, x: -5, y: 10}\n").encode(),
    "unknown action": (_GOOD + "gold:\n- action: {action: format_disk}\n").encode(),
    "unknown check": _GOOD.replace("{app: Home}", "{rm_rf: /}").encode(),
    "a list, not a mapping": b"- name: x\n- task: y\n",
    "empty file": b"",
    "NUL bytes": b"name: a\x00b\ntask: t\nsuccess:\n- {app: Home}\n",
    "tab indentation": b"name: t\ntask: t\nsuccess:\n\t- {app: Home}\n",
    "huge max_steps": _GOOD.replace("success:", "max_steps: 99999999999999999999\nsuccess:").encode(),
    "secret with a bad name": _GOOD.replace("success:", "secrets: [rm -rf]\nsuccess:").encode(),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_scenario_is_one_line_and_exit_2(tmp_path: Path, name: str) -> None:
    scenario = tmp_path / "in" / "scenario.yaml"
    scenario.parent.mkdir()
    scenario.write_bytes(HOSTILE[name])
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "vlagent.cli", "eval", str(scenario), "--out", str(tmp_path / "out" / "ev")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ADBUTILS_ADB_PATH": "/bin/false"},
    )
    assert time.monotonic() - started < 60
    assert result.returncode == 2, f"{name}: exit {result.returncode}\n{result.stdout}{result.stderr}"
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "scenario.yaml" in lines[0], result.stderr
    assert not (tmp_path / "out" / "ev").exists() or not any((tmp_path / "out" / "ev").iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"] or not (tmp_path / "out").exists()
