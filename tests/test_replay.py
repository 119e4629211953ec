"""Record -> scenario -> replay: exact on an unchanged screen (no model), and the replay driver."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from vlagent.actions import Click
from vlagent.agent import EndReason, run_episode
from vlagent.drivers.base import check_driver
from vlagent.drivers.registry import open_driver
from vlagent.drivers.replay import ReplayDriver
from vlagent.drivers.sim import SimDriver, SimPhone
from vlagent.policies.base import Decision, Observation
from vlagent.policies.scripted import ScriptedPolicy
from vlagent.policies.task_scripts import task_script, ui_locator
from vlagent.recorder import Recorder
from vlagent.replay import ReplayPolicy, fingerprint, fingerprint_distance, replay_run, scenario_from_run
from vlagent.tasks import ToggleCheck, get_task


def record_wifi(run_dir: Path, seed: int = 0) -> SimDriver:
    driver = SimDriver(seed=seed)
    task = get_task("wifi")
    run_episode(
        task.instruction, driver, ScriptedPolicy(task_script(task, ui_locator(driver))), hooks=[Recorder(run_dir)]
    )
    return driver


class NoModel:
    name = "no-model"

    def decide(self, observation: Observation) -> Decision:
        raise AssertionError("replay on an unchanged screen must not ask a model")

    def decide_batch(self, observations: object) -> list[object]:
        raise AssertionError("not used")


def test_recorded_run_becomes_a_scenario_that_replays_exactly(tmp_path: Path) -> None:
    record_wifi(tmp_path / "run")
    scenario = scenario_from_run(tmp_path / "run", name="wifi", success=[ToggleCheck(toggle="wifi")])
    clicks = [g for g in scenario.gold if isinstance(g.action, Click)]
    assert len(clicks) == 2 and all(g.fingerprint for g in clicks)
    driver = SimDriver(seed=0)
    policy = ReplayPolicy(scenario.gold, heal=NoModel())  # type: ignore[arg-type]
    episode = run_episode(scenario.task, driver, policy)
    assert episode.end is EndReason.DONE_SUCCESS
    assert driver.phone.toggles["wifi"]
    assert {o.status for o in policy.outcomes} == {"exact"}


def test_replay_on_a_moved_layout_diverges_with_a_report(tmp_path: Path) -> None:
    record_wifi(tmp_path / "run")
    scenario = scenario_from_run(tmp_path / "run", success=[ToggleCheck(toggle="wifi")])
    policy = ReplayPolicy(scenario.gold, report_dir=tmp_path / "div", expected_frames=tmp_path / "run")
    episode = run_episode(scenario.task, SimDriver(seed=3), policy)
    assert episode.end is EndReason.DONE_FAILURE and "diverged at step 1" in episode.detail
    assert policy.result.report is not None
    page = policy.result.report.read_text(encoding="utf-8")
    assert 'src="expected_000.jpg"' in page and 'src="actual_000.jpg"' in page
    assert "base64" not in page


def test_replay_driver_serves_recorded_frames_for_offline_reruns(tmp_path: Path) -> None:
    record_wifi(tmp_path / "run")
    driver = open_driver(f"replay:{tmp_path / 'run'}")
    assert isinstance(driver, ReplayDriver)
    first = driver.screenshot()
    assert first.size == (1080, 2400)
    policy = ScriptedPolicy([Click(x=135, y=840), Click(x=500, y=300)])
    episode = run_episode("offline", driver, policy, max_steps=2)
    assert driver.executed == [Click(x=135, y=840), Click(x=500, y=300)]
    # each executed action moved on to the next recorded screen (home, then Settings)
    assert episode.steps[0].frame.image.tobytes() != episode.steps[1].frame.image.tobytes()
    assert episode.steps[0].frame.image.tobytes() == first.image.tobytes()


def test_fingerprint_separates_rows_but_not_identical_renders() -> None:
    phone = SimPhone()
    phone.open_app("Settings")
    image = phone.render()
    rows = {e.label: e.hit_box for e in phone.elements()}
    wifi, nfc = fingerprint(image, rows["Wi-Fi"]), fingerprint(image, rows["NFC"])
    assert fingerprint_distance(wifi, fingerprint(phone.render(), rows["Wi-Fi"])) == 0.0
    assert fingerprint_distance(wifi, nfc) > 0.0
    dark = Image.new("RGB", image.size, (0, 0, 0))
    assert fingerprint_distance(wifi, fingerprint(dark, rows["Wi-Fi"])) == 1.0


def test_replay_run_reexecutes_on_a_fresh_device(tmp_path: Path) -> None:
    driver = SimDriver(seed=0)
    task = get_task("wifi")
    recorder = Recorder(tmp_path / "run", meta={"device_spec": "sim"})
    run_episode(task.instruction, driver, ScriptedPolicy(task_script(task, ui_locator(driver))), hooks=[recorder])
    assert replay_run(tmp_path / "run", tmp_path / "again").status == "exact"
    moved = replay_run(tmp_path / "run", tmp_path / "moved", device="sim:3")
    assert moved.status == "diverged" and moved.report is not None and moved.report.exists()
    assert (tmp_path / "again" / "trajectory.jsonl").exists()


def test_a_run_recorded_with_ui_nodes_replays_on_a_moved_layout_by_node_without_a_model(tmp_path: Path) -> None:
    driver = SimDriver(seed=0)
    task = get_task("wifi")
    policy = ScriptedPolicy(task_script(task, ui_locator(driver)))
    run_episode(task.instruction, driver, policy, hooks=[Recorder(tmp_path / "run", ui_nodes=True)])
    scenario = scenario_from_run(tmp_path / "run", success=[ToggleCheck(toggle="wifi")])
    nodes = [g.node for g in scenario.gold if isinstance(g.action, Click)]
    assert [n.text or n.resource_id for n in nodes if n] == ["Settings", "com.android.settings:id/wi_fi"]
    moved = SimDriver(seed=3)  # icons and rows elsewhere: every fingerprint differs
    replay = ReplayPolicy(scenario.gold, heal=NoModel(), ui=moved)  # type: ignore[arg-type]
    episode = run_episode(scenario.task, moved, replay)
    assert episode.end is EndReason.DONE_SUCCESS and moved.phone.toggles["wifi"]
    healed = [o for o in replay.outcomes if o.status == "healed"]
    assert healed and all("by its UI node" in o.detail for o in healed)


def test_the_replay_driver_passes_the_conformance_check_and_closes_twice(tmp_path: Path) -> None:
    record_wifi(tmp_path / "run")
    check_driver(open_driver(f"replay:{tmp_path / 'run'}"), close=True)
