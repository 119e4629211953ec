"""Evaluations on a pool of phones, as a user runs them: ``vlagent sim serve`` with several phones,
one more joined with ``adb connect``, and ``vlagent eval --device ... -j 3`` judged over adb; a
phone that drops off mid-run leaves the pool and the run goes on (or ends its phone scenarios as
errors when none is left), never hanging.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from sim_serve import sim_serve

from vlagent.drivers.sim.adb_server import SimAdbServer, serve_sim
from vlagent.drivers.sim.world import SimPhone
from vlagent.evaluate import EvalConfig, evaluate
from vlagent.policies.base import Decision, Observation
from vlagent.replay import ReplayPolicy
from vlagent.scenario import Scenario, load_scenarios

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
NET = "10.0.0.7:5555"


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "vlagent.cli", *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)


@contextlib.contextmanager
def _sim_serve(*options: str) -> Iterator[dict[str, str]]:
    """``vlagent sim serve`` with phones phone-a and phone-b and ``options``; the env reaching it."""
    with sim_serve("--serial", "phone-a", "--serial", "phone-b", *options) as port:
        yield {**os.environ, "ANDROID_ADB_SERVER_PORT": str(port), "ADBUTILS_ADB_PATH": "/bin/false"}


@pytest.fixture(scope="module")
def phones() -> Iterator[dict[str, str]]:
    """Phones phone-a and phone-b; any address answers adb connect."""
    with _sim_serve() as env:
        yield env


def test_three_phones_one_joined_with_adb_connect_run_the_phone_scenarios_with_the_same_verdicts(
    phones: dict[str, str], tmp_path: Path
) -> None:
    files = [str(p) for p in sorted(SCENARIOS.glob("sim-*.yaml"))]
    assert len(files) >= 13
    plain = _cli("eval", *files, "--policy", "scripted", "-j", "3", "--out", str(tmp_path / "plain"), env=phones)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    pool = ["--device", "adb:*", "--device", f"adb:{NET}"]
    pooled = _cli("eval", *files, "--policy", "scripted", "-j", "3", *pool, "--out", str(tmp_path / "pool"), env=phones)
    assert pooled.returncode == 0, pooled.stdout + pooled.stderr

    def verdicts(out: Path) -> tuple[dict[str, tuple[bool, str, int]], dict]:  # type: ignore[type-arg]
        data = json.loads((out / "results.json").read_text(encoding="utf-8"))
        return {r["name"]: (r["success"], r["end_reason"], r["steps"]) for r in data["scenarios"]}, data

    expected, _ = verdicts(tmp_path / "plain")
    got, data = verdicts(tmp_path / "pool")
    assert got == expected and len(got) == len(files)
    devices = ["adb:phone-a", "adb:phone-b", f"adb:{NET}"]
    assert {r["device"] for r in data["scenarios"]} == set(devices)  # each phone ran scenarios
    assert data["pool"]["devices"] == devices and data["pool"]["dropped"] == {}
    assert sum(data["pool"]["runs"].values()) == len(files) and min(data["pool"]["runs"].values()) >= 1
    sources = {c["source"] for r in data["scenarios"] for c in r["checks"]}
    assert "sim state" not in sources  # judged over adb
    assert data["config"]["devices"] == ["adb:*", f"adb:{NET}"]


def test_adb_star_with_no_phone_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with serve_sim([], port=0) as empty:
        env = {**os.environ, "ANDROID_ADB_SERVER_PORT": str(empty.port), "ADBUTILS_ADB_PATH": "/bin/false"}
        done = _cli("eval", str(SCENARIOS / "sim-wifi-on.yaml"), "--device", "adb:*", "--out", str(tmp_path), env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip() == (
        f"error: --device adb:*: the adb server at 127.0.0.1:{empty.port} lists no phone ready (see 'adb devices')"
    )
    assert not (tmp_path / "results.json").exists()


def test_a_network_phone_that_does_not_answer_adb_connect_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with _sim_serve("--reachable", "10.0.0.7:5555") as env:
        scenario = str(SCENARIOS / "sim-wifi-on.yaml")
        done = _cli(
            "eval", scenario, "--device", "adb:*", "--device", "adb:10.0.0.8:5555", "--out", str(tmp_path), env=env
        )
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip() == (
        "error: --device adb:10.0.0.8:5555: adb connect 10.0.0.8:5555: "
        "failed to connect to '10.0.0.8:5555': Connection refused"
    )


def test_a_device_from_a_config_file_may_be_one_or_several(phones: dict[str, str], tmp_path: Path) -> None:
    for value in ("adb:phone-a", "[adb:phone-a, adb:phone-b]"):
        config = tmp_path / "config.yaml"
        config.write_text(f"eval: {{device: {value}}}\n", encoding="utf-8")
        out = tmp_path / f"out{len(value)}"
        files = [str(SCENARIOS / "sim-wifi-on.yaml"), str(SCENARIOS / "sim-dark-mode.yaml")]
        done = _cli("--config", str(config), "eval", *files, "-j", "2", "--out", str(out), env=phones)
        assert done.returncode == 0, done.stdout + done.stderr
        data = json.loads((out / "results.json").read_text(encoding="utf-8"))
        assert data["pool"]["devices"] == value.strip("[]").split(", ")


# --- a phone that drops off ------------------------------------------------------------------------


class _Unplugs:
    """Plays each scenario's gold steps; in the scenario numbered ``victim`` (in the order they are
    built) it first unplugs the network phone, as a phone leaving wireless debugging range
    (``gone``: for good, so adb connect fails too; else only the connection drops)."""

    name = "unplugging"

    def __init__(self, server: SimAdbServer, victim: int, *, gone: bool = True) -> None:
        self.server, self.victim, self.built, self.gone = server, victim, 0, gone

    def __call__(self, scenario: Scenario) -> ReplayPolicy:
        index, self.built = self.built, self.built + 1
        policy = ReplayPolicy(scenario.gold)
        if index != self.victim:
            return policy
        decide = policy.decide

        def unplug_then_decide(observation: Observation) -> Decision:
            if NET in self.server.devices:
                if self.gone:
                    self.server.reachable = frozenset()
                self.server.disconnect(NET)
            return decide(observation)

        policy.decide = unplug_then_decide  # type: ignore[method-assign]
        return policy


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimAdbServer]:
    monkeypatch.setenv("ADBUTILS_ADB_PATH", "/bin/false")
    with serve_sim([SimPhone(serial="a")], port=0) as served:
        monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(served.port))
        yield served


def _phone_scenarios(names: Sequence[str]) -> list[Scenario]:
    return load_scenarios([SCENARIOS / f"{name}.yaml" for name in names])


# a phone gone is reported within the call deadline: keep it short here
FAST = "call_deadline=2&attempts=2&retry_wait=0.05"


def test_a_phone_that_drops_off_mid_episode_leaves_the_pool_and_the_rest_run_on_the_others(
    server: SimAdbServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    scenarios = _phone_scenarios(["sim-wifi-on", "sim-dark-mode", "sim-back-home", "sim-bluetooth-off"])
    devices = ("adb:a", f"adb:{NET}?{FAST}")
    started = time.monotonic()
    result = evaluate(scenarios, EvalConfig(out=tmp_path, devices=devices, policy_factory=_Unplugs(server, 1)))
    assert time.monotonic() - started < 60
    runs = {r.name: r for r in result.results}
    assert runs["sim-dark-mode"].device == devices[1]  # the second scenario took the network phone ...
    assert runs["sim-dark-mode"].errored and "10.0.0.7:5555" in runs["sim-dark-mode"].detail  # ... and lost it
    for name in ("sim-wifi-on", "sim-back-home", "sim-bluetooth-off"):
        assert runs[name].success and runs[name].device == "adb:a", (name, runs[name].detail)
    pool = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))["pool"]
    assert list(pool["dropped"]) == [devices[1]]
    assert pool["dropped"][devices[1]].startswith("the adb server lost 10.0.0.7:5555 and adb connect failed (")
    assert f"device {devices[1]} dropped off and leaves the pool" in caplog.text


def test_a_network_phone_whose_connection_drops_is_joined_again_and_stays(
    server: SimAdbServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Wireless debugging loses the connection mid-episode but the phone is still there: that
    scenario ends in error, the pool joins the phone again with adb connect, and it runs more."""
    scenarios = _phone_scenarios(["sim-wifi-on", "sim-dark-mode", "sim-back-home", "sim-bluetooth-off"])
    devices = (f"adb:{NET}?{FAST}",)
    result = evaluate(
        scenarios, EvalConfig(out=tmp_path, devices=devices, policy_factory=_Unplugs(server, 1, gone=False))
    )
    runs = [(r.name, r.errored) for r in result.results]
    assert runs == [
        ("sim-wifi-on", False),
        ("sim-dark-mode", True),
        ("sim-back-home", False),
        ("sim-bluetooth-off", False),
    ]
    pool = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))["pool"]
    assert pool["dropped"] == {} and pool["runs"] == {devices[0]: 4}
    assert f"network phone {NET} was lost and joined again" in caplog.text


def test_when_the_last_phone_drops_off_the_remaining_phone_scenarios_are_errors_at_once(
    server: SimAdbServer, tmp_path: Path
) -> None:
    scenarios = _phone_scenarios(["sim-wifi-on", "sim-dark-mode", "sim-back-home"])
    config = EvalConfig(out=tmp_path, devices=(f"adb:{NET}?{FAST}",), policy_factory=_Unplugs(server, 0), jobs=2)
    started = time.monotonic()
    result = evaluate(scenarios, config)
    assert time.monotonic() - started < 60
    first, *rest = result.results
    assert first.errored and first.device == f"adb:{NET}?{FAST}"
    for run in rest:
        assert run.errored and run.device == "pool" and run.steps == 0
        assert run.error is not None and run.error.startswith("every device of the pool dropped off (adb:10.0.0.7")
    data = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert data["summary"]["errors"] == 3 and data["summary"]["not_run"] == []


def test_a_phone_missing_when_its_scenario_opens_it_leaves_the_pool(server: SimAdbServer, tmp_path: Path) -> None:
    scenarios = _phone_scenarios(["sim-wifi-on", "sim-dark-mode", "sim-back-home"])
    devices = (f"adb:ghost?{FAST}", "adb:a")  # ghost was unplugged before the run
    result = evaluate(scenarios, EvalConfig(out=tmp_path, devices=devices, jobs=2))
    by_device: dict[str, list[bool]] = {}
    for run in result.results:
        by_device.setdefault(run.device, []).append(run.success)
    assert by_device == {devices[0]: [False], "adb:a": [True, True]}
    ghost = next(r for r in result.results if r.device == devices[0])
    assert ghost.error is not None and "ghost" in ghost.error and ghost.steps == 0
    pool = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))["pool"]
    assert pool["runs"] == {devices[0]: 1, "adb:a": 2} and list(pool["dropped"]) == [devices[0]]


def test_a_pool_of_several_phones_is_refused_on_a_cluster(tmp_path: Path) -> None:
    """Elsewhere than on this machine's threads (a Ray cluster), phones are a node's resources:
    one --device adb:SERIAL names where phone scenarios go; a pool or adb:* is refused in one line."""
    from vlagent.errors import ConfigError

    class Elsewhere:  # an executor that is not this process's threads (what RayExecutor is)
        def execute(self, jobs: object, runner: object, deliver: object) -> None:
            raise AssertionError("must be refused before anything runs")

    scenarios = _phone_scenarios(["sim-wifi-on"])
    for devices in (("adb:a", "adb:b"), ("adb:*",)):
        with pytest.raises(ConfigError, match="on a cluster, phone scenarios run on one --device adb:SERIAL"):
            evaluate(scenarios, EvalConfig(out=tmp_path / str(len(devices)), devices=devices), executor=Elsewhere())
