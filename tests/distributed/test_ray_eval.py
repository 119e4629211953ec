"""``vlagent eval --ray``: episodes as Ray tasks on a cluster started for the run or joined by address.

Real parts throughout: ``ray start`` nodes (conftest), the CLI in subprocesses, a simulated phone
over a real adb socket reachable from one node only, worker processes killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from vlagent.actions import Action
from vlagent.errors import ModelError
from vlagent.evaluate import EvalConfig, evaluate
from vlagent.policies.base import Decision, Observation
from vlagent.policies.scripted import ScriptedPolicy
from vlagent.scenario import Scenario, load_scenarios

ray = pytest.importorskip("ray", reason="the Ray tests need vlagent[ray]")
from vlagent.distributed import RayExecutor  # noqa: E402

if TYPE_CHECKING:
    from tests.distributed.conftest import Cluster

pytestmark = pytest.mark.slow

PHONE = "adb:emulator-5554"  # the phone the cluster's second node advertises (conftest)

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
SIM_FILES = sorted(SCENARIOS.glob("sim-*.yaml"))


def _eval(files: list[Path], out: Path, *extra: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    argv = [sys.executable, "-m", "vlagent.cli", "eval", *map(str, files), "--policy", "scripted", "--out", str(out)]
    done = subprocess.run([*argv, *extra], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return dict(json.loads((out / "results.json").read_text(encoding="utf-8")))


def _verdicts(results: dict[str, Any]) -> list[tuple[str, bool, str, int]]:
    return [(r["name"], r["success"], r["end_reason"], r["steps"]) for r in results["scenarios"]]


def _layout(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and not p.name.startswith("."))


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("plain") / "out"
    return out, _eval(SIM_FILES, out, "-j", "2")


def test_ray_local_gives_the_same_verdicts_steps_and_files_as_a_plain_run(
    plain: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    plain_out, plain_results = plain
    results = _eval(SIM_FILES, tmp_path / "ray", "-j", "2", "--ray", "local")
    assert len(results["scenarios"]) == len(SIM_FILES) >= 13
    assert _verdicts(results) == _verdicts(plain_results)
    assert all(r["success"] for r in results["scenarios"])
    assert _layout(tmp_path / "ray") == _layout(plain_out)  # frames, trajectories, reports: the same files
    for r in results["scenarios"]:
        assert r["node"] and r["host"] and Path(r["run_dir"]) == tmp_path / "ray" / r["name"]
        assert (tmp_path / "ray" / r["name"] / "trajectory.jsonl").read_text(encoding="utf-8").count("\n") >= r["steps"]
    assert all(r["node"] is None for r in plain_results["scenarios"])
    index = (tmp_path / "ray" / "report.html").read_text(encoding="utf-8")
    assert f"{len(SIM_FILES)}/{len(SIM_FILES)} scenarios passed" in index


def test_a_two_node_cluster_joined_by_address_gives_the_same_verdicts_on_both_nodes(
    cluster: Cluster, plain: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    results = _eval(SIM_FILES, tmp_path / "out", "-j", "2", "--ray", cluster.address, env=cluster.env)
    assert _verdicts(results) == _verdicts(plain[1])
    assert {r["node"] for r in results["scenarios"]} == set(cluster.node_ids())  # both nodes ran episodes


def test_phone_scenarios_run_on_the_node_that_advertises_the_phone(cluster: Cluster, tmp_path: Path) -> None:
    files = [SCENARIOS / f"sim-{n}.yaml" for n in ("wifi-on", "dark-mode", "note-greek", "open-camera")]
    results = _eval(files, tmp_path / "out", "-j", "2", "--device", PHONE, "--ray", cluster.address, env=cluster.env)
    phone_node = next(node for node, name in cluster.node_ids().items() if name == PHONE)
    runs = results["scenarios"]
    assert [r["name"] for r in runs] == [f.stem for f in files] and all(r["success"] for r in runs)
    assert {r["node"] for r in runs} == {phone_node}  # the head cannot reach this phone's adb server at all
    assert {r["device"] for r in runs} == {PHONE}
    assert "settings" in {c["source"] for r in runs for c in r["checks"]}  # judged over adb


def test_a_phone_no_node_offers_is_one_line_before_anything_runs(cluster: Cluster, tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "vlagent.cli", "eval", str(SIM_FILES[0]), "--policy", "scripted"]
    argv += ["--device", "adb:nowhere", "--ray", cluster.address, "--out", str(tmp_path / "out")]
    done = subprocess.run(argv, env=cluster.env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "no node of the Ray cluster offers adb:nowhere" in done.stderr and "Traceback" not in done.stderr


def test_an_address_where_no_cluster_answers_is_one_line_at_once(tmp_path: Path) -> None:

    for address, message in (("127.0.0.1:1", "no Ray cluster answers at 127.0.0.1:1"), ("nonsense", "give local")):
        argv = [sys.executable, "-m", "vlagent.cli", "eval", str(SIM_FILES[0]), "--policy", "scripted"]
        started = time.monotonic()
        done = subprocess.run(
            [*argv, "--ray", address, "--out", str(tmp_path / address)], capture_output=True, text=True, timeout=60
        )
        assert time.monotonic() - started < 30
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert not (tmp_path / address / "results.json").exists()


def test_ray_is_imported_only_for_ray_and_the_help_names_it() -> None:
    code = "import sys, vlagent, vlagent.cli, vlagent.distributed; print('ray' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr
    helped = subprocess.run([sys.executable, "-m", "vlagent.cli", "eval", "--help"], capture_output=True, text=True)
    assert "--ray ADDRESS" in helped.stdout and "adb:SERIAL" in helped.stdout


@pytest.mark.model
def test_model_actors_serve_every_step_of_every_episode(tmp_path: Path) -> None:
    pytest.importorskip("transformers", reason="the tiny model needs vlagent[qwen]")
    files = []
    for name in ("sim-wifi-on", "sim-dark-mode"):
        short = tmp_path / f"{name}.yaml"
        text = (SCENARIOS / f"{name}.yaml").read_text(encoding="utf-8")
        short.write_text(text.replace("max_steps: 12", "max_steps: 2"), encoding="utf-8")
        files.append(short)
    argv = [sys.executable, "-m", "vlagent.cli", "-v", "eval", *map(str, files), "--policy", "tiny", "-j", "2"]
    argv += ["--ray", "local", "--model-actors", "1", "--out", str(tmp_path / "out")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-3000:]  # random answers: the scenarios fail, nothing breaks
    results = json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))["scenarios"]
    assert [r["end_reason"] for r in results] != ["error", "error"] and not any(r["error"] for r in results)
    steps = sum(r["steps"] for r in results)
    assert steps >= 2 and all(r["tokens"] for r in results if r["steps"])  # the actor's usage came back
    logged = " ".join((done.stdout + done.stderr).split())
    assert f"model actor served {{'calls': {steps}," in logged, logged[-2000:]  # every step, through the actor


def test_a_scenarios_secret_is_read_where_eval_runs_and_written_nowhere(cluster: Cluster, tmp_path: Path) -> None:
    secret = "Zq9-s3cr3t-42"
    scenario = tmp_path / "secret-note.yaml"
    scenario.write_text(
        "name: secret-note\ntask: Write a note holding the password {{PIN}} and save it.\ndevice: {kind: sim}\n"
        "secrets: [PIN]\nmax_steps: 8\nsuccess:\n- {app: Notes}\ngold:\n"
        "- action: {action: click, x: 405, y: 840}\n- action: {action: click, x: 796, y: 2145}\n"
        "- action: {action: click, x: 540, y: 1290}\n- action: {action: type, text: '{{PIN}}'}\n"
        "- action: {action: click, x: 930, y: 172}\n- action: {action: done}\n",
        encoding="utf-8",
    )
    env = {**cluster.env, "PIN": secret}  # the nodes were started without it
    results = _eval([scenario], tmp_path / "out", "--ray", cluster.address, env=env)
    (run,) = results["scenarios"]
    assert run["success"] and run["node"] and not run["error"], run  # typed the value this environment holds
    leaks = [p for p in (tmp_path / "out").rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert not leaks


# --- faults -------------------------------------------------------------------------------


class GoldSteps:
    """The scenario's gold steps, ``delay`` seconds each; ``die_at`` ends the process at that step
    (every attempt), ``hang`` makes the first step never come."""

    name = "gold-steps"

    def __init__(self, actions: list[Action], delay: float = 0.0, die_at: int | None = None, hang: bool = False):
        self.inner = ScriptedPolicy(actions)
        self.delay, self.die_at, self.hang, self.steps = delay, die_at, hang, 0

    def decide(self, obs: Observation) -> Decision:
        self.steps += 1
        if self.die_at == self.steps:
            os._exit(9)  # the worker process dies mid-episode, as if killed
        time.sleep(3600 if self.hang else self.delay)
        return self.inner.decide(obs)

    def decide_batch(self, observations: Sequence[Observation]) -> list[Decision | ModelError]:
        return [self.decide(o) for o in observations]


class Factory:
    def __init__(self, delay: float = 0.0, die: str | None = None, hang: str | None = None) -> None:
        self.delay, self.die, self.hang = delay, die, hang

    def __call__(self, scenario: Scenario) -> GoldSteps:
        actions = [g.action for g in scenario.gold]
        return GoldSteps(
            actions, self.delay, die_at=2 if scenario.name == self.die else None, hang=scenario.name == self.hang
        )


@pytest.fixture
def joined(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    """This process may join the cluster; Ray ships this module's policies to the workers by value."""
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        yield cluster
    finally:
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def _episode_workers(pgids: set[int]) -> list[int]:
    """Pids of this cluster's worker processes running an episode now (children of its raylets)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes()
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if title.startswith(b"ray::vlagent episode") and os.getpgid(parent) in pgids:
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def test_a_worker_killed_mid_episode_is_retried_and_nothing_is_lost(joined: Cluster, tmp_path: Path) -> None:
    scenarios = [s for s in load_scenarios(SIM_FILES[:6])]
    killed: list[int] = []

    def kill_one() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            for pid in _episode_workers(joined.pgids()):
                time.sleep(0.4)  # well inside its episode (0.3 s per step)
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one)
    killer.start()
    config = EvalConfig(out=tmp_path / "out", jobs=2, policy_factory=Factory(delay=0.3))
    result = evaluate(scenarios, config, executor=RayExecutor(joined.address, timeout_s=120))
    killer.join()
    assert killed, "no episode worker was found to kill"
    assert [r.name for r in result.results] == [s.name for s in scenarios]
    assert all(r.success for r in result.results), [(r.name, r.error) for r in result.results]  # retried
    data = json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))
    assert data["summary"]["passed"] == len(scenarios) and "in_progress" not in data["summary"]


def test_an_episode_dying_twice_or_hanging_is_an_error_and_the_others_finish(joined: Cluster, tmp_path: Path) -> None:
    scenarios = [s for s in load_scenarios(SIM_FILES[:5])]
    dies, hangs = scenarios[1].name, scenarios[3].name
    config = EvalConfig(out=tmp_path / "out", jobs=2, policy_factory=Factory(die=dies, hang=hangs))
    started = time.monotonic()
    result = evaluate(scenarios, config, executor=RayExecutor(joined.address, timeout_s=12))
    assert time.monotonic() - started < 90  # the hanging episode did not hold the run
    by_name = {r.name: r for r in result.results}
    assert sorted(by_name) == sorted(s.name for s in scenarios)
    dead = by_name[dies]
    assert dead.end_reason == "error" and not dead.success and dead.error
    assert "died" in dead.error.lower() or "crash" in dead.error.lower(), dead.error
    assert dead.steps == 1 and dead.node is not None  # its first step, recorded before it died, came back
    assert (tmp_path / "out" / dies / "trajectory.jsonl").exists()
    hung = by_name[hangs]
    assert hung.end_reason == "error" and "within 12s" in (hung.error or "")
    others = [r for n, r in by_name.items() if n not in (dies, hangs)]
    assert len(others) == 3 and all(r.success for r in others)
    suite = (tmp_path / "out" / "junit.xml").read_text(encoding="utf-8")
    assert 'errors="2"' in suite


def test_ctrl_c_keeps_what_finished(tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "vlagent.cli", "eval", *map(str, SIM_FILES), "--policy", "scripted"]
    argv += ["--repeats", "8", "-j", "2", "--ray", "local", "--out", str(out)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        seen: list[str] = []
        while time.monotonic() < deadline and len(seen) < 3:  # results.json is rewritten while results arrive
            with contextlib.suppress(OSError, ValueError):  # not written yet
                seen = [r["name"] for r in json.loads((out / "results.json").read_text(encoding="utf-8"))["scenarios"]]
            time.sleep(0.2)
        assert len(seen) >= 3, "no results arrived"
        proc.send_signal(signal.SIGINT)
        _stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    data = json.loads((out / "results.json").read_text(encoding="utf-8"))
    names = [r["name"] for r in data["scenarios"]]
    assert data["summary"]["interrupted"] is True and "in_progress" not in data["summary"], stderr[-2000:]
    assert set(seen) <= set(names) and len(names) < len(SIM_FILES) * 8
    assert all(r["success"] for r in data["scenarios"])
    assert all((out / n / "trajectory.jsonl").exists() for n in names)


def test_a_phones_scenarios_wait_their_turn_outside_the_deadline(joined: Cluster, tmp_path: Path) -> None:
    """Four ~3 s episodes on one phone with -j 4 and a 7 s deadline: each one's deadline counts from its turn."""
    names = ("wifi-on", "dark-mode", "open-camera", "back-home")
    scenarios = load_scenarios([SCENARIOS / f"sim-{n}.yaml" for n in names])
    config = EvalConfig(out=tmp_path / "out", jobs=4, device=PHONE, policy_factory=Factory(delay=0.6))
    result = evaluate(scenarios, config, executor=RayExecutor(joined.address, timeout_s=7))
    assert [r.name for r in result.results] == [s.name for s in scenarios]
    assert all(r.success for r in result.results), [(r.name, r.error) for r in result.results]
    assert sum(r.timings["duration_s"] for r in result.results) > 7  # together longer than one deadline


def test_a_phone_node_that_leaves_takes_its_phone_out_and_nothing_hangs(joined: Cluster, tmp_path: Path) -> None:
    """Last in this module: it ends the cluster's phone node."""
    scenarios = load_scenarios([SCENARIOS / f"sim-{n}.yaml" for n in ("wifi-on", "dark-mode", "open-camera")])
    first: list[str] = []

    def end_phone_node_after_first_result() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (tmp_path / "out" / scenarios[0].name / "trajectory.jsonl").exists():
            time.sleep(0.1)
        first.append("seen")
        joined.end_node(1)

    ender = threading.Thread(target=end_phone_node_after_first_result)
    ender.start()
    config = EvalConfig(out=tmp_path / "out", jobs=1, device=PHONE, policy_factory=Factory(delay=1.0))
    started = time.monotonic()
    result = evaluate(scenarios, config, executor=RayExecutor(joined.address, timeout_s=300))
    ender.join()
    assert first and time.monotonic() - started < 120  # noticed the phone gone, did not wait out timeout_s
    by_name = {r.name: r for r in result.results}
    assert sorted(by_name) == sorted(s.name for s in scenarios)
    assert by_name[scenarios[0].name].success  # finished before the node left: kept
    gone = [r for r in result.results if not r.success]
    assert gone and all(f"{PHONE} left the Ray cluster" in (r.error or "") for r in gone), [r.error for r in gone]
