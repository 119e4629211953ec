"""The vlagent command as a user meets it: demo, run, show, errors, config from env and file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vlagent.recorder import load_trajectory


def vlagent(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "ADBUTILS_ADB_PATH": "/bin/false", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "vlagent.cli", *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=300
    )


def test_demo_completes_and_writes_a_run(tmp_path: Path) -> None:
    result = vlagent("demo", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "SUCCESS judged from device state" in result.stdout
    run_dir = Path(result.stdout.strip().splitlines()[-1].removeprefix("run written to "))
    traj = load_trajectory(run_dir)
    assert traj.complete and traj.end is not None and traj.end.reason == "done_success"
    assert "step" in result.stderr  # progress lines went to stderr


def test_run_builtin_task_then_show_as_json(tmp_path: Path) -> None:
    result = vlagent("run", "note", "--device", "sim:5", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    run_dir = result.stdout.strip().splitlines()[-1].removeprefix("run written to ")
    shown = vlagent("show", run_dir, "--json")
    data = json.loads(shown.stdout)
    typed = [s["action"]["text"] for s in data["steps"] if s["action"]["action"] == "type"]
    assert typed == ["买牛奶 🥛 café"]
    assert data["end"]["reason"] == "done_success"


@pytest.mark.model
def test_no_history_reuse_resizes_every_screen_at_every_step(tmp_path: Path) -> None:
    pytest.importorskip("transformers", reason="needs the qwen extra (transformers)")
    base = ["run", "open settings", "--device", "sim:2", "--policy", "tiny", "--max-steps", "5", "--on-stuck", "hint"]
    base += ["--max-pixels", str(400 * 784), "--max-tokens", "800"]
    sizes = {}
    actions = {}
    runs = (("stable", []), ("behind", ["--no-work-ahead"]), ("shrink", ["--no-history-reuse"]))
    for name, extra in runs:
        result = vlagent(*base, *extra, "--out", str(tmp_path / name))
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr  # 1: not judged a success
        run_dir = Path(result.stdout.strip().splitlines()[-1].removeprefix("run written to "))
        steps = [s for s in load_trajectory(run_dir).steps if s.selection]
        assert len(steps) >= 4, result.stderr
        sizes[name] = [[image["tokens"] for image in s.selection["images"]] for s in steps]  # type: ignore[index]
        encoded = [s.usage["encoded_visual_tokens"] for s in steps]
        visual = [s.usage["visual_tokens"] for s in steps]
        current = [s.selection["images"][-1]["tokens"] for s in steps]  # type: ignore[index]
        actions[name] = [s.action for s in load_trajectory(run_dir).steps]
        if name == "stable":  # earlier screens keep their size; the one just acted on is encoded ahead
            assert encoded[3] < visual[3] and encoded[1:] == current[1:]
        elif name == "behind":  # without work ahead, a step also encodes the previous screen's small copy
            assert all(e > c for e, c in zip(encoded[1:], current[1:], strict=True))
        else:
            assert encoded == visual
    assert actions["behind"] == actions["stable"]
    stable, shrink = sizes["stable"][3], sizes["shrink"][3]
    assert len(stable) == 4 and stable[0] == stable[1]  # the two oldest at the same, stable size
    assert len(set(shrink)) == len(shrink) >= 3  # each older screen half the next newer one


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "do something", "--device", "toaster"], "unknown device 'toaster'"),
        (["run", "do something"], "no policy can run this task"),
        (["run", "wifi", "--policy", "oracle", "--device", "sim", "--max-steps", "0"], "Invalid value"),
        (["run", "x", "--policy", "scripted", "--script", "missing.yaml"], "cannot read script"),
        (["show", "."], "no trajectory"),
    ],
)
def test_user_mistakes_exit_2_without_traceback(tmp_path: Path, args: list[str], message: str) -> None:
    result = vlagent(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_scripted_run_from_a_file(tmp_path: Path) -> None:
    script = tmp_path / "script.yaml"
    script.write_text("- {action: open_app, name: Settings}\n- {action: done, status: failure, answer: gave up}\n")
    result = vlagent("run", "open settings", "--script", str(script), "--out", str(tmp_path / "runs"))
    assert result.returncode == 1, result.stderr  # the agent gave up: a failed run, not a crash
    assert "done_failure (gave up)" in result.stdout and "Traceback" not in result.stderr


def test_options_from_environment_and_config_file(tmp_path: Path) -> None:
    config = tmp_path / "vlagent.yaml"
    config.write_text(f"run:\n  device: sim:3\n  out: {tmp_path / 'from-file'}\n")
    result = vlagent("--config", str(config), "run", "wifi", env={"VLAGENT_RUN_MAX_STEPS": "2"})
    # the env var's 2 steps end the episode before 'done', yet Wi-Fi is on: the device state decides
    assert result.returncode == 0, result.stderr
    assert "SUCCESS judged from device state" in result.stdout and "step_limit" in result.stdout
    assert (tmp_path / "from-file").is_dir()
    traj = load_trajectory(next((tmp_path / "from-file").iterdir()))
    assert traj.start is not None and traj.start.meta["device_spec"] == "sim:3"


def test_sim_serve_answers_the_adb_cli(tmp_path: Path) -> None:
    import shutil
    import socket
    import time

    if shutil.which("adb") is None:
        pytest.skip("Debian's adb command line tool is not installed (apt-get install adb)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "vlagent.cli", "sim", "serve", "--port", str(port), "--serial", "sim-a"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # wait until our server listens: an adb client finding no server would start a real one on the port
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        while time.monotonic() < deadline:
            out = subprocess.run(["adb", "-P", str(port), "devices"], capture_output=True, text=True, timeout=10)
            if "sim-a\tdevice" in out.stdout:
                break
            time.sleep(0.3)
        else:
            pytest.fail(f"adb never saw the simulated phone: {out.stdout} {out.stderr}")
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_eval_writes_results_junit_and_report(tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    scenarios = Path(__file__).resolve().parent.parent / "scenarios"
    phone = sorted(p for p in scenarios.glob("sim-*.yaml"))[:3]
    out = tmp_path / "eval"
    result = vlagent("eval", *map(str, phone), "--jobs", "2", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert f"{len(phone)}/{len(phone)} scenarios passed" in result.stdout
    data = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert data["summary"]["passed"] == len(phone)
    suite = ET.parse(out / "junit.xml").getroot()
    assert int(suite.get("tests") or suite[0].get("tests") or 0) == len(phone)
    assert "base64" not in (out / "report.html").read_text(encoding="utf-8")


def test_eval_with_a_policy_that_cannot_load_fails_once_before_any_scenario(tmp_path: Path) -> None:
    scenario = str(Path(__file__).resolve().parent.parent / "scenarios" / "sim-wifi-on.yaml")
    unknown = vlagent("eval", scenario, "--policy", "bogus", "--out", str(tmp_path / "a"))
    assert unknown.returncode == 2 and "unknown policy 'bogus'" in unknown.stderr
    assert "Traceback" not in unknown.stderr and not (tmp_path / "a").exists()
    oracle = vlagent("eval", scenario, "--policy", "oracle", "--out", str(tmp_path / "b"))
    assert oracle.returncode == 2 and "--policy scripted" in oracle.stderr


def test_eval_scores_a_long_press_scenario(tmp_path: Path) -> None:
    scenario = str(Path(__file__).resolve().parent.parent / "scenarios" / "sim-delete-note.yaml")
    result = vlagent("eval", scenario, "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))["scenarios"][0]
    assert [c["passed"] for c in data["checks"]] == [True, True, True]


def test_eval_device_moves_phone_scenarios_and_judges_there(tmp_path: Path) -> None:
    scenario = str(Path(__file__).resolve().parent.parent / "scenarios" / "sim-delete-note.yaml")
    result = vlagent("eval", scenario, "--device", "sim:2", "--policy", "scripted", "--out", str(tmp_path))
    data = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))["scenarios"][0]
    assert data["device"] == "sim:2"
    # the gold taps were recorded on layout 0; judged on the phone that was given, in its start state
    assert [c["source"] for c in data["checks"]] == ["sim state"] * 3
    assert [c["status"] for c in data["checks"]][1:] == ["passed", "passed"], result.stdout
    refused = vlagent("eval", scenario, "--device", "desktop", "--out", str(tmp_path / "b"))
    assert refused.returncode == 2 and "not a phone" in refused.stderr and "Traceback" not in refused.stderr


def test_record_then_replay_a_run(tmp_path: Path) -> None:
    run = vlagent("run", "wifi", "--device", "sim", "--out", str(tmp_path / "runs"), "--settle-timeout", "0")
    assert run.returncode == 0, run.stderr
    run_dir = run.stdout.strip().splitlines()[-1].removeprefix("run written to ")
    scenario = tmp_path / "wifi.yaml"
    recorded = vlagent(
        "record", run_dir, "--out", str(scenario), "--check", "toggle=wifi", "--check", "{text: Wi-Fi, value: true}"
    )
    assert recorded.returncode == 0, recorded.stderr
    assert "- {text: Wi-Fi}" in scenario.read_text(encoding="utf-8")
    bad = vlagent("record", run_dir, "--out", str(tmp_path / "bad.yaml"), "--check", "colour=red")
    assert bad.returncode == 2 and "kinds: toggle" in bad.stderr and "Traceback" not in bad.stderr
    replayed = vlagent("replay", str(scenario), "--out", str(tmp_path / "replay"))
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert replayed.stdout.startswith("passed: exact")
    report = vlagent("report", run_dir)
    assert report.returncode == 0 and Path(report.stdout.strip()).is_file()


def test_a_failed_episode_exits_1_and_says_why(tmp_path: Path) -> None:
    result = vlagent(
        "run", "x", "--policy", "openai", "--base-url", "http://127.0.0.1:9", "--model", "m", "--out", str(tmp_path)
    )
    assert result.returncode == 1
    assert "cannot reach the model server" in result.stdout and "Traceback" not in result.stderr
